//! Runs the guest under QEMU (TCG: KVM does not work on these machines),
//! reads the console for the lab's markers, tails the stdout port, and kills
//! a guest that outlives its time limit.
use std::{
    fs,
    io::{BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    CommandResult, LabDirs, LabOptions, LabRun,
    initramfs::{MARK_BEGIN, MARK_EXIT, MARK_READY, MARK_STDOUT_END},
};

/// The QEMU system emulator (package qemu-system-x86).
pub fn binary() -> Result<PathBuf> {
    let p = PathBuf::from("/usr/bin/qemu-system-x86_64");
    if p.is_file() {
        return Ok(p);
    }
    bail!("{} is missing (install qemu-system-x86: cargo xtask setup)", p.display())
}

/// QEMU's TCG threading: one host thread per vCPU (`multi`, the default), or
/// every vCPU on one host thread (`NUMATRACE_LAB_TCG=single`: immune to
/// cross-CPU code patching races, about half as fast).
fn tcg_threads() -> &'static str {
    match std::env::var("NUMATRACE_LAB_TCG").as_deref() {
        Ok("single") => "single",
        _ => "multi",
    }
}

/// The QEMU arguments for the topology.
fn machine_args(opts: &LabOptions) -> Vec<String> {
    let t = opts.topology;
    let mut args: Vec<String> = vec![
        "-accel".into(),
        format!("tcg,thread={}", tcg_threads()),
        "-cpu".into(),
        "max".into(),
        "-smp".into(),
        (t.nodes * t.cpus_per_node).to_string(),
        "-m".into(),
        format!("{}M", t.mem_per_node_mib * u64::from(t.nodes)),
    ];
    for n in 0..t.nodes {
        let first = n * t.cpus_per_node;
        let last = first + t.cpus_per_node - 1;
        args.extend(["-object".into(), format!("memory-backend-ram,id=m{n},size={}M", t.mem_per_node_mib)]);
        args.extend(["-numa".into(), format!("node,nodeid={n},cpus={first}-{last},memdev=m{n}")]);
    }
    // A two-socket-like distance table: 10 local, 21 remote.
    for a in 0..t.nodes {
        for b in 0..t.nodes {
            if a < b {
                args.extend(["-numa".into(), format!("dist,src={a},dst={b},val=21")]);
            }
        }
    }
    args
}

/// How an error starts when the guest's kernel hit a soft lockup (callers
/// may boot again: the scenarios' results are then from a clean boot).
pub const SOFT_LOCKUP: &str = "the guest kernel hit a soft lockup";

/// What the console reader learned.
#[derive(Default)]
struct Console {
    ready_at: Option<Duration>,
    exits: Vec<(usize, i32)>,
    tail: Vec<String>,
    /// The kernel reported a soft lockup.
    soft_lockup: bool,
}

/// Boots the guest and waits for it to power off (or kills it at the timeout).
pub fn boot(
    qemu: &Path,
    kernel: &Path,
    image: &Path,
    dirs: &LabDirs,
    opts: &LabOptions,
    commands: usize,
) -> Result<LabRun> {
    let stdout_path = dirs.run.join("stdout");
    let console_log = dirs.run.join("console.log");
    fs::write(&stdout_path, b"").with_context(|| format!("creating {}", stdout_path.display()))?;
    let mut cmd = Command::new(qemu);
    cmd.args(machine_args(opts))
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(image)
        // softlockup_panic: a guest kernel stuck in a soft lockup panics at
        // once, with the stuck CPU's backtrace (a panic raises the console
        // level), instead of hanging to the timeout. watchdog_thresh=30 (a
        // lockup after 60 s, not 20) and the RCU stall timeout: a vCPU is a
        // host thread, and the guest's clock runs on while a loaded host does
        // not schedule it. Lockups still come, on an idle host too: a vCPU
        // stuck for 79 s at a static-branch NOP in __alloc_pages while
        // tracepoints attach (the kernel patching its own text under the
        // emulator); the lab tests boot again (tests/lib.rs `guest::run`).
        .args([
            "-append",
            "console=ttyS0 quiet panic=-1 softlockup_panic=1 watchdog_thresh=30 \
             rcupdate.rcu_cpu_stall_timeout=60 mitigations=off",
        ])
        .args(["-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio"])
        .arg("-serial")
        .arg(format!("file:{}", stdout_path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t = opts.topology;
    eprintln!(
        "lab: booting {} ({} nodes x {} CPUs x {} MiB, TCG)",
        kernel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        t.nodes,
        t.cpus_per_node,
        t.mem_per_node_mib
    );
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {}", qemu.display()))?;
    let console = Arc::new(Mutex::new(Console::default()));
    let done = Arc::new(AtomicBool::new(false));

    let con_out = child.stdout.take().context("no QEMU stdout")?;
    let log = fs::File::create(&console_log).with_context(|| format!("creating {}", console_log.display()))?;
    let reader = {
        let console = console.clone();
        let verbose = opts.verbose;
        thread::spawn(move || read_console(con_out, log, console, started, verbose))
    };
    let qemu_err = child.stderr.take().context("no QEMU stderr")?;
    let err_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(qemu_err).read_to_string(&mut text);
        text
    });
    let tail = opts.stream_stdout.then(|| {
        let path = stdout_path.clone();
        let done = done.clone();
        thread::spawn(move || stream_file(&path, &done))
    });

    let deadline = started + opts.timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for QEMU")? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let total = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let _ = reader.join();
    let qemu_stderr = err_reader.join().unwrap_or_default();
    if let Some(tail) = tail {
        tail.join().map_err(|_| anyhow::anyhow!("the stdout reader panicked"))??;
    }
    let console = std::mem::take(&mut *console.lock().map_err(|_| anyhow::anyhow!("console state poisoned"))?);
    let Some(status) = status else {
        print_tail(&console.tail);
        if console.soft_lockup {
            bail!(
                "{SOFT_LOCKUP} and did not finish within {} s (console log: {})",
                opts.timeout.as_secs(),
                console_log.display()
            );
        }
        bail!(
            "the guest did not finish within {} s and was killed (console log: {})",
            opts.timeout.as_secs(),
            console_log.display()
        );
    };
    if console.ready_at.is_none() {
        print_tail(&console.tail);
        bail!(
            "the guest never reached its init ({status}){}; console log: {}",
            if qemu_stderr.trim().is_empty() { String::new() } else { format!(", QEMU said: {}", qemu_stderr.trim()) },
            console_log.display()
        );
    }
    if console.exits.len() != commands {
        print_tail(&console.tail);
        if console.soft_lockup {
            bail!(
                "{SOFT_LOCKUP} after {} of {commands} commands (the stuck CPU's backtrace is in the console log: {})",
                console.exits.len(),
                console_log.display()
            );
        }
        bail!(
            "the guest stopped after {} of {commands} commands without reporting the rest (kernel panic or out of memory?); console log: {}",
            console.exits.len(),
            console_log.display()
        );
    }
    let raw = fs::read(&stdout_path).with_context(|| format!("reading {}", stdout_path.display()))?;
    let outputs = if opts.stream_stdout { vec![raw] } else { split_outputs(&raw, commands)? };
    let results = console
        .exits
        .iter()
        .zip(outputs)
        .map(|(&(_, exit_code), stdout)| CommandResult { stdout, exit_code })
        .collect();
    // The run directory only matters when something failed; keep the last good console log.
    let kept = dirs.lab.join("last-console.log");
    let console_log = if fs::copy(&console_log, &kept).is_ok() { kept } else { console_log };
    let _ = fs::remove_dir_all(&dirs.run);
    Ok(LabRun {
        results,
        boot_s: console.ready_at.map(|d| d.as_secs_f64()).unwrap_or_default(),
        total_s: total.as_secs_f64(),
        console_log,
    })
}

/// Reads the console: all of it into the log; the commands' stderr (between
/// the begin and exit markers) to this process's stderr as it arrives, so that
/// progress lines redrawn with `\r` stay live. Markers always start a line.
fn read_console(mut out: impl Read, mut log: fs::File, console: Arc<Mutex<Console>>, started: Instant, verbose: bool) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut in_command = false;
    // An empty line inside a command is held back: the guest writes one before its exit marker.
    let mut held_blank = false;
    let mut stderr = std::io::stderr();
    loop {
        let n = match out.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let _ = log.write_all(&chunk[..n]);
        pending.extend_from_slice(&chunk[..n]);
        let Ok(mut c) = console.lock() else { break };
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string();
            let bare = text.trim_start_matches('\r');
            if bare.starts_with(MARK_READY) {
                c.ready_at = Some(started.elapsed());
            } else if bare.starts_with(MARK_BEGIN) {
                in_command = true;
            } else if let Some(rest) = bare.strip_prefix(MARK_EXIT) {
                let mut words = rest.split_whitespace().map(str::parse::<i64>);
                if let (Some(Ok(i)), Some(Ok(rc))) = (words.next(), words.next()) {
                    c.exits.push((i as usize, rc as i32));
                }
                in_command = false;
                held_blank = false;
            } else if in_command && text.is_empty() && !held_blank {
                held_blank = true;
            } else if in_command || verbose {
                if std::mem::take(&mut held_blank) {
                    let _ = stderr.write_all(b"\n");
                }
                // The console turns \n into \r\n; give the host a plain \n.
                let _ = stderr.write_all(text.as_bytes());
                let _ = stderr.write_all(b"\n");
            }
            c.soft_lockup |= text.contains("soft lockup");
            c.tail.push(text);
            if c.tail.len() > 30 {
                c.tail.remove(0);
            }
        }
        if in_command {
            let _ = stderr.write_all(&redrawn_part(&mut pending));
        }
        let _ = stderr.flush();
    }
}

/// Erase-line, as a progress line clears itself before the report.
const ERASE_LINE: &[u8] = b"\x1b[2K";

/// Of a line still being written (a progress line redrawn with `\r`), what
/// can be shown now: all up to its last `\r` (unless that may be half of a
/// `\r\n`, or the line a marker), and an erase-line right after it. Held
/// back, the erase would come out later in the middle of the report that
/// the command writes to stdout meanwhile, and erase part of it.
fn redrawn_part(pending: &mut Vec<u8>) -> Vec<u8> {
    if pending.starts_with(b"@") {
        return Vec::new();
    }
    let Some(cr) = pending.iter().rposition(|&b| b == b'\r').filter(|&cr| cr + 1 < pending.len()) else {
        return Vec::new();
    };
    let end = if pending[cr + 1..].starts_with(ERASE_LINE) { cr + 1 + ERASE_LINE.len() } else { cr + 1 };
    pending.drain(..end).collect()
}

/// Copies the stdout file to this process's stdout as it grows, until the guest is gone.
fn stream_file(path: &Path, done: &AtomicBool) -> Result<()> {
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = std::io::stdout();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Read the flag before reading the file, so that the last bytes are not missed.
        let finished = done.load(Ordering::SeqCst);
        let n = file.read(&mut buf).context("reading the guest's stdout")?;
        if n > 0 {
            out.write_all(&buf[..n]).context("writing stdout")?;
            out.flush().ok();
            continue;
        }
        if finished {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Splits batched stdout at the end markers the guest wrote after each command.
fn split_outputs(raw: &[u8], commands: usize) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut rest = raw;
    for i in 0..commands {
        let marker = format!("{MARK_STDOUT_END}{i}\n");
        let at = find(rest, marker.as_bytes())
            .with_context(|| format!("the end marker of command {i} is missing from the guest's stdout"))?;
        out.push(rest[..at].to_vec());
        rest = &rest[at + marker.len()..];
    }
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn print_tail(lines: &[String]) {
    eprintln!("lab: last console lines:");
    for l in lines {
        eprintln!("  | {l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_is_shown_up_to_its_last_redraw_and_its_erase_at_once() {
        let mut pending = b"\r\x1b[2Kpid 1 0.3 s\r\x1b[2Kpid 1 0.6 s".to_vec();
        assert_eq!(redrawn_part(&mut pending), b"\r\x1b[2Kpid 1 0.3 s\r\x1b[2K");
        assert_eq!(pending, b"pid 1 0.6 s");
        // The clear before the report: nothing held back.
        let mut pending = b"pid 1 2.4 s\r\x1b[2K".to_vec();
        assert_eq!(redrawn_part(&mut pending), b"pid 1 2.4 s\r\x1b[2K");
        assert!(pending.is_empty());
        // A \r that may be half of the console's \r\n, and a marker, wait.
        let mut pending = b"line\r".to_vec();
        assert!(redrawn_part(&mut pending).is_empty());
        let mut pending = b"@@numatrace-lab exit 0\r\x1b[2K".to_vec();
        assert!(redrawn_part(&mut pending).is_empty());
    }

    #[test]
    fn splits_batched_stdout_at_markers() {
        let raw = b"{\"a\":1}\n\n@@numatrace-lab end 0\n\n@@numatrace-lab end 1\n";
        let parts = split_outputs(raw, 2).unwrap();
        assert_eq!(parts, vec![b"{\"a\":1}\n".to_vec(), Vec::new()]);
        assert!(split_outputs(b"partial", 1).is_err());
    }
}
