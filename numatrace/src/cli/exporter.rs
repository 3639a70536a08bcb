//! `numatrace exporter`: the OpenMetrics endpoint's flags.
use std::{net::SocketAddr, time::Duration};

use anyhow::Result;
use clap::Args;

use super::values;
use crate::{
    exporter::{self, Options},
    system::By,
};

pub const AFTER_HELP: &str = "\
Examples:
  numatrace exporter                                serve http://127.0.0.1:9464/metrics
  numatrace exporter --listen 0.0.0.0:9464          for a Prometheus on another host
  numatrace exporter --interval 30s                 read the machine every 30 s
  numatrace exporter --top 50                       series of their own for the 50 largest processes
  numatrace exporter --by cgroup                    one series per cgroup (systemd units, containers)
  numatrace exporter --no-kernel-counters           no BPF programs: /proc and /sys only
  numatrace exporter --remote-first-touches --overhead-budget 0.5
                                                    count remote first touches, within 0.5 % of a core

Prometheus scrapes /metrics (OpenMetrics text): per node, memory (total, free,
used) and the allocator's counters (numa_hit, numa_miss, numa_foreign,
interleave_hit, local_node, other_node); page migrations by reason; the NUMA
balancer's counters; per process (the --top largest by resident memory,
the rest summed into pid=\"other\"; with --by cgroup, per cgroup, its
processes summed, the rest into cgroup=\"other\"): memory per node, remote memory (on nodes
its threads did not run on) and cross-node thread moves; the exporter's own
CPU time and what a refresh cost. The machine is read in the background
every --interval (each process's numa_maps once per 4 refreshes, for at
most 50 ms per refresh, largest processes first); a scrape serves the last
complete reading. It reads /proc and /sys, except for what the kernel
counts only in tracepoints: when root (or CAP_BPF and CAP_PERFMON), small
BPF programs count the NUMA balancer's task moves, swaps and sticks per CPU,
and every process's cross-node thread moves in a per-CPU hash by process
(no events; they run only on migrations), and with --remote-first-touches
its remote first touches (pages allocated on another node than its CPU's;
that program runs on every page allocation, so it is held to
--overhead-budget, 1 % of one core by default); otherwise moves are
estimated from /proc, it says so once at start and
numatrace_exporter_kernel_counters{state=\"unavailable\"} is 1.
Other users' numa_maps need root or CAP_SYS_PTRACE. The repository's packaging/ has a
systemd unit, a Grafana dashboard and alert rules.";

/// Options of `numatrace exporter`.
#[derive(Debug, Clone, Args)]
pub struct ExporterArgs {
    /// Listen on this address and port (IP:PORT; port 0 picks a free one and prints it).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:9464", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Read the machine this often (e.g. 15s, 1m); scrapes in between serve the last reading.
    #[arg(long, value_name = "TIME", default_value = "15s", value_parser = parse_interval)]
    pub interval: Duration,
    /// How many of the largest processes (or cgroups) by resident memory get series of their own; the rest are summed into "other".
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,
    /// Series per process (labels pid, comm, cgroup) or per cgroup (label cgroup: its processes summed).
    #[arg(long, value_enum, default_value = "process")]
    pub by: By,
    /// Do not count the NUMA balancer's task decisions and each process's cross-node moves and remote first touches in the kernel (counted by default when root or CAP_BPF+CAP_PERFMON allow).
    #[arg(long)]
    pub no_kernel_counters: bool,
    /// Also count each process's remote first touches in the kernel (numatrace_remote_first_touch_pages_total): a program then runs on every page allocation of the machine, about 2.5 % more system time on an allocation-heavy workload, so it is off by default.
    #[arg(long, conflicts_with = "no_kernel_counters")]
    pub remote_first_touches: bool,
    /// With --remote-first-touches: keep the exporter's CPU (its process and its programs) under PERCENT of one core (default 1) by detaching the first-touch counter for a pause whenever it costs more, then attaching it again; its counts then cover only the attached time (never scaled) and numatrace_remote_first_touch_counted_ratio says which share. A large budget (e.g. 100) counts every allocation.
    #[arg(
        long,
        value_name = "PERCENT",
        value_parser = values::parse_budget_percent,
        allow_negative_numbers = true,
        requires = "remote_first_touches"
    )]
    pub overhead_budget: Option<f64>,
}

/// The budget with --remote-first-touches when none is given: the issue's
/// "under 1 % of one core" for the exporter left on.
pub const DEFAULT_OVERHEAD_BUDGET_PERCENT: f64 = 1.0;

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| format!("not an IP:PORT address (e.g. 127.0.0.1:9464 or [::1]:9464): {text:?}"))
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| format!("{e}"))?;
    if interval < Duration::from_millis(100) {
        return Err("at least 100ms".into());
    }
    Ok(interval)
}

/// Runs `numatrace exporter` until SIGINT or SIGTERM.
pub fn run(args: &ExporterArgs) -> Result<i32> {
    exporter::run(&Options {
        listen: args.listen,
        interval: args.interval,
        top: args.top,
        by: args.by,
        kernel_counters: !args.no_kernel_counters,
        remote_first_touches: args.remote_first_touches,
        overhead_budget: args
            .remote_first_touches
            .then(|| args.overhead_budget.unwrap_or(DEFAULT_OVERHEAD_BUDGET_PERCENT)),
    })?;
    Ok(0)
}
