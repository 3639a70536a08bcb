//! Catching the spike: a sink that keeps only the last `--ring` window of
//! events in bounded memory and saves a capture of it when a trigger fires
//! (SIGUSR1, a rate over a threshold, or a probe command that fails), plus
//! `--after` of what follows; then waits out `--cooldown` and can fire again.
mod trigger;

use std::{
    collections::{BTreeMap, VecDeque},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use numatrace_core::{
    capture::{self, sink::EventSink},
    event::{Event, comm_str},
    facts::{EndFacts, InitialThread, StartFacts, StopReason},
    kernel_status::{KernelTotals, LostCount},
};

use anyhow::{Context, Result};

use self::trigger::{Meter, probe_loop};
pub use self::trigger::{Rate, TriggerRule};
use super::session::monotonic_ns;

/// Memory the ring may hold by default, whatever the window.
pub const DEFAULT_MAX_BYTES: usize = 128 << 20;

/// How the spike ring behaves.
#[derive(Clone, Debug)]
pub struct SpikeOptions {
    /// How much time before a trigger a capture holds.
    pub window: Duration,
    /// How much time after a trigger it holds.
    pub after: Duration,
    /// Triggers within this long of the last one are ignored.
    pub cooldown: Duration,
    pub rules: Vec<TriggerRule>,
    /// A shell command run once a second; failing fires.
    pub command: Option<String>,
    /// Captures go to `<prefix>-<n>.ntrace`.
    pub prefix: PathBuf,
    /// Memory cap of the ring, bytes.
    pub max_bytes: usize,
}

/// A trigger that fired and whose after-window is still open.
#[derive(Clone, Debug)]
struct Pending {
    at_ns: u64,
    reason: String,
}

/// Events of one kind that the memory cap pushed out, all from one interval
/// between two readings of the kernel's counters (so that a window, which
/// starts and ends at readings, holds whole runs).
#[derive(Clone, Debug)]
struct CappedRun {
    /// The reading the interval starts at (monotonic ns).
    interval_ns: u64,
    /// The first dropped event's time.
    first_ts_ns: u64,
    kind: &'static str,
    lost: LostCount,
}

/// The span a saved capture covers, and what the kernel counted over it.
struct Span {
    from_ns: u64,
    /// Exclusive.
    to_ns: u64,
    kernel: KernelTotals,
}

/// The spike ring, fed by a live session.
pub struct SpikeRing {
    opts: SpikeOptions,
    start: Option<StartFacts>,
    ring: VecDeque<Event>,
    /// Threads as they were just before the ring's first event.
    base_threads: BTreeMap<u32, InitialThread>,
    meters: BTreeMap<Rate, Meter>,
    pending: Option<Pending>,
    /// No trigger fires before this (monotonic ns).
    quiet_until_ns: u64,
    usr1: Arc<AtomicBool>,
    command_failed: Arc<AtomicBool>,
    /// The kernel's counters as read during the run (once they arrive, the
    /// start counts as a reading of zeros): a window starts and ends at
    /// readings, so that it carries the kernel's counts over exactly its span.
    readings: VecDeque<(u64, KernelTotals)>,
    /// Window events the memory cap pushed out, coalesced per interval and kind.
    capped: VecDeque<CappedRun>,
    /// Events dropped because the ring hit its memory cap.
    pub dropped: u64,
    /// Captures written so far.
    pub written: Vec<PathBuf>,
    /// The overhead budget's sampling as of the last tick (none without a budget).
    sampling: Option<numatrace_core::sampling::SamplingFacts>,
}

const EVENT_BYTES: usize = size_of::<Event>();

impl SpikeRing {
    /// A ring with these options; listens for SIGUSR1 and starts the probe command.
    pub fn new(opts: SpikeOptions) -> Result<SpikeRing> {
        let usr1 = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&usr1))
            .context("listening for SIGUSR1")?;
        let command_failed = Arc::new(AtomicBool::new(false));
        if let Some(command) = opts.command.clone() {
            let failed = Arc::clone(&command_failed);
            std::thread::Builder::new()
                .name("trigger-cmd".into())
                .spawn(move || probe_loop(&command, &failed))
                .context("starting the --trigger-cmd thread")?;
        }
        Ok(SpikeRing::without_signals(opts, usr1, command_failed))
    }

    /// A ring whose manual triggers are these flags (tests set them).
    pub fn without_signals(opts: SpikeOptions, usr1: Arc<AtomicBool>, command_failed: Arc<AtomicBool>) -> SpikeRing {
        let meters = opts.rules.iter().map(|r| (r.rate, Meter::default())).collect();
        SpikeRing {
            opts,
            start: None,
            ring: VecDeque::new(),
            base_threads: BTreeMap::new(),
            meters,
            pending: None,
            quiet_until_ns: 0,
            usr1,
            command_failed,
            readings: VecDeque::new(),
            capped: VecDeque::new(),
            dropped: 0,
            written: Vec::new(),
            sampling: None,
        }
    }

    fn fire(&mut self, now_ns: u64, reason: String) {
        if self.pending.is_some() || now_ns < self.quiet_until_ns {
            return;
        }
        let since = self.start.as_ref().map_or(0, |s| now_ns.saturating_sub(s.start_ns));
        eprintln!(
            "numatrace: trigger at +{:.1} s: {reason}; saving in {:.1} s",
            since as f64 / 1e9,
            self.opts.after.as_secs_f64()
        );
        self.pending = Some(Pending { at_ns: now_ns, reason });
        self.quiet_until_ns = now_ns.saturating_add(self.opts.cooldown.as_nanos() as u64);
    }

    /// The time of the latest counter reading at or before `ns`; `ns`
    /// itself where there is none to align to.
    fn reading_at_or_before(&self, ns: u64) -> u64 {
        match self.readings.partition_point(|(at, _)| *at <= ns) {
            0 => ns,
            i => self.readings[i - 1].0,
        }
    }

    /// Drops events older than the window (or the open capture's window),
    /// folding them into the thread table; the window reaches back to the
    /// counter reading before it.
    fn evict(&mut self, now_ns: u64) {
        let window = self.opts.window.as_nanos() as u64;
        let mut keep_from = now_ns.saturating_sub(window);
        if let Some(p) = &self.pending {
            keep_from = keep_from.min(p.at_ns.saturating_sub(window));
        }
        let keep_from = self.reading_at_or_before(keep_from);
        while let Some(front) = self.ring.front() {
            let ts = front.header().ts_ns;
            let over_cap = self.ring.len() * EVENT_BYTES > self.opts.max_bytes;
            if ts >= keep_from && !over_cap {
                break;
            }
            let Some(event) = self.ring.pop_front() else { break };
            if ts >= keep_from {
                self.note_capped(&event);
            }
            apply_to_threads(&mut self.base_threads, &event);
        }
        // Readings and capped runs older than the oldest window still wanted.
        while self.readings.len() > 1 && self.readings[1].0 <= keep_from {
            self.readings.pop_front();
        }
        while self.capped.front().is_some_and(|r| r.interval_ns < keep_from) {
            self.capped.pop_front();
        }
    }

    /// Counts an event of a window that the memory cap pushed out.
    fn note_capped(&mut self, event: &Event) {
        self.dropped += 1;
        let ts = event.header().ts_ns;
        let interval_ns = self.reading_at_or_before(ts);
        let kind = event.kind().map_or("unknown", |k| k.name());
        let units = event.units();
        match self.capped.iter_mut().rev().take_while(|r| r.interval_ns == interval_ns).find(|r| r.kind == kind) {
            Some(run) => {
                run.lost.events += 1;
                run.lost.units += units;
            }
            None => self.capped.push_back(CappedRun {
                interval_ns,
                first_ts_ns: ts,
                kind,
                lost: LostCount { events: 1, units },
            }),
        }
    }

    /// The span to save for a window wanted from `wanted_from_ns` to now:
    /// from the counter reading at or before its start to the latest
    /// reading, with the kernel's counts between the two. Without a reading
    /// since the window's start (none arrive where the kernel's counters
    /// cannot be read), the wanted span without kernel counts.
    fn span(&self, wanted_from_ns: u64, now_ns: u64) -> Span {
        let from_ns = self.reading_at_or_before(wanted_from_ns);
        let base = self.readings.iter().rev().find(|(at, _)| *at <= from_ns);
        let last = self.readings.iter().rev().find(|(at, _)| *at <= now_ns);
        match (base, last) {
            (Some((from, base)), Some((to, last))) if to > from => {
                Span { from_ns: *from, to_ns: *to, kernel: last.since(base) }
            }
            _ => Span { from_ns: wanted_from_ns, to_ns: now_ns.saturating_add(1), kernel: KernelTotals::default() },
        }
    }

    /// Writes the open capture (window before the trigger, and what came after).
    fn save(&mut self, now_ns: u64) -> Result<()> {
        let Some(pending) = self.pending.take() else { return Ok(()) };
        let Some(start) = self.start.as_ref() else { return Ok(()) };
        let wanted_from = pending.at_ns.saturating_sub(self.opts.window.as_nanos() as u64).max(start.start_ns);
        let span = self.span(wanted_from, now_ns);
        let exact = !span.kernel.counters.is_empty();
        let mut threads = self.base_threads.clone();
        let mut events: Vec<&Event> = Vec::new();
        for event in &self.ring {
            let ts = event.header().ts_ns;
            if ts < span.from_ns {
                apply_to_threads(&mut threads, event);
            } else if ts < span.to_ns {
                events.push(event);
            }
        }
        let mut dropped: BTreeMap<String, LostCount> = BTreeMap::new();
        for run in &self.capped {
            let inside = if exact {
                (span.from_ns..span.to_ns).contains(&run.interval_ns)
            } else {
                (span.from_ns..span.to_ns).contains(&run.first_ts_ns)
            };
            if inside {
                let d = dropped.entry(run.kind.to_string()).or_default();
                d.events += run.lost.events;
                d.units += run.lost.units;
            }
        }
        let facts =
            StartFacts { start_ns: span.from_ns, initial_threads: threads.into_values().collect(), ..start.clone() };
        let mut end = EndFacts::cut_short(
            span.to_ns.saturating_sub(span.from_ns) as f64 / 1e9,
            StopReason::Trigger(pending.reason.clone()),
        );
        end.kernel = span.kernel;
        end.dropped_by_memory_cap = dropped;
        end.sampling = self.sampling.clone();
        let n = self.written.len() + 1;
        let stem = self.opts.prefix.to_string_lossy();
        let stem = stem.strip_suffix(".ntrace").unwrap_or(&stem);
        let path = PathBuf::from(format!("{stem}-{n}.ntrace"));
        capture::write_path(&path, &facts, events.iter().map(|e| e.encode()), &end)?;
        eprintln!(
            "numatrace: saved {:.1} s before and {:.1} s after the trigger ({} events) to {}",
            pending.at_ns.saturating_sub(span.from_ns) as f64 / 1e9,
            span.to_ns.saturating_sub(pending.at_ns) as f64 / 1e9,
            events.len(),
            path.display()
        );
        self.written.push(path);
        Ok(())
    }

    /// Fires manual triggers, saves a capture whose after-window closed, and trims the ring.
    pub fn tick_at(&mut self, now_ns: u64) -> Result<()> {
        if self.usr1.swap(false, Ordering::Relaxed) {
            self.fire(now_ns, "SIGUSR1".into());
        }
        if self.command_failed.swap(false, Ordering::Relaxed) {
            self.fire(now_ns, format!("`{}` failed", self.opts.command.as_deref().unwrap_or("")));
        }
        if let Some(p) = &self.pending
            && now_ns >= p.at_ns.saturating_add(self.opts.after.as_nanos() as u64)
        {
            self.save(now_ns)?;
        }
        self.evict(now_ns);
        Ok(())
    }

    /// Events in the ring now.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

/// What a thread table learns from one event.
fn apply_to_threads(threads: &mut BTreeMap<u32, InitialThread>, event: &Event) {
    let h = event.header();
    match event {
        Event::TaskNew(e) => {
            threads
                .insert(h.tid, InitialThread { tid: h.tid, tgid: h.tgid, comm: comm_str(&e.comm), cpu: Some(h.cpu) });
        }
        Event::TaskExit(_) => {
            threads.remove(&h.tid);
        }
        Event::TaskMigration(e) => {
            if let Some(t) = threads.get_mut(&h.tid) {
                t.cpu = u32::try_from(e.dest_cpu).ok();
            }
        }
        _ => {}
    }
}

impl EventSink for SpikeRing {
    fn sampling(&mut self, facts: &numatrace_core::sampling::SamplingFacts) -> Result<()> {
        self.sampling = Some(facts.clone());
        Ok(())
    }

    fn start(&mut self, facts: &StartFacts) -> Result<()> {
        self.base_threads = facts.initial_threads.iter().map(|t| (t.tid, t.clone())).collect();
        self.start = Some(facts.clone());
        let rules = self.opts.rules.iter().map(ToString::to_string).collect::<Vec<_>>();
        eprintln!(
            "numatrace: keeping the last {} in memory; triggers: SIGUSR1 (kill -USR1 {}){}{}",
            humantime::format_duration(self.opts.window),
            std::process::id(),
            if rules.is_empty() { String::new() } else { format!(", {}", rules.join(", ")) },
            self.opts.command.as_deref().map(|c| format!(", `{c}` failing")).unwrap_or_default()
        );
        Ok(())
    }

    fn record(&mut self, event: &Event) -> Result<()> {
        let ts = event.header().ts_ns;
        self.ring.push_back(*event);
        let mut fired = None;
        if let Some(start) = &self.start {
            for rule in &self.opts.rules {
                let Some(meter) = self.meters.get_mut(&rule.rate) else { continue };
                let sum = meter.add(ts, rule.rate.amount(event, &start.topology));
                if sum as f64 > rule.per_second && fired.is_none() {
                    fired = Some(format!("{} reached {sum}/s", rule));
                }
            }
        }
        if let Some(reason) = fired {
            self.fire(ts, reason);
        }
        if self.ring.len() * EVENT_BYTES > self.opts.max_bytes {
            self.evict(ts);
        }
        Ok(())
    }

    fn kernel_totals(&mut self, at_ns: u64, totals: &KernelTotals) -> Result<()> {
        if self.readings.is_empty() {
            // The kernel's counters start at zero with the capture.
            let start_ns = self.start.as_ref().map_or(at_ns, |s| s.start_ns);
            self.readings.push_back((start_ns, KernelTotals::default()));
        }
        self.readings.push_back((at_ns, totals.clone()));
        Ok(())
    }

    fn tick(&mut self) -> Result<()> {
        self.tick_at(monotonic_ns())
    }

    fn end(&mut self, _facts: &EndFacts) -> Result<()> {
        if self.pending.is_some() {
            self.save(monotonic_ns())?;
        }
        if self.dropped > 0 {
            eprintln!("numatrace: the ring hit its memory cap and dropped {} events from saved windows", self.dropped);
        }
        if self.written.is_empty() {
            eprintln!("numatrace: no trigger fired; nothing saved");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use numatrace_core::{
        capture::{read_path, synthetic},
        machine::Topology,
    };

    const S: u64 = 1_000_000_000;
    const T0: u64 = 100 * S;

    fn ring(dir: &std::path::Path, rules: &str, max_bytes: usize) -> (SpikeRing, Arc<AtomicBool>) {
        let usr1 = Arc::new(AtomicBool::new(false));
        let opts = SpikeOptions {
            window: Duration::from_secs(5),
            after: Duration::from_secs(2),
            cooldown: Duration::from_secs(20),
            rules: if rules.is_empty() { vec![] } else { vec![rules.parse().unwrap()] },
            command: None,
            prefix: dir.join("spike.ntrace"),
            max_bytes,
        };
        let mut r = SpikeRing::without_signals(opts, usr1.clone(), Arc::new(AtomicBool::new(false)));
        let topology = Topology::synthetic(&[vec![0, 1], vec![2, 3]]);
        r.start(&synthetic::start_facts(&topology, T0, 7, &[(7, "main", 0)])).unwrap();
        (r, usr1)
    }

    fn tmpdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("numatrace-spike-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The kernel's counters at the `i`-th 100 ms after T0: 3 migrations
    /// within a node counted and 1 first-touch event (2 pages) lost per 100 ms.
    fn counted(i: u64) -> KernelTotals {
        let mut counters = vec![0; numatrace_common::COUNTER_SLOTS as usize];
        counters[numatrace_common::Counter::WithinNodeMigrations as usize] = 3 * i;
        let loss = BTreeMap::from([("first_touch".to_string(), LostCount { events: i, units: 2 * i })]);
        KernelTotals { counters, loss, ..Default::default() }
    }

    /// Quiet first touches every 100 ms from `from` to `to` (seconds after
    /// T0), ticking as time passes, with a reading of the kernel's counters
    /// at each tick as the session makes.
    fn quiet(r: &mut SpikeRing, from: u64, to: u64) {
        for i in from * 10..to * 10 {
            let ts = T0 + i * S / 10;
            r.record(&synthetic::first_touch(ts, 7, 8, i, 1, 0, 0)).unwrap();
            r.kernel_totals(ts, &counted(i)).unwrap();
            r.tick_at(ts).unwrap();
        }
    }

    fn burst(r: &mut SpikeRing, at: u64, n: u64) {
        for k in 0..n {
            let cpu = if k % 2 == 0 { (0, 2) } else { (2, 0) };
            r.record(&synthetic::migration(T0 + at * S + k * 10_000_000, 7, 8, cpu.0, cpu.1)).unwrap();
        }
    }

    #[test]
    fn a_rate_over_its_threshold_saves_the_window_around_it() {
        let dir = tmpdir("rate");
        let (mut r, _) = ring(&dir, "cross_node_migrations>3/s", DEFAULT_MAX_BYTES);
        r.record(&synthetic::thread_new(T0 + S, 7, 8, 7, "worker", 1)).unwrap();
        quiet(&mut r, 1, 20);
        burst(&mut r, 20, 3);
        quiet(&mut r, 21, 22);
        assert!(r.written.is_empty(), "3/s is not over 3/s");
        burst(&mut r, 22, 4);
        quiet(&mut r, 23, 30);
        assert_eq!(r.written, vec![dir.join("spike-1.ntrace")]);
        let c = read_path(&r.written[0]).unwrap();
        assert!(c.complete && c.warnings.is_empty(), "{:?}", c.warnings);
        // 5 s before the 4th migration (at 22.03 s), back to the counter
        // reading at 17.0 s; 2 s after it, to the reading at 24.1 s.
        assert_eq!(c.start.start_ns, T0 + 17 * S);
        assert!(c.events.iter().all(|e| e.header().ts_ns >= T0 + 17 * S && e.header().ts_ns < T0 + 24 * S + S / 10));
        assert_eq!(c.events.iter().filter(|e| matches!(e, Event::TaskMigration(_))).count(), 7);
        // One a 100 ms where `quiet` ran: 17.0-19.9, 21.0-21.9 and 23.0-24.0 s.
        assert_eq!(c.events.iter().filter(|e| matches!(e, Event::FirstTouch(_))).count(), 30 + 10 + 11);
        assert!(c.end.stopped_by.to_string().contains("cross_node_migrations>3/s"), "{}", c.end.stopped_by);
        // The worker was born before the window: it is an initial thread of the saved capture.
        assert!(c.start.initial_threads.iter().any(|t| t.tid == 8 && t.comm == "worker"));
        let report = c.report();
        assert_eq!(report.totals.cross_node_migrations, 7);
        // The kernel's counts over the window's 71 intervals of 100 ms, not over the run.
        assert_eq!(report.totals.migrations_within_node_counted, 3 * 71);
        assert_eq!(report.totals.migrations, 7 + 3 * 71);
        assert_eq!(report.lost["first_touch"], LostCount { events: 71, units: 142 });
        assert_eq!(report.lost_events, 71);
    }

    #[test]
    fn events_the_memory_cap_pushed_out_of_a_window_are_counted_as_lost() {
        let dir = tmpdir("cap-lost");
        let (mut r, usr1) = ring(&dir, "", 20 * EVENT_BYTES);
        quiet(&mut r, 0, 10);
        usr1.store(true, Ordering::Relaxed);
        quiet(&mut r, 10, 13);
        let c = read_path(&r.written[0]).unwrap();
        // The window runs from the reading at 5.0 s to the one at 12.0 s: 70 events.
        assert_eq!((c.start.start_ns, c.end.duration_s), (T0 + 5 * S, 7.0));
        let dropped = c.end.dropped_by_memory_cap["first_touch"];
        assert!(!c.events.is_empty() && c.events.len() <= 21, "{}", c.events.len());
        assert_eq!(c.events.len() as u64 + dropped.events, 70);
        assert_eq!(dropped.units, dropped.events, "one page each");
        let report = c.report();
        // The kernel lost 70 events over the window too (one per 100 ms).
        assert_eq!(report.lost_events, 70 + dropped.events);
        assert!(
            numatrace_core::report::text::render(&report).contains("pushed out of the --ring window by its memory cap")
        );
    }

    #[test]
    fn fires_again_only_after_the_cooldown() {
        let dir = tmpdir("cooldown");
        let (mut r, usr1) = ring(&dir, "", DEFAULT_MAX_BYTES);
        quiet(&mut r, 0, 10);
        usr1.store(true, Ordering::Relaxed);
        quiet(&mut r, 10, 15);
        usr1.store(true, Ordering::Relaxed);
        quiet(&mut r, 15, 25);
        assert_eq!(r.written.len(), 1, "within the 20 s cool-down");
        usr1.store(true, Ordering::Relaxed);
        quiet(&mut r, 31, 35);
        assert_eq!(r.written.len(), 2);
        let c = read_path(&r.written[1]).unwrap();
        assert_eq!(c.end.stopped_by, StopReason::Trigger("SIGUSR1".into()));
        // Fired at 31.0 s: from the last counter reading at or before 26.0 s
        // (24.9 s, as nothing ran from 25 to 31 s) to the one at 33.0 s.
        assert_eq!(c.start.start_ns, T0 + 249 * S / 10);
        assert!((c.end.duration_s - 8.1).abs() < 1e-9, "{}", c.end.duration_s);
    }

    #[test]
    fn memory_stays_under_the_cap() {
        let dir = tmpdir("cap");
        let (mut r, _) = ring(&dir, "", 100 * EVENT_BYTES);
        quiet(&mut r, 0, 3);
        assert!(r.len() <= 100, "{}", r.len());
        let (mut r, _) = ring(&dir, "", DEFAULT_MAX_BYTES);
        quiet(&mut r, 0, 30);
        assert!(r.len() <= 51, "the window is 5 s of 10 events/s: {}", r.len());
    }

    #[test]
    fn parses_trigger_rules() {
        let r: TriggerRule = "cross_node_migrations>100/s".parse().unwrap();
        assert_eq!(r, TriggerRule { rate: Rate::CrossNodeMigrations, per_second: 100.0 });
        assert_eq!(" page_migrations > 5 ".parse::<TriggerRule>().unwrap().rate, Rate::PageMigrations);
        assert!("remote_first_touch>1e3/s".parse::<TriggerRule>().is_ok());
        assert!("bogus>1/s".parse::<TriggerRule>().unwrap_err().contains("unknown rate 'bogus'"));
        assert!("page_migrations".parse::<TriggerRule>().unwrap_err().contains("expected RATE>NUMBER/s"));
        assert!("page_migrations>-1".parse::<TriggerRule>().is_err());
        assert!("page_migrations>lots".parse::<TriggerRule>().is_err());
    }
}
