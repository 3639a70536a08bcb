//! `numatrace top`: the whole machine's NUMA state per node and per process.
use std::{io::Write, time::Duration};

use anyhow::{Result, bail};
use clap::Args;

use crate::{
    system::{self, placements::PlacementOptions},
    top::{self, TopOptions, state::By, text},
};

pub const AFTER_HELP: &str = "\
Examples:
  numatrace top                        every process, refreshed every second (q quits)
  numatrace top --by cgroup            one row per cgroup
  numatrace top --once --json          one snapshot for scripts (schema numatrace.top/1)

Per process: resident memory, memory per node (numa_maps, as numastat -p),
threads per node (where each last ran), REMOTE: the share of its own memory
(anonymous, heap, stack, huge pages, shared memory) on nodes other than the
one each thread ran on, weighted by the threads' run time over the interval;
MOVES/s: thread moves between nodes, every one as the kernel counts them
when root (or CAP_BPF+CAP_PERFMON) allows, else threads seen on another
node than a refresh before (a lower bound); RFT/s: pages first-touched on
another node than the toucher's CPU, counted in the kernel (- without
it); RHF/s: NUMA hinting faults (the balancer's sampled accesses, so only
with balancing on) that found the page on another node than the faulting
CPU's, counted in the kernel where it has fentry or kprobes (- else);
TAG: the likely
cause, from the rules of `numatrace inspect`: policy, cpuset, spill,
elsewhere (placed by a thread on another node, or its threads moved), local
(under 5 % remote), unknown (numa_maps not read).

Keys: r m x f h p n c t sort by remote share, memory, moves, remote first
touches, remote hinting faults, pid, name, cgroup, tag (again: reverse); / filters (node:1, cgroup:db, or part of the name);
g rows per cgroup; Enter traces the selected process (numatrace --pid PID
--duration 10s, needs root) and shows its report; q or Ctrl-C quits.

Cost: numa_maps walks a process's page tables (about 17 ms per GiB resident
in 4 KiB pages), so each process's is read at most every --numa-maps-period
and only if it ran since (else every 30 periods), the largest first, and a
refresh reads for at most --numa-maps-budget; a process idle for two
refreshes has its stat read every 4th refresh. No root needed; other users'
numa_maps is not readable without it, and top says so. With root, two
small BPF programs count per process in per-CPU kernel maps (no events):
every thread migration and page allocation of the machine passes them, and
only a cross-node one or a remote page touches the map.";

/// Options of `numatrace top`.
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// Print one snapshot (two samples --interval apart) and exit, instead of the live screen.
    #[arg(long)]
    pub once: bool,
    /// With --once: print it as one JSON object (schema numatrace.top/1).
    #[arg(long, requires = "once")]
    pub json: bool,
    /// Time between refreshes (and between --once's two samples).
    #[arg(short, long, value_name = "TIME", default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// One row per process or per cgroup.
    #[arg(long, value_enum, default_value = "process")]
    pub by: By,
    /// Read a process's numa_maps at most this often.
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = humantime::parse_duration)]
    pub numa_maps_period: Duration,
    /// Spend at most this long reading numa_maps per refresh (at least one process is read).
    #[arg(long, value_name = "TIME", default_value = "10ms", value_parser = humantime::parse_duration)]
    pub numa_maps_budget: Duration,
    /// How long Enter traces the selected process.
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = humantime::parse_duration)]
    pub trace_duration: Duration,
    /// Do not count moves and remote first touches in the kernel (counted by default when root or CAP_BPF+CAP_PERFMON allow).
    #[arg(long)]
    pub no_kernel_counters: bool,
}

/// Runs `numatrace top`; returns the exit code.
pub fn run(args: &TopArgs) -> Result<i32> {
    if args.interval.is_zero() {
        bail!("--interval must be longer than 0 (e.g. 1s)");
    }
    if args.trace_duration.is_zero() {
        bail!("--trace-duration must be longer than 0 (e.g. 10s)");
    }
    if args.once {
        // Kept attached until the second sample is read.
        let top::KernelSide { attached: _attached, counters, not_counted, .. } =
            top::kernel_counters(!args.no_kernel_counters);
        let mut view = system::once(args.interval, counters)?;
        view.cannot_see.extend(not_counted);
        let mut out = std::io::stdout().lock();
        if args.json {
            serde_json::to_writer_pretty(&mut out, &view)?;
            writeln!(out)?;
        } else {
            write!(out, "{}", text::render(&view, args.by))?;
        }
        return Ok(0);
    }
    top::run(&TopOptions {
        interval: args.interval,
        by: args.by,
        placements: PlacementOptions { period: args.numa_maps_period, budget: Some(args.numa_maps_budget) },
        trace_duration: args.trace_duration,
        kernel_counters: !args.no_kernel_counters,
    })
}
