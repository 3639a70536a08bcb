//! `cargo xtask bench`: numatrace's overhead, measured against an untraced
//! run, a bpftrace script counting the same events, bpftrace with empty
//! programs on the same tracepoints (the attach baseline) and `perf record`
//! on the same tracepoints. The variants alternate within each round (A B C
//! D A B C D ...) so that machine noise hits all of them alike; medians are
//! reported. Also: the kernel's own run time per program, the aggregator's
//! throughput alone, a sustained-load loss test, numatrace's CPU and memory
//! for 1 GiB and 16 GiB of touched address space, and start-up and detach
//! against bpftrace's, and numatrace left on a long run under an overhead
//! budget (`always_on`), and what `--stacks` adds to it (`stacks`). With `--lab` the kernel-side parts run again in a
//! 2-node Debian 6.1 lab guest (`guest`), and the summary (`goals`) puts
//! both kernels side by side. Results are ratios and figures, never
//! pass/fail: timing is not asserted anywhere.
mod always_on;
mod bpf_stats;
mod exporter;
mod goals;
mod guest;
mod report;
mod stacks;
mod startup;
mod top;
mod variants;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::Value;

use variants::{NumatraceOptions, RunResult, Tools, Variant};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Smaller workloads and 5 rounds (the fault-heavy goal's minimum): about 5 minutes.
    #[arg(long)]
    pub quick: bool,
    /// Fault-heavy workload: fresh 4 KiB pages each thread first-touches per workload round.
    #[arg(long, value_name = "N")]
    pub pages: Option<u64>,
    /// Fault-heavy workload: threads.
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// Fault-heavy workload: how many times it touches fresh memory.
    #[arg(long, value_name = "N")]
    pub workload_rounds: Option<u32>,
    /// Migration-heavy workload: threads, each hopping between CPUs.
    #[arg(long, value_name = "N")]
    pub hop_threads: Option<u32>,
    /// Migration-heavy workload: hops per thread.
    #[arg(long, value_name = "N")]
    pub hops: Option<u64>,
    /// Benchmark rounds: each runs every variant once, in turn.
    #[arg(long, value_name = "N")]
    pub rounds: Option<u32>,
    /// Only these parts (comma-separated); all by default.
    #[arg(long, value_delimiter = ',', value_name = "PART")]
    pub only: Vec<Part>,
    /// Print the results as JSON instead of markdown.
    #[arg(long)]
    pub json: bool,
    /// Use the already built target/release/numatrace.
    #[arg(long)]
    pub no_build: bool,
    /// Also run the kernel-side parts (fault-heavy, migration-heavy, start-up) in a
    /// 2-node Debian 6.1 lab guest (QEMU, TCG; one CPU per node, so every migration
    /// crosses nodes), with smaller workloads, and print both kernels side by side.
    #[arg(long)]
    pub lab: bool,
    /// Internal: this is the bench inside the lab guest (numatrace on PATH, JSON out).
    #[arg(long, hide = true)]
    pub in_guest: bool,
    /// Print the tables of an earlier run from its JSON (every run writes
    /// target/bench/results.json) instead of measuring.
    #[arg(long, value_name = "FILE")]
    pub render: Option<PathBuf>,
    /// Internal: be the migration-heavy workload (THREADS,HOPS) and print its JSON line.
    #[arg(long, hide = true, value_name = "THREADS,HOPS")]
    pub hop_workload: Option<String>,
}

/// The parts of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Fault-heavy workload, every variant.
    Faults,
    /// Migration-heavy workload, every variant.
    Migrations,
    /// The aggregator alone (synthetic events, one core).
    Aggregator,
    /// Sustained load: real faults, then the kernel load generator for 10 s each at 1, 2 and
    /// 4 M events/s, on a 64 KiB ring, and unpaced (one and two threads); every event written
    /// is checked against what was read.
    Load,
    /// numatrace's CPU time and peak memory for 1 GiB and 16 GiB touched.
    Footprint,
    /// Start-up (attach to a running pid until "tracing") and detach (stop to exit),
    /// numatrace against bpftrace.
    Startup,
    /// numatrace left on a long fault-heavy run (about 20 s a run), without a budget
    /// and under `--overhead-budget 1`: its whole cost in percent of one core.
    AlwaysOn,
    /// The fault-heavy workload untraced, under numatrace and under `numatrace --stacks`:
    /// what taking call stacks adds to numatrace's added CPU (about 30 s at 7 rounds).
    Stacks,
    /// `numatrace top` at its 1 s refresh with 1000 idle processes, as `nobody` (up to 3
    /// runs) and once as root: its CPU in percent of one core (about 25 s a run).
    Top,
    /// `numatrace exporter` left on while the fault-heavy workload runs, scraped every
    /// second: by default, with `--remote-first-touches` unbudgeted and under its default
    /// budget; its process CPU plus its programs' run time in percent of one core (about 40 s a run).
    Exporter,
}

impl Part {
    /// The parts that also run in the lab guest (kernel-side figures).
    pub const IN_GUEST: [Part; 3] = [Part::Faults, Part::Migrations, Part::Startup];

    /// The flag value naming the part.
    pub fn name(self) -> &'static str {
        match self {
            Part::Faults => "faults",
            Part::Migrations => "migrations",
            Part::Aggregator => "aggregator",
            Part::Load => "load",
            Part::Footprint => "footprint",
            Part::Startup => "startup",
            Part::AlwaysOn => "always-on",
            Part::Stacks => "stacks",
            Part::Top => "top",
            Part::Exporter => "exporter",
        }
    }
}

/// One sustained-load run: real page faults, or the kernel's load generator
/// driven by `workload flood` at a set rate.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoadRun {
    pub label: String,
    pub args: Vec<String>,
    pub ring_size: Option<u32>,
    pub load_generator: bool,
}

/// The sizes one invocation uses.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    pub rounds: u32,
    /// Full command lines; `numatrace` stands for the release binary.
    pub fault_args: Vec<String>,
    pub migration_args: Vec<String>,
    /// The always-on part's workload: the fault-heavy one, many more rounds.
    pub always_on_args: Vec<String>,
    /// Rounds of the always-on part (each runs every setting once).
    pub always_on_rounds: u32,
    /// Sustained-load runs, in order.
    pub load: Vec<LoadRun>,
    pub footprint: Vec<(String, String, Vec<String>)>,
}

impl Plan {
    fn new(args: &BenchArgs, numatrace: &Path) -> Result<Plan> {
        let quick = args.quick;
        // Under emulation a page fault costs some 20 times what it does on the host:
        // the guest's workloads are smaller (same shape), so that a round takes seconds.
        let guest = args.in_guest;
        let pages = args.pages.unwrap_or(if guest { 16_384 } else { 65_536 });
        let threads = args.threads.unwrap_or(2);
        let workload_rounds = args.workload_rounds.unwrap_or(match (guest, quick) {
            (true, _) => 2,
            (false, true) => 4,
            (false, false) => 8,
        });
        let hop_threads = args.hop_threads.unwrap_or(if guest { 4 } else { 8 });
        let hops = args.hops.unwrap_or(match (guest, quick) {
            (true, _) => 1_000,
            (false, true) => 5_000,
            (false, false) => 20_000,
        });
        // At least 5 rounds: the fault-heavy goal is a median of 5 or more.
        let rounds = args.rounds.unwrap_or(if quick { 5 } else { 7 });
        for (name, v) in [
            ("--pages", pages),
            ("--threads", threads.into()),
            ("--workload-rounds", workload_rounds.into()),
            ("--hop-threads", hop_threads.into()),
            ("--hops", hops),
            ("--rounds", rounds.into()),
        ] {
            if v == 0 {
                bail!("{name} must be at least 1");
            }
        }
        let nt = numatrace.display().to_string();
        let s = |v: &[&str]| [nt.as_str(), "workload"].iter().chain(v).map(|x| x.to_string()).collect::<Vec<_>>();
        let xtask = std::env::current_exe().context("finding the xtask binary")?.display().to_string();
        let load_rounds = if quick { "8" } else { "25" };
        let flood_seconds = if quick { "3" } else { "10" };
        let flood = |label: &str, rate: u64, threads: u32, ring_size: Option<u32>| LoadRun {
            label: label.to_string(),
            args: s(&[
                "flood",
                "--events-per-second",
                &rate.to_string(),
                "--seconds",
                flood_seconds,
                "--threads",
                &threads.to_string(),
            ]),
            ring_size,
            load_generator: true,
        };
        // The fault-heavy workload, for `rounds` of its own.
        let touch = |rounds: u32| {
            s(&[
                "touch",
                "--pages",
                &pages.to_string(),
                "--threads",
                &threads.to_string(),
                "--rounds",
                &rounds.to_string(),
            ])
        };
        Ok(Plan {
            rounds,
            fault_args: touch(workload_rounds),
            migration_args: vec![xtask, "bench".into(), "--hop-workload".into(), format!("{hop_threads},{hops}")],
            // About 20 s untraced on the host (8 rounds take about 1.1 s): long
            // enough that start-up is a small part and the budget settles.
            always_on_args: touch(workload_rounds * if quick { 10 } else { 20 }),
            always_on_rounds: rounds.min(3),
            load: vec![
                LoadRun {
                    label: "real page faults, one event each (8 MiB ring)".into(),
                    args: s(&[
                        "touch",
                        "--pages",
                        "100000",
                        "--threads",
                        "2",
                        "--stride",
                        "513",
                        "--rounds",
                        load_rounds,
                    ]),
                    ring_size: None,
                    load_generator: false,
                },
                flood("generator, 1 M events/s (8 MiB ring)", 1_000_000, 1, None),
                flood("generator, 2 M events/s (8 MiB ring)", 2_000_000, 1, None),
                flood("generator, 4 M events/s (8 MiB ring)", 4_000_000, 1, None),
                flood("generator, 1 M events/s (64 KiB ring)", 1_000_000, 1, Some(64 * 1024)),
                // As fast as the threads can call: where loss starts, and that it is counted.
                flood("generator, unpaced, 1 thread (8 MiB ring)", 1_000_000_000, 1, None),
                flood("generator, unpaced, 2 threads (8 MiB ring)", 1_000_000_000, 2, None),
            ],
            footprint: vec![
                ("startup".into(), "1 page (start-up cost)".into(), s(&["touch", "--pages", "1"])),
                (
                    "1gib".into(),
                    "1 GiB touched (2 threads x 512 MiB)".into(),
                    s(&["touch", "--pages", "131072", "--threads", "2"]),
                ),
                (
                    "16gib_sparse".into(),
                    "16 GiB address span, every 16th page touched (1 GiB resident, the 8192 regions of 16 GiB)".into(),
                    s(&["touch", "--pages", "131072", "--threads", "2", "--stride", "16"]),
                ),
            ],
        })
    }
}

/// Timed runs of one workload: seconds per variant, in round order.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Comparison {
    pub workload: Vec<String>,
    /// The variants run, in table order.
    pub variants: Vec<Variant>,
    pub seconds: BTreeMap<Variant, Vec<f64>>,
    /// The workload's own CPU time per variant, in round order (workloads that report it).
    pub workload_cpu_s: BTreeMap<Variant, Vec<f64>>,
    pub tracer_cpu_s: BTreeMap<Variant, Vec<f64>>,
    pub tracer_peak_rss_kib: BTreeMap<Variant, Vec<u64>>,
    /// Kernel counters from numatrace's reports (last run), and the most lost in any run.
    pub kernel_counters: Value,
    pub max_lost_events: u64,
    /// Per-program ns per run, one entry per stats run.
    pub program_ns: BTreeMap<String, Vec<f64>>,
    /// All programs together: total run time / total runs, one per stats run.
    pub all_programs_ns: Vec<f64>,
    pub program_runs: BTreeMap<String, u64>,
    /// Page faults of the workload as numatrace's kernel counters saw them, one per stats run.
    pub stats_page_faults: Vec<u64>,
    /// numatrace's ring events (written + lost, all kinds) per page fault, one per timed run.
    pub ring_events_per_fault: Vec<f64>,
}

/// A single numatrace run of the load or footprint parts.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Single {
    pub name: String,
    pub label: String,
    pub workload: Vec<String>,
    pub ring_size: Option<u32>,
    pub seconds: f64,
    pub cpu_s: f64,
    pub peak_rss_kib: u64,
    pub kernel_counters: Value,
    pub lost_events: u64,
    /// Events the kernel produced for the ring: written plus lost (its own counts).
    pub ring_events: u64,
    /// Ring records numatrace read.
    pub received_events: u64,
    /// Written but never read (should be 0).
    pub unread_events: u64,
}

/// Everything one invocation measured.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Results {
    pub command: String,
    pub kernel: String,
    pub cpus: usize,
    pub load_before: String,
    pub load_after: String,
    pub faults: Option<Comparison>,
    pub migrations: Option<Comparison>,
    /// One JSON line per way of folding (one record at a time, batches).
    pub aggregator: Vec<Value>,
    pub load: Vec<Single>,
    pub footprint: Vec<Single>,
    #[serde(default)]
    pub startup: Option<startup::Startup>,
    #[serde(default)]
    pub always_on: Option<always_on::AlwaysOn>,
    #[serde(default)]
    pub stacks: Option<stacks::Stacks>,
    #[serde(default)]
    pub top: Option<top::Top>,
    #[serde(default)]
    pub exporter: Option<exporter::Exporter>,
    /// With `--lab`: the same parts in the 2-node 6.1 guest.
    #[serde(default)]
    pub guest: Option<Box<Results>>,
    /// Where these figures come from (`host` or the guest's description).
    #[serde(default)]
    pub machine: String,
    /// The topology: NUMA nodes seen.
    #[serde(default)]
    pub nodes: usize,
    /// Benchmark rounds (each variant once per round).
    #[serde(default)]
    pub rounds: u32,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(spec) = &args.hop_workload {
        return hop_workload(spec);
    }
    if let Some(path) = &args.render {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let results: Results =
            serde_json::from_str(&text).with_context(|| format!("reading results from {}", path.display()))?;
        print_markdown(&results);
        return Ok(());
    }
    if args.lab && args.in_guest {
        bail!("--lab runs the guest itself; --in-guest is the bench inside it");
    }
    let want = |p: Part| args.only.is_empty() || args.only.contains(&p);
    let root = workspace_root();
    let numatrace = if args.in_guest {
        // The lab puts the host's release build on the guest's PATH.
        PathBuf::from(xtask::lab::initramfs::GUEST_NUMATRACE)
    } else {
        if !args.no_build {
            eprintln!("bench: building numatrace (release)");
            cargo(&root, &["build", "--release", "-p", "numatrace", "--features", "bench-hooks"])?;
        }
        root.join("target/release/numatrace")
    };
    if !numatrace.is_file() {
        bail!("{} is missing: run without --no-build", numatrace.display());
    }
    let plan = Plan::new(args, &numatrace)?;
    let scratch = if args.in_guest { PathBuf::from("/tmp/numatrace-bench") } else { root.join("target/bench") };
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let tools = Tools { numatrace: numatrace.clone(), scratch };
    if want(Part::Faults) || want(Part::Migrations) || want(Part::Startup) {
        for tool in ["bpftrace", "perf"] {
            if Command::new(tool).arg("--version").output().is_err() {
                bail!("{tool} is not installed: run `cargo xtask setup`");
            }
        }
        // bpftrace finds tracepoints through tracefs, which nothing may have mounted yet.
        mount_tracefs();
    }
    let variants: &[Variant] = if args.in_guest { &Variant::GUEST } else { &Variant::ALL };
    let mut results = Results {
        rounds: plan.rounds,
        command: std::env::args().skip(1).fold("cargo xtask".to_string(), |a, b| a + " " + &b),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        load_before: loadavg(),
        machine: if args.in_guest { "lab guest (QEMU TCG)".into() } else { "host".into() },
        nodes: numa_nodes(),
        ..Default::default()
    };
    if want(Part::Aggregator) && !args.in_guest {
        eprintln!("bench: aggregator alone");
        results.aggregator = aggregator_alone(&root)?;
    }
    if want(Part::Faults) {
        eprintln!("bench: fault-heavy workload, {} rounds: {}", plan.rounds, plan.fault_args.join(" "));
        results.faults = Some(compare(&tools, variants, &plan.fault_args, plan.rounds)?);
    }
    if want(Part::Migrations) {
        eprintln!("bench: migration-heavy workload, {} rounds: {}", plan.rounds, plan.migration_args.join(" "));
        results.migrations = Some(compare(&tools, variants, &plan.migration_args, plan.rounds)?);
    }
    if want(Part::Startup) {
        eprintln!("bench: start-up and detach, {} rounds", plan.rounds);
        results.startup = Some(startup::measure(&tools, plan.rounds)?);
    }
    if want(Part::AlwaysOn) && !args.in_guest {
        eprintln!(
            "bench: always on, {} rounds of 3 settings: {}",
            plan.always_on_rounds,
            plan.always_on_args.join(" ")
        );
        results.always_on = Some(always_on::measure(&tools, &plan.always_on_args, plan.always_on_rounds)?);
    }
    if want(Part::Stacks) && !args.in_guest {
        eprintln!("bench: --stacks, {} rounds: {}", plan.rounds, plan.fault_args.join(" "));
        results.stacks = Some(stacks::measure(&tools, &plan.fault_args, plan.rounds)?);
    }
    if want(Part::Top) && !args.in_guest {
        let rounds = plan.rounds.min(3);
        eprintln!(
            "bench: numatrace top, {rounds} run(s) as nobody and one as root, {} idle processes",
            top::IDLE_PROCESSES
        );
        results.top = Some(top::measure(&numatrace, &tools.scratch, rounds)?);
    }
    if want(Part::Exporter) && !args.in_guest {
        let rounds = plan.rounds.min(3);
        eprintln!(
            "bench: numatrace exporter, {rounds} rounds of 3 settings, scraped every second, while running: {}",
            plan.always_on_args.join(" ")
        );
        results.exporter = Some(exporter::measure(&tools, &plan.always_on_args, rounds)?);
    }
    if want(Part::Load) && !args.in_guest {
        for run in &plan.load {
            eprintln!("bench: sustained load, {}: {}", run.label, run.args.join(" "));
            let opts =
                NumatraceOptions { ring_size: run.ring_size, load_generator: run.load_generator, ..Default::default() };
            results.load.push(single(&tools, "load", &run.label, &run.args, &opts)?);
        }
    }
    if want(Part::Footprint) && !args.in_guest {
        for (name, label, args) in &plan.footprint {
            eprintln!("bench: footprint, {label}");
            results.footprint.push(single(&tools, name, label, args, &NumatraceOptions::default())?);
        }
    }
    results.load_after = loadavg();
    let save = |results: &Results| -> Result<String> {
        let json = serde_json::to_string_pretty(results)?;
        if !args.in_guest {
            let saved = tools.scratch.join("results.json");
            std::fs::write(&saved, &json).with_context(|| format!("writing {}", saved.display()))?;
            eprintln!("bench: results saved in {} (--render prints them again)", saved.display());
        }
        Ok(json)
    };
    let mut json = save(&results)?;
    if args.lab && Part::IN_GUEST.iter().any(|p| want(*p)) {
        // The host's figures are saved first: a guest that fails loses only its own.
        results.guest = Some(Box::new(guest::run(args, &root)?));
        json = save(&results)?;
    }
    if args.json {
        println!("{json}");
    } else {
        print_markdown(&results);
    }
    Ok(())
}

/// The summary (goals, peers), then every table; the guest's after the host's.
fn print_markdown(results: &Results) {
    print!("{}", goals::markdown(results));
    print!("{}", report::markdown(results));
    if let Some(g) = &results.guest {
        println!("\n#### The same tables in the lab guest ({}), kernel {}\n", g.machine, g.kernel);
        print!("{}", report::markdown(g));
    }
}

/// Mounts tracefs at /sys/kernel/tracing when nothing is there (a fresh boot);
/// bpftrace and perf look tracepoints up in it. Failing is left to them to report.
fn mount_tracefs() {
    let dir = Path::new("/sys/kernel/tracing");
    let empty = std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false);
    if empty {
        let _ = Command::new("mount").args(["-t", "tracefs", "tracefs"]).arg(dir).status();
    }
}

/// NUMA nodes this machine has (1 when sysfs does not say).
fn numa_nodes() -> usize {
    std::fs::read_dir("/sys/devices/system/node")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.strip_prefix("node").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0)
        .max(1)
}

/// Runs every variant once per round, in turn, then the tracers again with
/// the kernel's run-time stats on (untimed: the stats add clock reads).
fn compare(tools: &Tools, variants: &[Variant], args: &[String], rounds: u32) -> Result<Comparison> {
    let mut cmp = Comparison { workload: args.to_vec(), variants: variants.to_vec(), ..Default::default() };
    // One untimed run first: the first timed run would otherwise pay for cold
    // caches alone (the page cache of the binaries, seen as -60 % in the guest).
    variants::run(tools, Variant::Untraced, args, &NumatraceOptions::default()).context("the warm-up run")?;
    for round in 0..rounds {
        // Rotate the order too, so no variant always runs right after another.
        for k in 0..variants.len() {
            let variant = variants[(k + round as usize) % variants.len()];
            let r = variants::run(tools, variant, args, &NumatraceOptions::default())
                .with_context(|| format!("round {}, {}", round + 1, variant.label()))?;
            eprintln!("bench:   round {} {:<11} {:.3} s", round + 1, variant.label(), r.seconds);
            record(&mut cmp, variant, &r);
        }
        let stats_variants =
            [Variant::Numatrace, Variant::NumatraceAllMigrations, Variant::Bpftrace, Variant::BpftraceEmpty];
        for variant in stats_variants.into_iter().filter(|v| variants.contains(v)) {
            let r =
                variants::run(tools, variant, args, &NumatraceOptions { sample_programs: true, ..Default::default() })
                    .with_context(|| format!("round {}, {} with BPF stats", round + 1, variant.label()))?;
            if variant == Variant::Numatrace {
                note_numatrace(&mut cmp, &r);
                if let Some(report) = &r.report {
                    let faults = report.pointer("/kernel_counters/page_faults").and_then(Value::as_u64).unwrap_or(0);
                    cmp.stats_page_faults.push(faults);
                }
            }
            let (mut time, mut cnt) = (0u64, 0u64);
            for (name, p) in &r.programs {
                let name = match variant {
                    Variant::Numatrace => name.clone(),
                    Variant::NumatraceAllMigrations => format!("{ALL_MIGRATIONS_PREFIX}{name}"),
                    Variant::BpftraceEmpty => format!("{EMPTY_PREFIX}{name}"),
                    _ => format!("{BPFTRACE_PREFIX}{name}"),
                };
                if let Some(ns) = p.ns_per_run() {
                    cmp.program_ns.entry(name.clone()).or_default().push(ns);
                }
                *cmp.program_runs.entry(name).or_default() += p.run_cnt;
                if variant == Variant::Numatrace {
                    time += p.run_time_ns;
                    cnt += p.run_cnt;
                }
            }
            if cnt > 0 {
                cmp.all_programs_ns.push(time as f64 / cnt as f64);
            }
        }
    }
    Ok(cmp)
}

/// How the per-program table names bpftrace's programs.
pub const BPFTRACE_PREFIX: &str = "bpftrace: ";
/// How the per-program table names the empty-program baseline's programs.
pub const EMPTY_PREFIX: &str = "empty: ";
/// How the per-program table names the programs of the `--all-migrations` run.
pub const ALL_MIGRATIONS_PREFIX: &str = "--all-migrations: ";

fn record(cmp: &mut Comparison, variant: Variant, r: &RunResult) {
    cmp.seconds.entry(variant).or_default().push(r.seconds);
    if let Some(cpu) = r.cpu_seconds {
        cmp.workload_cpu_s.entry(variant).or_default().push(cpu);
    }
    if let Some(u) = r.tracer {
        cmp.tracer_cpu_s.entry(variant).or_default().push(u.cpu_s);
        cmp.tracer_peak_rss_kib.entry(variant).or_default().push(u.peak_rss_kib);
    }
    if variant == Variant::Numatrace {
        note_numatrace(cmp, r);
        if let Some(report) = &r.report {
            let faults = report.pointer("/kernel_counters/page_faults").and_then(Value::as_u64).unwrap_or(0);
            if faults > 0 {
                let (written, lost, _) = ring_sums(report);
                cmp.ring_events_per_fault.push((written + lost) as f64 / faults as f64);
            }
        }
    }
}

/// numatrace's ring accounting summed over event kinds: (written, lost, read).
fn ring_sums(report: &Value) -> (u64, u64, u64) {
    let ring = report.get("ring_events").and_then(Value::as_object);
    let sum =
        |field: &str| ring.map_or(0, |m| m.values().filter_map(|a| a.get(field).and_then(Value::as_u64)).sum::<u64>());
    (sum("sent"), sum("lost"), sum("received"))
}

fn note_numatrace(cmp: &mut Comparison, r: &RunResult) {
    if let Some(report) = &r.report {
        cmp.kernel_counters = report.get("kernel_counters").cloned().unwrap_or(Value::Null);
        cmp.max_lost_events = cmp.max_lost_events.max(report.get("lost_events").and_then(Value::as_u64).unwrap_or(0));
    }
}

/// One numatrace run, for the load and footprint parts.
fn single(tools: &Tools, name: &str, label: &str, args: &[String], opts: &NumatraceOptions) -> Result<Single> {
    let r = variants::run(tools, Variant::Numatrace, args, opts).with_context(|| format!("{name}: {label}"))?;
    let report = r.report.clone().unwrap_or(Value::Null);
    let counters = report.get("kernel_counters").cloned().unwrap_or(Value::Null);
    let usage = r.tracer.unwrap_or_default();
    // What the kernel produced (written or lost) and what numatrace read, over all kinds.
    let (sent, lost, received) = ring_sums(&report);
    Ok(Single {
        name: name.to_string(),
        label: label.to_string(),
        workload: args.to_vec(),
        ring_size: opts.ring_size,
        seconds: r.seconds,
        cpu_s: usage.cpu_s,
        peak_rss_kib: usage.peak_rss_kib,
        lost_events: report.get("lost_events").and_then(Value::as_u64).unwrap_or(0),
        ring_events: sent + lost,
        received_events: received,
        unread_events: report.get("unread_events").and_then(Value::as_u64).unwrap_or(0),
        kernel_counters: counters,
    })
}

/// Runs the aggregator-alone bench (numatrace/benches/aggregator.rs) and returns its JSON lines.
fn aggregator_alone(root: &Path) -> Result<Vec<Value>> {
    let out = Command::new("cargo")
        .current_dir(root)
        .args(["bench", "-q", "-p", "numatrace-core", "--bench", "aggregator"])
        .output()
        .context("running cargo bench --bench aggregator")?;
    if !out.status.success() {
        bail!("the aggregator bench failed: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("bench").is_some())
        .collect();
    if lines.is_empty() {
        bail!("the aggregator bench printed no JSON result");
    }
    Ok(lines)
}

fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new("cargo").current_dir(root).args(args).status().context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The migration-heavy workload: THREADS threads each move themselves to
/// another CPU HOPS times (by changing their own affinity, as `numatrace
/// workload hop` does), timed by itself. Prints one JSON line.
fn hop_workload(spec: &str) -> Result<()> {
    let (threads, hops) = spec.split_once(',').context("--hop-workload wants THREADS,HOPS")?;
    let threads: usize = threads.trim().parse().with_context(|| format!("--hop-workload threads {threads:?}"))?;
    let hops: u64 = hops.trim().parse().with_context(|| format!("--hop-workload hops {hops:?}"))?;
    let cpus = allowed_cpus()?;
    if cpus.len() < 2 {
        bail!("the migration-heavy workload needs two CPUs; this process may use {cpus:?}");
    }
    let started = std::time::Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let cpus = cpus.clone();
            std::thread::spawn(move || -> Result<u64> {
                let mut moved = 0;
                for k in 0..hops {
                    let cpu = cpus[(i + k as usize + 1) % cpus.len()];
                    pin(cpu)?;
                    // SAFETY: no arguments.
                    if unsafe { libc::sched_getcpu() } == cpu as i32 {
                        moved += 1;
                    }
                }
                Ok(moved)
            })
        })
        .collect();
    let mut moved = 0;
    for w in workers {
        moved += w.join().map_err(|_| anyhow::anyhow!("a hop thread panicked"))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{}", serde_json::json!({"workload": "hop", "threads": threads, "hops": moved, "seconds": seconds}));
    Ok(())
}

fn pin(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("sched_setaffinity to CPU {cpu}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: reading our own affinity into a zeroed set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect())
    }
}
