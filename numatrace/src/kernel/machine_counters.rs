//! The always-on kernel side of the exporter and `numatrace top`: counters
//! of the whole machine kept in the kernel, with nothing traced and nothing
//! on the ring. Loaded from the capture's object, in one go:
//! - the NUMA balancer's task decisions, which the kernel counts nowhere but
//!   in the `sched_move_numa`, `sched_swap_numa` and `sched_stick_numa`
//!   tracepoints: the capture's own placement programs count every decision
//!   before their traced-process filter (`Counter::MachineBalancer*`);
//! - per process (`PROCESS_COUNTS`, an LRU per-CPU hash by tgid): thread
//!   migrations across nodes, remote first-touch pages and remote hinting
//!   faults, by programs a capture never attaches (`sources::PROCESS_COUNT_SOURCES`).
//!
//! Every map only a capture needs is shrunk to one entry: under 1 MiB of
//! kernel memory in all on a 2-CPU host, most of it the per-process hash.
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuHashMap},
};
use numatrace_common::{
    CONFIG_GLOBAL, CPU_NODE_MAP, Config, Counter, EVENTS_MAP, LAYOUTS_GLOBAL, MAX_COUNTED_PROCESSES, MAX_CPUS,
    MAX_PFN_BLOCKS, PFN_BLOCK_NODE_MAP, PROCESS_COUNTS_MAP, ProcessCounts, STACKS_MAP, TRACKED_TGIDS_MAP,
    TRACKED_TIDS_MAP,
};
use numatrace_core::{kernel_status::SourceStatus, machine::Topology, system::KernelCounts};

use super::{
    btf_fields,
    first_touch_programs::{self, FirstTouchPrograms},
    layouts, page_map, privileges, requirements, sources,
    tracefs::Tracefs,
};

/// The capture's source whose programs count the balancer's decisions.
const PLACEMENT_SOURCE: &str = "balancer task placement";

/// The sources [`MachineCounters::attach`] tries, in its order (the order of
/// [`MachineCounters::sources`]).
pub fn sources() -> Vec<&'static sources::Source> {
    sources::SOURCES.iter().filter(|s| s.name == PLACEMENT_SOURCE).chain(sources::PROCESS_COUNT_SOURCES).collect()
}

/// Maps sized to one entry (the ring to one page): nothing writes them when
/// no process is traced, yet the object cannot load without them.
const SHRUNK_MAPS: [&str; 3] = [TRACKED_TIDS_MAP, TRACKED_TGIDS_MAP, STACKS_MAP];
/// The same for the maps only the other programs use (named in the object only).
const SHRUNK_PRIVATE_MAPS: [&str; 1] = ["PAGE_MOVERS"];

/// The smallest ring buffer the kernel accepts: one page.
const RING_BYTES: u32 = 4096;

/// Kernel memory the per-process values may take: each entry holds one
/// [`ProcessCounts`] per possible CPU, so a machine with many CPUs counts
/// fewer processes at once (8192 up to 42 CPUs, 5461 at 64, 1365 at 256).
const PROCESS_COUNTS_BYTES: u64 = 8 << 20;

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

/// Whether to count each process's remote first touches: a program on every
/// page allocation of the machine (about 100 ns each), too dear for an
/// exporter left on by default, worth it for `top` during an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstTouchCounting {
    Counted,
    NotCounted,
}

/// The machine-wide counting programs, attached.
pub struct MachineCounters {
    ebpf: Ebpf,
    /// How each source attached, or why not: the balancer's placement, then
    /// the per-process counters tried.
    pub sources: Vec<SourceStatus>,
    balancer: bool,
    /// Whether the per-process migration counter attached.
    processes: bool,
    /// Whether the per-process remote first-touch counter attached too.
    first_touches: bool,
    /// Its program's tracepoint link while attached, or the program while
    /// paused (see [`FirstTouchPrograms`]).
    first_touch: FirstTouchLink,
    /// Whether the per-process remote hinting-fault counter attached too
    /// (it needs fentry or kprobes).
    hinting_faults: bool,
}

impl MachineCounters {
    /// Loads the object with nothing traced and attaches what this kernel
    /// allows. Fails with one sentence without the privileges or tracefs,
    /// or when no counter at all could attach. Remote first touches are
    /// counted only when asked for; they and remote hinting faults only
    /// beside the migrations.
    pub fn attach(first_touch_counting: FirstTouchCounting) -> Result<MachineCounters> {
        if !privileges::Privileges::current().can_load_programs() {
            bail!("{}", privileges::NEEDED);
        }
        let tracefs = Tracefs::open().context("tracefs is not available")?;
        let topology = Topology::read().context("reading the NUMA topology")?;
        let structs = btf_fields::read(std::path::Path::new(btf_fields::VMLINUX_BTF));
        let layouts = layouts::read(&tracefs, &structs);
        let cpu_nodes = topology.cpu_node_table();
        if cpu_nodes.len() as u32 > MAX_CPUS {
            bail!("this machine has {} CPUs; numatrace supports up to {MAX_CPUS}", cpu_nodes.len());
        }
        let pfn_blocks =
            topology.memory_blocks.keys().next_back().map(|b| *b as u32 + 1).unwrap_or(0).min(MAX_PFN_BLOCKS);
        // No process is traced: tgid 0 is the idle task's, which the
        // balancer never places (and a partner-less decision's 0 is checked apart).
        let config = Config {
            target_tgid: 0,
            cpu_node_entries: cpu_nodes.len() as u32,
            pfn_block_shift: topology.pfn_block_shift(),
            pfn_blocks,
            ..Config::default()
        };
        let mut loader = EbpfLoader::new();
        loader
            .override_global(LAYOUTS_GLOBAL, &layouts, true)
            .override_global(CONFIG_GLOBAL, &config, true)
            .map_max_entries(EVENTS_MAP, RING_BYTES)
            .map_max_entries(CPU_NODE_MAP, (cpu_nodes.len() as u32).max(1))
            .map_max_entries(PFN_BLOCK_NODE_MAP, pfn_blocks.max(1))
            .map_max_entries(PROCESS_COUNTS_MAP, process_entries(possible_cpus()));
        for map in SHRUNK_MAPS.iter().chain(&SHRUNK_PRIVATE_MAPS) {
            loader.map_max_entries(map, 1);
        }
        let mut ebpf = loader.load(super::OBJECT).context("loading numatrace's kernel programs")?;
        super::fill_tables(&mut ebpf, &cpu_nodes, &topology)?;
        let btf = aya::Btf::from_sys_fs().ok();
        let mut unmet: BTreeMap<&'static str, String> = requirements::unmet(&layouts.task, &layouts.raw);
        if let Err(why) = page_map::calibrate(&mut ebpf, &tracefs, structs.page_size) {
            unmet.insert("mm_page_alloc_count_raw", format!("page pointers cannot be turned into pfns: {why}"));
        }
        let env = sources::AttachEnv {
            tracefs: &tracefs,
            btf: btf.as_ref(),
            functions: sources::existing_functions(btf.as_ref()),
            unmet,
        };
        let placement = sources::SOURCES
            .iter()
            .find(|s| s.name == PLACEMENT_SOURCE)
            .context("the balancer placement source is missing from the attach table")?;
        // Links of BTF-typed tracepoints live in the programs; classic ones
        // are kept here only to be dropped with the object.
        let mut links = Vec::new();
        let mut statuses = vec![sources::attach(&mut ebpf, &env, placement, &mut links)];
        statuses.push(sources::attach(&mut ebpf, &env, &sources::PROCESS_MIGRATION_COUNTS, &mut links));
        let balancer = statuses[0].attached;
        let processes = statuses[1].attached;
        // Without the migrations there are no process rows from the kernel
        // to put first touches in.
        let before = links.len();
        let first_touches = processes && first_touch_counting == FirstTouchCounting::Counted && {
            statuses.push(sources::attach(&mut ebpf, &env, &sources::PROCESS_FIRST_TOUCH_COUNTS, &mut links));
            statuses.last().is_some_and(|s| s.attached)
        };
        // Only the first-touch counter's links: the budget pauses nothing else.
        let first_touch = FirstTouchLink::Attached(links.split_off(before));
        let hinting_faults = processes && {
            statuses.push(sources::attach(&mut ebpf, &env, &sources::PROCESS_HINTING_FAULT_COUNTS, &mut links));
            statuses.last().is_some_and(|s| s.attached)
        };
        if !balancer && !processes {
            let reasons: Vec<String> = statuses
                .iter()
                .map(|s| format!("{}: {}", s.name, s.reason.as_deref().unwrap_or("not attached with the others")))
                .collect();
            bail!("no kernel counter could attach ({})", reasons.join("; "));
        }
        Ok(MachineCounters { ebpf, sources: statuses, balancer, processes, first_touches, first_touch, hinting_faults })
    }

    /// The balancer's decisions so far, summed over CPUs; `None` when its
    /// tracepoints could not be attached (a kernel without NUMA balancing).
    pub fn balancer_decisions(&self) -> Option<Result<BalancerDecisions>> {
        if !self.balancer {
            return None;
        }
        let read = || {
            let sums = super::counter_sums(&self.ebpf).context("reading the balancer counters")?;
            let sum = |counter: Counter| sums.get(counter as usize).copied().unwrap_or(0);
            Ok(BalancerDecisions {
                moves: sum(Counter::MachineBalancerMoves),
                swaps: sum(Counter::MachineBalancerSwaps),
                sticks: sum(Counter::MachineBalancerSticks),
            })
        };
        Some(read())
    }

    /// The per-process counts, to be read where the processes are listed;
    /// `None` when they are not counted, or were taken already.
    pub fn take_process_counters(&mut self) -> Option<ProcessCounters> {
        if !self.processes {
            return None;
        }
        let map = self.ebpf.take_map(PROCESS_COUNTS_MAP)?;
        let counted = Counted { first_touches: self.first_touches, hinting_faults: self.hinting_faults };
        PerCpuHashMap::try_from(map).ok().map(|map| ProcessCounters { map, counted })
    }

    /// Why the per-process counts are not kept, when they are not.
    pub fn process_counters_missing(&self) -> Option<String> {
        if self.processes {
            return None;
        }
        let reasons: Vec<String> =
            self.sources[1..].iter().filter_map(|s| s.reason.as_ref().map(|r| format!("{}: {r}", s.name))).collect();
        Some(reasons.join("; "))
    }

    /// Whether each process's remote first touches are counted.
    pub fn counts_first_touches(&self) -> bool {
        self.first_touches
    }

    /// Why remote first touches are not counted though asked for: their
    /// program did not attach (the migrations did).
    pub fn first_touches_missing(&self) -> Option<String> {
        self.missing(&sources::PROCESS_FIRST_TOUCH_COUNTS)
    }

    /// Why remote hinting faults are not counted though the migrations are:
    /// their program did not attach (no fentry and no kprobes here).
    pub fn hinting_faults_missing(&self) -> Option<String> {
        self.missing(&sources::PROCESS_HINTING_FAULT_COUNTS)
    }

    /// The reason `source` was tried and did not attach.
    fn missing(&self, source: &sources::Source) -> Option<String> {
        let status = self.sources.iter().find(|s| s.name == source.name && !s.attached)?;
        Some(format!("{}: {}", status.name, status.reason.as_deref().unwrap_or("not attached")))
    }

    /// Kernel memory of the object's maps (`memlock` of each map's fdinfo),
    /// the per-process hash included only while it was not taken.
    pub fn map_memory_bytes(&self) -> u64 {
        use std::os::fd::{AsFd, AsRawFd};
        self.ebpf
            .maps()
            .filter_map(|(_, map)| {
                let fd = match map {
                    aya::maps::Map::Array(d)
                    | aya::maps::Map::PerCpuArray(d)
                    | aya::maps::Map::HashMap(d)
                    | aya::maps::Map::PerCpuLruHashMap(d)
                    | aya::maps::Map::RingBuf(d)
                    | aya::maps::Map::StackTraceMap(d) => d.fd().as_fd().as_raw_fd(),
                    _ => return None,
                };
                memlock_bytes(fd)
            })
            .sum()
    }
}

/// The first-touch counter's tracepoint links, or its programs while the
/// exporter's overhead budget has them detached (still loaded, counts kept).
enum FirstTouchLink {
    Attached(Vec<(&'static sources::Attach, sources::TracepointLink)>),
    Paused(Vec<&'static sources::Attach>),
}

impl FirstTouchLink {
    fn programs(&self) -> Vec<&'static str> {
        match self {
            FirstTouchLink::Attached(links) => links.iter().map(|(a, _)| a.program).collect(),
            FirstTouchLink::Paused(attaches) => attaches.iter().map(|a| a.program).collect(),
        }
    }
}

/// The exporter's `--overhead-budget` measures and pauses the per-process
/// first-touch counter alone: the balancer's and the migrations' programs
/// run rarely and are never paused.
impl FirstTouchPrograms for MachineCounters {
    fn first_touch_run_time(&self) -> (u64, u64) {
        first_touch_programs::run_time_of(&self.ebpf, &self.first_touch.programs())
    }

    fn other_run_time(&self) -> u64 {
        first_touch_programs::run_time_of_others(&self.ebpf, &self.first_touch.programs())
    }

    fn pause_first_touch(&mut self) -> Result<()> {
        let FirstTouchLink::Attached(links) = &mut self.first_touch else { return Ok(()) };
        let mut paused = Vec::new();
        for (attach, link) in std::mem::take(links) {
            sources::detach_link(&mut self.ebpf, attach, link).map_err(anyhow::Error::msg)?;
            paused.push(attach);
        }
        self.first_touch = FirstTouchLink::Paused(paused);
        Ok(())
    }

    fn resume_first_touch(&mut self) -> Result<()> {
        let FirstTouchLink::Paused(attaches) = &mut self.first_touch else { return Ok(()) };
        let mut links = Vec::new();
        for attach in std::mem::take(attaches) {
            let link = sources::reattach_link(&mut self.ebpf, attach).map_err(anyhow::Error::msg)?;
            links.push((attach, link));
        }
        self.first_touch = FirstTouchLink::Attached(links);
        Ok(())
    }

    fn set_sampling(&mut self, _shift: u32) -> Result<()> {
        bail!("the per-process first-touch counter counts every allocation: it has no regions to sample")
    }
}

/// Which counts besides the migrations the programs keep: a count no
/// program writes is 0 and means nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub first_touches: bool,
    pub hinting_faults: bool,
}

/// Every process's cross-node migrations, remote first touches and remote
/// hinting faults, as the kernel counts them (`PROCESS_COUNTS`).
pub struct ProcessCounters {
    map: PerCpuHashMap<MapData, u32, ProcessCounts>,
    counted: Counted,
}

impl ProcessCounters {
    /// Which counts of [`ProcessCounters::read`] are kept besides the migrations.
    pub fn counted(&self) -> Counted {
        self.counted
    }

    /// The counts of every counted process, summed over CPUs. Entries of
    /// processes that are gone (neither in `listed` nor in /proc) are
    /// removed, so that a reused pid starts from 0.
    pub fn read(&mut self, listed: &BTreeSet<u32>) -> Result<BTreeMap<u32, KernelCounts>> {
        let mut counts = BTreeMap::new();
        let mut gone = Vec::new();
        for entry in &self.map {
            // An entry the LRU drops while it is walked is skipped, not fatal.
            let Ok((tgid, per_cpu)) = entry else { continue };
            if !listed.contains(&tgid) && !std::path::Path::new(&format!("/proc/{tgid}")).exists() {
                gone.push(tgid);
                continue;
            }
            let sum = per_cpu.iter().fold(KernelCounts::default(), |a, c| KernelCounts {
                cross_node_migrations: a.cross_node_migrations.saturating_add(c.cross_node_migrations),
                remote_first_touch_pages: a.remote_first_touch_pages.saturating_add(c.remote_first_touch_pages),
                remote_hinting_faults: a.remote_hinting_faults.saturating_add(c.remote_hinting_faults),
            });
            counts.insert(tgid, sum);
        }
        for tgid in gone {
            // Already dropped by the LRU: nothing to do.
            let _ = self.map.remove(&tgid);
        }
        Ok(counts)
    }
}

/// The `memlock:` line of a map's fdinfo: the kernel memory it holds.
fn memlock_bytes(fd: i32) -> Option<u64> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    info.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse::<u64>().ok())
}

/// The kernel's possible CPUs (per-CPU values are kept for each).
fn possible_cpus() -> u64 {
    aya::util::nr_cpus().map_or(1, |n| n as u64).max(1)
}

/// Entries of `PROCESS_COUNTS` within [`PROCESS_COUNTS_BYTES`], at most [`MAX_COUNTED_PROCESSES`].
fn process_entries(cpus: u64) -> u32 {
    let value = size_of::<ProcessCounts>() as u64;
    (PROCESS_COUNTS_BYTES / (cpus * value)).clamp(256, u64::from(MAX_COUNTED_PROCESSES)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_process_hash_shrinks_with_many_cpus() {
        assert_eq!(process_entries(2), MAX_COUNTED_PROCESSES);
        assert_eq!(process_entries(32), MAX_COUNTED_PROCESSES);
        assert_eq!(process_entries(64), 5461);
        assert_eq!(process_entries(256), 1365);
        assert_eq!(process_entries(100_000), 256);
    }
}
