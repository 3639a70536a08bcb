//! What the kernel side reported besides the events: per-source attach
//! status, hit counters, and events lost or sent. Filled by the loader,
//! stored in captures, read by the report.
use std::collections::BTreeMap;

use numatrace_common::Counter;
use serde::{Deserialize, Serialize};

/// What became of one source on this kernel.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceStatus {
    pub name: String,
    pub attached: bool,
    /// The kernel hooks used (e.g. `kprobe:migrate_misplaced_folio`).
    pub hooks: Vec<String>,
    /// Why it is not attached, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Attached, but not the cheapest way: why the preferred hooks were not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

/// What the kernel side counted besides the events, read at the end.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelTotals {
    /// Lost events per kind name (`first_touch`, ...).
    pub loss: BTreeMap<String, LostCount>,
    /// Raw per-program hit counters ([`numatrace_common::Counter`] order), summed over CPUs.
    pub counters: Vec<u64>,
    /// Events written to the ring per kind name, as the kernel counted them.
    #[serde(default)]
    pub sent: BTreeMap<String, u64>,
    /// Ring records userspace read per kind name (set by the session): equal
    /// to `sent` unless something between the ring and the aggregator failed.
    #[serde(default)]
    pub received: BTreeMap<String, u64>,
}

impl KernelTotals {
    /// One hit counter, summed over CPUs (0 where a capture predates it).
    pub fn counter(&self, counter: Counter) -> u64 {
        self.counters.get(counter as usize).copied().unwrap_or(0)
    }

    /// What the kernel counted after `earlier` was read: the counters and
    /// losses of a window of the run. `sent` and `received` stay empty: the
    /// records in flight at the window's edges would show as unread.
    pub fn since(&self, earlier: &KernelTotals) -> KernelTotals {
        let counters = self
            .counters
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(earlier.counters.get(i).copied().unwrap_or(0)))
            .collect();
        let loss = self
            .loss
            .iter()
            .filter_map(|(kind, now)| {
                let before = earlier.loss.get(kind).copied().unwrap_or_default();
                let lost = LostCount {
                    events: now.events.saturating_sub(before.events),
                    units: now.units.saturating_sub(before.units),
                };
                (lost.events > 0).then(|| (kind.clone(), lost))
            })
            .collect();
        KernelTotals { loss, counters, sent: BTreeMap::new(), received: BTreeMap::new() }
    }

    /// Events the kernel sent that userspace did not read, over all kinds.
    pub fn unread(&self) -> u64 {
        self.sent.iter().map(|(kind, sent)| sent.saturating_sub(self.received.get(kind).copied().unwrap_or(0))).sum()
    }
}

/// Events the ring had no room for, and the pages or faults they carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostCount {
    pub events: u64,
    pub units: u64,
}
