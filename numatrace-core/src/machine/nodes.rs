//! The machine as `numactl --hardware` and `lscpu` show it: nodes with their
//! CPUs, memory and huge pages, the distance table, sockets.
use std::{collections::BTreeSet, fs, path::Path};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::machine::topology::Topology;

/// Huge pages of one size on one node (`hugepages/hugepages-<size>kB`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugePages {
    pub page_size_bytes: u64,
    pub total: u64,
    pub free: u64,
    pub surplus: u64,
}

/// One NUMA node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: u32,
    pub cpus: Vec<u32>,
    pub mem_total_bytes: u64,
    pub mem_free_bytes: u64,
    pub mem_used_bytes: u64,
    pub hugepages: Vec<HugePages>,
}

impl NodeInfo {
    /// A node with memory but no CPU (CXL, HBM, PMEM exposed as a node).
    pub fn is_cpuless(&self) -> bool {
        self.cpus.is_empty()
    }

    /// A node with CPUs but no memory: its CPUs always allocate remotely.
    pub fn is_memoryless(&self) -> bool {
        self.mem_total_bytes == 0
    }
}

/// The NUMA layout and what lscpu adds to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineTopology {
    pub nodes: Vec<NodeInfo>,
    /// `distances[i][j]`: distance from `nodes[i]` to `nodes[j]` (10 = local).
    pub distances: Vec<Vec<u32>>,
    /// Physical CPU packages (sockets), from `physical_package_id`.
    pub sockets: u32,
    pub online_cpus: Vec<u32>,
    /// CPU model name, when /proc/cpuinfo gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
}

impl MachineTopology {
    /// Reads /sys/devices/system (via [`Topology`]) and /proc/cpuinfo.
    pub fn read() -> Result<MachineTopology> {
        let system = Path::new("/sys/devices/system");
        let topo = Topology::read_from(system).context("reading the NUMA topology from /sys/devices/system/node")?;
        let nodes = topo
            .nodes
            .iter()
            .map(|n| {
                let dir = system.join(format!("node/node{}", n.id));
                NodeInfo {
                    id: n.id,
                    cpus: n.cpus.clone(),
                    mem_total_bytes: n.mem_total_bytes,
                    mem_free_bytes: n.mem_free_bytes,
                    mem_used_bytes: n.mem_total_bytes.saturating_sub(n.mem_free_bytes),
                    hugepages: read_hugepages(&dir.join("hugepages")),
                }
            })
            .collect();
        let online_cpus = fs::read_to_string(system.join("cpu/online"))
            .ok()
            .and_then(|t| crate::machine::cpulist::parse(&t).ok())
            .unwrap_or_default();
        let packages: BTreeSet<String> = online_cpus
            .iter()
            .filter_map(|c| fs::read_to_string(system.join(format!("cpu/cpu{c}/topology/physical_package_id"))).ok())
            .map(|t| t.trim().to_string())
            .collect();
        let cpu_model =
            <procfs::CpuInfo as procfs::Current>::current().ok().and_then(|c| c.model_name(0).map(str::to_string));
        Ok(MachineTopology {
            nodes,
            distances: topo.distances,
            sockets: packages.len().max(1) as u32,
            online_cpus,
            cpu_model,
        })
    }

    pub fn node(&self, id: u32) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn node_ids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The node a CPU belongs to.
    pub fn node_of_cpu(&self, cpu: u32) -> Option<u32> {
        self.nodes.iter().find(|n| n.cpus.contains(&cpu)).map(|n| n.id)
    }

    /// The nodes that hold at least one of these CPUs.
    pub fn nodes_of_cpus(&self, cpus: &[u32]) -> Vec<u32> {
        let set: BTreeSet<u32> = cpus.iter().filter_map(|&c| self.node_of_cpu(c)).collect();
        set.into_iter().collect()
    }

    /// Memory the biggest node holds.
    pub fn largest_node_bytes(&self) -> u64 {
        self.nodes.iter().map(|n| n.mem_total_bytes).max().unwrap_or(0)
    }

    /// A topology built in code (tests).
    pub fn synthetic(cpus_per_node: &[Vec<u32>], mem_per_node: u64) -> MachineTopology {
        let n = cpus_per_node.len();
        MachineTopology {
            nodes: cpus_per_node
                .iter()
                .enumerate()
                .map(|(id, cpus)| NodeInfo {
                    id: id as u32,
                    cpus: cpus.clone(),
                    mem_total_bytes: mem_per_node,
                    mem_free_bytes: mem_per_node / 2,
                    mem_used_bytes: mem_per_node / 2,
                    hugepages: Vec::new(),
                })
                .collect(),
            distances: (0..n).map(|i| (0..n).map(|j| if i == j { 10 } else { 21 }).collect()).collect(),
            sockets: n as u32,
            online_cpus: cpus_per_node.iter().flatten().copied().collect(),
            cpu_model: None,
        }
    }
}

fn read_hugepages(dir: &Path) -> Vec<HugePages> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let read =
        |p: &Path, f: &str| fs::read_to_string(p.join(f)).ok().and_then(|t| t.trim().parse::<u64>().ok()).unwrap_or(0);
    let mut out: Vec<HugePages> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok()?;
            let p = e.path();
            Some(HugePages {
                page_size_bytes: kb * 1024,
                total: read(&p, "nr_hugepages"),
                free: read(&p, "free_hugepages"),
                surplus: read(&p, "surplus_hugepages"),
            })
        })
        .collect();
    out.sort_by_key(|h| h.page_size_bytes);
    out
}
