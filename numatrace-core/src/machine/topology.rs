//! The machine's NUMA topology from sysfs: nodes, their CPUs and memory, the
//! distance table, and the maps the kernel programs need (cpu -> node and
//! physical memory block -> node).
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::machine::cpulist;

/// Huge pages of one size on one node (`hugepages/hugepages-<size>kB`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugePages {
    pub page_size_bytes: u64,
    pub total: u64,
    pub free: u64,
    pub surplus: u64,
}

/// One NUMA node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Node {
    pub id: u32,
    pub cpus: Vec<u32>,
    pub mem_total_bytes: u64,
    pub mem_free_bytes: u64,
    #[serde(default)]
    pub mem_used_bytes: u64,
    #[serde(default)]
    pub hugepages: Vec<HugePages>,
}

impl Node {
    /// A node with memory but no CPU (CXL, HBM, PMEM exposed as a node).
    pub fn is_cpuless(&self) -> bool {
        self.cpus.is_empty()
    }

    /// A node with CPUs but no memory: its CPUs always allocate remotely.
    pub fn is_memoryless(&self) -> bool {
        self.mem_total_bytes == 0
    }
}

/// The machine's NUMA layout, as `numactl --hardware` and `lscpu` show it:
/// nodes with their CPUs, memory and huge pages, the distance table, sockets.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Topology {
    pub nodes: Vec<Node>,
    /// `distances[i][j]`: distance from `nodes[i]` to `nodes[j]` (10 = local).
    pub distances: Vec<Vec<u32>>,
    /// Physical CPU packages (sockets), from `physical_package_id`.
    #[serde(default)]
    pub sockets: u32,
    #[serde(default)]
    pub online_cpus: Vec<u32>,
    /// CPU model name, when /proc/cpuinfo gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// Physical memory is described in blocks of this many bytes.
    #[serde(skip, default = "default_block_bytes")]
    pub memory_block_bytes: u64,
    /// Memory block index -> node.
    #[serde(skip)]
    pub memory_blocks: BTreeMap<u64, u32>,
}

/// Equal when what is stored is equal: the memory block table is the
/// loader's working data, read from /sys and never written to a capture.
impl PartialEq for Topology {
    fn eq(&self, other: &Topology) -> bool {
        self.nodes == other.nodes
            && self.distances == other.distances
            && self.sockets == other.sockets
            && self.online_cpus == other.online_cpus
            && self.cpu_model == other.cpu_model
    }
}

impl Eq for Topology {}

impl Topology {
    /// Reads the topology of this machine from /sys, and its CPU model from /proc/cpuinfo.
    pub fn read() -> Result<Topology> {
        let mut topology = Topology::read_from(Path::new("/sys/devices/system"))
            .context("reading the NUMA topology from /sys/devices/system/node")?;
        topology.cpu_model =
            <procfs::CpuInfo as procfs::Current>::current().ok().and_then(|c| c.model_name(0).map(str::to_string));
        Ok(topology)
    }

    /// Reads the topology below a sysfs `devices/system` folder (tests use a copy).
    pub fn read_from(system: &Path) -> Result<Topology> {
        let node_dir = system.join("node");
        let online = match fs::read_to_string(node_dir.join("online")) {
            Ok(text) => cpulist::parse(&text).context("reading /sys/devices/system/node/online")?,
            // A kernel without CONFIG_NUMA: one node holding every CPU.
            Err(_) => vec![0],
        };
        let mut nodes = Vec::new();
        let mut distances = Vec::new();
        let mut memory_blocks = BTreeMap::new();
        for id in online {
            let dir = node_dir.join(format!("node{id}"));
            let cpus = match fs::read_to_string(dir.join("cpulist")) {
                Ok(text) => {
                    cpulist::parse(&text).with_context(|| format!("reading {}", dir.join("cpulist").display()))?
                }
                Err(_) => online_cpus(system)?,
            };
            let (mem_total_bytes, mem_free_bytes) = node_memory(&dir.join("meminfo")).unwrap_or((0, 0));
            let distance = fs::read_to_string(dir.join("distance"))
                .ok()
                .map(|t| t.split_whitespace().filter_map(|d| d.parse().ok()).collect())
                .unwrap_or_else(|| vec![10]);
            distances.push(distance);
            if let Ok(entries) = fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    if let Some(block) =
                        name.to_str().and_then(|n| n.strip_prefix("memory")).and_then(|n| n.parse::<u64>().ok())
                    {
                        memory_blocks.insert(block, id);
                    }
                }
            }
            nodes.push(Node {
                id,
                cpus,
                mem_total_bytes,
                mem_free_bytes,
                mem_used_bytes: mem_total_bytes.saturating_sub(mem_free_bytes),
                hugepages: read_hugepages(&dir.join("hugepages")),
            });
        }
        let memory_block_bytes = fs::read_to_string(system.join("memory/block_size_bytes"))
            .ok()
            .and_then(|t| u64::from_str_radix(t.trim(), 16).ok())
            .unwrap_or(128 << 20);
        let online_cpus = fs::read_to_string(system.join("cpu/online"))
            .ok()
            .and_then(|t| cpulist::parse(&t).ok())
            .unwrap_or_default();
        let packages: BTreeSet<String> = online_cpus
            .iter()
            .filter_map(|c| fs::read_to_string(system.join(format!("cpu/cpu{c}/topology/physical_package_id"))).ok())
            .map(|t| t.trim().to_string())
            .collect();
        Ok(Topology {
            nodes,
            distances,
            sockets: packages.len().max(1) as u32,
            online_cpus,
            cpu_model: None,
            memory_block_bytes,
            memory_blocks,
        })
    }

    /// A topology built in code (tests, synthetic streams): 1 GiB per node, half free.
    pub fn synthetic(cpus_per_node: &[Vec<u32>]) -> Topology {
        let mut topology = Topology::synthetic_with_memory(cpus_per_node, 1 << 30);
        for (i, row) in topology.distances.iter_mut().enumerate() {
            for (j, d) in row.iter_mut().enumerate() {
                *d = if i == j { 10 } else { 20 };
            }
        }
        topology
    }

    /// A topology built in code with `mem_per_node` bytes per node, half free.
    pub fn synthetic_with_memory(cpus_per_node: &[Vec<u32>], mem_per_node: u64) -> Topology {
        let n = cpus_per_node.len();
        Topology {
            nodes: cpus_per_node
                .iter()
                .enumerate()
                .map(|(id, cpus)| Node {
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
            memory_block_bytes: 128 << 20,
            memory_blocks: BTreeMap::new(),
        }
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

    pub fn node_ids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn is_multi_node(&self) -> bool {
        self.nodes.len() > 1
    }

    /// The node a CPU belongs to.
    pub fn node_of_cpu(&self, cpu: u32) -> Option<u32> {
        self.nodes.iter().find(|n| n.cpus.contains(&cpu)).map(|n| n.id)
    }

    pub fn node(&self, id: u32) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// cpu -> node table, indexed by CPU number, for the kernel's `CPU_NODE`
    /// map; a CPU in no node (offline) is `NODE_UNKNOWN`, not node 0.
    pub fn cpu_node_table(&self) -> Vec<u32> {
        let max = self.nodes.iter().flat_map(|n| n.cpus.iter().copied()).max().unwrap_or(0);
        let mut table = vec![u32::from(numatrace_common::NODE_UNKNOWN); max as usize + 1];
        for node in &self.nodes {
            for &cpu in &node.cpus {
                table[cpu as usize] = node.id;
            }
        }
        table
    }

    /// The node of a page frame number, from the memory block table.
    pub fn node_of_pfn(&self, pfn: u64) -> Option<u32> {
        let block = (pfn << 12) / self.memory_block_bytes.max(1);
        self.memory_blocks.get(&block).copied()
    }

    /// log2 of pages per memory block: pfn >> this = block index.
    pub fn pfn_block_shift(&self) -> u32 {
        (self.memory_block_bytes.max(4096) / 4096).trailing_zeros()
    }
}

fn default_block_bytes() -> u64 {
    128 << 20
}

fn online_cpus(system: &Path) -> Result<Vec<u32>> {
    let path: PathBuf = system.join("cpu/online");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(cpulist::parse(&text)?)
}

/// (MemTotal, MemFree) in bytes from a node's meminfo ("Node 0 MemTotal: 123 kB").
fn node_memory(path: &Path) -> Option<(u64, u64)> {
    let text = fs::read_to_string(path).ok()?;
    let mut total = None;
    let mut free = None;
    for line in text.lines() {
        let mut words = line.split_whitespace().skip(2);
        let (Some(key), Some(value)) = (words.next(), words.next()) else { continue };
        let bytes = value.parse::<u64>().ok()? * 1024;
        match key {
            "MemTotal:" => total = Some(bytes),
            "MemFree:" => free = Some(bytes),
            _ => {}
        }
    }
    Some((total?, free?))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        let topo = Topology::read().expect("sysfs is readable");
        assert!(!topo.nodes.is_empty());
        let cpus: usize = topo.nodes.iter().map(|n| n.cpus.len()).sum();
        assert_eq!(cpus, std::thread::available_parallelism().map(|n| n.get()).unwrap_or(cpus).max(cpus));
        assert_eq!(topo.distances.len(), topo.nodes.len());
        // Every block that holds kernel text must map to a node.
        assert!(!topo.memory_blocks.is_empty(), "memory blocks readable");
    }

    #[test]
    fn maps_pfns_through_blocks() {
        let mut topo = Topology::synthetic(&[vec![0, 1], vec![2, 3]]);
        topo.memory_blocks.insert(0, 0);
        topo.memory_blocks.insert(1, 1);
        let pages_per_block = topo.memory_block_bytes / 4096;
        assert_eq!(topo.node_of_pfn(0), Some(0));
        assert_eq!(topo.node_of_pfn(pages_per_block), Some(1));
        assert_eq!(topo.node_of_pfn(pages_per_block * 5), None);
        assert_eq!(1u64 << topo.pfn_block_shift(), pages_per_block);
        assert_eq!(topo.cpu_node_table(), vec![0, 0, 1, 1]);
    }

    #[test]
    fn a_cpu_in_no_node_has_no_node_in_the_kernel_table() {
        let unknown = u32::from(numatrace_common::NODE_UNKNOWN);
        assert_eq!(Topology::synthetic(&[vec![0], vec![3]]).cpu_node_table(), vec![0, unknown, unknown, 1]);
    }
}
