//! Start-up and detach: how long a tracer takes to attach to a process that
//! is already running (from its start until it says it is tracing), and to
//! let go of it (from the stop signal, or the end of `--duration`, until it
//! has exited). numatrace says so on stderr ("numatrace: tracing pid ...");
//! the bpftrace peer counts the same events of the pid and prints a line from
//! its BEGIN probe, which bpftrace runs once every other probe is attached.
//! `perf record` prints nothing when it is ready, so it has no figure here.
use std::{
    fs,
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::variants::Tools;

/// Longest wait for a tracer's ready line (the lab guest is slow).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for a tracer to exit once told to stop (a second SIGINT goes
/// out half-way; seen once: bpftrace ignoring a SIGINT on the busy host).
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long each tracer traces before it is stopped.
const TRACE_FOR: Duration = Duration::from_millis(500);

/// The times of one tracer, one entry per round (seconds).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Startup {
    /// What the tracers attach to.
    pub target: Vec<String>,
    pub numatrace_attach_s: Vec<f64>,
    /// From SIGINT to exit (the report written).
    pub numatrace_detach_s: Vec<f64>,
    /// From the end of `--duration` (ready line + duration) to exit.
    pub numatrace_duration_detach_s: Vec<f64>,
    pub bpftrace_attach_s: Vec<f64>,
    pub bpftrace_detach_s: Vec<f64>,
    /// Rounds that gave no figure (a tracer that failed or hung), and why.
    #[serde(default)]
    pub failures: Vec<String>,
}

/// Runs `rounds` rounds, numatrace and bpftrace alternating (the order
/// rotating), each attaching to one long-running target process.
pub fn measure(tools: &Tools, rounds: u32) -> Result<Startup> {
    let numatrace = tools.numatrace.display().to_string();
    let target_argv: Vec<String> = [numatrace.as_str(), "workload", "resident", "--mib", "64", "--seconds", "3600"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut target = Command::new(&target_argv[0])
        .args(&target_argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the start-up target")?;
    let result = measure_on(tools, &mut target, rounds);
    let _ = target.kill();
    let _ = target.wait();
    let mut startup = result?;
    startup.target = target_argv;
    Ok(startup)
}

fn measure_on(tools: &Tools, target: &mut Child, rounds: u32) -> Result<Startup> {
    // The target prints its placement once its memory is touched: then it is settled.
    let stdout = target.stdout.take().context("no stdout from the start-up target")?;
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).context("reading the start-up target's first line")?;
    if first.trim().is_empty() {
        bail!("the start-up target printed nothing before it exited");
    }
    let pid = target.id();
    let script = tools.scratch.join("startup.bt");
    fs::write(
        &script,
        format!(
            "BEGIN {{ printf(\"tracing\\n\"); }}\n\
             tracepoint:exceptions:page_fault_user /pid == {pid}/ {{ @faults[tid] = count(); }}\n\
             tracepoint:kmem:mm_page_alloc /pid == {pid}/ {{ @allocs[tid] = count(); }}\n\
             tracepoint:sched:sched_migrate_task /args->pid == {pid}/ {{ @migrations[args->pid] = count(); }}\n"
        ),
    )
    .with_context(|| format!("writing {}", script.display()))?;
    let nt = tools.numatrace.display().to_string();
    let pid_s = pid.to_string();
    let mut out = Startup::default();
    for round in 0..rounds {
        for k in 0..2 {
            if (k + round) % 2 == 0 {
                match attach_detach(&nt, &["--json", "-p", &pid_s], Ready::Stderr("numatrace: tracing"), None) {
                    Ok((attach, detach)) => {
                        eprintln!("bench:   round {} numatrace attach {attach:.3} s, detach {detach:.3} s", round + 1);
                        out.numatrace_attach_s.push(attach);
                        out.numatrace_detach_s.push(detach);
                    }
                    Err(e) => failed(&mut out, round, "numatrace", &e),
                }
            } else {
                let script = script.display().to_string();
                match attach_detach("bpftrace", &["-B", "none", &script], Ready::Stdout("tracing"), None) {
                    Ok((attach, detach)) => {
                        eprintln!("bench:   round {} bpftrace  attach {attach:.3} s, detach {detach:.3} s", round + 1);
                        out.bpftrace_attach_s.push(attach);
                        out.bpftrace_detach_s.push(detach);
                    }
                    Err(e) => failed(&mut out, round, "bpftrace", &e),
                }
            }
        }
        match attach_detach(
            &nt,
            &["--json", "-p", &pid_s, "-d", &format!("{}ms", TRACE_FOR.as_millis())],
            Ready::Stderr("numatrace: tracing"),
            Some(TRACE_FOR),
        ) {
            Ok((_, detach)) => out.numatrace_duration_detach_s.push(detach),
            Err(e) => failed(&mut out, round, "numatrace -d", &e),
        }
    }
    Ok(out)
}

/// Notes a round without a figure: the bench reports, it does not stop.
fn failed(out: &mut Startup, round: u32, tracer: &str, e: &anyhow::Error) {
    let why = format!("round {}, {tracer}: {e:#}", round + 1);
    eprintln!("bench:   {why} (no figure for this round)");
    out.failures.push(why);
}

/// Where a tracer says it is ready, and the text that says it.
#[derive(Clone, Copy)]
enum Ready {
    Stdout(&'static str),
    Stderr(&'static str),
}

/// Starts a tracer, waits for its ready line, lets it trace for a while, then
/// stops it with SIGINT (or, with `duration`, waits for it to stop by itself
/// after that long). Returns (start to ready, stop to exit) in seconds.
fn attach_detach(program: &str, args: &[&str], ready: Ready, duration: Option<Duration>) -> Result<(f64, f64)> {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let out = child.stdout.take().context("no stdout pipe")?;
    let err = child.stderr.take().context("no stderr pipe")?;
    let readers = [
        spawn_reader(out, matches!(ready, Ready::Stdout(_)).then(|| tx.clone())),
        spawn_reader(err, matches!(ready, Ready::Stderr(_)).then(|| tx.clone())),
    ];
    drop(tx);
    let want = match ready {
        Ready::Stdout(s) | Ready::Stderr(s) => s,
    };
    let mut seen = Vec::new();
    let ready_at = loop {
        match rx.recv_timeout(READY_TIMEOUT.saturating_sub(started.elapsed())) {
            Ok((at, line)) if line.contains(want) => break at,
            Ok((_, line)) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{program} did not say {want:?} within {} s; it said: {}",
                    READY_TIMEOUT.as_secs(),
                    seen.iter().rev().take(3).cloned().collect::<Vec<_>>().join(" | ")
                );
            }
        }
    };
    let attach = ready_at.duration_since(started).as_secs_f64();
    let stop_at = match duration {
        Some(d) => ready_at + d,
        None => {
            thread::sleep(TRACE_FOR);
            // SAFETY: signalling our own child, which has not been reaped.
            if unsafe { libc::kill(child.id() as i32, libc::SIGINT) } != 0 {
                bail!("sending SIGINT to {program}: {}", std::io::Error::last_os_error());
            }
            Instant::now()
        }
    };
    let mut signalled_again = false;
    let status = loop {
        if let Some(status) = child.try_wait().with_context(|| format!("waiting for {program}"))? {
            break status;
        }
        if !signalled_again && stop_at.elapsed() > EXIT_TIMEOUT / 2 {
            signalled_again = true;
            // SAFETY: signalling our own child, which has not been reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        }
        if stop_at.elapsed() > EXIT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{program} did not exit within {} s of being stopped", EXIT_TIMEOUT.as_secs());
        }
        thread::sleep(Duration::from_millis(1));
    };
    let exited = Instant::now();
    for r in readers {
        let _ = r.join();
    }
    if !status.success() {
        bail!("{program} exited with {status}");
    }
    Ok((attach, exited.saturating_duration_since(stop_at).as_secs_f64()))
}

/// Reads a pipe to its end (so the tracer never blocks on it), sending each
/// line with the time it arrived when `tx` is given.
fn spawn_reader<R: Read + Send + 'static>(
    pipe: R,
    tx: Option<mpsc::Sender<(Instant, String)>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if let Some(tx) = &tx {
                        let _ = tx.send((Instant::now(), line.trim_end().to_string()));
                    }
                }
            }
        }
    })
}
