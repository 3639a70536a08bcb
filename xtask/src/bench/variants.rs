//! The ways a workload is run: untraced, traced by numatrace, by a bpftrace
//! script counting the same events per thread, and recorded by `perf record`
//! on the same tracepoints. Each run is timed by the workload itself (the
//! `seconds` it prints), so tracer start-up and tear-down are not counted;
//! the tracer process's own CPU time and peak memory are measured too.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::bpf_stats::{ProgramStats, StatsSampler};

/// The bpftrace script: the same hot events numatrace needs, counted per
/// thread of the traced command (`cpid`); migrations are keyed by the moved
/// thread, which is usually not the current task, so they are not filtered.
const BPFTRACE_SCRIPT: &str = "\
tracepoint:exceptions:page_fault_user /pid == cpid/ { @faults[tid] = count(); }
tracepoint:kmem:mm_page_alloc /pid == cpid/ { @allocs[tid] = count(); }
tracepoint:sched:sched_migrate_task { @migrations[args->pid] = count(); }
";

/// The empty-program baseline: the same three tracepoints, programs that do
/// nothing. What attaching anything to these hooks costs (the kernel's
/// dispatch and the program call): under emulation (the lab guest) only
/// ratios against it and against bpftrace mean anything.
const BPFTRACE_EMPTY_SCRIPT: &str = "\
tracepoint:exceptions:page_fault_user {}
tracepoint:kmem:mm_page_alloc {}
tracepoint:sched:sched_migrate_task {}
";

/// The tracepoints `perf record` records (the same ones).
const PERF_EVENTS: &[&str] = &["exceptions:page_fault_user", "kmem:mm_page_alloc", "sched:sched_migrate_task"];

/// A way to run the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    Untraced,
    Numatrace,
    /// numatrace forced onto classic tracepoints (`--classic-tracepoints`):
    /// what the raw and BTF-typed ones save, measured in the same rounds.
    NumatraceClassic,
    /// numatrace sending every migration (`--all-migrations`), also those
    /// within a node, which it otherwise only counts in the kernel: what a
    /// migration event costs where they all cross nodes.
    NumatraceAllMigrations,
    Bpftrace,
    /// bpftrace with empty programs on the same tracepoints: the attach baseline.
    BpftraceEmpty,
    PerfRecord,
}

impl Variant {
    pub const ALL: [Variant; 7] = [
        Variant::Untraced,
        Variant::Numatrace,
        Variant::NumatraceClassic,
        Variant::NumatraceAllMigrations,
        Variant::Bpftrace,
        Variant::BpftraceEmpty,
        Variant::PerfRecord,
    ];

    /// The variants of a run in the lab guest: its CPUs are one per node, so every
    /// migration crosses nodes and `--all-migrations` would measure the same as
    /// the default; classic tracepoints are left to the host (emulation is slow).
    pub const GUEST: [Variant; 5] =
        [Variant::Untraced, Variant::Numatrace, Variant::Bpftrace, Variant::BpftraceEmpty, Variant::PerfRecord];

    /// The numatrace variants.
    pub fn is_numatrace(self) -> bool {
        matches!(self, Variant::Numatrace | Variant::NumatraceClassic | Variant::NumatraceAllMigrations)
    }

    pub fn label(self) -> &'static str {
        match self {
            Variant::Untraced => "untraced",
            Variant::Numatrace => "numatrace",
            Variant::NumatraceClassic => "numatrace, classic tracepoints",
            Variant::NumatraceAllMigrations => "numatrace, --all-migrations",
            Variant::Bpftrace => "bpftrace",
            Variant::BpftraceEmpty => "bpftrace, empty programs",
            Variant::PerfRecord => "perf record",
        }
    }
}

/// CPU time and peak resident memory of the tracer process itself (its
/// children, the workload, excluded).
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct TracerUsage {
    pub cpu_s: f64,
    /// Highest VmHWM seen, sampled every 20 ms until the process exited.
    pub peak_rss_kib: u64,
}

/// What one run gave.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    /// The workload's own elapsed time.
    pub seconds: f64,
    /// The workload's own CPU time, when it reports it.
    pub cpu_seconds: Option<f64>,
    /// The tracer's usage (none when untraced).
    pub tracer: Option<TracerUsage>,
    /// numatrace's JSON report (numatrace runs only).
    pub report: Option<Value>,
    /// Per-program kernel accounting, when sampled.
    pub programs: BTreeMap<String, ProgramStats>,
}

/// Where the binaries and scratch files are.
pub struct Tools {
    pub numatrace: PathBuf,
    pub scratch: PathBuf,
}

/// Options of one numatrace run beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct NumatraceOptions {
    pub ring_size: Option<u32>,
    /// Sample the kernel's per-program run time (numatrace's or bpftrace's programs).
    pub sample_programs: bool,
    /// Attach the load generator (`--load-generator`, for `workload flood`).
    pub load_generator: bool,
    /// More numatrace flags (e.g. `--overhead-budget 1`).
    pub extra_args: Vec<String>,
}

/// Runs the workload (a full command line that prints a JSON line with its
/// `seconds`) one way.
pub fn run(tools: &Tools, variant: Variant, workload: &[String], nt: &NumatraceOptions) -> Result<RunResult> {
    let workload = workload.to_vec();
    let mut argv: Vec<String> = match variant {
        Variant::Untraced => workload.clone(),
        Variant::Numatrace | Variant::NumatraceClassic | Variant::NumatraceAllMigrations => {
            let mut v = vec![tools.numatrace.display().to_string(), "--json".to_string()];
            if variant == Variant::NumatraceClassic {
                v.push("--classic-tracepoints".to_string());
            }
            if variant == Variant::NumatraceAllMigrations {
                v.push("--all-migrations".to_string());
            }
            if let Some(bytes) = nt.ring_size {
                v.push(format!("--ring-size={bytes}"));
            }
            if nt.load_generator {
                v.push("--load-generator".to_string());
            }
            v.extend(nt.extra_args.iter().cloned());
            v.push("--".to_string());
            v.extend(workload.iter().cloned());
            v
        }
        Variant::Bpftrace | Variant::BpftraceEmpty => {
            let (name, text) = if variant == Variant::Bpftrace {
                ("count.bt", BPFTRACE_SCRIPT)
            } else {
                ("empty.bt", BPFTRACE_EMPTY_SCRIPT)
            };
            let script = tools.scratch.join(name);
            fs::write(&script, text).with_context(|| format!("writing {}", script.display()))?;
            vec!["bpftrace".to_string(), script.display().to_string(), "-c".to_string(), workload.join(" ")]
        }
        Variant::PerfRecord => {
            let mut v = vec!["perf".to_string(), "record".to_string(), "-q".to_string()];
            for event in PERF_EVENTS {
                v.push("-e".to_string());
                v.push(event.to_string());
            }
            v.push("-o".to_string());
            v.push(tools.scratch.join("perf.data").display().to_string());
            v.push("--".to_string());
            v.extend(workload.iter().cloned());
            v
        }
    };
    let program = argv.remove(0);
    let sampler = (variant != Variant::Untraced && nt.sample_programs).then(StatsSampler::start).transpose()?;
    let out = run_measured(&program, &argv, &tools.scratch, variant != Variant::Untraced, sampler)?;
    if variant == Variant::PerfRecord {
        let _ = fs::remove_file(tools.scratch.join("perf.data"));
    }
    let workload_line = workload_line(&out.stdout).with_context(|| {
        format!(
            "{} printed no workload line (exit {}); its stderr ends: {}",
            variant.label(),
            out.exit,
            tail(&out.stderr)
        )
    })?;
    let seconds = workload_line.get("seconds").and_then(Value::as_f64).context("the workload line has no `seconds`")?;
    let report = if variant.is_numatrace() {
        Some(
            numatrace_report(&out.stdout)
                .with_context(|| format!("numatrace printed no JSON report; stderr: {}", tail(&out.stderr)))?,
        )
    } else {
        None
    };
    let cpu_seconds = workload_line.get("cpu_seconds").and_then(Value::as_f64);
    Ok(RunResult { seconds, cpu_seconds, tracer: out.usage, report, programs: out.programs })
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// The workload's one-line JSON object (`{"workload": ...}`) in a stream of output.
fn workload_line(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{') && l.contains("\"workload\""))
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
}

/// numatrace's pretty-printed report: the JSON object starting at a line `{`.
fn numatrace_report(stdout: &str) -> Option<Value> {
    let start = stdout.find("\n{\n").map(|i| i + 1).or_else(|| stdout.starts_with("{\n").then_some(0))?;
    serde_json::from_str(&stdout[start..]).ok()
}

struct Output {
    stdout: String,
    stderr: String,
    exit: i32,
    usage: Option<TracerUsage>,
    programs: BTreeMap<String, ProgramStats>,
}

/// Longest a single run may take before it is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs a program with output to files, sampling its peak memory while it
/// runs, and reads its own CPU time once it has exited but before it is
/// reaped (a reaped process's rusage would include the workload it waited for).
fn run_measured(
    program: &str,
    args: &[String],
    scratch: &Path,
    measure: bool,
    mut sampler: Option<StatsSampler>,
) -> Result<Output> {
    let out_path = scratch.join("stdout");
    let err_path = scratch.join("stderr");
    let stdout = fs::File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?;
    let stderr = fs::File::create(&err_path).with_context(|| format!("creating {}", err_path.display()))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let pid = child.id() as i32;
    let started = Instant::now();
    let mut peak_rss_kib = 0;
    let mut cpu_s = 0.0;
    loop {
        if measure {
            peak_rss_kib = peak_rss_kib.max(vm_hwm_kib(pid).unwrap_or(0));
        }
        if let Some(s) = sampler.as_mut() {
            s.sample(pid);
        }
        if exited_unreaped(pid)? {
            if measure {
                cpu_s = own_cpu_seconds(pid).unwrap_or(0.0);
            }
            break;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{program} ran longer than {} s and was killed", RUN_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().with_context(|| format!("waiting for {program}"))?;
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let programs = sampler.map(StatsSampler::finish).unwrap_or_default();
    Ok(Output {
        stdout,
        stderr,
        exit: status.code().unwrap_or(-1),
        usage: measure.then_some(TracerUsage { cpu_s, peak_rss_kib }),
        programs,
    })
}

/// Whether the child has exited, without reaping it (`waitid` with `WNOWAIT`).
fn exited_unreaped(pid: i32) -> Result<bool> {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer; the pid is our own child.
    let rc = unsafe {
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT | libc::WNOHANG)
    };
    if rc != 0 {
        bail!("waitid on {pid}: {}", std::io::Error::last_os_error());
    }
    // SAFETY: waitid filled the struct; si_pid is 0 when nothing has exited yet.
    Ok(unsafe { info.si_pid() } != 0)
}

/// VmHWM (peak resident set) of a live process, in KiB.
fn vm_hwm_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of the process itself (fields 14 and 15 of /proc/PID/stat;
/// its children's time is in 16 and 17), readable while it is a zombie.
pub(super) fn own_cpu_seconds(pid: i32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields restart after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks.max(1.0))
}
