//! Command-line interface: every clap definition, and dispatch.
pub mod capture;
pub mod check;
pub mod completions;
pub mod diff;
pub mod export;
pub mod exporter;
pub mod inspect;
pub mod manpages;
pub mod output;
pub mod report;
pub mod top;
pub mod values;
pub mod version;

use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use self::output::{TextArgs, print_report};
use crate::{
    kernel::ProbeOptions,
    live::{
        cgroup::Hierarchy,
        session::{self, SessionOptions},
        target::TargetSpec,
    },
};

const ABOUT: &str = "Finds out why a process runs slower than it should because its threads and its memory sit on different NUMA nodes, and says what to do about it.";

const AFTER_HELP: &str = "\
Examples:
  sudo numatrace --pid 4242 --duration 60s       trace a running process for a minute
  sudo numatrace --pid 4242 --tree -d 60s        a process and all its descendants (a postmaster and its backends)
  sudo numatrace --pid 4242 --pid 4343           several processes in one capture
  sudo numatrace --unit postgresql -d 60s        a systemd service: every process of its cgroup
  sudo numatrace --container 4f3a9c1e2b7d        a container (docker, podman, containerd, cri-o) by id
  sudo numatrace --cgroup system.slice/db.service   a cgroup v2 and below it, also processes that join it
  sudo numatrace -- ./server --port 8080         trace a command from its first instruction
  sudo numatrace --json --pid 4242 -d 10s        the same facts as one JSON object
  sudo numatrace check                           can numatrace trace here? (run it first; paste it into bug reports)
  sudo numatrace demo                            a built-in workload with a known pathology
  numatrace example init-thread --mib 64         run that workload yourself (its threads: init, worker-N)
  sudo numatrace -o run.ntrace -- ./server       also save everything to a capture file
  numatrace report run.ntrace                    the same report later, from the file
  numatrace export run.ntrace --format html      a timeline to open in a browser (also perfetto, folded, svg)
  numatrace diff before.ntrace after.ntrace      did the fix work?
  sudo numatrace --pid 4242 --ring 30s --trigger 'cross_node_migrations>100/s'
                                                 keep the last 30 s, save them when migrations spike

What it shows: per thread, migrations (and those across nodes), pages first
touched per node and how many landed remote, run time per node, NUMA hinting
faults local/remote; the balancer's task moves/swaps; page migrations by
reason; lost events. It stops at --duration, on Ctrl-C or SIGTERM, or when the
target exits (every --pid, or the cgroup holds no process), and always
reports what it saw.

Causes of remote memory (the closed set, `causes[].kind` in --json):
  first_touch_by_other_thread  another thread (or process) placed it where its users are not
  thread_migrated              its thread touched it locally, then was moved (the mover is named)
  allocation_spill             the local node was full
  memory_policy                a policy or cpuset put it there
  numa_balancer                the NUMA balancer moved a task away from its memory (its repairs are a cost)
  shared_across_nodes          threads on several nodes use the same memory
  explicit_migration           migrate_pages/move_pages/mbind moved it
  placed_before_capture        already placed when numatrace attached (--pid only)
The headline says how much of the memory (and of the accesses the kernel
sampled) is remote; below 2 % the causes are shown as small findings.";

#[derive(Debug, Parser)]
#[command(name = "numatrace", version = version::SHORT, long_version = version::LONG, about = ABOUT, after_help = AFTER_HELP, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub trace: TraceArgs,
}

/// Options of a live capture.
#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// Trace this running process (all its threads, and threads it creates). Repeat it to trace several processes in one capture (the report groups threads by process).
    #[arg(short, long, value_name = "PID", conflicts_with = "command")]
    pub pid: Vec<u32>,
    /// With --pid: also trace every process each one has created and not yet reaped (children, grandchildren, ...), and those they create during the capture: a whole service from its main process (e.g. postgres's postmaster and its backends).
    #[arg(long, requires = "pid")]
    pub tree: bool,
    /// Trace every process in this cgroup v2 and below it, also those that join it during the capture (filtered in the kernel by cgroup id). A path relative to the cgroup v2 mount (system.slice/db.service, as /proc/PID/cgroup shows it) or a full path under it (/sys/fs/cgroup/...). The cgroup must have processes now.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["pid", "command", "unit", "container"])]
    pub cgroup: Option<String>,
    /// Trace a systemd unit: every process of its cgroup (NAME gets .service unless it has a suffix: postgresql, postgresql@15-main.service).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["pid", "command", "container"])]
    pub unit: Option<String>,
    /// Trace a container by its id (12 or more hex digits, as `docker ps`, `podman ps` or `crictl ps` show): its cgroup under docker, podman, containerd or cri-o.
    #[arg(long, value_name = "ID", conflicts_with_all = ["pid", "command"])]
    pub container: Option<String>,
    /// Stop after this long (e.g. 500ms, 30s, 5m). Without it: at Ctrl-C or when the target exits.
    #[arg(short, long, value_name = "TIME", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Print the report as one JSON object (schema numatrace.report/1) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also trace processes the target creates (always on for a command started with --).
    #[arg(long)]
    pub follow_children: bool,
    /// Size of the kernel-to-user event ring (rounded up to a power of two).
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    pub ring_size: u32,
    /// Attach through classic tracepoints only, never raw or BTF-typed ones
    /// (for comparing the two; the cheaper ones are the default).
    #[cfg(feature = "bench-hooks")]
    #[arg(long)]
    pub classic_tracepoints: bool,
    /// Benchmarks only: on every getppid(2) call of the target, the kernel
    /// writes 64 synthetic first-touch events into the ring (`numatrace
    /// workload flood` calls it at a set rate), to load the event path at
    /// rates no real source reaches on a small machine.
    #[cfg(feature = "bench-hooks")]
    #[arg(long)]
    pub load_generator: bool,
    /// Send every thread migration to numatrace, also those between two CPUs
    /// of one node. By default the kernel only counts those (they cannot
    /// move a thread away from its memory, and they are most migrations on a
    /// busy machine); timelines then show each thread's node, not its CPU.
    #[arg(long)]
    pub all_migrations: bool,
    /// Take the user call stack where each run of first touches (and of remote
    /// hinting faults) starts, and show each cause's call sites (`function
    /// (file:line)` chains; `causes[].sites[]` in --json; `export --format
    /// folded --by stack`). Symbolized at the end, never while tracing. Runs
    /// are per thread and 2 MiB region, so a sequential first touch takes one
    /// stack per 512 pages: on the fault-heavy bench workload it adds a few
    /// percent to numatrace's cost (+2 %, `cargo xtask bench --only stacks`;
    /// docs/bench.md). Stacks are walked by frame
    /// pointers: code built without them shows one or two frames.
    #[arg(long)]
    pub stacks: bool,
    /// Keep numatrace's CPU (its kernel programs and itself) under PERCENT of
    /// one core, for captures left on for hours: while over it, first touches
    /// are traced in 1 of N 2 MiB regions (N a power of two up to 1024,
    /// adapted every 100 ms); the kernel still counts every first-touch page.
    /// When 1 in 1024 is still over it (a program on every page fault costs
    /// something even when it skips), the first-touch programs are detached
    /// part of the time; pages first touched then are in no count. The
    /// report says the rate over time, the share traced, how long the
    /// programs were paused, and estimates for the whole process with their
    /// error. Off by default: counts are exact.
    #[arg(long, value_name = "PERCENT", value_parser = values::parse_budget_percent)]
    pub overhead_budget: Option<f64>,
    /// With --overhead-budget: never detach the first-touch programs, so the
    /// kernel counts every first-touch page; on a fault-heavy workload the
    /// budget may then be exceeded (region sampling alone stays near 4 % of a
    /// core there).
    #[arg(long, requires = "overhead_budget")]
    pub no_budget_pauses: bool,
    #[command(flatten)]
    pub record: capture::RecordArgs,
    #[command(flatten)]
    pub text: TextArgs,
    /// The command to start and trace, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace a built-in workload with the init-thread pathology (one thread first-touches memory that threads on another node use).
    Demo(DemoArgs),
    /// Diagnose NUMA placement from a snapshot (no eBPF, no root for your own processes): topology, memory per node, counters, settings, and with --pid one process; findings with fixes.
    #[command(after_help = inspect::AFTER_HELP)]
    Inspect(inspect::InspectArgs),
    /// Say whether numatrace can trace on this machine: which sources attach and through which hook, what is missing and why, NUMA balancing, the nodes. Run it first on a new server; paste it into bug reports.
    #[command(after_help = check::AFTER_HELP)]
    Check(check::CheckArgs),
    /// The whole machine, live: per node and per process, memory per node, where threads run, remote memory share and its likely cause; Enter traces a process (no root needed to watch).
    #[command(after_help = top::AFTER_HELP)]
    Top(top::TopArgs),
    /// Print the report of a capture file (-o), exactly as the live run did.
    Report(report::ReportArgs),
    /// Write a capture as a timeline for Perfetto / chrome://tracing, flame graphs, or a self-contained SVG/HTML.
    #[command(after_help = export::AFTER_HELP)]
    Export(export::ExportArgs),
    /// Compare two captures (before and after a fix): remote share and memory placement per thread and node.
    Diff(diff::DiffArgs),
    /// Run a built-in example workload with a known NUMA pattern, untraced
    /// (`numatrace example init-thread` is what the demo traces; `numatrace
    /// example --help` lists them all). Trace one with `numatrace -- numatrace example ...`.
    #[command(alias = "workload", disable_help_flag = true)]
    Example {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Serve the machine's NUMA state to Prometheus: an OpenMetrics endpoint (/metrics) read from /proc and /sys every --interval.
    #[command(after_help = exporter::AFTER_HELP)]
    Exporter(exporter::ExporterArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Write the man pages, one per command, into a directory (for a copied binary: /usr/local/share/man/man1).
    Manpages(manpages::ManpagesArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Memory the init thread touches, in MiB.
    #[arg(long, default_value_t = 64)]
    pub mib: u64,
}

/// Runs the CLI; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Some(Command::Example { args }) => {
            let argv = std::iter::once("numatrace example".into()).chain(args.into_iter().map(Into::into));
            numatrace_workloads::main_from_args(argv)?;
            Ok(0)
        }
        Some(Command::Inspect(args)) => inspect::run(&args),
        Some(Command::Check(args)) => check::run(&args),
        Some(Command::Top(args)) => top::run(&args),
        Some(Command::Report(args)) => report::run_report(&args),
        Some(Command::Export(args)) => export::run(&args),
        Some(Command::Diff(args)) => diff::run(&args),
        Some(Command::Exporter(args)) => exporter::run(&args),
        Some(Command::Completions(args)) => completions::run(&args),
        Some(Command::Manpages(args)) => manpages::run(&args),
        Some(Command::Demo(demo)) => {
            // The demo is `numatrace [--json] -- numatrace example init-thread ...`,
            // parsed by the same definitions as any trace.
            let exe = std::env::current_exe()?.to_string_lossy().into_owned();
            let mut argv = vec!["numatrace".to_string()];
            if demo.json {
                argv.push("--json".into());
            }
            argv.extend([
                "--".into(),
                exe,
                "example".into(),
                "init-thread".into(),
                "--mib".into(),
                demo.mib.to_string(),
            ]);
            argv.extend(["--seconds".into(), "2".into()]);
            trace(Cli::try_parse_from(argv)?.trace)
        }
        None => trace(cli.trace),
    }
}

/// What the trace options name; cgroups, units and containers are looked up here.
fn target_spec(args: &TraceArgs) -> Result<TargetSpec> {
    if let Some(path) = &args.cgroup {
        return Ok(TargetSpec::Cgroup(Hierarchy::find()?.cgroup(path)?));
    }
    if let Some(unit) = &args.unit {
        return Ok(TargetSpec::Cgroup(Hierarchy::find()?.unit(unit)?));
    }
    if let Some(id) = &args.container {
        return Ok(TargetSpec::Cgroup(Hierarchy::find()?.container(id)?));
    }
    Ok(match (args.pid.is_empty(), args.command.is_empty()) {
        (false, true) => TargetSpec::Pids { pids: args.pid.clone(), tree: args.tree },
        (true, false) => TargetSpec::Command(args.command.clone()),
        (false, false) => bail!("give either --pid or a command after --, not both"),
        (true, true) => bail!(
            "nothing to trace: give --pid <PID>, --cgroup, --unit, --container or a command after -- (see numatrace --help)"
        ),
    })
}

fn trace(args: TraceArgs) -> Result<i32> {
    let target = target_spec(&args)?;
    // A tree and a cgroup grow by fork: their new processes are theirs.
    let follow_children = args.follow_children
        || matches!(target, TargetSpec::Command(_) | TargetSpec::Cgroup(_) | TargetSpec::Pids { tree: true, .. });
    let opts = SessionOptions {
        target,
        duration: args.duration,
        probes: ProbeOptions {
            follow_children,
            ring_bytes: args.ring_size,
            #[cfg(feature = "bench-hooks")]
            classic_tracepoints: args.classic_tracepoints,
            #[cfg(not(feature = "bench-hooks"))]
            classic_tracepoints: false,
            #[cfg(feature = "bench-hooks")]
            load_generator: args.load_generator,
            all_migrations: args.all_migrations,
            stacks: args.stacks,
        },
        progress: !args.json,
        drain_interval: Duration::from_millis(100),
        budget: args
            .overhead_budget
            .map(|percent| crate::live::budget::BudgetOptions { percent, pauses: !args.no_budget_pauses }),
    };
    let mut sink = args.record.live_sink()?;
    let capture =
        session::run(opts, sink.as_mut().map(|s| s.as_mut() as &mut dyn numatrace_core::capture::sink::EventSink))?;
    print_report(&capture.report, args.json, &args.text)?;
    Ok(0)
}
