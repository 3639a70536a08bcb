//! The fix for each cause, as exact commands from the shared vocabulary
//! (`crate::fixes`), checked against what the process is allowed.
use super::{evidence::Contribution, kinds::CauseKind};
use crate::{
    fixes::{Constraints, Fix, Workload},
    sysinfo::NodeInfo,
};

/// What the fixes are built from.
#[derive(Clone, Debug, Default)]
pub struct FixEnv {
    pub pid: u32,
    pub nodes: Vec<NodeInfo>,
    pub workload: Workload,
    /// The process was started by numatrace (a restart under numactl is natural).
    pub started_by_numatrace: bool,
    pub is_jvm: bool,
    /// Resident memory of the process, bytes.
    pub resident_bytes: u64,
    pub constraints: Constraints,
}

impl FixEnv {
    fn node(&self, id: u32) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.id == id)
    }

    fn largest_node_bytes(&self) -> u64 {
        self.nodes.iter().map(|n| n.mem_total_bytes).max().unwrap_or(0)
    }
}

/// Fixes for one cause, best first, each checked against the process's allowed CPUs and nodes.
/// Returns (steps, problems): a fix the cpuset forbids comes back as the cgroup change then the fix.
pub fn fixes_for(kind: CauseKind, c: &Contribution, env: &FixEnv) -> (Vec<Fix>, Vec<String>) {
    if env.nodes.len() < 2 {
        return (vec![Fix::no_benefit_from_pinning("this machine has one NUMA node")], Vec::new());
    }
    let thread_node = c.thread_nodes.iter().next().and_then(|n| env.node(*n));
    let memory_node = c.memory_nodes.iter().next().and_then(|n| env.node(*n));
    let too_big_for_a_node = env.resident_bytes > env.largest_node_bytes() / 10 * 9;
    let mut fixes = Vec::new();
    if env.is_jvm && too_big_for_a_node {
        fixes.push(Fix::jvm_use_numa(&env.workload));
    }
    match kind {
        CauseKind::FirstTouchByOtherThread => {
            fixes.push(Fix::first_touch_per_thread());
            fixes.push(Fix::interleave_all(&env.workload, &env.nodes));
            if !too_big_for_a_node && let Some(n) = thread_node {
                fixes.push(Fix::bind_to_node(n, &env.workload));
            }
        }
        CauseKind::ThreadMigrated | CauseKind::MemoryPolicy | CauseKind::ExplicitMigration => {
            let target = if kind == CauseKind::ThreadMigrated { memory_node.or(thread_node) } else { thread_node.or(memory_node) };
            if too_big_for_a_node {
                fixes.push(Fix::interleave_all(&env.workload, &env.nodes));
            } else if let Some(n) = target {
                fixes.push(Fix::bind_to_node(n, &env.workload));
                fixes.push(Fix::systemd_unit(&format!("{}.service", program_name(&env.workload)), &n.cpus, &[n.id]));
                fixes.push(Fix::docker_run(&n.cpus, &[n.id], "<image>"));
                fixes.push(Fix::kubernetes_single_numa_node());
                if !env.started_by_numatrace {
                    let from: Vec<u32> = env.nodes.iter().map(|n| n.id).collect();
                    fixes.push(Fix::repin_live(env.pid, n, &from));
                }
            }
        }
        // Users on several nodes: spread the memory evenly (interleave), or
        // give each thread its own part (first touch), or put the users on
        // one node when they and the memory fit there.
        CauseKind::SharedAcrossNodes => {
            fixes.push(Fix::interleave_all(&env.workload, &env.nodes));
            fixes.push(Fix::first_touch_per_thread());
            if !too_big_for_a_node && let Some(n) = memory_node {
                fixes.push(Fix::bind_to_node(n, &env.workload));
            }
        }
        CauseKind::AllocationSpill => {
            fixes.push(Fix::interleave_all(&env.workload, &env.nodes));
            if let Some(n) = thread_node {
                fixes.push(Fix::preferred(n, &env.workload));
            }
            fixes.push(Fix::zone_reclaim_off());
        }
        CauseKind::NumaBalancer => {
            if let Some(n) = thread_node.or(memory_node) {
                fixes.push(Fix::bind_to_node(n, &env.workload));
            }
            fixes.push(Fix::disable_numa_balancing());
        }
        CauseKind::PlacedBeforeCapture => {
            if let (Some(n), false) = (thread_node, too_big_for_a_node) {
                let from: Vec<u32> = c.memory_nodes.iter().copied().collect();
                fixes.push(Fix::repin_live(env.pid, n, &from));
                fixes.push(Fix::bind_to_node(n, &env.workload));
            } else {
                fixes.push(Fix::interleave_all(&env.workload, &env.nodes));
            }
        }
    }
    let mut steps = Vec::new();
    let mut problems = Vec::new();
    let mut constraints = env.constraints.clone();
    constraints.needed_bytes = env.resident_bytes;
    if constraints.nodes.is_empty() {
        constraints.nodes = env.nodes.clone();
    }
    for fix in fixes {
        let checked = fix.check(&constraints);
        problems.extend(checked.problems.iter().map(|p| format!("{}: {p}", fix.title)));
        if checked.applicable || !checked.steps.is_empty() {
            for s in checked.steps {
                if !steps.contains(&s) {
                    steps.push(s);
                }
            }
        }
    }
    (steps, problems)
}

fn program_name(w: &Workload) -> String {
    w.argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "myapp".into())
}
