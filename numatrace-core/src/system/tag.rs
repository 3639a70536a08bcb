//! The one-word likely cause of a process's remote memory, from the same
//! snapshot rules `numatrace inspect` judges a process by
//! ([`judge_process`]), plus what a snapshot alone still tells when none of
//! them fires: the remote memory's mappings carry a policy, or the threads'
//! nodes are full.
use serde::{Deserialize, Serialize};

use crate::{
    inspect::findings::judge_process,
    machine::{ProcessSnapshot, Topology},
};

/// Below this remote share a process is called local.
pub const LOCAL_BELOW: f64 = 0.05;
/// A node with less than this share of its memory free is full: the
/// allocator spills to the next node.
const FULL_BELOW: f64 = 0.03;

/// The likely cause of a process's remote memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tag {
    /// Little of its memory is remote to its threads (under 5 %).
    Local,
    /// A memory policy (bind, preferred, interleave) put it there.
    Policy,
    /// Its cgroup confines its CPUs but lets memory come from other nodes.
    Cpuset,
    /// The node its threads run on is full (or its heap is larger than a node).
    Spill,
    /// Placed elsewhere: first touched by a thread on another node, or its
    /// threads moved away from it since.
    Elsewhere,
    /// Its memory per node could not be read (yet).
    Unknown,
}

impl Tag {
    pub fn name(self) -> &'static str {
        match self {
            Tag::Local => "local",
            Tag::Policy => "policy",
            Tag::Cpuset => "cpuset",
            Tag::Spill => "spill",
            Tag::Elsewhere => "elsewhere",
            Tag::Unknown => "unknown",
        }
    }

    /// The tag of an `inspect` finding about a process, when it names a cause.
    fn of_finding(kind: &str) -> Option<Tag> {
        match kind {
            "cpuset_cpus_without_mems" => Some(Tag::Cpuset),
            "interleave_fits_one_node" => Some(Tag::Policy),
            "heap_larger_than_node" => Some(Tag::Spill),
            "init_thread_pattern" => Some(Tag::Elsewhere),
            _ => None,
        }
    }
}

/// The likely cause of `remote_share` of a process's memory being remote to
/// the nodes in `thread_nodes` (where its threads ran).
pub fn likely_cause(topo: &Topology, p: &ProcessSnapshot, remote_share: Option<f64>, thread_nodes: &[u32]) -> Tag {
    let Some(share) = remote_share else { return Tag::Unknown };
    if share < LOCAL_BELOW {
        return Tag::Local;
    }
    // inspect's rules, the most specific first.
    let found: Vec<Tag> = judge_process(topo, p).iter().filter_map(|f| Tag::of_finding(&f.kind)).collect();
    if let Some(tag) = [Tag::Cpuset, Tag::Policy, Tag::Spill, Tag::Elsewhere].into_iter().find(|t| found.contains(t)) {
        return tag;
    }
    let remote = |node: &u32| !thread_nodes.contains(node);
    let mut remote_bytes = 0u64;
    let mut under_policy = 0u64;
    for m in p.numa_maps.iter().flat_map(|m| m.mappings.iter()) {
        let bytes: u64 = m.bytes_by_node().iter().filter(|(n, _)| remote(n)).map(|(_, b)| *b).sum();
        remote_bytes += bytes;
        if m.policy_mode() != "default" {
            under_policy += bytes;
        }
    }
    if remote_bytes > 0 && under_policy * 2 >= remote_bytes {
        return Tag::Policy;
    }
    let full = |node: &u32| {
        topo.node(*node).is_some_and(|n| (n.mem_free_bytes as f64) < FULL_BELOW * n.mem_total_bytes as f64)
    };
    if !thread_nodes.is_empty() && thread_nodes.iter().all(full) {
        return Tag::Spill;
    }
    Tag::Elsewhere
}
