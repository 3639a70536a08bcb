//! The overhead budget (`--overhead-budget`): when numatrace's measured CPU
//! time exceeds it, first touches are traced in 1 of N 2 MiB regions (N a
//! power of two, adapted by [`Controller`]); the kernel still counts every
//! first-touch page, so totals stay exact and the traced share is known.
//! When even the largest N is over the budget (a hook attached to every page
//! fault costs something even when it returns at once), the controller may
//! pause the first-touch hooks for part of each cycle, if allowed.
//!
//! Pure: the live session measures and applies; this decides and records.
use numatrace_common::MAX_SAMPLING_SHIFT;
use serde::{Deserialize, Serialize};

/// The least share of each cycle the first-touch hooks stay attached once
/// pausing: below this the capture would say little about first touches.
pub const MIN_DUTY: f64 = 1.0 / 32.0;

/// What the budget settles: regions traced (1 in `2^shift`) and the share of
/// time the first-touch hooks are attached (1.0: always).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    pub shift: u32,
    pub duty: f64,
}

impl Setting {
    /// Everything traced, always attached: no budget, or one that is met.
    pub const FULL: Setting = Setting { shift: 0, duty: 1.0 };

    /// N: one region in this many is traced.
    pub fn one_in(&self) -> u64 {
        1u64 << self.shift
    }
}

/// One control period's measurement.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Period {
    /// CPU numatrace's first-touch programs spent in it (they run only while attached).
    pub programs_ns: u64,
    /// CPU numatrace's own process spent in it (attached or not).
    pub process_ns: u64,
    /// CPU numatrace's other programs spent in it (system calls, thread
    /// migrations and the like, machine-wide): never paused, never sampled,
    /// so like the process they are paid whatever the setting.
    pub other_programs_ns: u64,
    /// Time the first-touch programs were attached during it.
    pub attached_ns: u64,
    /// Length of the period.
    pub wall_ns: u64,
}

/// Weight of a new period in the process's smoothed share: its cost comes
/// in bursts (a /proc snapshot every few seconds), the programs' does not.
const PROCESS_SMOOTHING: f64 = 0.2;

/// CPU spent over the budget so far (the first periods, before N has
/// climbed, run everything) is paid back over this long: the budget holds
/// for the capture as a whole, not only from when the controller caught up.
const PAYBACK_NS: f64 = 10e9;

/// Time under the budget is saved up to this much of it: enough that the
/// pauses' on-off rhythm (an attached period over, paused ones under)
/// averages out, too little to pay for a burst.
const CREDIT_NS: f64 = 1e9;

/// Adapts N (and, when allowed, the programs' duty cycle) so that
/// numatrace's CPU stays under a share of one core.
///
/// Multiplicative steps up (a short burst of faults must be caught within a
/// few periods), one step down at a time and only well under the budget (a
/// band of 4x), so that the rate does not flap around the budget. The
/// process's own share and the other programs' are paid whatever the
/// setting: the first-touch programs get the rest of the budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Controller {
    /// Share of one core (0.01 = 1 %).
    budget: f64,
    allow_pause: bool,
    /// Whether N may climb: a capture traces 1 in N regions; a counter of
    /// every allocation (the exporter's) has no regions, only pauses.
    samples_regions: bool,
    setting: Setting,
    /// The share of one core the setting cannot change (the process and the
    /// other programs), smoothed (none before a period).
    process_share: Option<f64>,
    /// CPU spent beyond the budget since the start, not yet paid back
    /// (below zero: saved up, at most [`CREDIT_NS`] of the budget).
    over_ns: f64,
}

impl Controller {
    pub fn new(budget_share: f64, allow_pause: bool) -> Controller {
        Controller {
            budget: budget_share.max(0.0),
            allow_pause,
            samples_regions: true,
            setting: Setting::FULL,
            process_share: None,
            over_ns: 0.0,
        }
    }

    /// A controller that only pauses (N stays 1): for programs that count
    /// every event and have no regions to sample, like the exporter's
    /// per-process first-touch counter. Pauses start as soon as it is over.
    pub fn pauses_only(budget_share: f64) -> Controller {
        Controller { samples_regions: false, ..Controller::new(budget_share, true) }
    }

    pub fn setting(&self) -> Setting {
        self.setting
    }

    /// Takes one period's measurement; returns the new setting when it changes.
    pub fn step(&mut self, p: Period) -> Option<Setting> {
        if p.wall_ns == 0 {
            return None;
        }
        let now = (p.process_ns + p.other_programs_ns) as f64 / p.wall_ns as f64;
        let process = match self.process_share {
            Some(s) => s + (now - s) * PROCESS_SMOOTHING,
            None => now,
        };
        self.process_share = Some(process);
        let spent = (p.programs_ns + p.process_ns + p.other_programs_ns) as f64;
        self.over_ns = (self.over_ns + spent - self.budget * p.wall_ns as f64).max(-self.budget * CREDIT_NS);
        // Too little attached time to say what the attached programs cost.
        if p.attached_ns < p.wall_ns / 4 {
            return None;
        }
        let before = self.setting;
        // What the programs cost while attached, and what the budget leaves them.
        let programs_on = p.programs_ns as f64 / p.attached_ns as f64;
        let room = self.budget - process - self.over_ns / PAYBACK_NS;
        let s = &mut self.setting;
        if programs_on > room && programs_on > 0.0 {
            if self.samples_regions && s.shift < MAX_SAMPLING_SHIFT {
                // 1, 2 or 3 doublings, by how far over the budget it is.
                let over = (programs_on + process) / self.budget.max(f64::MIN_POSITIVE);
                let steps = if over < 2.0 {
                    1
                } else if over < 4.0 {
                    2
                } else {
                    3
                };
                s.shift = (s.shift + steps).min(MAX_SAMPLING_SHIFT);
            } else if self.allow_pause {
                s.duty = (room / programs_on).clamp(MIN_DUTY, 1.0);
            }
        } else if s.duty < 1.0 {
            // Paused part of the time: attach longer, as far as the budget allows.
            s.duty = (room / programs_on.max(f64::MIN_POSITIVE)).clamp(MIN_DUTY, 1.0);
        } else if s.shift > 0 && programs_on + process < self.budget / 4.0 {
            s.shift -= 1;
        }
        (*s != before).then_some(*s)
    }
}

/// One change of the sampling during a capture.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingChange {
    /// CLOCK_MONOTONIC, in the events' time base.
    pub at_ns: u64,
    /// One region in this many traced from here on.
    pub one_in: u64,
    /// Whether the first-touch hooks are attached from here on.
    pub attached: bool,
}

/// What a capture under an overhead budget records (absent without one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplingFacts {
    /// The budget, in percent of one core.
    pub budget_percent: f64,
    /// Whether the first-touch hooks could be paused (not `--no-budget-pauses`).
    pub pauses_allowed: bool,
    /// Every change of the sampling rate or the hooks' attachment, in time order.
    pub changes: Vec<SamplingChange>,
    /// numatrace's CPU over the capture as the controller measured it: its
    /// first-touch programs (estimated) and its own process.
    pub measured_cpu_ns: u64,
    /// Time the controller measured over (the capture, from attach to detach).
    pub measured_wall_ns: u64,
    /// Time the first-touch hooks were detached (pauses).
    pub paused_ns: u64,
}

impl SamplingFacts {
    /// The last N (1 when nothing changed).
    pub fn final_one_in(&self) -> u64 {
        self.changes.last().map_or(1, |c| c.one_in)
    }

    /// The largest N used.
    pub fn max_one_in(&self) -> u64 {
        self.changes.iter().map(|c| c.one_in).max().unwrap_or(1)
    }

    /// Whether anything was ever left out (sampled or paused).
    pub fn ever_sampled(&self) -> bool {
        self.changes.iter().any(|c| c.one_in > 1 || !c.attached)
    }
}

/// A sampled count scaled to the whole, with its relative standard error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// What the traced regions hold.
    pub traced: u64,
    /// `traced` scaled by all first-touch pages / traced ones.
    pub estimate: u64,
    /// Relative standard error of `estimate` (0.05 = ±5 %, one sigma).
    pub relative_error: f64,
}

/// Scales `per_region` (a count in each traced region) by the traced share
/// `p` of first-touch pages. Regions are drawn whole with probability about
/// `p`, so the estimate's variance is (1-p)/p² × Σ y² over the traced regions
/// (Horvitz-Thompson, cluster sampling): a count spread over many regions is
/// precise, one in a few regions is not.
pub fn estimate(per_region: impl IntoIterator<Item = u64>, p: f64) -> Estimate {
    let (mut sum, mut squares) = (0u64, 0f64);
    for y in per_region {
        sum += y;
        squares += (y as f64) * (y as f64);
    }
    if p.is_nan() || p <= 0.0 || p >= 1.0 {
        return Estimate { traced: sum, estimate: sum, relative_error: 0.0 };
    }
    let relative_error = if sum == 0 { 0.0 } else { ((1.0 - p) * squares).sqrt() / sum as f64 };
    Estimate { traced: sum, estimate: (sum as f64 / p).round() as u64, relative_error }
}

/// How long the first-touch programs stay attached in each pause cycle; the
/// pause after a stretch is as long as the duty asks.
pub const ATTACHED_PER_CYCLE_NS: u64 = 100_000_000;

/// What the duty cycle asks of the first-touch programs at a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    Stay,
    Pause,
    Resume,
}

/// The duty cycle below a duty of 1: an attached stretch, then a pause
/// `(1/duty - 1)` times as long as that stretch was. The pause is sized from
/// the stretch as it happened, not the nominal one: switches happen on ticks
/// (and never while a calibration window measures), so a stretch runs longer
/// than nominal and the programs would get more than the duty. The first
/// stretch (from the start, while N climbs) counts as nominal, and none as
/// more than twice it, so that a pause stays bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DutyCycle {
    attached: bool,
    /// When the programs were last attached or detached.
    switched_ns: u64,
    last_attached_ns: u64,
    paused_before: bool,
}

impl DutyCycle {
    /// Attached, from `now_ns`.
    pub fn new(now_ns: u64) -> DutyCycle {
        DutyCycle { attached: true, switched_ns: now_ns, last_attached_ns: ATTACHED_PER_CYCLE_NS, paused_before: false }
    }

    pub fn attached(&self) -> bool {
        self.attached
    }

    /// What to do at `now_ns` for `duty`; `measuring`: a calibration window
    /// is open (the programs must stay attached through it).
    pub fn decide(&self, duty: f64, now_ns: u64, measuring: bool) -> Switch {
        let since = now_ns.saturating_sub(self.switched_ns);
        if self.attached {
            if duty < 1.0 && since >= ATTACHED_PER_CYCLE_NS && !measuring { Switch::Pause } else { Switch::Stay }
        } else {
            let pause_ns = (self.last_attached_ns as f64 * (1.0 / duty - 1.0)) as u64;
            if duty >= 1.0 || since >= pause_ns { Switch::Resume } else { Switch::Stay }
        }
    }

    /// The switch `decide` asked for was made at `now_ns`.
    pub fn switched(&mut self, now_ns: u64) {
        if self.attached {
            if self.paused_before {
                self.last_attached_ns = now_ns.saturating_sub(self.switched_ns).min(2 * ATTACHED_PER_CYCLE_NS);
            }
            self.paused_before = true;
        }
        self.attached = !self.attached;
        self.switched_ns = now_ns;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn period(cpu_ms: u64, attached_ms: u64) -> Period {
        Period {
            programs_ns: cpu_ms * MS,
            process_ns: 0,
            other_programs_ns: 0,
            attached_ns: attached_ms * MS,
            wall_ns: 100 * MS,
        }
    }

    /// Runs `periods` 100 ms periods as the live side does, each attached or
    /// paused as the duty asks (the programs cost `programs_on_ms` per
    /// attached period; the process and the other programs theirs in every
    /// one); the setting at the end.
    fn run_for(c: &mut Controller, periods: usize, programs_on_ms: f64, process_ms: f64, other_ms: f64) -> Run {
        let ns = |ms: f64| (ms * MS as f64) as u64;
        let (mut attached_periods, mut all, mut spent_ms, mut duty_sum) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..periods {
            let attached = attached_periods < c.setting().duty * (all + 1.0);
            all += 1.0;
            attached_periods += f64::from(u8::from(attached));
            spent_ms += process_ms + other_ms + if attached { programs_on_ms } else { 0.0 };
            c.step(Period {
                programs_ns: if attached { ns(programs_on_ms) } else { 0 },
                process_ns: ns(process_ms),
                other_programs_ns: ns(other_ms),
                attached_ns: if attached { 100 * MS } else { 0 },
                wall_ns: 100 * MS,
            });
            if i >= periods / 2 {
                duty_sum += c.setting().duty;
            }
        }
        Run { share: spent_ms / (100.0 * all), duty: duty_sum / (periods - periods / 2) as f64, setting: c.setting() }
    }

    /// What [`run_for`] ran: numatrace's share of one core over it, and the
    /// mean duty over its second half.
    struct Run {
        share: f64,
        duty: f64,
        setting: Setting,
    }

    #[test]
    fn pays_back_what_the_first_periods_spent_over_the_budget() {
        // Everything attached until N has climbed, 4 % against 1 %: then below
        // the steady 1 % / 4 % while it pays that back.
        let mut c = Controller::new(0.01, true);
        let early = run_for(&mut c, 6, 4.0, 0.0, 0.0).setting;
        assert!(early.duty < 0.25 && early.duty >= MIN_DUTY, "{early:?}");
        // 30 s in all: the capture as a whole is back at the budget, within one
        // attached period's 3 ms over it (without the payback, the first half
        // second's 15 ms over would leave it at 1.05 %).
        let mut c = Controller::new(0.01, true);
        let run = run_for(&mut c, 300, 4.0, 0.0, 0.0);
        assert!(run.share <= 0.01 * 1.015, "{:.4} % of one core over the capture", run.share * 100.0);
        assert!((run.duty - 0.25).abs() < 0.02, "{}", run.duty);
    }

    #[test]
    fn no_change_while_under_budget_and_a_jump_by_how_far_over() {
        let mut c = Controller::new(0.01, false);
        assert_eq!(c.step(period(0, 100)), None);
        assert_eq!(c.step(period(1, 100)), None, "exactly at the budget holds");
        // 1.5x over: one doubling; 3x: two; 50x: three.
        for (cpu_ns, shift) in [(1_500_000, 1), (3 * MS, 2), (50 * MS, 3)] {
            let mut c = Controller::new(0.01, false);
            let got = c.step(Period {
                programs_ns: cpu_ns,
                attached_ns: 100 * MS,
                wall_ns: 100 * MS,
                process_ns: 0,
                other_programs_ns: 0,
            });
            assert_eq!(got, Some(Setting { shift, duty: 1.0 }), "{cpu_ns} ns of 100 ms");
        }
    }

    #[test]
    fn climbs_to_the_largest_n_and_stops_there_without_pauses() {
        let mut c = Controller::new(0.01, false);
        for _ in 0..10 {
            c.step(period(50, 100));
        }
        assert_eq!(c.setting(), Setting { shift: MAX_SAMPLING_SHIFT, duty: 1.0 });
        assert_eq!(c.step(period(50, 100)), None, "nothing further without pauses");
    }

    #[test]
    fn pauses_only_at_the_largest_n_and_only_as_much_as_the_budget_needs() {
        let mut c = Controller::new(0.01, true);
        let mut settings = Vec::new();
        for _ in 0..6 {
            settings.extend(c.step(period(4, 100)));
        }
        // 4 % while attached against 1 %: N climbs first, duty stays 1 until N is largest.
        assert!(settings.iter().all(|s| s.duty == 1.0 || s.shift == MAX_SAMPLING_SHIFT), "{settings:?}");
        assert_eq!(c.setting().shift, MAX_SAMPLING_SHIFT);
        // Once what the first periods spent over is paid back: attached a quarter of the time at 4 % is 1 %.
        let duty = run_for(&mut c, 3000, 4.0, 0.0, 0.0).duty;
        assert!((duty - 0.25).abs() < 0.02, "{duty}");
        // Far over: the duty never drops below its floor.
        c.step(Period {
            programs_ns: 90 * MS,
            process_ns: 0,
            other_programs_ns: 0,
            attached_ns: 100 * MS,
            wall_ns: 100 * MS,
        });
        assert_eq!(c.setting().duty, MIN_DUTY);
    }

    #[test]
    fn pauses_only_never_samples_and_pauses_at_once_as_much_as_the_budget_needs() {
        let mut c = Controller::pauses_only(0.01);
        // 4 % while attached against 1 %: straight to pausing, N stays 1.
        let first = c.step(period(4, 100)).expect("over the budget: a new setting");
        assert_eq!(first.shift, 0, "{first:?}");
        assert!(first.duty < 1.0 && first.duty >= MIN_DUTY, "{first:?}");
        let run = run_for(&mut c, 3000, 4.0, 0.0, 0.0);
        assert_eq!(run.setting.shift, 0);
        assert!((run.duty - 0.25).abs() < 0.02, "{}", run.duty);
        assert!(run.share <= 0.01 * 1.015, "{:.4} % of one core", run.share * 100.0);
        // Far over: the floor; and back to always attached once the cost drops.
        c.step(period(90, 100));
        assert_eq!(c.setting(), Setting { shift: 0, duty: MIN_DUTY });
        let calm = run_for(&mut c, 3000, 0.1, 0.0, 0.0);
        assert_eq!(calm.setting, Setting::FULL, "0.1 % under a 1 % budget: attached all the time");
        // Under the budget from the start: never paused.
        let mut c = Controller::pauses_only(0.01);
        assert_eq!(run_for(&mut c, 100, 0.5, 0.2, 0.1).setting, Setting::FULL);
    }

    #[test]
    fn pauses_only_leaves_the_programs_what_the_process_does_not_take() {
        // The exporter's process takes 0.5 % of the 1 %: the counter at 4 %
        // gets the other 0.5 %, an eighth of the time.
        let mut c = Controller::pauses_only(0.01);
        let duty = run_for(&mut c, 3000, 4.0, 0.5, 0.0).duty;
        assert!((duty - 0.125).abs() < 0.02, "{duty}");
        // Over the budget on its own: the floor, never detached for good.
        let mut c = Controller::pauses_only(0.01);
        assert_eq!(run_for(&mut c, 300, 4.0, 2.0, 0.0).setting.duty, MIN_DUTY);
    }

    #[test]
    fn the_other_programs_share_leaves_the_first_touch_programs_less() {
        let mut c = Controller::new(0.01, true);
        // The system-call and migration programs take 0.25 %, the process 0.25 %,
        // the first-touch programs 4 % while attached: they get the 0.5 % left.
        let p = Period {
            programs_ns: 4 * MS,
            process_ns: MS / 4,
            other_programs_ns: MS / 4,
            attached_ns: 100 * MS,
            wall_ns: 100 * MS,
        };
        for _ in 0..6 {
            c.step(p);
        }
        let duty = run_for(&mut c, 3000, 4.0, 0.25, 0.25).duty;
        assert!((duty - 0.125).abs() < 0.02, "(1 % - 0.5 %) / 4 %: {duty}");
    }

    #[test]
    fn the_process_own_share_leaves_the_programs_less_of_the_budget() {
        let mut c = Controller::new(0.01, true);
        // The process takes 0.5 % whether attached or not; the programs 4 % while attached.
        let p = Period {
            programs_ns: 4 * MS,
            process_ns: MS / 2,
            other_programs_ns: 0,
            attached_ns: 100 * MS,
            wall_ns: 100 * MS,
        };
        for _ in 0..6 {
            c.step(p);
        }
        assert_eq!(c.setting().shift, MAX_SAMPLING_SHIFT);
        let duty = run_for(&mut c, 3000, 4.0, 0.5, 0.0).duty;
        assert!((duty - 0.125).abs() < 0.02, "(1 % - 0.5 %) / 4 %: {duty}");
        // A paused period still updates the process's share (here: it grew), and says
        // nothing about the programs.
        assert_eq!(
            c.step(Period {
                programs_ns: 0,
                process_ns: 5 * MS,
                other_programs_ns: 0,
                attached_ns: 0,
                wall_ns: 100 * MS
            }),
            None
        );
        // Once the process alone takes the budget, the programs get the least duty.
        for _ in 0..20 {
            c.step(Period {
                programs_ns: 4 * MS,
                process_ns: 2 * MS,
                other_programs_ns: 0,
                attached_ns: 100 * MS,
                wall_ns: 100 * MS,
            });
        }
        assert_eq!(c.setting().duty, MIN_DUTY);
    }

    #[test]
    fn comes_back_down_one_step_at_a_time_once_well_under() {
        let mut c = Controller::new(0.01, true);
        for _ in 0..10 {
            c.step(period(2, 100));
        }
        assert_eq!(c.setting().shift, MAX_SAMPLING_SHIFT);
        assert!(c.setting().duty < 1.0);
        // The load is gone: attached again all the time first, then N halves per period.
        assert_eq!(c.step(period(0, 100)), Some(Setting { shift: MAX_SAMPLING_SHIFT, duty: 1.0 }));
        assert_eq!(c.step(period(0, 100)).map(|s| s.shift), Some(MAX_SAMPLING_SHIFT - 1));
        // Between a quarter of the budget and the budget: it holds.
        assert_eq!(
            c.step(Period {
                programs_ns: 500_000,
                process_ns: 0,
                other_programs_ns: 0,
                attached_ns: 100 * MS,
                wall_ns: 100 * MS
            }),
            None
        );
    }

    #[test]
    fn a_period_mostly_paused_says_nothing_about_the_cost_when_attached() {
        let mut c = Controller::new(0.01, true);
        assert_eq!(c.step(period(20, 10)), None);
        assert_eq!(c.step(Period::default()), None);
    }

    #[test]
    fn estimates_scale_by_the_traced_share_with_an_error_from_the_regions() {
        // 16 regions of 512 pages traced of about 128 (p = 1/8).
        let e = estimate(std::iter::repeat_n(512, 16), 0.125);
        assert_eq!(e.traced, 8192);
        assert_eq!(e.estimate, 65536);
        // sqrt(7/8 * 16 * 512²) / (16 * 512) = sqrt(7/8) / 4
        assert!((e.relative_error - (0.875f64).sqrt() / 4.0).abs() < 1e-9, "{e:?}");
        // The same pages in one region: far less precise.
        assert!(estimate([8192], 0.125).relative_error > 0.9);
        // Nothing sampled: exact.
        assert_eq!(estimate([3, 4], 1.0), Estimate { traced: 7, estimate: 7, relative_error: 0.0 });
    }

    #[test]
    fn facts_say_the_final_and_largest_n() {
        let mut f = SamplingFacts::default();
        assert_eq!(f.final_one_in(), 1);
        assert!(!f.ever_sampled());
        f.changes.push(SamplingChange { at_ns: 1, one_in: 64, attached: true });
        f.changes.push(SamplingChange { at_ns: 2, one_in: 8, attached: true });
        assert_eq!((f.final_one_in(), f.max_one_in()), (8, 64));
        assert!(f.ever_sampled());
    }

    /// Runs a duty cycle on 100 ms ticks for `ticks`; the attached share.
    fn attached_share(duty: f64, ticks: u64, measuring_every: Option<u64>) -> f64 {
        let tick = 100_000_000;
        let mut cycle = DutyCycle::new(0);
        let mut attached = 0;
        for i in 1..=ticks {
            let now = i * tick;
            if cycle.attached() {
                attached += tick;
            }
            let measuring = measuring_every.is_some_and(|every| i % every == 0);
            match cycle.decide(duty, now, measuring) {
                Switch::Stay => {}
                Switch::Pause | Switch::Resume => cycle.switched(now),
            }
        }
        attached as f64 / (ticks * tick) as f64
    }

    #[test]
    fn the_duty_cycle_gives_the_programs_their_duty() {
        assert_eq!(attached_share(1.0, 600, None), 1.0, "duty 1: never paused");
        for duty in [0.5, 0.25, MIN_DUTY] {
            let share = attached_share(duty, 6000, None);
            assert!((share - duty).abs() < duty * 0.1, "duty {duty}: attached {share}");
        }
        // Calibration windows hold a stretch longer; the pause after it is
        // sized from the stretch as it was, so the share still holds.
        let share = attached_share(0.25, 6000, Some(3));
        assert!((share - 0.25).abs() < 0.03, "attached {share}");
    }

    #[test]
    fn a_pause_is_bounded_and_a_full_duty_resumes_at_once() {
        let mut cycle = DutyCycle::new(0);
        assert_eq!(cycle.decide(0.5, 50_000_000, false), Switch::Stay, "a stretch is at least nominal");
        assert_eq!(cycle.decide(0.5, 100_000_000, true), Switch::Stay, "not while a window measures");
        assert_eq!(cycle.decide(0.5, 100_000_000, false), Switch::Pause);
        cycle.switched(100_000_000);
        assert_eq!(cycle.decide(0.5, 150_000_000, false), Switch::Stay);
        assert_eq!(cycle.decide(1.0, 150_000_000, false), Switch::Resume, "the budget is met again");
        assert_eq!(cycle.decide(0.5, 200_000_000, false), Switch::Resume);
        cycle.switched(200_000_000);
        // A 10 s stretch counts as 200 ms: the next pause at duty 1/32 is 6.2 s, not 310 s.
        cycle.switched(10_200_000_000);
        assert_eq!(cycle.decide(MIN_DUTY, 16_300_000_000, false), Switch::Stay);
        assert_eq!(cycle.decide(MIN_DUTY, 16_400_000_000, false), Switch::Resume);
    }
}
