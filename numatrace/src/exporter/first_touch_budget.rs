//! The exporter's `--overhead-budget`: the per-process remote first-touch
//! counter runs on every page allocation of the machine (about 100 ns
//! each), so on an allocation-heavy machine it alone can cost several
//! percent of a core. The capture's budget (`live::budget`, its core
//! controller in pauses-only mode: nothing here is sampled by region)
//! measures the exporter's CPU every tick and detaches that program for a
//! pause when it is over, attaching it again after (a duty cycle).
//!
//! Counts stay the kernel's, of the time the program was attached: never
//! scaled. What share of each refresh interval that was is served as
//! `numatrace_remote_first_touch_counted_ratio`.
use std::time::Instant;

use anyhow::Result;

use crate::{
    kernel::{first_touch_programs::FirstTouchPrograms, machine_counters::MachineCounters},
    live::budget::Budget,
};

/// The duty cycle of the first-touch counter under the budget.
pub struct FirstTouchBudget {
    budget: Budget,
    /// The clock the budget's times are on.
    started: Instant,
    /// The budget's measured and paused time at the last refresh.
    reported: Measured,
    /// Why the budget stopped (a detach or attach failed): the program's
    /// state is then no longer known to be attached.
    failed: Option<Stuck>,
}

impl std::fmt::Debug for FirstTouchBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstTouchBudget").field("reported", &self.reported).field("failed", &self.failed).finish()
    }
}

/// Time the budget measured over, and the part of it the counter was paused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Measured {
    wall_ns: u64,
    paused_ns: u64,
}

/// Where the counter was left when the budget stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stuck {
    Attached,
    Detached,
}

impl FirstTouchBudget {
    /// Starts the budget, `percent` of one core, with the counter attached.
    pub fn new(percent: f64) -> Result<FirstTouchBudget> {
        let started = Instant::now();
        Ok(FirstTouchBudget {
            budget: Budget::pauses_only(percent, 0)?,
            started,
            reported: Measured::default(),
            failed: None,
        })
    }

    /// One tick: measures and attaches or detaches the counter as the duty
    /// asks. A failure is said once; the counter is then attached again if
    /// it can be, and left as it is.
    pub fn tick(&mut self, counters: &mut MachineCounters) {
        if self.failed.is_some() {
            return;
        }
        let now_ns = self.started.elapsed().as_nanos() as u64;
        if let Err(err) = self.budget.tick(counters, now_ns) {
            let stuck = match counters.resume_first_touch() {
                Ok(()) => Stuck::Attached,
                Err(_) => Stuck::Detached,
            };
            eprintln!(
                "numatrace exporter: the overhead budget stopped, remote first touches are {} from now on: {err:#}",
                match stuck {
                    Stuck::Attached => "counted all the time",
                    Stuck::Detached => "no longer counted",
                }
            );
            self.failed = Some(stuck);
        }
    }

    /// The share of the time since the last call (a refresh) the counter
    /// was attached, as of the budget's last tick.
    pub fn counted_ratio(&mut self) -> f64 {
        match self.failed {
            Some(Stuck::Attached) => return 1.0,
            Some(Stuck::Detached) => return 0.0,
            None => {}
        }
        let facts = self.budget.facts();
        let now = Measured { wall_ns: facts.measured_wall_ns, paused_ns: facts.paused_ns };
        let ratio = attached_share(self.reported, now);
        self.reported = now;
        ratio
    }
}

/// The share of the time between two measures the counter was attached; 1
/// when no time was measured in between.
fn attached_share(before: Measured, now: Measured) -> f64 {
    let wall = now.wall_ns.saturating_sub(before.wall_ns);
    if wall == 0 {
        return 1.0;
    }
    let paused = now.paused_ns.saturating_sub(before.paused_ns).min(wall);
    (wall - paused) as f64 / wall as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_of_the_interval_since_the_last_refresh() {
        let m = |wall_ns, paused_ns| Measured { wall_ns, paused_ns };
        assert_eq!(attached_share(m(0, 0), m(0, 0)), 1.0, "nothing measured yet: nothing paused");
        assert_eq!(attached_share(m(0, 0), m(1_000, 0)), 1.0);
        assert_eq!(attached_share(m(1_000, 0), m(5_000, 3_000)), 0.25);
        assert_eq!(attached_share(m(5_000, 3_000), m(9_000, 7_000)), 0.0, "paused the whole interval");
        assert_eq!(attached_share(m(5_000, 3_000), m(6_000, 9_000)), 0.0, "never below 0");
    }
}
