//! What one reading of /proc says about the processes: cheap facts, read on
//! every refresh (one stat file per process, one per thread of a
//! multi-threaded one), as opposed to numa_maps.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::machine::SystemSnapshot;

/// One thread at one reading (`/proc/PID/task/TID/stat`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSample {
    pub tid: u32,
    /// The CPU it last ran on (field 39, `processor`).
    pub cpu: u32,
    /// Its CPU time so far (utime + stime), in clock ticks.
    pub run_ticks: u64,
}

/// One process at one reading.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSample {
    pub pid: u32,
    /// When it started, in clock ticks since boot: a pid reused by a new
    /// process has another start, so nothing of the old one is carried over.
    pub start_ticks: u64,
    pub comm: String,
    /// Its cgroup v2 path (`/system.slice/db.service`), or the v1 cpuset's; empty when unknown.
    pub cgroup: String,
    /// Resident memory (RSS), in bytes.
    pub rss_bytes: u64,
    pub threads: Vec<ThreadSample>,
}

/// What numatrace's always-on kernel programs counted for one process
/// since they were attached (totals: rates come from two samples).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelCounts {
    /// Its threads moved between CPUs of different nodes (every move, not sampled).
    pub cross_node_migrations: u64,
    /// Movable pages it allocated on another node than its CPU's.
    pub remote_first_touch_pages: u64,
    /// NUMA hinting faults of its threads that found the page on another
    /// node than the faulting CPU's.
    #[serde(default)]
    pub remote_hinting_faults: u64,
}

/// The machine and its processes at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub system: SystemSnapshot,
    /// User-space processes (kernel threads left out), in pid order.
    pub processes: Vec<ProcessSample>,
    /// The kernel's counts by pid, read right after `processes`; a process
    /// it has not counted yet has none of either. `None`: not counted
    /// (no root, or turned off): rows fall back to /proc.
    #[serde(default)]
    pub kernel_counts: Option<BTreeMap<u32, KernelCounts>>,
    /// Whether `kernel_counts` has remote first touches (their program is
    /// attached); else their 0s mean nothing.
    #[serde(default)]
    pub first_touches_counted: bool,
    /// Whether `kernel_counts` has remote hinting faults (their program is
    /// attached: it needs fentry or kprobes); else their 0s mean nothing.
    #[serde(default)]
    pub hinting_faults_counted: bool,
}
