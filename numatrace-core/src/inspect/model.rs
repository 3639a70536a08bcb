//! The inspect report: what was read, per node and per process, and the
//! findings. Serialized as `numatrace.inspect/1`.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::findings::Finding;
use crate::machine::{
    CategoryBytes, CounterRates, Cpuset, Mapping, MappingKind, NodeCounters, NodeMeminfo, ProcessSnapshot, Sysctls,
    SystemSnapshot, ThreadPlacement, Topology, TransparentHugePages, Unreadable, Virtualization,
};

pub const SCHEMA: &str = "numatrace.inspect/1";

/// The whole report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InspectReport {
    pub schema: String,
    pub taken_at_unix_ms: u64,
    pub topology: TopologyView,
    /// Per-node meminfo in bytes, as `numastat -m` (node id -> field -> bytes).
    pub meminfo: BTreeMap<u32, NodeMeminfo>,
    /// Per-node allocation counters in pages since boot (node id -> counters).
    pub counters: BTreeMap<u32, NodeCounters>,
    /// The balancer's and migration's /proc/vmstat counters since boot.
    pub balancer: BTreeMap<String, u64>,
    /// With `--interval`: its length in seconds, and the counters as per-second rates over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter_rates: Option<BTreeMap<u32, CounterRates>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balancer_rates: Option<BTreeMap<String, f64>>,
    pub sysctl: Sysctls,
    pub transparent_hugepages: TransparentHugePages,
    pub virtualization: Virtualization,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessView>,
    pub findings: Vec<Finding>,
    /// Sources that could not be read, and why.
    pub unreadable: Vec<Unreadable>,
}

/// The machine topology plus the odd nodes named.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TopologyView {
    #[serde(flatten)]
    pub machine: Topology,
    pub cpuless_nodes: Vec<u32>,
    pub memoryless_nodes: Vec<u32>,
}

/// A process as `numastat -p` and numa_maps show it, and where its threads run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessView {
    pub pid: u32,
    pub name: String,
    /// node id -> huge/heap/stack/private/total in bytes, as `numastat -p`.
    pub memory_by_node: BTreeMap<u32, CategoryBytes>,
    pub total_bytes: u64,
    /// node id -> number of threads running on it now.
    pub threads_by_node: BTreeMap<u32, u32>,
    pub threads: Vec<ThreadPlacement>,
    pub cpus_allowed: Vec<u32>,
    pub mems_allowed: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<Cpuset>,
    pub biggest_mappings: Vec<MappingView>,
    pub locality: Locality,
    /// numa_maps lines that did not parse and were left out.
    pub numa_maps_skipped_lines: u64,
}

/// One mapping, sized and split by node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MappingView {
    /// Start address, hex.
    pub start: String,
    pub kind: MappingKind,
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub bytes: u64,
    pub bytes_by_node: BTreeMap<u32, u64>,
}

impl MappingView {
    pub fn of(m: &Mapping) -> MappingView {
        MappingView {
            start: format!("{:x}", m.start),
            kind: m.kind,
            policy: m.policy.clone(),
            file: m.file.clone(),
            bytes: m.resident_bytes(),
            bytes_by_node: m.bytes_by_node(),
        }
    }
}

/// How far a process's memory is from its threads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Locality {
    /// The locality score: averaged over its threads, the share of the
    /// process's memory on nodes other than the one the thread runs on
    /// (0 = all local, 1 = all remote; `None`: no threads or no memory seen).
    pub remote_share: Option<f64>,
    /// The share of its memory on nodes where none of its threads runs.
    pub memory_outside_thread_nodes_share: Option<f64>,
}

impl Locality {
    pub fn of(snapshot: &ProcessSnapshot) -> Locality {
        let total = snapshot.total_bytes();
        let threads: Vec<u32> = snapshot.threads.iter().filter_map(|t| t.node).collect();
        if total == 0 || threads.is_empty() {
            return Locality::default();
        }
        let on = |node: u32| snapshot.memory_by_node.get(&node).map(|c| c.total).unwrap_or(0);
        let remote_share =
            threads.iter().map(|&n| 1.0 - on(n) as f64 / total as f64).sum::<f64>() / threads.len() as f64;
        let outside: u64 =
            snapshot.memory_by_node.iter().filter(|(n, _)| !threads.contains(n)).map(|(_, c)| c.total).sum();
        Locality {
            remote_share: Some(remote_share),
            memory_outside_thread_nodes_share: Some(outside as f64 / total as f64),
        }
    }
}

impl InspectReport {
    /// Assembles the report from snapshots (`earlier`: the start of an `--interval`).
    pub fn build(
        system: &SystemSnapshot,
        earlier: Option<&SystemSnapshot>,
        process: Option<&ProcessSnapshot>,
        top_mappings: usize,
    ) -> InspectReport {
        let machine = system.topology.clone();
        let topology = TopologyView {
            cpuless_nodes: machine.nodes.iter().filter(|n| n.is_cpuless()).map(|n| n.id).collect(),
            memoryless_nodes: machine.nodes.iter().filter(|n| n.is_memoryless()).map(|n| n.id).collect(),
            machine,
        };
        let rates =
            earlier.map(|e| (system.seconds_since(e), system.counter_rates_since(e), system.vmstat_rates_since(e)));
        let process_view = process.map(|p| {
            let mut mappings: Vec<&Mapping> = p.numa_maps.iter().flat_map(|m| m.mappings.iter()).collect();
            mappings.sort_by_key(|m| std::cmp::Reverse(m.resident_bytes()));
            let status = p.status.clone();
            ProcessView {
                pid: p.pid,
                name: p.name().to_string(),
                memory_by_node: p.memory_by_node.clone(),
                total_bytes: p.total_bytes(),
                threads_by_node: p.threads_by_node.clone(),
                threads: p.threads.clone(),
                cpus_allowed: status.as_ref().map(|s| s.cpus_allowed.clone()).unwrap_or_default(),
                mems_allowed: status.as_ref().map(|s| s.mems_allowed.clone()).unwrap_or_default(),
                cpuset: p.cpuset.clone(),
                biggest_mappings: mappings.into_iter().take(top_mappings).map(MappingView::of).collect(),
                locality: Locality::of(p),
                numa_maps_skipped_lines: p.numa_maps.as_ref().map(|m| m.skipped_lines).unwrap_or(0),
            }
        });
        let findings = super::findings::judge(system, rates.as_ref().map(|r| &r.1), process);
        let mut unreadable = system.unreadable.clone();
        if let Some(p) = process {
            unreadable.extend(p.unreadable.iter().cloned());
        }
        InspectReport {
            schema: SCHEMA.to_string(),
            taken_at_unix_ms: system.taken_at_unix_ms,
            topology,
            meminfo: system.meminfo.clone(),
            counters: system.counters.clone(),
            balancer: system.vmstat.clone(),
            interval_seconds: rates.as_ref().map(|r| r.0),
            counter_rates: rates.as_ref().map(|r| r.1.clone()),
            balancer_rates: rates.map(|r| r.2),
            sysctl: system.sysctl.clone(),
            transparent_hugepages: system.transparent_hugepages.clone(),
            virtualization: system.virtualization.clone(),
            process: process_view,
            findings,
            unreadable,
        }
    }
}
