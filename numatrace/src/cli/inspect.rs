//! `numatrace inspect`: the numastat walk, automated, without eBPF.
use std::{io::Write, time::Duration};

use anyhow::Result;
use clap::Args;
use numatrace_core::inspect::{self, text};

pub const AFTER_HELP: &str = "\
Examples:
  numatrace inspect                         the machine: nodes, memory per node, counters, settings
  numatrace inspect --pid 4242              ... and one process: memory per node, threads, cpuset, locality
  numatrace inspect --interval 5s           counters as rates over 5 seconds instead of totals since boot
  numatrace inspect --pid 4242 --json       all of it as one JSON object (schema numatrace.inspect/1)

What it reads: /sys/devices/system/node (topology, meminfo, numastat),
/proc/vmstat, /proc/sys/{kernel/numa_balancing,vm/zone_reclaim_mode},
/sys/kernel/mm/transparent_hugepage, /proc/<pid>/{numa_maps,status,task,cgroup}
and the cgroup's cpuset files. Its per-node figures equal numastat -m and
numastat -p. No root needed for your own processes; what it could not read is
listed at the end. Fixes marked DESTRUCTIVE move memory of a live process or
change a host-wide setting.";

/// Options of `numatrace inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Also inspect this process: its memory per node, threads, cpuset and locality.
    #[arg(short, long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Show the counters as rates over this long (e.g. 5s) instead of totals since boot.
    #[arg(short, long, value_name = "TIME", value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
    /// Print one JSON object (schema numatrace.inspect/1) instead of text.
    #[arg(long)]
    pub json: bool,
    /// How many of the process's biggest mappings to show.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub mappings: usize,
}

/// Runs `numatrace inspect`; returns the exit code.
pub fn run(args: &InspectArgs) -> Result<i32> {
    let report = inspect::inspect(args.pid, args.interval, args.mappings)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", text::render(&report))?;
    }
    Ok(0)
}
