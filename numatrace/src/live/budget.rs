//! The overhead budget, live (`--overhead-budget`): measures numatrace's CPU
//! on every drain tick, lets the core's [`Controller`] decide, and applies
//! its setting (the `SAMPLING` map; unless `--no-budget-pauses`, detaching the
//! first-touch programs when the core's [`DutyCycle`] says).
//!
//! How the CPU is measured, each tick:
//! - numatrace's own process: `CLOCK_PROCESS_CPUTIME_ID` (exact, one call);
//! - its other programs (system calls, thread migrations...: never paused)
//!   at their share of one core in the last window;
//! - its first-touch programs: the machine's page faults and page
//!   allocations since the last tick (`/proc/vmstat`: each one runs a
//!   program, for a traced task or not) times a cost per fault-or-allocation
//!   calibrated from the kernel's own accounting (BPF run-time stats) in a
//!   window of one tick every second; in a window, the accounting itself.
//!
//! Why not the stats all the time: they add two clock reads to every run of
//! every BPF program of the machine (on this VM an empty program measures
//! ~80 ns a run with them on), so the measure would cost a good part of
//! what it measures. And why not the traced events alone: the programs also
//! run, and return early, for every fault of every other process; that
//! floor is what remains at the largest N, and only the machine's counts see it.
//!
//! The exporter's per-process first-touch counter is paused the same way
//! ([`Budget::pauses_only`]): its programs are another [`FirstTouchPrograms`].
use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use numatrace_core::sampling::{Controller, DutyCycle, Period, SamplingChange, SamplingFacts, Setting, Switch};

use crate::kernel::first_touch_programs::FirstTouchPrograms;

/// What `--overhead-budget` (and `--no-budget-pauses`) asked for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetOptions {
    /// Percent of one core.
    pub percent: f64,
    /// Whether the first-touch programs may be detached part of the time.
    pub pauses: bool,
}

/// How often a calibration window opens (it lasts one tick).
const WINDOW_EVERY_NS: u64 = 1_000_000_000;
/// Faults and allocations a window needs before its cost per event is trusted.
const MIN_WINDOW_EVENTS: u64 = 1_000;
/// Cost per fault-or-allocation until a window has measured one: the
/// bench's traced runs (~100-120 ns each), so that a burst at the start is
/// not underestimated.
const DEFAULT_NS_PER_EVENT: f64 = 120.0;

/// BPF run-time stats on, and the counts when they were turned on.
struct Window {
    _stats_on: OwnedFd,
    run_ns: u64,
    /// Run time of every other program of numatrace's (never paused).
    other_run_ns: u64,
    events: u64,
    started_ns: u64,
}

/// The live side of the budget over one capture.
pub struct Budget {
    controller: Controller,
    facts: SamplingFacts,
    last_ns: u64,
    last_events: u64,
    last_self_ns: u64,
    ns_per_event: f64,
    /// numatrace's other programs' share of one core (system calls, thread
    /// migrations, machine-wide), from the last window.
    other_programs_share: f64,
    window: Option<Window>,
    next_window_ns: u64,
    /// When the first-touch programs are attached (pauses below a duty of 1).
    cycle: DutyCycle,
    /// Whether every change is kept in the facts: a capture records them;
    /// the exporter runs for months and keeps only the totals.
    keeps_changes: bool,
}

impl Budget {
    /// Starts measuring now (the programs are attached).
    pub fn new(opts: BudgetOptions, now_ns: u64) -> Result<Budget> {
        Budget::with(Controller::new(opts.percent / 100.0, opts.pauses), opts, now_ns, true)
    }

    /// A budget that only pauses (nothing sampled by region): the
    /// exporter's counter of every page allocation (`percent` of one core).
    pub fn pauses_only(percent: f64, now_ns: u64) -> Result<Budget> {
        let opts = BudgetOptions { percent, pauses: true };
        Budget::with(Controller::pauses_only(percent / 100.0), opts, now_ns, false)
    }

    fn with(controller: Controller, opts: BudgetOptions, now_ns: u64, keeps_changes: bool) -> Result<Budget> {
        let facts = SamplingFacts {
            budget_percent: opts.percent,
            pauses_allowed: opts.pauses,
            changes: vec![SamplingChange { at_ns: now_ns, one_in: 1, attached: true }],
            ..Default::default()
        };
        Ok(Budget {
            controller,
            facts,
            last_ns: now_ns,
            last_events: faults_and_allocations().context("reading /proc/vmstat for the overhead budget")?,
            last_self_ns: self_cpu_ns(),
            ns_per_event: DEFAULT_NS_PER_EVENT,
            other_programs_share: 0.0,
            window: None,
            next_window_ns: now_ns,
            cycle: DutyCycle::new(now_ns),
            keeps_changes,
        })
    }

    /// One tick: measures the period since the last, steps the controller and applies its setting.
    pub fn tick(&mut self, probes: &mut impl FirstTouchPrograms, now_ns: u64) -> Result<()> {
        let wall_ns = now_ns.saturating_sub(self.last_ns);
        // Paused, no first-touch program runs: nothing to count (reading
        // /proc/vmstat ten times a second was a tenth of an idle capture's CPU).
        let events =
            if self.cycle.attached() { faults_and_allocations().unwrap_or(self.last_events) } else { self.last_events };
        let self_ns = self_cpu_ns();
        let period_events = events.saturating_sub(self.last_events);
        let mut kernel_ns = if self.cycle.attached() { (period_events as f64 * self.ns_per_event) as u64 } else { 0 };
        let mut other_ns = (wall_ns as f64 * self.other_programs_share) as u64;
        if let Some(window) = self.window.take() {
            // The kernel's own accounting for this period, and the cost per event for the next ones.
            let run_ns = probes.first_touch_run_time().0.saturating_sub(window.run_ns);
            let window_events = events.saturating_sub(window.events);
            if self.cycle.attached() && window_events >= MIN_WINDOW_EVENTS {
                self.ns_per_event = run_ns as f64 / window_events as f64;
                kernel_ns = run_ns;
            }
            let window_ns = now_ns.saturating_sub(window.started_ns);
            if window_ns > 0 {
                other_ns = probes.other_run_time().saturating_sub(window.other_run_ns);
                self.other_programs_share = other_ns as f64 / window_ns as f64;
            }
            self.next_window_ns = now_ns + WINDOW_EVERY_NS;
        } else if self.cycle.attached() && now_ns >= self.next_window_ns {
            // Off again when the window is dropped at the next tick.
            if let Ok(stats_on) = aya::sys::enable_stats(aya::sys::Stats::RunTime) {
                self.window = Some(Window {
                    _stats_on: stats_on,
                    run_ns: probes.first_touch_run_time().0,
                    other_run_ns: probes.other_run_time(),
                    events,
                    started_ns: now_ns,
                });
            }
        }
        let process_ns = self_ns.saturating_sub(self.last_self_ns);
        let attached_ns = if self.cycle.attached() { wall_ns } else { 0 };
        self.facts.measured_cpu_ns += kernel_ns + other_ns + process_ns;
        self.facts.measured_wall_ns += wall_ns;
        if !self.cycle.attached() {
            self.facts.paused_ns += wall_ns;
        }
        (self.last_ns, self.last_events, self.last_self_ns) = (now_ns, events, self_ns);

        let before = self.controller.setting();
        let period = Period { programs_ns: kernel_ns, process_ns, other_programs_ns: other_ns, attached_ns, wall_ns };
        if let Some(setting) = self.controller.step(period)
            && setting.shift != before.shift
        {
            probes.set_sampling(setting.shift)?;
            self.record(now_ns);
        }
        self.duty_cycle(probes, now_ns)
    }

    /// Detaches or attaches the first-touch programs as the core's duty
    /// cycle asks (never while a calibration window measures them).
    fn duty_cycle(&mut self, probes: &mut impl FirstTouchPrograms, now_ns: u64) -> Result<()> {
        let Setting { duty, .. } = self.controller.setting();
        match self.cycle.decide(duty, now_ns, self.window.is_some()) {
            Switch::Stay => return Ok(()),
            Switch::Pause => probes.pause_first_touch().context("pausing the first-touch programs")?,
            Switch::Resume => {
                probes.resume_first_touch().context("attaching the first-touch programs again")?;
                // The faults of the pause ran no program: count from here.
                self.last_events = faults_and_allocations().unwrap_or(self.last_events);
            }
        }
        self.cycle.switched(now_ns);
        self.record(now_ns);
        Ok(())
    }

    /// The sampling so far (its measure as of the last tick).
    pub fn facts(&self) -> &SamplingFacts {
        &self.facts
    }

    fn record(&mut self, now_ns: u64) {
        if !self.keeps_changes {
            return;
        }
        let one_in = self.controller.setting().one_in();
        self.facts.changes.push(SamplingChange { at_ns: now_ns, one_in, attached: self.cycle.attached() });
    }

    /// What the capture records, with the last stretch since the last tick
    /// (its kernel side estimated). Drops a calibration window still open.
    pub fn finish(mut self, now_ns: u64) -> SamplingFacts {
        let wall_ns = now_ns.saturating_sub(self.last_ns);
        let events =
            if self.cycle.attached() { faults_and_allocations().unwrap_or(self.last_events) } else { self.last_events };
        let kernel_ns = if self.cycle.attached() {
            (events.saturating_sub(self.last_events) as f64 * self.ns_per_event) as u64
        } else {
            self.facts.paused_ns += wall_ns;
            0
        };
        let other_ns = (wall_ns as f64 * self.other_programs_share) as u64;
        self.facts.measured_cpu_ns += kernel_ns + other_ns + self_cpu_ns().saturating_sub(self.last_self_ns);
        self.facts.measured_wall_ns += wall_ns;
        self.facts
    }
}

/// The machine's page faults and page allocations so far: each runs one
/// of the first-touch programs (`exceptions:page_fault_user`, `kmem:mm_page_alloc`).
fn faults_and_allocations() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/vmstat")?;
    Ok(parse_vmstat(&text))
}

fn parse_vmstat(text: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(key, _)| *key == "pgfault" || key.starts_with("pgalloc_"))
        .filter_map(|(_, value)| value.trim().parse::<u64>().ok())
        .sum()
}

/// CPU time of this process so far (all threads).
fn self_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_faults_and_every_zone_of_allocations_only() {
        let text = "nr_free_pages 10\npgalloc_dma 1\npgalloc_dma32 20\npgalloc_normal 300\npgalloc_movable 4000\npgfault 50000\npgmajfault 7\npgfree 9\n";
        assert_eq!(parse_vmstat(text), 54_321);
        assert_eq!(parse_vmstat(""), 0);
    }
}
