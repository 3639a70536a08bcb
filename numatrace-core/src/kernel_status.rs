//! What the kernel side reported besides the events: per-source attach
//! status, hit counters, and events lost or sent. Filled by the loader,
//! stored in captures, read by the report.
use std::collections::BTreeMap;

use numatrace_common::Counter;
use serde::{Deserialize, Serialize};

/// How a source's programs are attached to the kernel: the family of its
/// hooks (a `fentry` source may pair fentry with fexit, a `kprobe` one a
/// kprobe with a kretprobe).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    /// A raw tracepoint: the tracepoint's arguments, no event record built.
    RawTracepoint,
    /// A BTF-typed tracepoint: raw, reading kernel structs by BTF offsets.
    BtfTracepoint,
    /// A classic tracepoint: the kernel builds its event record per hit.
    Tracepoint,
    /// fentry/fexit on a kernel function (a BPF trampoline; needs BTF).
    Fentry,
    /// kprobe/kretprobe on a kernel function.
    Kprobe,
}

impl HookKind {
    /// Its name in JSON and text.
    pub fn name(self) -> &'static str {
        match self {
            HookKind::RawTracepoint => "raw_tracepoint",
            HookKind::BtfTracepoint => "btf_tracepoint",
            HookKind::Tracepoint => "tracepoint",
            HookKind::Fentry => "fentry",
            HookKind::Kprobe => "kprobe",
        }
    }
}

/// How much numatrace needs a source.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceRole {
    /// Without it numatrace cannot do its job (who first touched what, who moved).
    Core,
    /// Without it the report has less detail; the rest still works.
    Detail,
}

/// What became of one source on this kernel.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceStatus {
    pub name: String,
    pub attached: bool,
    /// The kernel hooks used (e.g. `kprobe:migrate_misplaced_folio`).
    pub hooks: Vec<String>,
    /// Their family, when attached (absent in captures made before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<HookKind>,
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
