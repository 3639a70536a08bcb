//! The fix vocabulary: each remedy for a NUMA placement problem as exact
//! commands filled with real node numbers and CPU lists, whether it is
//! DESTRUCTIVE (moves memory of a live process or changes a host-wide
//! setting), and how to check that it worked.
//!
//! Fixes are built by the constructors below and checked against what the
//! process is allowed ([`Constraints`]): a fix that asks for CPUs or nodes the
//! cpuset forbids comes back with the cgroup change that must come first.
use serde::{Deserialize, Serialize};

use crate::{
    cpulist,
    sysinfo::{Allowed, CgroupVersion, Cpuset, NodeInfo},
};

/// Which remedy a fix is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixKind {
    BindToNode,
    InterleaveAll,
    Preferred,
    Taskset,
    RepinLive,
    MigratePages,
    CgroupV2Cpuset,
    CgroupV1Cpuset,
    SystemdUnit,
    Docker,
    Kubernetes,
    FirstTouchPerThread,
    JvmUseNuma,
    ZoneReclaimOff,
    DisableNumaBalancing,
    FirmwareNodes,
    VmTopology,
    NoBenefitFromPinning,
}

/// Where a fix puts the process: the CPUs it runs on and the nodes its memory comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub cpus: Vec<u32>,
    pub mems: Vec<u32>,
    /// The policy restricts allocation to `mems` (bind): those nodes must have room.
    pub strict: bool,
}

/// One remedy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fix {
    pub kind: FixKind,
    pub title: String,
    /// Exact commands (or file contents) to run, in order.
    pub commands: Vec<String>,
    /// Moves memory of a live process or changes a host-wide setting.
    pub destructive: bool,
    /// How to check it worked.
    pub verify: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
}

/// What a command line is: for a process, the command it was started with.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The command to start the workload with, for fixes that wrap it: its argv, or a placeholder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    pub argv: Vec<String>,
}

impl Workload {
    /// The command line of a running process, from /proc/<pid>/cmdline (placeholder when unreadable).
    pub fn of_pid(pid: u32) -> Workload {
        let argv = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| b.split(|&c| c == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
            .unwrap_or_default();
        Workload { argv }
    }

    fn command(&self) -> String {
        if self.argv.is_empty() { "<command>".to_string() } else { shell_words(&self.argv) }
    }
}

fn verify_numastat(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("numatrace inspect --pid {pid} (or numastat -p {pid}): memory and threads on the same node(s)"),
        None => "numatrace inspect --pid <new pid> (or numastat -p <new pid>): memory and threads on the same node(s)".into(),
    }
}

impl Fix {
    fn new(kind: FixKind, title: impl Into<String>, commands: Vec<String>, destructive: bool, verify: impl Into<String>) -> Fix {
        Fix { kind, title: title.into(), commands, destructive, verify: verify.into(), notes: Vec::new(), placement: None }
    }

    fn with_placement(mut self, cpus: &[u32], mems: &[u32], strict: bool) -> Fix {
        self.placement = Some(Placement { cpus: cpus.to_vec(), mems: mems.to_vec(), strict });
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Fix {
        self.notes.push(note.into());
        self
    }

    /// Start the workload with its threads and memory on one node.
    pub fn bind_to_node(node: &NodeInfo, workload: &Workload) -> Fix {
        Fix::new(
            FixKind::BindToNode,
            format!("Run it on node {} only (CPUs {}), memory from node {}", node.id, cpulist::format(&node.cpus), node.id),
            vec![format!("numactl --cpunodebind={0} --membind={0} -- {1}", node.id, workload.command())],
            false,
            verify_numastat(None),
        )
        .with_placement(&node.cpus, &[node.id], true)
    }

    /// Spread the workload's memory over all nodes, for one that needs more than a node holds.
    pub fn interleave_all(workload: &Workload, nodes: &[NodeInfo]) -> Fix {
        let mems: Vec<u32> = nodes.iter().filter(|n| !n.is_memoryless()).map(|n| n.id).collect();
        Fix::new(
            FixKind::InterleaveAll,
            "Interleave its memory over all nodes",
            vec![format!("numactl --interleave=all -- {}", workload.command())],
            false,
            "numastat -p <new pid>: memory spread evenly over the nodes",
        )
        .with_placement(&[], &mems, false)
    }

    /// Prefer one node for memory but fall back to others when it is full.
    pub fn preferred(node: &NodeInfo, workload: &Workload) -> Fix {
        Fix::new(
            FixKind::Preferred,
            format!("Run on node {0}, prefer node {0}'s memory (falls back to other nodes when full)", node.id),
            vec![format!("numactl --cpunodebind={0} --preferred={0} -- {1}", node.id, workload.command())],
            false,
            verify_numastat(None),
        )
        .with_placement(&node.cpus, &[node.id], false)
    }

    /// Start the workload on a CPU list (memory then follows by first touch).
    pub fn taskset(cpus: &[u32], workload: &Workload) -> Fix {
        Fix::new(
            FixKind::Taskset,
            format!("Start it on CPUs {}", cpulist::format(cpus)),
            vec![format!("taskset -c {} {}", cpulist::format(cpus), workload.command())],
            false,
            verify_numastat(None),
        )
        .with_placement(cpus, &[], false)
    }

    /// Re-pin a live process onto one node and move its memory there. DESTRUCTIVE.
    pub fn repin_live(pid: u32, node: &NodeInfo, from_nodes: &[u32]) -> Fix {
        let from: Vec<u32> = from_nodes.iter().copied().filter(|&n| n != node.id).collect();
        let mut commands = vec![format!("taskset -a -p -c {} {pid}", cpulist::format(&node.cpus))];
        if !from.is_empty() {
            commands.push(format!("migratepages {pid} {} {}", cpulist::format(&from), node.id));
        }
        Fix::new(
            FixKind::RepinLive,
            format!("Re-pin live PID {pid} onto node {} and move its memory there", node.id),
            commands,
            true,
            verify_numastat(Some(pid)),
        )
        .with_placement(&node.cpus, &[node.id], true)
        .with_note("Moving memory stalls the process while pages copy; do it off-peak. New allocations still follow the old policy: restart under numactl to make it stick.")
    }

    /// Move a live process's pages between nodes. DESTRUCTIVE.
    pub fn migratepages(pid: u32, from: &[u32], to: &[u32]) -> Fix {
        Fix::new(
            FixKind::MigratePages,
            format!("Move PID {pid}'s memory from node(s) {} to node(s) {}", cpulist::format(from), cpulist::format(to)),
            vec![format!("migratepages {pid} {} {}", cpulist::format(from), cpulist::format(to))],
            true,
            verify_numastat(Some(pid)),
        )
        .with_placement(&[], to, true)
    }

    /// Set a cgroup's cpuset (v2). DESTRUCTIVE when the cgroup has live tasks (v2 moves their memory to the new nodes).
    pub fn cgroup_v2_cpuset(cgroup_dir: &str, cpus: &[u32], mems: &[u32], live: bool) -> Fix {
        let dir = cgroup_dir.trim_end_matches('/');
        let parent = dir.rsplit_once('/').map(|(p, _)| p).unwrap_or(dir);
        Fix::new(
            FixKind::CgroupV2Cpuset,
            format!("Give the cgroup CPUs {} and memory nodes {} (cgroup v2)", cpulist::format(cpus), cpulist::format(mems)),
            vec![
                format!("echo +cpuset > {parent}/cgroup.subtree_control"),
                format!("echo {} > {dir}/cpuset.cpus", cpulist::format(cpus)),
                format!("echo {} > {dir}/cpuset.mems", cpulist::format(mems)),
            ],
            live,
            format!("cat {dir}/cpuset.cpus.effective {dir}/cpuset.mems.effective"),
        )
        .with_placement(cpus, mems, true)
    }

    /// Set a cgroup's cpuset (v1). DESTRUCTIVE when it has live tasks and memory_migrate is on.
    pub fn cgroup_v1_cpuset(cgroup_dir: &str, cpus: &[u32], mems: &[u32], live: bool) -> Fix {
        let dir = cgroup_dir.trim_end_matches('/');
        let mut commands = vec![format!("echo {} > {dir}/cpuset.cpus", cpulist::format(cpus)), format!("echo {} > {dir}/cpuset.mems", cpulist::format(mems))];
        if live {
            commands.insert(0, format!("echo 1 > {dir}/cpuset.memory_migrate"));
        }
        Fix::new(
            FixKind::CgroupV1Cpuset,
            format!("Give the cgroup CPUs {} and memory nodes {} (cgroup v1)", cpulist::format(cpus), cpulist::format(mems)),
            commands,
            live,
            format!("cat {dir}/cpuset.effective_cpus {dir}/cpuset.effective_mems"),
        )
        .with_placement(cpus, mems, true)
    }

    /// The cgroup change for a cpuset of either version.
    pub fn cgroup_cpuset(cpuset: &Cpuset, cpus: &[u32], mems: &[u32], live: bool) -> Fix {
        let dir = cpuset.dir.to_string_lossy();
        match cpuset.version {
            CgroupVersion::V2 => Fix::cgroup_v2_cpuset(&dir, cpus, mems, live),
            CgroupVersion::V1 => Fix::cgroup_v1_cpuset(&dir, cpus, mems, live),
        }
    }

    /// A systemd drop-in that starts the service on one set of CPUs and nodes.
    pub fn systemd_unit(unit: &str, cpus: &[u32], mems: &[u32]) -> Fix {
        let dropin = format!("/etc/systemd/system/{unit}.d/numa.conf");
        Fix::new(
            FixKind::SystemdUnit,
            format!("Start {unit} on CPUs {} with memory bound to node(s) {}", cpulist::format(cpus), cpulist::format(mems)),
            vec![
                format!("mkdir -p /etc/systemd/system/{unit}.d"),
                format!(
                    "printf '[Service]\\nCPUAffinity={}\\nNUMAPolicy=bind\\nNUMAMask={}\\n' > {dropin}",
                    cpulist::format(cpus).replace(',', " "),
                    cpulist::format(mems).replace(',', " ")
                ),
                "systemctl daemon-reload".into(),
                format!("systemctl restart {unit}"),
            ],
            false,
            format!("systemctl show {unit} -p CPUAffinity -p NUMAPolicy -p NUMAMask; then numatrace inspect --pid $(systemctl show -p MainPID --value {unit})"),
        )
        .with_placement(cpus, mems, true)
        .with_note("Takes effect at the restart; the restart itself interrupts the service.")
    }

    /// A container started on one node.
    pub fn docker_run(cpus: &[u32], mems: &[u32], image: &str) -> Fix {
        Fix::new(
            FixKind::Docker,
            format!("Start the container on CPUs {} with memory from node(s) {}", cpulist::format(cpus), cpulist::format(mems)),
            vec![format!("docker run --cpuset-cpus={} --cpuset-mems={} {image}", cpulist::format(cpus), cpulist::format(mems))],
            false,
            "docker inspect -f '{{.HostConfig.CpusetCpus}} {{.HostConfig.CpusetMems}}' <container>".to_string(),
        )
        .with_placement(cpus, mems, true)
    }

    /// Kubernetes: exclusive CPUs from one node with memory from the same node. DESTRUCTIVE (node-wide kubelet change).
    pub fn kubernetes_single_numa_node() -> Fix {
        Fix::new(
            FixKind::Kubernetes,
            "Kubernetes: CPU Manager static + Topology Manager single-numa-node",
            vec![
                "kubectl drain <node> --ignore-daemonsets".into(),
                "# kubelet config: cpuManagerPolicy: static, reservedSystemCPUs: \"0\", topologyManagerPolicy: single-numa-node, memoryManagerPolicy: Static (with reservedMemory per NUMA node)".into(),
                "rm /var/lib/kubelet/cpu_manager_state /var/lib/kubelet/memory_manager_state && systemctl restart kubelet".into(),
                "kubectl uncordon <node>".into(),
                "# the pod: Guaranteed QoS (requests == limits) with an integer number of CPUs".into(),
            ],
            true,
            "kubectl exec <pod> -- cat /sys/fs/cgroup/cpuset.cpus.effective /sys/fs/cgroup/cpuset.mems.effective: CPUs and memory of one node",
        )
        .with_note("Changes the kubelet of the whole node: drain it first.")
    }

    /// The init-thread pattern's real fix: each worker touches the memory it will use.
    pub fn first_touch_per_thread() -> Fix {
        Fix::new(
            FixKind::FirstTouchPerThread,
            "Let each worker thread first-touch (initialize) the memory it will use",
            vec![
                "# code change: initialize data in the worker threads, partitioned like the work (OpenMP: the same `#pragma omp parallel for schedule(static)` as the compute loop)".into(),
                "# or, without a code change: numactl --interleave=all -- <command> (spreads pages evenly; half the accesses stay remote on 2 nodes)".into(),
            ],
            false,
            "numastat -p <pid>: memory split over the nodes in the same proportion as the threads",
        )
    }

    /// JVM: NUMA-aware heap for a heap bigger than a node.
    pub fn jvm_use_numa(workload: &Workload) -> Fix {
        let cmd = workload.command();
        let cmd = if cmd.starts_with("java ") || cmd.contains("/java ") {
            cmd.replacen("java ", "java -XX:+UseNUMA ", 1)
        } else {
            "java -XX:+UseNUMA <your options>".into()
        };
        Fix::new(FixKind::JvmUseNuma, "Make the JVM heap NUMA-aware (-XX:+UseNUMA, with Parallel GC or G1 on JDK 14+)", vec![cmd], false, "numastat -p <pid>: heap spread over nodes, each thread allocating locally")
    }

    /// Turn zone reclaim off. DESTRUCTIVE (host-wide).
    pub fn zone_reclaim_off() -> Fix {
        Fix::new(
            FixKind::ZoneReclaimOff,
            "Turn vm.zone_reclaim_mode off (host-wide)",
            vec!["sysctl -w vm.zone_reclaim_mode=0".into(), "echo vm.zone_reclaim_mode=0 > /etc/sysctl.d/90-numa.conf".into()],
            true,
            "sysctl vm.zone_reclaim_mode prints 0; grep pgscan_direct /proc/vmstat stops climbing",
        )
        .with_note("With zone_reclaim_mode=1 the kernel evicts page cache on the local node instead of allocating from a remote node with free memory: file-serving and database workloads lose their cache.")
    }

    /// Turn the automatic NUMA balancer off. DESTRUCTIVE (host-wide).
    pub fn disable_numa_balancing() -> Fix {
        Fix::new(
            FixKind::DisableNumaBalancing,
            "Turn automatic NUMA balancing off (host-wide)",
            vec!["sysctl -w kernel.numa_balancing=0".into(), "echo kernel.numa_balancing=0 > /etc/sysctl.d/90-numa.conf".into()],
            true,
            "grep numa_pages_migrated /proc/vmstat stops climbing",
        )
        .with_note("Only when the workload is explicitly pinned: unpinned processes lose the balancer's corrections.")
    }

    /// Firmware hides the sockets' topology (node interleaving / NPS1 / SNC off). DESTRUCTIVE (reboot, host-wide).
    pub fn firmware_expose_nodes(sockets: u32, nodes: usize) -> Fix {
        Fix::new(
            FixKind::FirmwareNodes,
            format!("Expose the real NUMA topology in firmware ({sockets} sockets show as {nodes} node(s))"),
            vec![
                "# BIOS/UEFI setup: disable \"Node Interleaving\" (Intel), or set NPS=1/2/4 per socket (AMD EPYC) instead of 0; consider SNC for Intel".into(),
                "# then reboot; check with: numactl --hardware".into(),
            ],
            true,
            "numactl --hardware shows at least one node per socket",
        )
    }

    /// A VM's NUMA layout is the hypervisor's: fix it there.
    pub fn vm_topology(hypervisor: Option<&str>) -> Fix {
        let hv = hypervisor.unwrap_or("the hypervisor");
        Fix::new(
            FixKind::VmTopology,
            format!("Ask {hv} for a vNUMA topology that matches the host, or for vCPUs and memory pinned to one host node"),
            vec![
                "# libvirt: <numatune><memory mode='strict' nodeset='N'/></numatune> and <vcpupin> per vCPU, or <cpu><numa> cells matching the host".into(),
                "# cloud: pick an instance size that fits in one host socket".into(),
            ],
            false,
            "inside the guest: numactl --hardware; on the host: numastat -p <qemu pid>",
        )
    }

    /// Nothing to gain: one node.
    pub fn no_benefit_from_pinning(reason: impl Into<String>) -> Fix {
        Fix::new(FixKind::NoBenefitFromPinning, format!("No benefit from pinning: {}", reason.into()), Vec::new(), false, "numactl --hardware shows one node")
    }
}

/// What a fix is checked against: what the process may use, and the nodes as they are now.
#[derive(Clone, Debug, Default)]
pub struct Constraints {
    pub allowed: Allowed,
    pub nodes: Vec<NodeInfo>,
    pub cpuset: Option<Cpuset>,
    /// Memory the process needs on the target nodes (its resident size).
    pub needed_bytes: u64,
}

/// The outcome of checking a fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checked {
    /// The fix can be applied as it stands.
    pub applicable: bool,
    /// Why not, one reason a line.
    pub problems: Vec<String>,
    /// The steps to take instead, in order (the cgroup change first, then the fix), when the cpuset is the obstacle.
    pub steps: Vec<Fix>,
}

impl Fix {
    /// Checks the fix against what the process is allowed and what the nodes hold.
    pub fn check(&self, c: &Constraints) -> Checked {
        let Some(p) = &self.placement else {
            return Checked { applicable: true, problems: Vec::new(), steps: vec![self.clone()] };
        };
        let mut problems = Vec::new();
        let mut hard = false;
        for &id in &p.mems {
            match c.nodes.iter().find(|n| n.id == id) {
                None => {
                    problems.push(format!("node {id} does not exist on this machine"));
                    hard = true;
                }
                Some(n) if n.is_memoryless() => {
                    problems.push(format!("node {id} has no memory"));
                    hard = true;
                }
                Some(n) if p.strict && p.mems.len() == 1 && n.mem_free_bytes < c.needed_bytes => {
                    problems.push(format!("node {id} has {} MiB free, the process needs {} MiB", n.mem_free_bytes >> 20, c.needed_bytes >> 20));
                    hard = true;
                }
                _ => {}
            }
        }
        let forbidden_cpus: Vec<u32> = if c.allowed.cpus.is_empty() { Vec::new() } else { p.cpus.iter().copied().filter(|x| !c.allowed.cpus.contains(x)).collect() };
        let forbidden_mems: Vec<u32> = if c.allowed.mems.is_empty() { Vec::new() } else { p.mems.iter().copied().filter(|x| !c.allowed.mems.contains(x)).collect() };
        if !forbidden_cpus.is_empty() {
            problems.push(format!("its cpuset forbids CPUs {} (allowed: {})", cpulist::format(&forbidden_cpus), cpulist::format(&c.allowed.cpus)));
        }
        if !forbidden_mems.is_empty() {
            problems.push(format!("its cpuset forbids node(s) {} (allowed: {})", cpulist::format(&forbidden_mems), cpulist::format(&c.allowed.mems)));
        }
        if problems.is_empty() {
            return Checked { applicable: true, problems, steps: vec![self.clone()] };
        }
        let mut steps = Vec::new();
        if !hard && let Some(cs) = &c.cpuset {
            let cpus = if p.cpus.is_empty() { cs.effective_cpus.clone() } else { p.cpus.clone() };
            let mems = if p.mems.is_empty() { cs.effective_mems.clone() } else { p.mems.clone() };
            steps.push(Fix::cgroup_cpuset(cs, &cpus, &mems, true).with_note("Its cpuset forbids the fix below: change the cgroup first (or ask whoever owns it)."));
            steps.push(self.clone());
        }
        Checked { applicable: false, problems, steps }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysinfo::MachineTopology;

    fn two_nodes() -> MachineTopology {
        MachineTopology::synthetic(&[vec![0, 1, 2, 3], vec![4, 5, 6, 7]], 8 << 30)
    }

    #[test]
    fn commands_carry_real_numbers() {
        let topo = two_nodes();
        let w = Workload { argv: vec!["postgres".into(), "-D".into(), "/var/lib/pg data".into()] };
        let f = Fix::bind_to_node(&topo.nodes[1], &w);
        assert_eq!(f.commands, vec!["numactl --cpunodebind=1 --membind=1 -- postgres -D '/var/lib/pg data'"]);
        assert!(!f.destructive);
        let live = Fix::repin_live(42, &topo.nodes[1], &[0, 1]);
        assert!(live.destructive);
        assert_eq!(live.commands, vec!["taskset -a -p -c 4-7 42", "migratepages 42 0 1"]);
        assert!(Fix::zone_reclaim_off().destructive && Fix::disable_numa_balancing().destructive && Fix::migratepages(1, &[0], &[1]).destructive);
        assert_eq!(Fix::docker_run(&[4, 5, 6, 7], &[1], "img").commands, vec!["docker run --cpuset-cpus=4-7 --cpuset-mems=1 img"]);
        assert!(Fix::systemd_unit("db.service", &[0, 1, 2, 3], &[0]).commands[1].contains("CPUAffinity=0-3\\nNUMAPolicy=bind\\nNUMAMask=0"));
    }

    #[test]
    fn a_fix_the_cpuset_forbids_comes_with_the_cgroup_change() {
        let topo = two_nodes();
        let cpuset = Cpuset {
            version: CgroupVersion::V2,
            cgroup: "/db".into(),
            dir: "/sys/fs/cgroup/db".into(),
            cpus: vec![0, 1, 2, 3],
            mems: vec![0],
            effective_cpus: vec![0, 1, 2, 3],
            effective_mems: vec![0],
            cpus_set_by: Some("/db".into()),
            mems_set_by: Some("/db".into()),
        };
        let c = Constraints { allowed: Allowed { cpus: vec![0, 1, 2, 3], mems: vec![0] }, nodes: topo.nodes.clone(), cpuset: Some(cpuset), needed_bytes: 1 << 30 };
        let ok = Fix::bind_to_node(&topo.nodes[0], &Workload::default()).check(&c);
        assert!(ok.applicable, "{:?}", ok.problems);
        let bad = Fix::bind_to_node(&topo.nodes[1], &Workload::default()).check(&c);
        assert!(!bad.applicable);
        assert_eq!(bad.steps.len(), 2);
        assert_eq!(bad.steps[0].kind, FixKind::CgroupV2Cpuset);
        assert!(bad.steps[0].commands.contains(&"echo 1 > /sys/fs/cgroup/db/cpuset.mems".to_string()));
        assert!(bad.steps[0].destructive);
        // A node that does not exist, or that cannot hold the process, is no fix at all.
        let mut ghost = topo.nodes[1].clone();
        ghost.id = 7;
        assert!(Fix::bind_to_node(&ghost, &Workload::default()).check(&c).steps.is_empty());
        let big = Constraints { needed_bytes: 16 << 30, ..c };
        let full = Fix::bind_to_node(&topo.nodes[0], &Workload::default()).check(&big);
        assert!(!full.applicable && full.problems[0].contains("MiB free"));
    }
}
