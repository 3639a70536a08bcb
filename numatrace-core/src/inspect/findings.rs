//! The known NUMA pathologies, judged from snapshots: each with its evidence
//! and its fixes, checked against what the process is allowed.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    fixes::{Constraints, Fix, Workload},
    machine::cpulist,
    machine::{CounterRates, MappingKind, Node, ProcessSnapshot, SystemSnapshot, Topology},
};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Problem,
}

/// A known pathology, with its evidence and what to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Finding {
    /// `init_thread_pattern`, `cpuset_cpus_without_mems`, `heap_larger_than_node`,
    /// `interleave_fits_one_node`, `zone_reclaim_on`, `high_numa_miss`, `one_node_vm`,
    /// `one_node_machine`, `sockets_exceed_nodes`, `memoryless_node`, `cpuless_node`.
    pub kind: String,
    pub severity: Severity,
    /// The figures that show it.
    pub evidence: String,
    /// What to do, in one sentence; the exact steps are in `fixes`.
    pub recommendation: String,
    /// At least one step moves live memory or changes a host-wide setting.
    pub destructive: bool,
    pub fixes: Vec<Fix>,
    /// Why a fix cannot be applied as it stands (from the cpuset check).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<String>,
}

const MIB: u64 = 1 << 20;

/// A process smaller than this is not worth a placement finding.
const MIN_PROCESS_BYTES: u64 = 16 * MIB;
/// Share of memory on one node that makes the init-thread pattern.
const ONE_NODE_SHARE: f64 = 0.9;
/// numa_miss or numa_foreign share of a node's allocations that is "high".
const HIGH_MISS_RATIO: f64 = 0.05;
/// ...and the least number of missed pages (since boot) that makes it matter.
const MIN_MISSED_PAGES: u64 = 10_000;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// Builds a finding from fixes checked against the process's constraints.
fn finding(
    kind: &str,
    severity: Severity,
    evidence: String,
    recommendation: impl Into<String>,
    fixes: Vec<Fix>,
    constraints: Option<&Constraints>,
) -> Finding {
    let mut steps = Vec::new();
    let mut blocked_by = Vec::new();
    for fix in fixes {
        match constraints {
            Some(c) => {
                let checked = fix.check(c);
                blocked_by.extend(checked.problems.iter().map(|p| format!("{}: {p}", fix.title)));
                steps.extend(checked.steps);
            }
            None => steps.push(fix),
        }
    }
    Finding {
        kind: kind.to_string(),
        severity,
        destructive: steps.iter().any(|f| f.destructive),
        evidence,
        recommendation: recommendation.into(),
        fixes: steps,
        blocked_by,
    }
}

/// All findings for the machine and, when given, the process.
pub fn judge(
    system: &SystemSnapshot,
    rates: Option<&BTreeMap<u32, CounterRates>>,
    process: Option<&ProcessSnapshot>,
) -> Vec<Finding> {
    let topo = &system.topology;
    let mut out = Vec::new();
    machine_findings(system, rates, &mut out);
    if let Some(p) = process
        && topo.nodes.len() > 1
    {
        process_findings(topo, p, &mut out);
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

/// The findings about one process alone (no machine-wide ones): `numatrace
/// top` tags every process with them.
pub fn judge_process(topo: &Topology, process: &ProcessSnapshot) -> Vec<Finding> {
    let mut out = Vec::new();
    if topo.nodes.len() > 1 {
        process_findings(topo, process, &mut out);
    }
    out
}

fn machine_findings(system: &SystemSnapshot, rates: Option<&BTreeMap<u32, CounterRates>>, out: &mut Vec<Finding>) {
    let topo = &system.topology;
    let virt = &system.virtualization;
    if topo.nodes.len() == 1 {
        if virt.is_vm {
            let hv = virt.hypervisor.as_deref();
            out.push(finding(
                "one_node_vm",
                Severity::Info,
                format!("a virtual machine ({}) with one NUMA node: {} CPUs, {}", hv.unwrap_or("unknown hypervisor"), topo.online_cpus.len(), mib(topo.largest_node_bytes())),
                "Pinning inside this guest cannot help: the hypervisor decides which host nodes back its vCPUs and memory. Fix placement on the host, or get a vNUMA topology.",
                vec![Fix::no_benefit_from_pinning("the guest sees one node"), Fix::vm_topology(hv)],
                None,
            ));
        } else {
            out.push(finding(
                "one_node_machine",
                Severity::Info,
                format!(
                    "one NUMA node holds all {} CPUs and {}",
                    topo.online_cpus.len(),
                    mib(topo.largest_node_bytes())
                ),
                "Every access is local here; NUMA placement cannot make anything slower or faster.",
                vec![Fix::no_benefit_from_pinning("the machine has one node")],
                None,
            ));
        }
    }
    if topo.sockets as usize > topo.nodes.len() {
        out.push(finding(
            "sockets_exceed_nodes",
            Severity::Warning,
            format!("{} CPU sockets but {} NUMA node(s): firmware interleaves memory across sockets (Node Interleaving / NPS0) and hides the topology", topo.sockets, topo.nodes.len()),
            "Every access is a mix of local and remote, and no pinning can fix that: expose the nodes in firmware.",
            vec![Fix::firmware_expose_nodes(topo.sockets, topo.nodes.len())],
            None,
        ));
    }
    for n in &topo.nodes {
        if n.is_memoryless() && !n.is_cpuless() {
            out.push(finding(
                "memoryless_node",
                Severity::Warning,
                format!(
                    "node {} has CPUs {} but no memory: everything they allocate is remote",
                    n.id,
                    cpulist::format(&n.cpus)
                ),
                "Keep memory-hungry threads off these CPUs, or fix the DIMM population / firmware.",
                Vec::new(),
                None,
            ));
        }
        if n.is_cpuless() && !n.is_memoryless() {
            out.push(finding(
                "cpuless_node",
                Severity::Info,
                format!(
                    "node {} has {} of memory and no CPU (CXL, HBM or PMEM exposed as a node)",
                    n.id,
                    mib(n.mem_total_bytes)
                ),
                "Its memory is remote to every CPU; bind to it only what tolerates higher latency (memory tiering).",
                Vec::new(),
                None,
            ));
        }
    }
    if let Some(mode) = system.sysctl.zone_reclaim_mode
        && mode & 1 != 0
        && topo.nodes.len() > 1
    {
        out.push(finding(
            "zone_reclaim_on",
            Severity::Problem,
            format!("vm.zone_reclaim_mode={mode}: the kernel reclaims page cache on the local node before allocating on a remote node with free memory"),
            "Turn it off unless the workload is partitioned per node and its data fits each node.",
            vec![Fix::zone_reclaim_off()],
            None,
        ));
    }
    if topo.nodes.len() > 1 {
        for (id, c) in &system.counters {
            let (miss, foreign, over) = match rates.and_then(|r| r.get(id)) {
                Some(r) => {
                    let miss =
                        if r.numa_hit + r.numa_miss > 0.0 { r.numa_miss / (r.numa_hit + r.numa_miss) } else { 0.0 };
                    let foreign = if r.numa_hit + r.numa_foreign > 0.0 {
                        r.numa_foreign / (r.numa_hit + r.numa_foreign)
                    } else {
                        0.0
                    };
                    (miss, foreign, "over the interval")
                }
                None if c.numa_miss.max(c.numa_foreign) >= MIN_MISSED_PAGES => {
                    (c.miss_ratio(), c.foreign_ratio(), "since boot")
                }
                None => continue,
            };
            if miss.max(foreign) < HIGH_MISS_RATIO {
                continue;
            }
            let free = topo.node(*id).map(|n| mib(n.mem_free_bytes)).unwrap_or_default();
            out.push(finding(
                "high_numa_miss",
                Severity::Warning,
                format!(
                    "node {id}: numa_miss {} of its allocations (pages meant for another node landed here), numa_foreign {} (pages meant for it landed elsewhere) {over}; node {id} has {free} free",
                    pct(miss),
                    pct(foreign)
                ),
                "A node runs short of free memory, or bind/preferred policies point at a full node: look at free memory per node and at the biggest processes (numatrace inspect --pid <pid>).",
                Vec::new(),
                None,
            ));
        }
    }
}

fn process_findings(topo: &Topology, p: &ProcessSnapshot, out: &mut Vec<Finding>) {
    let total = p.total_bytes();
    let workload = Workload::of_snapshot(p);
    let allowed = p.allowed();
    let constraints = Constraints {
        allowed: allowed.clone(),
        nodes: topo.nodes.clone(),
        cpuset: p.cpuset.clone(),
        needed_bytes: total,
    };
    let thread_nodes: Vec<u32> = p.threads_by_node.keys().copied().collect();
    // The node holding most of the memory.
    let top = p.memory_by_node.iter().max_by_key(|(_, c)| c.total).map(|(n, c)| (*n, c.total));
    // The allowed node with the most free memory that can hold the whole process.
    let home: Option<&Node> = topo
        .nodes
        .iter()
        .filter(|n| !n.is_cpuless() && !n.is_memoryless() && (allowed.mems.is_empty() || allowed.mems.contains(&n.id)))
        .filter(|n| n.mem_free_bytes > total)
        .max_by_key(|n| (top.is_some_and(|(t, _)| t == n.id), n.mem_free_bytes));
    let name = p.name();
    let is_jvm = name == "java" || workload.argv.first().is_some_and(|a| a.ends_with("/java") || a == "java");

    if let Some((node, bytes)) = top
        && total >= MIN_PROCESS_BYTES
        && thread_nodes.len() > 1
        && bytes as f64 / total as f64 >= ONE_NODE_SHARE
    {
        let spread: Vec<String> = p.threads_by_node.iter().map(|(n, c)| format!("{c} on node {n}")).collect();
        let mut fixes = vec![Fix::first_touch_per_thread()];
        match home {
            Some(h) => fixes.push(Fix::bind_to_node(h, &workload)),
            None => fixes.push(Fix::interleave_all(&workload, &topo.nodes)),
        }
        out.push(finding(
            "init_thread_pattern",
            Severity::Problem,
            format!("{} of its {} sits on node {node} while its threads run spread: {}", pct(bytes as f64 / total as f64), mib(total), spread.join(", ")),
            "One thread first-touched the memory the others use: make each worker touch its own part, or run the whole process on one node.",
            fixes,
            Some(&constraints),
        ));
    }

    if let Some(cs) = &p.cpuset
        && cs.cpus_set_by.is_some()
    {
        let cpu_nodes = topo.nodes_of_cpus(&cs.effective_cpus);
        let memory_nodes: Vec<u32> = topo.nodes.iter().filter(|n| !n.is_memoryless()).map(|n| n.id).collect();
        let extra: Vec<u32> = cs.effective_mems.iter().copied().filter(|m| !cpu_nodes.contains(m)).collect();
        let cpu_nodes_with_memory: Vec<u32> = cpu_nodes.iter().copied().filter(|n| memory_nodes.contains(n)).collect();
        if cpu_nodes.len() < memory_nodes.len() && !extra.is_empty() && !cpu_nodes_with_memory.is_empty() {
            let live = Fix::cgroup_cpuset(cs, &cs.effective_cpus, &cpu_nodes_with_memory, true);
            out.push(finding(
                "cpuset_cpus_without_mems",
                Severity::Problem,
                format!(
                    "cgroup {} confines CPUs to {} (node {}) but lets memory come from node(s) {}{}",
                    cs.cgroup,
                    cpulist::format(&cs.effective_cpus),
                    cpulist::format(&cpu_nodes),
                    cpulist::format(&cs.effective_mems),
                    if cs.mems_set_by.is_none() { " (cpuset.mems not set)" } else { "" }
                ),
                "Set cpuset.mems to the nodes of its CPUs, in the cgroup and in whatever creates it (docker --cpuset-mems, Kubernetes Topology Manager).",
                vec![live, Fix::docker_run(&cs.effective_cpus, &cpu_nodes_with_memory, "<image>"), Fix::kubernetes_single_numa_node()],
                None,
            ));
        }
    }

    let anon: u64 = p
        .numa_maps
        .iter()
        .flat_map(|m| m.mappings.iter())
        .filter(|m| matches!(m.kind, MappingKind::Heap | MappingKind::Anon | MappingKind::Huge))
        .map(|m| m.resident_bytes())
        .sum();
    let largest = topo.largest_node_bytes();
    if largest > 0 && anon > largest {
        let mut fixes = vec![Fix::interleave_all(&workload, &topo.nodes)];
        if is_jvm {
            fixes.insert(0, Fix::jvm_use_numa(&workload));
        }
        out.push(finding(
            "heap_larger_than_node",
            Severity::Warning,
            format!("{} of anonymous memory (heap) is more than the largest node holds ({})", mib(anon), mib(largest)),
            "It cannot fit one node: spread it evenly (interleave) rather than fill one node and spill, or make it NUMA-aware.",
            fixes,
            Some(&constraints),
        ));
    }

    let interleaved: u64 = p
        .numa_maps
        .iter()
        .flat_map(|m| m.mappings.iter())
        .filter(|m| m.policy_mode().ends_with("interleave"))
        .map(|m| m.resident_bytes())
        .sum();
    if total >= MIN_PROCESS_BYTES
        && interleaved * 2 >= total
        && let Some(h) = home
    {
        out.push(finding(
            "interleave_fits_one_node",
            Severity::Warning,
            format!(
                "{} of its {} is interleaved across nodes, yet it all fits in node {}'s {} free",
                mib(interleaved),
                mib(total),
                h.id,
                mib(h.mem_free_bytes)
            ),
            "Interleaving makes most accesses remote; a workload that fits one node runs faster bound to it.",
            vec![Fix::bind_to_node(h, &workload)],
            Some(&constraints),
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::machine::{
        CategoryBytes, CgroupVersion, Cpuset, Mapping, NumaMaps, ProcessStatus, Sysctls, ThreadPlacement,
        Virtualization,
    };

    fn system(topo: Topology) -> SystemSnapshot {
        SystemSnapshot::synthetic(topo, Sysctls { numa_balancing: Some(1), zone_reclaim_mode: Some(0) })
    }

    fn process(pages: &[(u32, u64)], policy: &str, threads_on: &[u32]) -> ProcessSnapshot {
        let mapping = Mapping {
            start: 0x7f00_0000_0000,
            policy: policy.into(),
            kind: MappingKind::Anon,
            file: None,
            pages_by_node: pages.iter().copied().collect(),
            page_size_bytes: 4096,
            anon_pages: 0,
            dirty_pages: 0,
        };
        let maps = NumaMaps { mappings: vec![mapping], skipped_lines: 0 };
        let memory_by_node: BTreeMap<u32, CategoryBytes> = maps.memory_by_node();
        let threads: Vec<ThreadPlacement> = threads_on
            .iter()
            .enumerate()
            .map(|(i, &n)| ThreadPlacement { tid: 100 + i as u32, name: "w".into(), cpu: n * 4, node: Some(n) })
            .collect();
        let mut threads_by_node = BTreeMap::new();
        for t in &threads {
            *threads_by_node.entry(t.node.unwrap_or(0)).or_insert(0) += 1;
        }
        ProcessSnapshot {
            pid: u32::MAX - 7,
            taken_at_unix_ms: 0,
            status: Some(ProcessStatus {
                name: "db".into(),
                cpus_allowed: (0..8).collect(),
                mems_allowed: vec![0, 1],
                rss_bytes: 0,
            }),
            numa_maps: Some(maps),
            memory_by_node,
            threads,
            threads_by_node,
            cpuset: None,
            identity: None,
            unreadable: Vec::new(),
        }
    }

    fn kinds(f: &[Finding]) -> Vec<&str> {
        f.iter().map(|f| f.kind.as_str()).collect()
    }

    fn two_nodes() -> Topology {
        Topology::synthetic_with_memory(&[vec![0, 1, 2, 3], vec![4, 5, 6, 7]], 8 << 30)
    }

    #[test]
    fn init_thread_pattern_is_found_with_a_bind_fix() {
        let sys = system(two_nodes());
        let p = process(&[(0, 60_000), (1, 100)], "default", &[0, 0, 1, 1]);
        let f = judge(&sys, None, Some(&p));
        assert_eq!(kinds(&f), vec!["init_thread_pattern"]);
        assert!(
            f[0].fixes.iter().any(|x| x.commands.iter().any(|c| c.starts_with("numactl --cpunodebind=0 --membind=0")))
        );
        assert!(!f[0].destructive);
        // Threads all on the memory's node: no finding.
        let p = process(&[(0, 60_000)], "default", &[0, 0]);
        assert!(judge(&sys, None, Some(&p)).is_empty());
    }

    #[test]
    fn interleave_on_a_small_workload_and_cpuset_without_mems() {
        let sys = system(two_nodes());
        let mut p = process(&[(0, 30_000), (1, 30_000)], "interleave:0-1", &[0, 1]);
        p.cpuset = Some(Cpuset {
            version: CgroupVersion::V2,
            cgroup: "/docker/abc".into(),
            dir: "/sys/fs/cgroup/docker/abc".into(),
            cpus: vec![4, 5, 6, 7],
            mems: vec![],
            effective_cpus: vec![4, 5, 6, 7],
            effective_mems: vec![0, 1],
            cpus_set_by: Some("/docker/abc".into()),
            mems_set_by: None,
        });
        let f = judge(&sys, None, Some(&p));
        assert!(kinds(&f).contains(&"interleave_fits_one_node"), "{:?}", kinds(&f));
        let cs = f.iter().find(|f| f.kind == "cpuset_cpus_without_mems").expect("cpuset finding");
        assert!(cs.destructive);
        assert!(cs.fixes[0].commands.contains(&"echo 1 > /sys/fs/cgroup/docker/abc/cpuset.mems".to_string()));
        assert!(cs.fixes.iter().any(|x| x.commands == vec!["docker run --cpuset-cpus=4-7 --cpuset-mems=1 <image>"]));
    }

    #[test]
    fn machine_wide_findings() {
        let mut sys = system(two_nodes());
        sys.sysctl.zone_reclaim_mode = Some(1);
        sys.topology.sockets = 4;
        sys.counters
            .insert(1, crate::machine::NodeCounters { numa_hit: 100_000, numa_miss: 50_000, ..Default::default() });
        let f = judge(&sys, None, None);
        assert_eq!(kinds(&f), vec!["zone_reclaim_on", "sockets_exceed_nodes", "high_numa_miss"]);
        assert!(f[0].destructive);
        let mut one = system(Topology::synthetic_with_memory(&[vec![0, 1]], 8 << 30));
        one.virtualization = Virtualization { is_vm: true, hypervisor: Some("KVM".into()), dmi: None };
        let f = judge(&one, None, None);
        assert_eq!(kinds(&f), vec!["one_node_vm"]);
        assert!(f[0].fixes[0].title.starts_with("No benefit from pinning"));
    }

    #[test]
    fn a_heap_bigger_than_a_node_gets_interleave() {
        let sys = system(Topology::synthetic_with_memory(&[vec![0, 1], vec![2, 3]], 1 << 30));
        let p = process(&[(0, 200_000), (1, 200_000)], "default", &[0, 1]);
        let f = judge(&sys, None, Some(&p));
        let h = f.iter().find(|f| f.kind == "heap_larger_than_node").expect("heap finding");
        assert!(h.fixes.iter().any(|x| x.commands[0].starts_with("numactl --interleave=all")));
    }
}
