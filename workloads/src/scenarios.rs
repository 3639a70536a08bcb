//! The workloads themselves.
use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::json;

use crate::{memory::Buffer, placement};

fn emit(value: serde_json::Value) {
    println!("{value}");
}

/// This process's user + system CPU time so far, all threads (the kernel
/// programs that run inside its page faults are charged here).
fn own_cpu_seconds() -> Option<f64> {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_SELF, &mut usage) == 0).then_some(usage)
    }?;
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// THREADS threads each first-touch PAGES pages, ROUNDS times.
pub fn touch(pages: u64, threads: u32, rounds: u32, hop_every: u64, stride: u64) -> Result<()> {
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|k| {
            named(&format!("toucher-{}", k + 1), move || -> Result<(u32, u64, u32)> {
                let tid = placement::gettid();
                let cpus = placement::allowed_cpus();
                let mut hops = 0u32;
                let mut touched = 0;
                for _ in 0..rounds {
                    let buf = Buffer::new(pages * stride)?;
                    for i in 0..pages {
                        buf.touch(i * stride);
                        touched += 1;
                        if hop_every > 0 && cpus.len() > 1 && touched % hop_every == 0 {
                            let before = placement::current_cpu();
                            placement::pin(&[cpus[(hops as usize + 1) % cpus.len()]])?;
                            if placement::current_cpu() != before {
                                hops += 1;
                            }
                        }
                    }
                }
                if hop_every > 0 {
                    placement::pin(&cpus)?;
                }
                Ok((tid, touched, hops))
            })
        })
        .collect::<Result<_>>()?;
    let mut per_thread = Vec::new();
    for h in handles {
        let (tid, pages, hops) = h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
        per_thread.push(json!({"tid": tid, "first_touch_pages": pages, "hops": hops}));
    }
    let seconds = started.elapsed().as_secs_f64();
    emit(
        json!({"workload": "touch", "pid": std::process::id(), "threads": per_thread, "seconds": seconds, "cpu_seconds": own_cpu_seconds()}),
    );
    Ok(())
}

/// THREADS threads each hop between two CPUs TIMES times.
pub fn hop(times: u32, threads: u32) -> Result<()> {
    let cpus = placement::allowed_cpus();
    anyhow::ensure!(cpus.len() >= 2, "hop needs at least two CPUs, this process may use {cpus:?}");
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let cpus = cpus.clone();
            named(&format!("hopper-{}", i + 1), move || -> Result<(u32, u32)> {
                let tid = placement::gettid();
                // Counts only real CPU changes: the ground truth a tracer must see at least.
                let mut done = 0;
                for k in 0..times {
                    let before = placement::current_cpu();
                    let cpu = cpus[(i as usize + k as usize + 1) % cpus.len()];
                    placement::pin(&[cpu])?;
                    if placement::current_cpu() != cpu {
                        thread::yield_now();
                    }
                    if placement::current_cpu() != before {
                        done += 1;
                    }
                }
                placement::pin(&cpus)?;
                Ok((tid, done))
            })
        })
        .collect::<Result<_>>()?;
    let mut per_thread = Vec::new();
    for h in handles {
        let (tid, hops) = h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
        per_thread.push(json!({"tid": tid, "hops": hops}));
    }
    emit(json!({"workload": "hop", "pid": std::process::id(), "threads": per_thread}));
    Ok(())
}

/// This thread's CPU time so far, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills the timespec it is given; this clock always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// THREADS short-lived threads, one after another: each spins until it has
/// run MS milliseconds of CPU and exits, reporting its tid and CPU time.
pub fn spin(threads: u32, ms: u64) -> Result<()> {
    let mut per_thread = Vec::new();
    for _ in 0..threads {
        let worker = thread::spawn(move || {
            let tid = placement::gettid();
            let want = ms * 1_000_000;
            let mut ran = thread_cpu_ns();
            while ran < want {
                std::hint::spin_loop();
                ran = thread_cpu_ns();
            }
            (tid, ran)
        });
        let (tid, cpu_ns) = worker.join().map_err(|_| anyhow::anyhow!("worker panicked"))?;
        per_thread.push(json!({"tid": tid, "cpu_ns": cpu_ns}));
    }
    emit(json!({"workload": "spin", "pid": std::process::id(), "threads": per_thread}));
    Ok(())
}

/// The init-thread pattern: the main thread, named `init`, first-touches
/// everything on the first node; workers (`worker-N`) pinned to the last
/// node use it. Nodes are those of the CPUs the process may use, so that
/// under `numactl --cpunodebind=1` or `taskset` everything runs where they say.
pub fn init_thread(mib: u64, workers: u32, seconds: f64) -> Result<()> {
    let allowed = placement::allowed_cpus();
    let nodes: Vec<(u32, Vec<u32>)> = placement::nodes()
        .into_iter()
        .map(|(node, cpus)| (node, cpus.into_iter().filter(|c| allowed.contains(c)).collect::<Vec<u32>>()))
        .filter(|(_, cpus)| !cpus.is_empty())
        .collect();
    let (init_node, init_cpus) = nodes.first().cloned().context("no NUMA node with CPUs")?;
    let (work_node, work_cpus) = nodes.last().cloned().context("no NUMA node with CPUs")?;
    placement::set_thread_name("init")?;
    placement::pin(&init_cpus)?;
    let pages = mib * 256;
    let buf = std::sync::Arc::new(Buffer::new(pages)?);
    for i in 0..pages {
        buf.touch(i);
    }
    let init_tid = placement::gettid();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..workers)
        .map(|k| {
            let buf = buf.clone();
            let cpus = work_cpus.clone();
            named(&format!("worker-{}", k + 1), move || -> Result<(u32, u64)> {
                placement::pin(&cpus)?;
                let mut sweeps = 0;
                while Instant::now() < deadline {
                    buf.sweep();
                    sweeps += 1;
                }
                Ok((placement::gettid(), sweeps))
            })
        })
        .collect::<Result<_>>()?;
    let mut per_worker = Vec::new();
    for h in handles {
        let (tid, sweeps) = h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
        per_worker.push(json!({"tid": tid, "sweeps": sweeps}));
    }
    emit(json!({
        "workload": "init-thread", "pid": std::process::id(),
        "init": {"tid": init_tid, "node": init_node, "first_touch_pages": pages},
        "workers": per_worker, "worker_node": work_node,
    }));
    Ok(())
}

/// Starts a thread with a name the kernel shows (its comm, set with
/// PR_SET_NAME by the thread itself), as real programs name theirs.
pub fn named<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<thread::JoinHandle<T>> {
    thread::Builder::new().name(name.to_string()).spawn(f).with_context(|| format!("starting thread {name}"))
}

/// How long a flood thread that is ahead of its pace sleeps.
const FLOOD_SLEEP: Duration = Duration::from_micros(200);
/// Calls a flood thread makes between looks at the clock (so that an
/// unreachable rate still stops on time).
const FLOOD_BURST: u64 = 1024;

/// THREADS threads call getppid(2) so that, under `numatrace
/// --load-generator`, the kernel writes EVENTS_PER_SECOND synthetic events
/// in all for SECONDS (each call makes `events_per_call` of them). Prints the
/// calls made, so a test can compare them with what the kernel counted.
pub fn flood(events_per_second: u64, seconds: f64, threads: u32, events_per_call: u64) -> Result<()> {
    anyhow::ensure!(threads > 0, "flood needs at least one thread");
    anyhow::ensure!(seconds.is_finite() && seconds > 0.0, "--seconds must be a positive number");
    let calls_per_second = events_per_second as f64 / events_per_call.max(1) as f64 / f64::from(threads);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|k| {
            named(&format!("flood-{}", k + 1), move || -> (u32, u64) {
                let tid = placement::gettid();
                let begun = Instant::now();
                let mut calls = 0u64;
                loop {
                    let elapsed = begun.elapsed().as_secs_f64();
                    if elapsed >= seconds {
                        break;
                    }
                    let due = (elapsed * calls_per_second) as u64;
                    if calls >= due {
                        thread::sleep(FLOOD_SLEEP);
                        continue;
                    }
                    for _ in 0..(due - calls).min(FLOOD_BURST) {
                        // SAFETY: getppid takes no arguments and cannot fail.
                        unsafe { libc::syscall(libc::SYS_getppid) };
                        calls += 1;
                    }
                }
                (tid, calls)
            })
        })
        .collect::<Result<_>>()?;
    let mut per_thread = Vec::new();
    let mut calls = 0;
    for h in handles {
        let (tid, n) = h.join().map_err(|_| anyhow::anyhow!("flood thread panicked"))?;
        calls += n;
        per_thread.push(json!({"tid": tid, "calls": n}));
    }
    let seconds = started.elapsed().as_secs_f64();
    emit(json!({
        "workload": "flood",
        "pid": std::process::id(),
        "threads": per_thread,
        "calls": calls,
        "events": calls * events_per_call,
        "seconds": seconds,
        "cpu_seconds": own_cpu_seconds(),
    }));
    Ok(())
}
