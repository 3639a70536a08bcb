//! A live capture: start or attach to the target, load and attach the
//! probes, stream events into the aggregator until the duration ends, the
//! target exits, or Ctrl-C / SIGTERM, then collect what the kernel still
//! holds and build the report.
use std::{
    collections::BTreeSet,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use numatrace_common::JOINED_CGROUP;
use numatrace_core::{
    aggregate::{Aggregator, run_time::Sampler},
    capture::sink::EventSink,
    event::Event,
    facts::{EndFacts, SessionFacts, StartFacts, StopReason, Target as TargetReport, TargetScope},
    machine::Topology,
    report::{Report, kernel_release},
};

use super::{
    budget::{Budget, BudgetOptions},
    processes::{self, Others},
    progress::Progress,
    snapshots::Snapshots,
    stacks::StackCollector,
    target::{Target, TargetSpec},
};
use crate::kernel::{ProbeOptions, Probes, TracedSet, tracefs::Tracefs};

/// How to run a capture.
pub struct SessionOptions {
    pub target: TargetSpec,
    pub duration: Option<Duration>,
    pub probes: ProbeOptions,
    /// Show a progress line (only when stderr is a terminal).
    pub progress: bool,
    /// How often the ring is drained when nobody wakes the reader.
    pub drain_interval: Duration,
    /// Sample first touches to stay under this much CPU (`--overhead-budget`).
    pub budget: Option<BudgetOptions>,
}

/// The finished capture: the report, the aggregator and facts it came from.
pub struct Capture {
    pub report: Report,
    pub aggregator: Aggregator,
    pub facts: SessionFacts,
}

/// `CLOCK_MONOTONIC` now, in the kernel programs' time base.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs a capture to its end.
pub fn run(opts: SessionOptions, mut sink: Option<&mut dyn EventSink>) -> Result<Capture> {
    // Privileges first: without them nothing else (mounting tracefs, loading) can work.
    crate::kernel::privileges::require_bpf()?;
    let topology = Topology::read().context("reading the NUMA topology")?;
    let tracefs = Tracefs::open()?;
    let mut target = match &opts.target {
        TargetSpec::Command(argv) => Target::spawn(argv)?,
        spec => Target::attach(Others::first(spec)?)?,
    };
    let mut others = Others::find(&opts.target, target.pid)?;
    // The others' state at the start, read while the programs load and
    // attach: hundreds of processes take seconds (numa_maps walks each
    // one's page tables).
    let others_before = {
        let (pids, topology) = (others.pids.clone(), topology.clone());
        std::thread::Builder::new()
            .name("snapshots".into())
            .spawn(move || processes::snapshots(&pids, &topology))
            .context("starting a thread")?
    };
    let reason_names = tracefs.format("migrate", "mm_migrate_pages").map(|f| f.symbols("reason")).unwrap_or_default();
    let cgroup_id = match &opts.target {
        TargetSpec::Cgroup(cg) => cg.cgroup.id,
        _ => 0,
    };
    let traced = TracedSet { tgid: target.pid, more: !others.is_empty(), cgroup_id };
    let mut probes = Probes::load(traced, &opts.probes, &topology, &tracefs)?;
    let mut pids: Vec<u32> = std::iter::once(target.pid).chain(others.pids.iter().copied()).collect();
    let mut initial_threads = processes::threads_of(&pids, &BTreeSet::new());
    probes.track_processes(&others.pids)?;
    probes.track_threads(&initial_threads.iter().map(|t| (t.tid, t.tgid)).collect::<Vec<_>>())?;
    probes.attach(&tracefs);
    // First thing after the attach (thread migrations attach last): the
    // threads' migration counts then start where the kernel's count starts.
    let mut migration_counts_at_start = numatrace_core::aggregate::migration_count::sample_threads(
        initial_threads.iter().map(|t| (t.tgid, t.tid)),
        monotonic_ns(),
    );
    for status in &probes.sources {
        if !status.attached {
            eprintln!("numatrace: skipping {}: {}", status.name, status.reason.as_deref().unwrap_or("unavailable"));
        } else if let (Some(why), false) = (&status.fallback_reason, opts.probes.classic_tracepoints) {
            // Still traced, at a higher cost per event: worth one line.
            eprintln!("numatrace: {} through {} (costlier per event): {why}", status.name, status.hooks.join(", "));
        }
    }
    // Processes and threads created between the /proc walk and the attach
    // of task_newtask (and, for a cgroup, of cgroup_attach_task).
    let new_processes = others.add_new(&opts.target, target.pid);
    probes.track_processes(&new_processes)?;
    pids.extend(&new_processes);
    let known: BTreeSet<u32> = initial_threads.iter().map(|t| t.tid).collect();
    let late = processes::threads_of(&pids, &known);
    probes.track_threads(&late.iter().map(|t| (t.tid, t.tgid)).collect::<Vec<_>>())?;
    migration_counts_at_start.extend(numatrace_core::aggregate::migration_count::sample_threads(
        late.iter().map(|t| (t.tgid, t.tid)),
        monotonic_ns(),
    ));
    initial_threads.extend(late);

    let comm = target.comm();
    // Attached to running processes: their memory placement now is "before the capture".
    let process_before = match &opts.target {
        TargetSpec::Command(_) => None,
        _ => numatrace_core::machine::ProcessSnapshot::read_with(target.pid, &topology).ok(),
    };
    let mut other_processes_before = others_before.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    other_processes_before.extend(processes::snapshots(&new_processes, &topology));
    let argv = target.command.clone().unwrap_or_else(|| numatrace_core::fixes::Workload::of_pid(target.pid).argv);
    let start = StartFacts {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel_release: kernel_release(),
        topology,
        reason_names,
        target: TargetReport {
            pid: target.pid,
            // A started command is still numatrace's fork here: name it as the kernel will after exec.
            comm: match &target.command {
                Some(argv) => argv
                    .first()
                    .map(|a| a.rsplit('/').next().unwrap_or(a).chars().take(15).collect())
                    .unwrap_or_default(),
                None => comm,
            },
            command: target.command.clone(),
            exit_code: None,
            scope: scope_of(&opts.target, pids.len()),
            pids: pids.clone(),
        },
        sources: probes.sources.clone(),
        initial_threads,
        within_node_migrations_counted_only: !opts.probes.all_migrations,
        start_ns: monotonic_ns(),
        argv,
        process_before,
        other_processes_before,
        system_before: numatrace_core::machine::SystemSnapshot::read().ok(),
    };
    if let Some(sink) = sink.as_deref_mut() {
        sink.start(&start)?;
    }
    let mut agg = start.new_aggregator();
    // Run-time and migration-count baselines of the threads that exist now.
    for event in
        numatrace_core::aggregate::run_time::sample(&agg, monotonic_ns()).into_iter().chain(migration_counts_at_start)
    {
        record(&mut agg, &mut sink, &event)?;
    }
    // A started command runs from here on: the line below then tells people
    // (and scripts) that tracing has begun and the command is running.
    target.release()?;
    // One line once every probe is attached and the command released,
    // printed by the event loop once Ctrl-C is ours to handle.
    let announce = announce(&start, &opts.target, &target);
    if let TargetSpec::Cgroup(cg) = &opts.target {
        eprintln!("{}", cgroup_method(&start.sources, &cg.cgroup.path));
    }

    let ring = probes.take_ring()?;
    let mut stacks = if opts.probes.stacks { Some(StackCollector::new(probes.take_stacks()?)) } else { None };
    let mut budget = opts.budget.map(|b| Budget::new(b, monotonic_ns())).transpose()?;
    let started = Instant::now();
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the event loop")?;
    let mut snapshots = Snapshots::new(start.topology.clone());
    let ctx = LoopContext { opts: &opts, target: &target, others: &others, started, announce };
    let state = LoopState {
        agg: &mut agg,
        sink: &mut sink,
        snapshots: &mut snapshots,
        probes: &mut probes,
        budget: &mut budget,
        stacks: &mut stacks,
    };
    let (stopped_by, ring) = runtime.block_on(event_loop(&ctx, ring, state))?;

    // The threads' migration counts end where the kernel's count of them
    // does: read right after its programs detach, before the others.
    if let Err(e) = probes.detach_thread_migrations() {
        eprintln!("numatrace: detaching the thread-migration programs first: {e:#}");
    }
    let detach_ns = monotonic_ns();
    let migration_counts_at_end = numatrace_core::aggregate::migration_count::sample(&agg, detach_ns);
    probes.detach();
    let sampling = budget.map(|b| b.finish(detach_ns));
    let mut ring = ring;
    drain(&mut ring, &mut agg, &mut sink, &mut stacks)?;
    for event in probes.pending_runs()? {
        if let Some(stacks) = stacks.as_mut() {
            stacks.observe(&event);
        }
        record(&mut agg, &mut sink, &event)?;
    }
    for event in numatrace_core::aggregate::run_time::sample(&agg, detach_ns).into_iter().chain(migration_counts_at_end)
    {
        record(&mut agg, &mut sink, &event)?;
    }
    let mut kernel = probes.totals()?;
    kernel.received = agg.ring_received();
    let duration_s = started.elapsed().as_secs_f64();
    // A command numatrace started does not outlive the capture.
    if stopped_by != StopReason::TargetExit {
        target.terminate();
    }
    let exit_code = wait_exit(&target, true);
    let (process_last, other_processes_last) = snapshots.finish();
    let end = EndFacts {
        duration_s,
        stopped_by,
        exit_code,
        kernel,
        process_last,
        other_processes_last,
        dropped_by_memory_cap: Default::default(),
        sampling,
        // Symbolized now, the programs detached: never on the event path.
        stacks: stacks.map(StackCollector::finish),
    };
    if let Some(sink) = sink.as_mut() {
        sink.end(&end)?;
    }
    let facts = SessionFacts { start, end };
    let report = facts.report(&mut agg);
    Ok(Capture { report, aggregator: agg, facts })
}

/// How the traced set was named, for the report.
fn scope_of(spec: &TargetSpec, processes: usize) -> TargetScope {
    match spec {
        TargetSpec::Command(_) => TargetScope::Process,
        TargetSpec::Pids { tree: true, .. } => TargetScope::Tree,
        TargetSpec::Pids { .. } if processes > 1 => TargetScope::Processes,
        TargetSpec::Pids { .. } => TargetScope::Process,
        TargetSpec::Cgroup(cg) => cg.scope.clone(),
    }
}

/// The "tracing" line: what is traced, with how many threads and sources.
/// It always starts "numatrace: tracing pid N": scripts wait for it.
fn announce(start: &StartFacts, spec: &TargetSpec, target: &Target) -> String {
    let threads = start.initial_threads.len();
    let more = start.target.pids.len().saturating_sub(1);
    let of = match spec {
        TargetSpec::Cgroup(cg) => match &cg.scope {
            TargetScope::Unit { name, cgroup } => format!(" of unit {name} ({})", cgroup.path),
            TargetScope::Container { id, runtime, cgroup } => {
                format!(" of {} container {} ({})", runtime.name(), id.get(..12).unwrap_or(id), cgroup.path)
            }
            _ => format!(" of cgroup {}", cg.cgroup.path),
        },
        TargetSpec::Pids { tree: true, .. } => String::from(" of its tree"),
        _ => String::new(),
    };
    let what = match more {
        0 => format!("{of}, "),
        n => format!(" and {n} more process{}{of}, ", if n == 1 { "" } else { "es" }),
    };
    format!(
        "numatrace: tracing pid {} ({}{what}{threads} thread{}) with {} of {} sources; Ctrl-C stops and reports",
        target.pid,
        start.target.comm,
        if threads == 1 { "" } else { "s" },
        start.sources.iter().filter(|s| s.attached).count(),
        start.sources.len()
    )
}

/// Says how the kernel follows a cgroup (startup message).
fn cgroup_method(sources: &[numatrace_core::kernel_status::SourceStatus], path: &str) -> String {
    match sources.iter().find(|s| s.name == crate::kernel::sources::CGROUP_JOINS.name) {
        Some(s) if s.attached => format!(
            "numatrace: cgroup {path}: its processes and their children are filtered by process id in the kernel; \
             processes moved into it or created in it later join by cgroup id ({})",
            s.hooks.join(", ")
        ),
        _ => format!(
            "numatrace: cgroup {path}: only its processes now and their children are traced; processes moved into \
             it later are not (cgroup joins unavailable, see above)"
        ),
    }
}

/// Waits briefly for a started command to be reaped, so its exit code is known.
fn wait_exit(target: &Target, expect_exit: bool) -> Option<i32> {
    target.command.as_ref()?;
    let deadline = Instant::now() + if expect_exit { Duration::from_secs(5) } else { Duration::ZERO };
    loop {
        if let Some(code) = target.reap() {
            return Some(code);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Folds an event made outside the ring and passes it to the sink.
fn record(agg: &mut Aggregator, sink: &mut Option<&mut dyn EventSink>, event: &Event) -> Result<()> {
    agg.ingest(event);
    if let Some(sink) = sink.as_deref_mut() {
        sink.record(event)?;
    }
    Ok(())
}

/// Events decoded from the ring before they are folded together: enough for
/// `Aggregator::ingest_batch` to overlap its memory loads, small enough to stay in cache.
const DRAIN_BATCH: usize = 256;

/// How often threads' run time is read under an overhead budget (else every 100 ms for a few threads).
const BUDGET_RUN_TIME_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads every record in the ring, folds them in batches and passes them to
/// the sink in ring order. Records are copied out (decoded) because a ring item
/// must be released before the next one can be read. Returns the processes
/// that joined the traced cgroup meanwhile.
fn drain(
    ring: &mut RingBuf<MapData>,
    agg: &mut Aggregator,
    sink: &mut Option<&mut dyn EventSink>,
    stacks: &mut Option<StackCollector>,
) -> Result<Vec<u32>> {
    let mut joined = Vec::new();
    let mut batch: Vec<Event> = Vec::with_capacity(DRAIN_BATCH);
    while let Some(item) = ring.next() {
        match Event::decode(&item) {
            Ok(event) => {
                if let Event::TaskNew(e) = &event
                    && e.parent_tid == JOINED_CGROUP
                    && e.is_thread == 0
                {
                    joined.push(e.header.tgid);
                }
                agg.count_ring_record(&event);
                if let Some(stacks) = stacks.as_mut() {
                    stacks.observe(&event);
                }
                batch.push(event);
                if batch.len() == DRAIN_BATCH {
                    fold_batch(&mut batch, agg, sink)?;
                }
            }
            Err(_) => {
                // Keeps the sink's order: what came before the bad record goes first.
                fold_batch(&mut batch, agg, sink)?;
                agg.count_undecodable();
                if let Some(sink) = sink.as_deref_mut() {
                    sink.undecodable(&item)?;
                }
            }
        }
    }
    fold_batch(&mut batch, agg, sink)?;
    if let Some(stacks) = stacks.as_mut() {
        stacks.refresh();
    }
    Ok(joined)
}

/// The other threads of processes that joined the traced cgroup: the kernel
/// saw only the process move (its leader), so their names come from /proc,
/// and they are tracked like threads found at the start.
fn complete_joined(
    joined: &[u32],
    probes: &mut Probes,
    agg: &mut Aggregator,
    sink: &mut Option<&mut dyn EventSink>,
) -> Result<()> {
    if joined.is_empty() {
        return Ok(());
    }
    let known: BTreeSet<u32> = joined.iter().copied().collect();
    let threads = processes::threads_of(joined, &known);
    probes.track_threads(&threads.iter().map(|t| (t.tid, t.tgid)).collect::<Vec<_>>())?;
    let now = monotonic_ns();
    // A thread gone since has no CPU: nothing to name.
    for t in threads.into_iter().filter(|t| t.cpu.is_some()) {
        let mut comm = [0u8; numatrace_common::COMM_LEN];
        let name = t.comm.as_bytes();
        let len = name.len().min(comm.len() - 1);
        comm[..len].copy_from_slice(&name[..len]);
        let event = Event::TaskNew(numatrace_common::TaskNewEvent {
            header: numatrace_common::EventHeader {
                kind: numatrace_common::EventKind::TaskNew as u32,
                cpu: t.cpu.unwrap_or(u32::MAX),
                ts_ns: now,
                tgid: t.tgid,
                tid: t.tid,
            },
            parent_tid: t.tgid,
            is_thread: 1,
            comm,
        });
        record(agg, sink, &event)?;
    }
    Ok(())
}

/// Folds a drained batch, records it in the sink, and empties it.
fn fold_batch(batch: &mut Vec<Event>, agg: &mut Aggregator, sink: &mut Option<&mut dyn EventSink>) -> Result<()> {
    agg.ingest_batch(batch);
    if let Some(sink) = sink.as_deref_mut() {
        for event in batch.iter() {
            sink.record(event)?;
        }
    }
    batch.clear();
    Ok(())
}

struct PidFd(i32);
impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> i32 {
        self.0
    }
}

/// What the event loop reads.
struct LoopContext<'a> {
    opts: &'a SessionOptions,
    target: &'a Target,
    /// The other processes traced from the start (or the cgroup): the
    /// capture ends when all are gone.
    others: &'a Others,
    started: Instant,
    /// The "tracing" line, printed once the signal handlers are in place.
    announce: String,
}

/// What the event loop folds events into.
struct LoopState<'a, 's> {
    agg: &'a mut Aggregator,
    sink: &'a mut Option<&'s mut dyn EventSink>,
    snapshots: &'a mut Snapshots,
    probes: &'a mut Probes,
    budget: &'a mut Option<Budget>,
    stacks: &'a mut Option<StackCollector>,
}

/// Drains the ring as it becomes readable (and on each tick), until the
/// target exits, the duration ends, or a signal stops the capture.
async fn event_loop(
    ctx: &LoopContext<'_>,
    ring: RingBuf<MapData>,
    state: LoopState<'_, '_>,
) -> Result<(StopReason, RingBuf<MapData>)> {
    let LoopContext { opts, target, others, started, ref announce } = *ctx;
    let LoopState { agg, sink, snapshots, probes, budget, stacks } = state;
    // SAFETY: the ring owns its map fd until into_inner below; the pidfd is owned by
    // `target`, which outlives this loop.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("watching the event ring: {e}"))?;
    let exited = unsafe { AsyncFd::register_with_interest(PidFd(target.pidfd.as_raw_fd()), Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("watching the target: {e}"))?;
    // One process: its pidfd wakes the loop. Several: checked on each tick
    // (the first's pidfd stays readable once it exits, so it cannot wake us).
    let one_process = others.is_empty();
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    // Only now: a Ctrl-C from here on stops the capture and reports.
    eprintln!("{announce}");
    // Exited processes no longer traced: their ids may come back as other processes.
    let mut untracked = std::collections::BTreeSet::new();
    let mut tick = tokio::time::interval(opts.drain_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = opts.duration.map(|d| tokio::time::Instant::from_std(started + d));
    let mut progress = Progress::new(opts.progress, target.pid, started, opts.duration);
    let mut run_time = match budget {
        Some(_) => Sampler::at_least(BUDGET_RUN_TIME_EVERY),
        None => Sampler::new(),
    };
    let stopped_by = loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let joined = drain(guard.get_inner_mut(), agg, sink, stacks)?;
                guard.clear_ready();
                complete_joined(&joined, probes, agg, sink)?;
            }
            _ = tick.tick() => {
                let joined = drain(ring.get_mut(), agg, sink, stacks)?;
                complete_joined(&joined, probes, agg, sink)?;
                if let Some(budget) = budget.as_mut() {
                    budget.tick(probes, monotonic_ns())?;
                    if let Some(sink) = sink.as_deref_mut() {
                        sink.sampling(budget.facts())?;
                    }
                }
                snapshots.maybe_take(target.pid, || {
                    if one_process {
                        return Vec::new();
                    }
                    super::processes::live_others(
                        agg.threads.values().map(|t| (t.tgid, t.exited_ns.is_some())),
                        target.pid,
                    )
                });
                if !one_process && others.all_exited(target) {
                    break StopReason::TargetExit;
                }
                if !one_process {
                    let threads = agg.threads.values().map(|t| (t.tgid, t.exited_ns.is_some()));
                    probes.untrack_processes(&super::processes::newly_exited(threads, target.pid, &mut untracked));
                }
                for event in run_time.maybe_sample(agg, monotonic_ns()) {
                    record(agg, sink, &event)?;
                }
                let progress_due = progress.due();
                // Read after the drain: events up to now are in, or still in
                // flight by at most a few records.
                let at_ns = monotonic_ns();
                let kernel = if sink.is_some() || progress_due {
                    Some(probes.totals().context("reading the kernel's counters")?)
                } else {
                    None
                };
                if let Some(sink) = sink.as_deref_mut() {
                    if let Some(kernel) = &kernel {
                        sink.kernel_totals(at_ns, kernel)?;
                    }
                    sink.tick()?;
                }
                if progress_due {
                    let lost = kernel.map_or(0, |k| k.loss.values().map(|l| l.events).sum::<u64>());
                    progress.draw(agg, lost);
                }
            }
            _ = exited.readable(), if one_process => break StopReason::TargetExit,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break StopReason::Duration,
            _ = sigint.recv() => break StopReason::CtrlC,
            _ = sigterm.recv() => break StopReason::Sigterm,
        }
    };
    progress.clear();
    Ok((stopped_by, ring.into_inner()))
}
