//! Everything a report is computed from besides the kernel's events. A
//! report is a pure function of ([`SessionFacts`], events): the live run and
//! a replayed capture file give the same report.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    aggregate::Aggregator,
    event::Event,
    kernel_status::{KernelTotals, LostCount, SourceStatus},
    machine::topology::Topology,
    report::{Report, Target},
};

/// A thread that existed when the capture started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitialThread {
    pub tid: u32,
    pub tgid: u32,
    pub comm: String,
    pub cpu: Option<u32>,
}

/// What is known at the start of a capture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StartFacts {
    pub tool_version: String,
    pub kernel_release: String,
    pub topology: Topology,
    /// `enum migrate_reason` value -> name on the traced kernel.
    pub reason_names: BTreeMap<i64, String>,
    pub target: Target,
    pub sources: Vec<SourceStatus>,
    pub initial_threads: Vec<InitialThread>,
    /// CLOCK_MONOTONIC at the start, in the events' time base.
    pub start_ns: u64,
    /// The target's command line (for fix commands).
    #[serde(default)]
    pub argv: Vec<String>,
    /// Nodes with their memory and free memory at the start (fixes are checked against them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<crate::machine::MachineTopology>,
    /// The target's NUMA state when the capture started (attach to a running pid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_before: Option<crate::machine::ProcessSnapshot>,
    /// The machine's NUMA settings and counters when the capture started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_before: Option<crate::machine::SystemSnapshot>,
    /// The kernel counted migrations within a node instead of sending them
    /// (the default; false with `--all-migrations` and in older captures):
    /// the events then tell a thread's node, not its CPU.
    #[serde(default)]
    pub within_node_migrations_counted_only: bool,
}

/// What is known once the capture has ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndFacts {
    pub duration_s: f64,
    pub stopped_by: String,
    pub exit_code: Option<i32>,
    pub kernel: KernelTotals,
    /// The target's latest NUMA state seen while it ran (policy, cpuset, placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_last: Option<crate::machine::ProcessSnapshot>,
    /// A spike capture's events that the `--ring` memory cap pushed out of
    /// its window, per kind (they are not in the capture).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dropped_by_memory_cap: BTreeMap<String, LostCount>,
}

/// Start and end facts of one capture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionFacts {
    pub start: StartFacts,
    pub end: EndFacts,
}

impl StartFacts {
    /// An aggregator primed with the initial threads, before any event.
    pub fn new_aggregator(&self) -> Aggregator {
        let mut agg = Aggregator::new(self.topology.clone(), self.reason_names.clone());
        for t in &self.initial_threads {
            agg.add_thread(t.tid, t.tgid, &t.comm, t.cpu);
        }
        agg
    }
}

impl SessionFacts {
    /// An aggregator primed with the initial threads, before any event.
    pub fn new_aggregator(&self) -> Aggregator {
        self.start.new_aggregator()
    }

    /// The report, from an aggregator that has seen every event.
    pub fn report(&self, agg: &mut Aggregator) -> Report {
        agg.finish(self.end.kernel.clone());
        Report::build(agg, self)
    }

    /// Folds `events` and builds the report: what `numatrace report <capture>` does.
    pub fn replay<'a>(&self, events: impl IntoIterator<Item = &'a Event>) -> (Report, Aggregator) {
        let mut agg = self.new_aggregator();
        for event in events {
            agg.ingest(event);
        }
        let report = self.report(&mut agg);
        (report, agg)
    }
}
