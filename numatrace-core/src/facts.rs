//! Everything a report is computed from besides the kernel's events. A
//! report is a pure function of ([`SessionFacts`], events): the live run and
//! a replayed capture file give the same report.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    aggregate::Aggregator,
    kernel_status::{KernelTotals, LostCount, SourceStatus},
    machine::Topology,
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
    /// Nodes with their CPUs, memory and free memory at the start (fixes are
    /// checked against them).
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
    /// The target's NUMA state when the capture started (attach to a running pid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_before: Option<crate::machine::ProcessSnapshot>,
    /// The other traced processes' state at the start, one per process
    /// (several `--pid`s, `--tree`, a cgroup); `process_before` stays the first's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_processes_before: Vec<crate::machine::ProcessSnapshot>,
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
    pub stopped_by: StopReason,
    pub exit_code: Option<i32>,
    pub kernel: KernelTotals,
    /// The target's latest NUMA state seen while it ran (policy, cpuset, placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_last: Option<crate::machine::ProcessSnapshot>,
    /// The other traced processes' latest state, one per process still alive
    /// at the last snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_processes_last: Vec<crate::machine::ProcessSnapshot>,
    /// A spike capture's events that the `--ring` memory cap pushed out of
    /// its window, per kind (they are not in the capture).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dropped_by_memory_cap: BTreeMap<String, LostCount>,
    /// The overhead budget's sampling of first touches over the capture
    /// (absent without `--overhead-budget`, and in older captures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<crate::sampling::SamplingFacts>,
    /// The call stacks of first touches, symbolized at the end (`--stacks`;
    /// absent without it, and in older captures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacks: Option<crate::stacks::StackTable>,
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
}

/// What was traced: the process and, when numatrace started it, its command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub pid: u32,
    pub comm: String,
    /// The command line, when numatrace started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Its exit code, when it exited during the capture and numatrace started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// How the traced set was named: one process (older captures), several
    /// pids, a process tree, a cgroup, a systemd unit or a container.
    #[serde(default, skip_serializing_if = "TargetScope::is_process")]
    pub scope: TargetScope,
    /// Every process traced from the start (the roots named with `--pid`, or
    /// the cgroup's processes when the capture began); `pid` is the first.
    /// Empty in older captures: then `pid` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
}

/// How the traced set of processes was named. Fixes are written for this
/// unit of deployment (a unit's drop-in, a container's cpuset, a cgroup's
/// files), not only for a process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetScope {
    /// One process (and, with `--follow-children` or a command, its later children).
    #[default]
    Process,
    /// Several `--pid`s, each with its later children.
    Processes,
    /// `--tree`: the processes and all their descendants, existing and new.
    Tree,
    /// `--cgroup`: every task in a cgroup v2 and below it, also tasks that join.
    Cgroup(CgroupScope),
    /// `--unit`: a systemd unit, traced as its cgroup.
    Unit { name: String, cgroup: CgroupScope },
    /// `--container`: a container, traced as its cgroup.
    Container { id: String, runtime: ContainerRuntime, cgroup: CgroupScope },
}

impl TargetScope {
    pub fn is_process(&self) -> bool {
        *self == TargetScope::Process
    }

    /// The cgroup behind a cgroup, unit or container target.
    pub fn cgroup(&self) -> Option<&CgroupScope> {
        match self {
            TargetScope::Cgroup(c) | TargetScope::Unit { cgroup: c, .. } | TargetScope::Container { cgroup: c, .. } => {
                Some(c)
            }
            TargetScope::Process | TargetScope::Processes | TargetScope::Tree => None,
        }
    }
}

/// A cgroup v2 traced with everything below it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupScope {
    /// Path under the cgroup v2 mount, starting with `/` (`/system.slice/postgresql.service`).
    pub path: String,
    /// The kernel's cgroup id (the inode number of its directory).
    pub id: u64,
    /// Its `cpuset.cpus.effective` and `cpuset.mems.effective` at the start
    /// (`None`: the cpuset controller is not enabled there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_effective: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mems_effective: Option<Vec<u32>>,
}

/// The container runtime a `--container` id was found under.
pub use crate::machine::ContainerRuntime;

/// Why a capture ended. Written as the words the report prints
/// ("target exit", "trigger: SIGUSR1"), as captures always stored it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum StopReason {
    /// The traced process exited.
    TargetExit,
    /// `--duration` ran out.
    Duration,
    CtrlC,
    Sigterm,
    /// A capture file that ends without its end record (a killed run).
    CaptureCutShort,
    /// A spike trigger closed the window; the rule that fired.
    Trigger(String),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::TargetExit => f.write_str("target exit"),
            StopReason::Duration => f.write_str("duration"),
            StopReason::CtrlC => f.write_str("Ctrl-C"),
            StopReason::Sigterm => f.write_str("SIGTERM"),
            StopReason::CaptureCutShort => f.write_str("capture cut short"),
            StopReason::Trigger(rule) => write!(f, "trigger: {rule}"),
        }
    }
}

impl From<StopReason> for String {
    fn from(reason: StopReason) -> String {
        reason.to_string()
    }
}

impl TryFrom<String> for StopReason {
    type Error = String;
    fn try_from(text: String) -> Result<StopReason, String> {
        Ok(match text.as_str() {
            "target exit" => StopReason::TargetExit,
            "duration" => StopReason::Duration,
            "Ctrl-C" => StopReason::CtrlC,
            "SIGTERM" => StopReason::Sigterm,
            "capture cut short" => StopReason::CaptureCutShort,
            _ => match text.strip_prefix("trigger: ") {
                Some(rule) => StopReason::Trigger(rule.to_string()),
                None => return Err(format!("unknown stop reason {text:?}")),
            },
        })
    }
}

impl EndFacts {
    /// The end of a capture that has no end record of its own (a killed
    /// run, a spike window): nothing the kernel counted is known.
    pub fn cut_short(duration_s: f64, stopped_by: StopReason) -> EndFacts {
        EndFacts {
            duration_s,
            stopped_by,
            exit_code: None,
            kernel: KernelTotals::default(),
            process_last: None,
            other_processes_last: Vec::new(),
            dropped_by_memory_cap: BTreeMap::new(),
            sampling: None,
            stacks: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StopReason;

    #[test]
    fn stop_reasons_read_back_as_written() {
        for reason in [
            StopReason::TargetExit,
            StopReason::Duration,
            StopReason::CtrlC,
            StopReason::Sigterm,
            StopReason::CaptureCutShort,
            StopReason::Trigger("cross_node_migrations>3/s".into()),
        ] {
            let json = serde_json::to_string(&reason).unwrap_or_default();
            assert_eq!(serde_json::from_str::<StopReason>(&json).ok(), Some(reason));
        }
        assert!(serde_json::from_str::<StopReason>("\"bored\"").is_err());
    }
}
