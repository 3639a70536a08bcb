//! The NUMA balancer's task decisions on the whole machine, for the
//! exporter: the kernel counts them nowhere but in the `sched_move_numa`,
//! `sched_swap_numa` and `sched_stick_numa` tracepoints. The capture's own
//! placement programs count every decision before their traced-process
//! filter (`Counter::MachineBalancer*`); with nothing traced, that is all
//! they do. Only those three programs are loaded and attached, and every
//! map the others need is shrunk to one entry: no ring traffic, no
//! per-process state, a few KiB of kernel memory.
use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use aya::{Ebpf, EbpfLoader};
use numatrace_common::{
    CONFIG_GLOBAL, CPU_NODE_MAP, Config, Counter, EVENTS_MAP, LAYOUTS_GLOBAL, PFN_BLOCK_NODE_MAP, STACKS_MAP,
    TRACKED_TGIDS_MAP, TRACKED_TIDS_MAP,
};
use numatrace_core::kernel_status::SourceStatus;

use super::{btf_fields, layouts, privileges, requirements, sources, tracefs::Tracefs};

/// The capture's source whose programs count the decisions.
const PLACEMENT_SOURCE: &str = "balancer task placement";

/// Maps sized to one entry (the ring to one page): nothing writes them when
/// no process is traced, yet the object cannot load without them.
const SHRUNK_MAPS: [&str; 5] = [TRACKED_TIDS_MAP, TRACKED_TGIDS_MAP, CPU_NODE_MAP, PFN_BLOCK_NODE_MAP, STACKS_MAP];
/// The same for the maps only the other programs use (named in the object only).
const SHRUNK_PRIVATE_MAPS: [&str; 1] = ["PAGE_MOVERS"];

/// The smallest ring buffer the kernel accepts: one page.
const RING_BYTES: u32 = 4096;

/// The balancer's task decisions since the counters were attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BalancerDecisions {
    /// A task moved to a CPU of its preferred node.
    pub moves: u64,
    /// Two tasks swapped CPUs across nodes.
    pub swaps: u64,
    /// The balancer found no better CPU and left the task where it was.
    pub sticks: u64,
}

/// The three placement programs, attached, counting machine-wide.
pub struct BalancerCounters {
    ebpf: Ebpf,
    /// How they attached (BTF-typed or classic tracepoints).
    pub status: SourceStatus,
}

impl BalancerCounters {
    /// Loads and attaches the placement programs with nothing traced. Fails
    /// with one sentence without the privileges, tracefs, or any of the
    /// three tracepoints (a kernel without CONFIG_NUMA_BALANCING).
    pub fn attach() -> Result<BalancerCounters> {
        if !privileges::Privileges::current().can_load_programs() {
            bail!("{}", privileges::NEEDED);
        }
        let tracefs = Tracefs::open().context("tracefs is not available")?;
        let structs = btf_fields::read(std::path::Path::new(btf_fields::VMLINUX_BTF));
        let layouts = layouts::read(&tracefs, &structs);
        // No process is traced: tgid 0 is the idle task's, which the
        // balancer never places (and a partner-less decision's 0 is checked apart).
        let config = Config { target_tgid: 0, ..Config::default() };
        let mut loader = EbpfLoader::new();
        loader
            .override_global(LAYOUTS_GLOBAL, &layouts, true)
            .override_global(CONFIG_GLOBAL, &config, true)
            .map_max_entries(EVENTS_MAP, RING_BYTES);
        for map in SHRUNK_MAPS.iter().chain(&SHRUNK_PRIVATE_MAPS) {
            loader.map_max_entries(map, 1);
        }
        let mut ebpf = loader.load(super::OBJECT).context("loading numatrace's kernel programs")?;
        let btf = aya::Btf::from_sys_fs().ok();
        let unmet: BTreeMap<&'static str, String> = requirements::unmet(&layouts.task, &layouts.raw);
        let env = sources::AttachEnv {
            tracefs: &tracefs,
            btf: btf.as_ref(),
            functions: sources::existing_functions(btf.as_ref()),
            unmet,
        };
        let source = sources::SOURCES
            .iter()
            .find(|s| s.name == PLACEMENT_SOURCE)
            .context("the balancer placement source is missing from the attach table")?;
        // Links of BTF-typed tracepoints live in the programs; classic ones
        // are kept here only to be dropped with the object.
        let mut links = Vec::new();
        let status = sources::attach(&mut ebpf, &env, source, &mut links);
        if !status.attached {
            bail!(
                "cannot attach to the balancer's tracepoints: {}",
                status.reason.as_deref().unwrap_or("unknown reason")
            );
        }
        Ok(BalancerCounters { ebpf, status })
    }

    /// The decisions so far, summed over CPUs.
    pub fn read(&self) -> Result<BalancerDecisions> {
        let sums = super::counter_sums(&self.ebpf).context("reading the balancer counters")?;
        let sum = |counter: Counter| sums.get(counter as usize).copied().unwrap_or(0);
        Ok(BalancerDecisions {
            moves: sum(Counter::MachineBalancerMoves),
            swaps: sum(Counter::MachineBalancerSwaps),
            sticks: sum(Counter::MachineBalancerSticks),
        })
    }

    /// Kernel memory of the object's maps (`memlock` of each map's fdinfo).
    pub fn map_memory_bytes(&self) -> u64 {
        use std::os::fd::{AsFd, AsRawFd};
        self.ebpf
            .maps()
            .filter_map(|(_, map)| {
                let fd = match map {
                    aya::maps::Map::Array(d)
                    | aya::maps::Map::PerCpuArray(d)
                    | aya::maps::Map::HashMap(d)
                    | aya::maps::Map::RingBuf(d)
                    | aya::maps::Map::StackTraceMap(d) => d.fd().as_fd().as_raw_fd(),
                    _ => return None,
                };
                let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
                info.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse::<u64>().ok())
            })
            .sum()
    }
}
