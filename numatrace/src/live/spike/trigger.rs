//! What fires a spike trigger: the `--trigger` rule grammar (a rate over a
//! threshold), the meter that sums a rate over the last second, and the
//! `--trigger-cmd` probe that runs once a second. SIGUSR1 is wired in
//! [`super::SpikeRing::new`].
use std::{
    collections::VecDeque,
    fmt,
    str::FromStr,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use numatrace_core::{event::Event, machine::Topology};

/// A per-second rate a trigger watches, counted from the events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rate {
    /// Thread migrations between CPUs of different nodes.
    CrossNodeMigrations,
    /// Pages first touched on a node other than the toucher's.
    RemoteFirstTouch,
    /// NUMA hinting faults the kernel counted as remote.
    HintingFaultsRemote,
    /// Pages migrated (any reason).
    PageMigrations,
}

impl Rate {
    /// Every rate, in the order of [`Rate::name`] lists.
    pub const ALL: [Rate; 4] =
        [Rate::CrossNodeMigrations, Rate::RemoteFirstTouch, Rate::HintingFaultsRemote, Rate::PageMigrations];

    /// The rate's name in `--trigger` rules.
    pub fn name(self) -> &'static str {
        match self {
            Rate::CrossNodeMigrations => "cross_node_migrations",
            Rate::RemoteFirstTouch => "remote_first_touch",
            Rate::HintingFaultsRemote => "hinting_faults_remote",
            Rate::PageMigrations => "page_migrations",
        }
    }

    /// How much of this rate one event adds.
    pub(super) fn amount(self, event: &Event, topology: &Topology) -> u64 {
        let node = |cpu: i32| u32::try_from(cpu).ok().and_then(|c| topology.node_of_cpu(c));
        match (self, event) {
            (Rate::CrossNodeMigrations, Event::TaskMigration(e)) => match (node(e.orig_cpu), node(e.dest_cpu)) {
                (Some(a), Some(b)) if a != b => 1,
                _ => 0,
            },
            (Rate::RemoteFirstTouch, Event::FirstTouch(e)) if e.cpu_node != e.page_node => e.pages,
            (Rate::HintingFaultsRemote, Event::HintingFault(e)) if e.local == 0 => u64::from(e.faults),
            (Rate::PageMigrations, Event::PageMigration(e)) => e.succeeded,
            _ => 0,
        }
    }
}

/// `--trigger`: fire when `rate` exceeds `per_second` over the last second.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerRule {
    pub rate: Rate,
    pub per_second: f64,
}

impl FromStr for TriggerRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let names = Rate::ALL.map(Rate::name).join(", ");
        let (name, limit) = s
            .split_once('>')
            .ok_or_else(|| format!("expected RATE>NUMBER/s, e.g. cross_node_migrations>100/s (rates: {names})"))?;
        let rate = Rate::ALL
            .into_iter()
            .find(|r| r.name() == name.trim())
            .ok_or_else(|| format!("unknown rate '{}' (rates: {names})", name.trim()))?;
        let limit = limit.trim();
        let number = limit.strip_suffix("/s").unwrap_or(limit).trim();
        let per_second: f64 =
            number.parse().map_err(|_| format!("'{limit}' is not a rate: expected a number per second, e.g. 100/s"))?;
        if !per_second.is_finite() || per_second < 0.0 {
            return Err(format!("'{limit}' is not a rate: expected a number >= 0"));
        }
        Ok(TriggerRule { rate, per_second })
    }
}

impl fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}>{}/s", self.rate.name(), self.per_second)
    }
}

/// Sum of a rate over the last second of event time.
#[derive(Default)]
pub(super) struct Meter {
    recent: VecDeque<(u64, u64)>,
    sum: u64,
}

impl Meter {
    pub(super) fn add(&mut self, ts_ns: u64, amount: u64) -> u64 {
        if amount > 0 {
            self.recent.push_back((ts_ns, amount));
            self.sum += amount;
        }
        let from = ts_ns.saturating_sub(1_000_000_000);
        while let Some(&(t, a)) = self.recent.front() {
            if t >= from {
                break;
            }
            self.recent.pop_front();
            self.sum -= a;
        }
        self.sum
    }
}

/// Runs the probe command once a second; flags each failure.
pub(super) fn probe_loop(command: &str, failed: &AtomicBool) {
    loop {
        match std::process::Command::new("sh").arg("-c").arg(command).stdin(std::process::Stdio::null()).status() {
            Ok(status) if !status.success() => failed.store(true, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => {
                eprintln!("numatrace: --trigger-cmd cannot run ({e}); only other triggers remain");
                return;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
