//! The fix vocabulary: each remedy for a NUMA placement problem as exact
//! commands filled with real node numbers and CPU lists, whether it is
//! DESTRUCTIVE (moves memory of a live process or changes a host-wide
//! setting), and how to check that it worked.
//!
//! Fixes are built by the constructors below and checked against what the
//! process is allowed ([`Constraints`]): a fix that asks for CPUs or nodes the
//! cpuset forbids comes back with the cgroup change that must come first.
use serde::{Deserialize, Serialize};

pub mod launcher;
pub mod postgres;
pub mod scope;

use crate::{
    fixes::launcher::{Binding, CommandLine, CpuBinding, MemPolicy, shell_words},
    machine::cpulist,
    machine::{Allowed, CgroupVersion, Container, ContainerRuntime, Cpuset, Node, ProcessSnapshot},
};

/// Which remedy a fix is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixKind {
    BindToNode,
    InterleaveAll,
    Preferred,
    Taskset,
    MoveThreadsLive,
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
    NoNodeHasRoom,
    /// A systemd unit's drop-in (CPUAffinity, NUMAPolicy, NUMAMask), applied by a restart.
    UnitDropIn,
    /// A running container's cpuset (`docker update`, `podman update`, `crictl update`).
    ContainerUpdate,
    /// A cgroup's cpuset.cpus and cpuset.mems, its parent widened first where needed.
    CgroupCpuset,
    /// PostgreSQL's memory interleaved over all nodes (shared memory bigger than a node).
    PostgresInterleave,
    /// PostgreSQL on one node (its shared memory fits there).
    PostgresBind,
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// What applying it costs: pages to copy and the stall to expect, or a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// The remote share (0..1) `numatrace diff` should see after it, below which it worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_remote_share: Option<f64>,
}

/// The process a fix restarts or reconfigures: how it was started and
/// where it lives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    /// Its command line: the command numatrace started, or /proc/PID/cmdline.
    pub argv: Vec<String>,
    /// Its executable (/proc/PID/exe), for a process numatrace did not start.
    pub exe: Option<String>,
    /// `argv` is a process title the program wrote, not a command.
    pub title_rewritten: bool,
    /// The system service it runs as, when numatrace did not start it.
    pub systemd_unit: Option<String>,
    /// The container it runs in, when numatrace did not start it.
    pub container: Option<Container>,
    /// The CPUs its threads may run on now (sched affinity), if known.
    pub cpus_allowed: Vec<u32>,
}

impl Workload {
    /// A command numatrace starts (or started): its words are the command.
    pub fn command_line(argv: Vec<String>) -> Workload {
        Workload { argv, ..Default::default() }
    }

    /// A running process, read now (inspect): /proc/PID/cmdline, exe, cgroup.
    pub fn of_pid(pid: u32) -> Workload {
        Workload::of_identity(&crate::machine::ProcessIdentity::read(pid), Vec::new())
    }

    /// A process as a snapshot saw it.
    pub fn of_snapshot(s: &ProcessSnapshot) -> Workload {
        let cpus = s.status.as_ref().map(|st| st.cpus_allowed.clone()).unwrap_or_default();
        match &s.identity {
            Some(id) => Workload::of_identity(id, cpus),
            None => Workload { cpus_allowed: cpus, ..Default::default() },
        }
    }

    fn of_identity(id: &crate::machine::ProcessIdentity, cpus_allowed: Vec<u32>) -> Workload {
        Workload {
            argv: id.cmdline.clone(),
            exe: id.exe.clone(),
            title_rewritten: id.title_rewritten,
            systemd_unit: id.systemd_unit.clone(),
            container: id.container.clone(),
            cpus_allowed,
        }
    }

    /// The workload of a capture: the command numatrace started, or the
    /// attached process as its latest snapshot saw it (the argv recorded at
    /// the start when the snapshot predates identities).
    pub fn from_facts(start: &crate::facts::StartFacts, latest: Option<&ProcessSnapshot>) -> Workload {
        if start.target.command.is_some() {
            return Workload::command_line(start.argv.clone());
        }
        let mut w = latest.map(Workload::of_snapshot).unwrap_or_default();
        if w.argv.is_empty() && w.exe.is_none() {
            w.argv = start.argv.clone();
        }
        w
    }

    /// The words that start the program again: its command line, or, for a
    /// rewritten title, the executable with a placeholder for the arguments.
    fn start_words(&self) -> Vec<String> {
        match (&self.exe, self.title_rewritten || self.argv.is_empty()) {
            (Some(exe), true) => vec![exe.clone(), "<original arguments>".into()],
            (None, true) => vec!["<command>".into()],
            (_, false) => self.argv.clone(),
        }
    }

    /// The command that starts it with `binding`: launchers already in its
    /// command line are rewritten, not wrapped.
    fn command_with(&self, binding: &Binding) -> String {
        let words = self.start_words();
        let line = CommandLine::parse(&words).with_binding(binding).shell();
        // The placeholders are not words to quote.
        line.replace("'<original arguments>'", "<original arguments>").replace("'<command>'", "<command>")
    }

    /// What the user must know to run a command built from it.
    fn start_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let (Some(exe), true) = (&self.exe, self.title_rewritten) {
            notes.push(format!(
                "The process rewrote its command line (it shows {}): {exe} is its real executable; add the original arguments after it (from its service file or start script).",
                shell_words(&self.argv)
            ));
        }
        if let Some(script) = CommandLine::parse(&self.argv).opaque_script
            && (script.contains("numactl") || script.contains("taskset"))
        {
            notes.push(
                "Its shell script runs numactl or taskset itself, which would undo this: remove them from the script."
                    .into(),
            );
        }
        notes
    }

    /// The program's own name (no launchers, no path), for unit names and titles.
    pub fn program_name(&self) -> Option<String> {
        if self.title_rewritten || self.argv.is_empty() {
            return self.exe.as_deref().map(|e| e.rsplit('/').next().unwrap_or(e).to_string());
        }
        CommandLine::parse(&self.argv).program_name().map(str::to_string)
    }
}

/// The remote share below which `numatrace diff` calls a placement fixed,
/// for fixes that put threads and memory on the same node.
pub const FIXED_BELOW: f64 = 0.05;

/// Below this much free memory a node is no place to move a process's
/// threads to: what they allocate next lands there.
pub const MIN_ROOM_BYTES: u64 = 64 << 20;

/// The level `numatrace diff` should see after interleaving over `n` nodes:
/// (n-1)/n of the pages stay remote by design, plus a margin of FIXED_BELOW.
pub fn interleave_goal(n: usize) -> f64 {
    let n = n.max(1) as f64;
    ((n - 1.0) / n + FIXED_BELOW).min(1.0)
}

/// How to check a fix: capture again and compare.
fn verify_by_diff(pid: Option<u32>, goal: f64) -> String {
    let capture = match pid {
        Some(pid) => format!("sudo numatrace -o after.ntrace --pid {pid} -d 30s"),
        None => "sudo numatrace -o after.ntrace -- <the command above>".into(),
    };
    let option =
        if (goal - FIXED_BELOW).abs() < 1e-9 { String::new() } else { format!(" --fixed-below {:.0}", goal * 100.0) };
    format!(
        "{capture}; numatrace diff before.ntrace after.ntrace{option} (before.ntrace: this capture, saved with -o) says \"fixed\" when the remote share is below {:.0} %",
        goal * 100.0
    )
}

/// The stall to expect when copying `pages` 4 KiB pages between nodes.
fn copy_cost(pages: u64) -> String {
    let mib = pages as f64 * 4096.0 / (1u64 << 20) as f64;
    // migrate_pages(2) copies about 1-2 GiB/s on current servers; a thread touching a page in flight waits for it.
    format!(
        "copies {pages} pages ({mib:.0} MiB): about {:.1}-{:.1} s of copying at 1-2 GiB/s; a thread that touches a page while it moves waits for it",
        mib / 2048.0,
        mib / 1024.0
    )
}

pub(crate) const RESTART_COST: &str = "a restart of the process (it is down while it restarts); nothing is copied";

impl Fix {
    fn new(
        kind: FixKind,
        title: impl Into<String>,
        commands: Vec<String>,
        destructive: bool,
        verify: impl Into<String>,
    ) -> Fix {
        Fix {
            kind,
            title: title.into(),
            commands,
            destructive,
            verify: verify.into(),
            notes: Vec::new(),
            placement: None,
            cost: None,
            goal_remote_share: None,
        }
    }

    fn with_placement(mut self, cpus: &[u32], mems: &[u32], strict: bool) -> Fix {
        self.placement = Some(Placement { cpus: cpus.to_vec(), mems: mems.to_vec(), strict });
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Fix {
        self.notes.push(note.into());
        self
    }

    fn with_notes(mut self, notes: Vec<String>) -> Fix {
        self.notes.extend(notes);
        self
    }

    fn with_cost(mut self, cost: impl Into<String>, goal: f64) -> Fix {
        self.cost = Some(cost.into());
        self.goal_remote_share = Some(goal);
        self
    }

    /// Start the workload with its threads and memory on one node.
    pub fn bind_to_node(node: &Node, workload: &Workload) -> Fix {
        let binding = Binding {
            cpu: Some(CpuBinding::Nodes(node.id.to_string())),
            mem: Some(MemPolicy::Bind(node.id.to_string())),
        };
        Fix::new(
            FixKind::BindToNode,
            format!(
                "Run it on node {} only (CPUs {}), memory from node {}",
                node.id,
                cpulist::format(&node.cpus),
                node.id
            ),
            vec![workload.command_with(&binding)],
            false,
            verify_by_diff(None, FIXED_BELOW),
        )
        .with_placement(&node.cpus, &[node.id], true)
        .with_notes(workload.start_notes())
        .with_cost(RESTART_COST, FIXED_BELOW)
    }

    /// Spread the workload's memory over all nodes, for one that needs more than a node holds.
    pub fn interleave_all(workload: &Workload, nodes: &[Node]) -> Fix {
        let mems: Vec<u32> = nodes.iter().filter(|n| !n.is_memoryless()).map(|n| n.id).collect();
        let goal = interleave_goal(mems.len());
        Fix::new(
            FixKind::InterleaveAll,
            "Interleave its memory over all nodes",
            vec![workload.command_with(&Binding { cpu: None, mem: Some(MemPolicy::Interleave("all".into())) })],
            false,
            verify_by_diff(None, goal),
        )
        .with_placement(&[], &mems, false)
        .with_notes(workload.start_notes())
        .with_cost(format!("{RESTART_COST}; by design {:.0} % of its pages stay remote (evenly spread, no node's bandwidth saturated)", (goal - FIXED_BELOW) * 100.0), goal)
    }

    /// Prefer one node for memory but fall back to others when it is full.
    pub fn preferred(node: &Node, workload: &Workload) -> Fix {
        let binding = Binding {
            cpu: Some(CpuBinding::Nodes(node.id.to_string())),
            mem: Some(MemPolicy::Preferred(node.id.to_string())),
        };
        Fix::new(
            FixKind::Preferred,
            format!("Run on node {0}, prefer node {0}'s memory (falls back to other nodes when full)", node.id),
            vec![workload.command_with(&binding)],
            false,
            verify_by_diff(None, FIXED_BELOW),
        )
        .with_placement(&node.cpus, &[node.id], false)
        .with_notes(workload.start_notes())
        .with_cost(RESTART_COST, FIXED_BELOW)
    }

    /// Start the workload on a CPU list (memory then follows by first touch).
    pub fn taskset(cpus: &[u32], workload: &Workload) -> Fix {
        let binding = Binding { cpu: Some(CpuBinding::Cpus(cpulist::format(cpus))), mem: None };
        Fix::new(
            FixKind::Taskset,
            format!("Start it on CPUs {}", cpulist::format(cpus)),
            vec![workload.command_with(&binding)],
            false,
            verify_by_diff(None, FIXED_BELOW),
        )
        .with_placement(cpus, &[], false)
        .with_notes(workload.start_notes())
        .with_cost(RESTART_COST, FIXED_BELOW)
    }

    /// Move a live process's threads to the node its memory is on: nothing
    /// is copied, and what it allocates next lands there too (first touch).
    pub fn move_threads_to_memory(pid: u32, node: &Node) -> Fix {
        Fix::new(
            FixKind::MoveThreadsLive,
            format!("Move live PID {pid}'s threads to node {}, where its memory is (CPUs {}); no memory moves", node.id, cpulist::format(&node.cpus)),
            vec![format!("taskset -a -p -c {} {pid}", cpulist::format(&node.cpus))],
            false,
            verify_by_diff(Some(pid), FIXED_BELOW),
        )
        .with_placement(&node.cpus, &[], false)
        .with_cost("none copied: each thread moves at its next scheduling and refills its CPU caches; node's CPUs now carry all its threads", FIXED_BELOW)
        .with_note(format!(
            "Node {} has {} MiB free for what it allocates next. Threads it creates later inherit the pinning; a restart forgets it (make it stick with the restart fix below).",
            node.id,
            node.mem_free_bytes >> 20
        ))
    }

    /// Move a live process's memory to its threads' node, pinning the threads
    /// there first unless they may only run there already. DESTRUCTIVE.
    pub fn repin_live(
        pid: u32,
        node: &Node,
        from_nodes: &[u32],
        pages_to_copy: u64,
        threads_already_there: bool,
    ) -> Fix {
        let from: Vec<u32> = from_nodes.iter().copied().filter(|&n| n != node.id).collect();
        let mut commands = Vec::new();
        if !threads_already_there {
            commands.push(format!("taskset -a -p -c {} {pid}", cpulist::format(&node.cpus)));
        }
        if !from.is_empty() {
            commands.push(format!("migratepages {pid} {} {}", cpulist::format(&from), node.id));
        }
        let title = if threads_already_there {
            format!("Move live PID {pid}'s memory to node {}, where its threads run", node.id)
        } else {
            format!("Re-pin live PID {pid} onto node {} and move its memory there", node.id)
        };
        Fix::new(FixKind::RepinLive, title, commands, true, verify_by_diff(Some(pid), FIXED_BELOW))
            .with_placement(&node.cpus, &[node.id], true)
            .with_cost(copy_cost(pages_to_copy), FIXED_BELOW)
            .with_note("Moving memory stalls the process while pages copy; do it off-peak. New allocations still follow the old policy: restart under numactl to make it stick.")
    }

    /// Move a live process's pages between nodes. DESTRUCTIVE.
    pub fn migratepages(pid: u32, from: &[u32], to: &[u32]) -> Fix {
        Fix::new(
            FixKind::MigratePages,
            format!(
                "Move PID {pid}'s memory from node(s) {} to node(s) {}",
                cpulist::format(from),
                cpulist::format(to)
            ),
            vec![format!("migratepages {pid} {} {}", cpulist::format(from), cpulist::format(to))],
            true,
            verify_by_diff(Some(pid), FIXED_BELOW),
        )
        .with_placement(&[], to, true)
    }

    /// Set a cgroup's cpuset (v2). DESTRUCTIVE when the cgroup has live tasks (v2 moves their memory to the new nodes).
    pub fn cgroup_v2_cpuset(cgroup_dir: &str, cpus: &[u32], mems: &[u32], live: bool) -> Fix {
        let dir = cgroup_dir.trim_end_matches('/');
        let parent = dir.rsplit_once('/').map(|(p, _)| p).unwrap_or(dir);
        Fix::new(
            FixKind::CgroupV2Cpuset,
            format!(
                "Give the cgroup CPUs {} and memory nodes {} (cgroup v2)",
                cpulist::format(cpus),
                cpulist::format(mems)
            ),
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
        let mut commands = vec![
            format!("echo {} > {dir}/cpuset.cpus", cpulist::format(cpus)),
            format!("echo {} > {dir}/cpuset.mems", cpulist::format(mems)),
        ];
        if live {
            commands.insert(0, format!("echo 1 > {dir}/cpuset.memory_migrate"));
        }
        Fix::new(
            FixKind::CgroupV1Cpuset,
            format!(
                "Give the cgroup CPUs {} and memory nodes {} (cgroup v1)",
                cpulist::format(cpus),
                cpulist::format(mems)
            ),
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
            format!(
                "Start {unit} on CPUs {} with memory bound to node(s) {}",
                cpulist::format(cpus),
                cpulist::format(mems)
            ),
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
            format!(
                "systemctl show {unit} -p CPUAffinity -p NUMAPolicy -p NUMAMask; {}",
                verify_by_diff(None, FIXED_BELOW).replace(
                    "-- <the command above>",
                    &format!("--pid $(systemctl show -p MainPID --value {unit}) -d 30s")
                )
            ),
        )
        .with_placement(cpus, mems, true)
        .with_cost(RESTART_COST, FIXED_BELOW)
        .with_note("Takes effect at the restart; the restart itself interrupts the service.")
    }

    /// A container started on one node.
    pub fn docker_run(cpus: &[u32], mems: &[u32], image: &str) -> Fix {
        Fix::new(
            FixKind::Docker,
            format!(
                "Start the container on CPUs {} with memory from node(s) {}",
                cpulist::format(cpus),
                cpulist::format(mems)
            ),
            vec![format!(
                "docker run --cpuset-cpus={} --cpuset-mems={} {image}",
                cpulist::format(cpus),
                cpulist::format(mems)
            )],
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
                "# or, without a code change: the interleave fix (spreads pages evenly; half the accesses stay remote on 2 nodes)".into(),
            ],
            false,
            "numastat -p <pid>: memory split over the nodes in the same proportion as the threads",
        )
    }

    /// JVM: NUMA-aware heap for a heap bigger than a node.
    pub fn jvm_use_numa(workload: &Workload) -> Fix {
        let words = workload.start_words();
        let line = CommandLine::parse(&words);
        let cmd = if line.program_name() == Some("java") {
            let mut argv = line.argv();
            // The program's first word sits where the launchers end.
            let at = argv.len() - line.program.len();
            argv.insert(at + 1, "-XX:+UseNUMA".into());
            shell_words(&argv).replace("'<original arguments>'", "<original arguments>")
        } else {
            "java -XX:+UseNUMA <your options>".into()
        };
        Fix::new(
            FixKind::JvmUseNuma,
            "Make the JVM heap NUMA-aware (-XX:+UseNUMA, with Parallel GC or G1 on JDK 14+)",
            vec![cmd],
            false,
            "numastat -p <pid>: heap spread over nodes, each thread allocating locally",
        )
        .with_notes(workload.start_notes())
    }

    /// A running container moved onto CPUs and nodes. Moving `pages_to_copy`
    /// pages makes it DESTRUCTIVE (cgroup v2 migrates the memory of a cgroup
    /// whose cpuset.mems changes).
    pub fn container_update(container: &Container, cpus: &[u32], mems: &[u32], pages_to_copy: u64) -> Fix {
        let (c, m) = (cpulist::format(cpus), cpulist::format(mems));
        let id = container.short_id();
        let tool = match container.runtime {
            ContainerRuntime::Podman => "podman",
            _ => "docker",
        };
        let destructive = pages_to_copy > 0;
        Fix::new(
            FixKind::Docker,
            format!("Move {} container {id} to CPUs {c} with memory from node(s) {m}", container.runtime.name()),
            vec![
                format!("{tool} update --cpuset-cpus={c} --cpuset-mems={m} {id}"),
                format!("# at its next start: {tool} run --cpuset-cpus={c} --cpuset-mems={m} ... (image: {tool} inspect -f '{{{{.Config.Image}}}}' {id})"),
            ],
            destructive,
            format!("{tool} inspect -f '{{{{.HostConfig.CpusetCpus}}}} {{{{.HostConfig.CpusetMems}}}}' {id}; {}", verify_by_diff(None, FIXED_BELOW).replace("-- <the command above>", "--pid <its pid> -d 30s")),
        )
        .with_placement(cpus, mems, true)
        .with_cost(if destructive { copy_cost(pages_to_copy) } else { "none copied: its memory is already there; the threads move at their next scheduling".into() }, FIXED_BELOW)
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
            vec![
                "sysctl -w kernel.numa_balancing=0".into(),
                "echo kernel.numa_balancing=0 > /etc/sysctl.d/90-numa.conf".into(),
            ],
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

    /// A process that needs more memory than any node has free: no
    /// placement keeps it local. Says so, with what can be done instead
    /// (nothing here runs as printed).
    pub fn no_node_has_room(needed_bytes: u64, nodes: &[Node], home: Option<&Node>) -> Fix {
        let most = nodes.iter().filter(|n| !n.is_memoryless()).max_by_key(|n| n.mem_free_bytes);
        let (most_id, most_free) = most.map(|n| (n.id.to_string(), n.mem_free_bytes >> 20)).unwrap_or(("?".into(), 0));
        let home = home.map(|n| n.id.to_string()).unwrap_or_else(|| most_id.clone());
        Fix::new(
            FixKind::NoNodeHasRoom,
            format!(
                "No command fixes this: it needs about {} MiB, more than any node has free (the most: {most_free} MiB on node {most_id}), so part of it stays remote wherever it runs",
                needed_bytes >> 20
            ),
            vec![
                format!(
                    "# make room on node {home}: stop or move what else holds memory there (numastat -m; numastat -p <pid> per process), or drop its clean page cache (sync; echo 1 > /proc/sys/vm/drop_caches)"
                ),
                "# or shrink its footprint below a node's free memory, or run it on a machine with larger nodes".into(),
            ],
            false,
            format!(
                "numastat -m: node {home}'s MemFree exceeds its size before it starts; then the restart under numactl --cpunodebind={home} --preferred={home} keeps it local"
            ),
        )
    }

    /// Nothing to gain: one node.
    pub fn no_benefit_from_pinning(reason: impl Into<String>) -> Fix {
        Fix::new(
            FixKind::NoBenefitFromPinning,
            format!("No benefit from pinning: {}", reason.into()),
            Vec::new(),
            false,
            "numactl --hardware shows one node",
        )
    }
}

/// What a fix is checked against: what the process may use, and the nodes as they are now.
#[derive(Clone, Debug, Default)]
pub struct Constraints {
    pub allowed: Allowed,
    pub nodes: Vec<Node>,
    pub cpuset: Option<Cpuset>,
    /// Memory the process needs on the target nodes (its resident size).
    pub needed_bytes: u64,
}

/// The outcome of checking a fix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
                    problems.push(format!(
                        "node {id} has {} MiB free, the process needs {} MiB",
                        n.mem_free_bytes >> 20,
                        c.needed_bytes >> 20
                    ));
                    hard = true;
                }
                _ => {}
            }
        }
        let forbidden_cpus: Vec<u32> = if c.allowed.cpus.is_empty() {
            Vec::new()
        } else {
            p.cpus.iter().copied().filter(|x| !c.allowed.cpus.contains(x)).collect()
        };
        let forbidden_mems: Vec<u32> = if c.allowed.mems.is_empty() {
            Vec::new()
        } else {
            p.mems.iter().copied().filter(|x| !c.allowed.mems.contains(x)).collect()
        };
        if !forbidden_cpus.is_empty() {
            problems.push(format!(
                "its cpuset forbids CPUs {} (allowed: {})",
                cpulist::format(&forbidden_cpus),
                cpulist::format(&c.allowed.cpus)
            ));
        }
        if !forbidden_mems.is_empty() {
            problems.push(format!(
                "its cpuset forbids node(s) {} (allowed: {})",
                cpulist::format(&forbidden_mems),
                cpulist::format(&c.allowed.mems)
            ));
        }
        if problems.is_empty() {
            return Checked { applicable: true, problems, steps: vec![self.clone()] };
        }
        let mut steps = Vec::new();
        if !hard && let Some(cs) = &c.cpuset {
            let cpus = if p.cpus.is_empty() { cs.effective_cpus.clone() } else { p.cpus.clone() };
            let mems = if p.mems.is_empty() { cs.effective_mems.clone() } else { p.mems.clone() };
            steps.push(
                Fix::cgroup_cpuset(cs, &cpus, &mems, true)
                    .with_note("Its cpuset forbids the fix below: change the cgroup first (or ask whoever owns it)."),
            );
            steps.push(self.clone());
        }
        Checked { applicable: false, problems, steps }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Topology;

    fn two_nodes() -> Topology {
        Topology::synthetic_with_memory(&[vec![0, 1, 2, 3], vec![4, 5, 6, 7]], 8 << 30)
    }

    #[test]
    fn commands_carry_real_numbers() {
        let topo = two_nodes();
        let w = Workload::command_line(vec!["postgres".into(), "-D".into(), "/var/lib/pg data".into()]);
        let f = Fix::bind_to_node(&topo.nodes[1], &w);
        assert_eq!(f.commands, vec!["numactl --cpunodebind=1 --membind=1 postgres -D '/var/lib/pg data'"]);
        assert!(!f.destructive);
        let live = Fix::repin_live(42, &topo.nodes[1], &[0, 1], 18688, false);
        assert!(live.destructive);
        assert_eq!(live.commands, vec!["taskset -a -p -c 4-7 42", "migratepages 42 0 1"]);
        assert!(live.cost.as_deref().is_some_and(|c| c.starts_with("copies 18688 pages (73 MiB)")), "{:?}", live.cost);
        // Threads that may run only on the target already: no re-pin, the memory move alone.
        let stay = Fix::repin_live(42, &topo.nodes[1], &[0], 100, true);
        assert_eq!(stay.commands, vec!["migratepages 42 0 1"]);
        let cheap = Fix::move_threads_to_memory(42, &topo.nodes[0]);
        assert!(!cheap.destructive);
        assert_eq!(cheap.commands, vec!["taskset -a -p -c 0-3 42"]);
        assert!(cheap.verify.contains("numatrace diff before.ntrace after.ntrace"), "{}", cheap.verify);
        assert!(
            Fix::zone_reclaim_off().destructive
                && Fix::disable_numa_balancing().destructive
                && Fix::migratepages(1, &[0], &[1]).destructive
        );
        assert_eq!(
            Fix::docker_run(&[4, 5, 6, 7], &[1], "img").commands,
            vec!["docker run --cpuset-cpus=4-7 --cpuset-mems=1 img"]
        );
        assert!(
            Fix::systemd_unit("db.service", &[0, 1, 2, 3], &[0]).commands[1]
                .contains("CPUAffinity=0-3\\nNUMAPolicy=bind\\nNUMAMask=0")
        );
    }

    #[test]
    fn launchers_in_the_command_are_rewritten_not_wrapped() {
        let topo = two_nodes();
        let argv = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let w = Workload::command_line(argv("numactl --cpunodebind=1 --membind=0 /usr/bin/sysbench memory run"));
        assert_eq!(
            Fix::bind_to_node(&topo.nodes[1], &w).commands,
            vec!["numactl --cpunodebind=1 --membind=1 /usr/bin/sysbench memory run"]
        );
        let w = Workload::command_line(argv("numactl --cpunodebind=0 memhog 64m"));
        let f = Fix::interleave_all(&w, &topo.nodes);
        assert_eq!(f.commands, vec!["numactl --cpunodebind=0 --interleave=all memhog 64m"]);
        assert_eq!(f.goal_remote_share, Some(0.55));
        assert!(f.verify.contains("--fixed-below 55"), "{}", f.verify);
        let w = Workload::command_line(argv("taskset -c 0 redis-server"));
        assert_eq!(
            Fix::preferred(&topo.nodes[1], &w).commands,
            vec!["numactl --cpunodebind=1 --preferred=1 redis-server"]
        );
        assert_eq!(Fix::taskset(&[4, 5], &w).commands, vec!["taskset -c 4-5 redis-server"]);
        let w = Workload::command_line(argv("env JAVA_HOME=/j numactl -m 0 /j/bin/java -Xmx8g -jar app.jar"));
        assert_eq!(
            Fix::jvm_use_numa(&w).commands,
            vec!["env JAVA_HOME=/j numactl -m 0 /j/bin/java -XX:+UseNUMA -Xmx8g -jar app.jar"]
        );
    }

    #[test]
    fn a_rewritten_title_gives_the_real_executable() {
        let topo = two_nodes();
        let redis = crate::machine::ProcessIdentity {
            exe: Some("/usr/bin/redis-server".into()),
            cmdline: vec!["/usr/bin/redis-server *:6379".into()],
            title_rewritten: true,
            systemd_unit: None,
            container: None,
        };
        let w = Workload::of_identity(&redis, vec![]);
        let f = Fix::bind_to_node(&topo.nodes[1], &w);
        assert_eq!(f.commands, vec!["numactl --cpunodebind=1 --membind=1 /usr/bin/redis-server <original arguments>"]);
        assert!(f.notes[0].contains("add the original arguments after it"), "{:?}", f.notes);
        assert!(f.notes[0].contains("'/usr/bin/redis-server *:6379'"), "{:?}", f.notes);
        assert_eq!(w.program_name().as_deref(), Some("redis-server"));
        // A container gets its runtime's update command, not a numactl restart.
        let c = Container { runtime: ContainerRuntime::Docker, id: "4f1c0a6e1a2b3c4d".into(), kubernetes: false };
        let up = Fix::container_update(&c, &[0, 1, 2, 3], &[0], 0);
        assert_eq!(up.commands[0], "docker update --cpuset-cpus=0-3 --cpuset-mems=0 4f1c0a6e1a2b");
        assert!(!up.destructive);
        assert!(Fix::container_update(&c, &[4, 5], &[1], 10).destructive);
        assert!(up.verify.contains("{{.HostConfig.CpusetCpus}}"), "{}", up.verify);
    }

    #[test]
    fn the_process_identity_survives_a_capture_file() {
        // An attached process's snapshot, as the capture stores it (JSON), without the
        // identity (older captures) and with one.
        let topology = crate::machine::Topology::synthetic(&[vec![0], vec![1]]);
        let mut start = crate::capture::synthetic::start_facts(&topology, 0, 77, &[(77, "redis-server", 1)]);
        start.argv = vec!["/usr/bin/redis-server *:6379".into()];
        let snap_json = serde_json::json!({
            "pid": 77, "taken_at_unix_ms": 0, "memory_by_node": {}, "threads": [], "threads_by_node": {}, "unreadable": [],
            "status": {"name": "redis-server", "cpus_allowed": [1], "mems_allowed": [0, 1], "rss_bytes": 0},
        });
        let old: ProcessSnapshot = serde_json::from_value(snap_json.clone()).unwrap();
        assert_eq!(old.identity, None);
        assert_eq!(Workload::from_facts(&start, Some(&old)).argv, start.argv, "an old capture keeps its recorded argv");
        let mut with = snap_json;
        with["identity"] = serde_json::json!({"exe": "/usr/bin/redis-server", "cmdline": ["/usr/bin/redis-server *:6379"], "title_rewritten": true, "systemd_unit": "redis-server.service"});
        let snap: ProcessSnapshot = serde_json::from_value(with).unwrap();
        let back: ProcessSnapshot = serde_json::from_str(&serde_json::to_string(&snap).unwrap()).unwrap();
        let w = Workload::from_facts(&start, Some(&back));
        assert!(w.title_rewritten);
        assert_eq!(w.systemd_unit.as_deref(), Some("redis-server.service"));
        assert_eq!(w.cpus_allowed, vec![1]);
        assert_eq!(w.start_words(), vec!["/usr/bin/redis-server", "<original arguments>"]);
        // A command numatrace started is its own words, whatever the snapshot says.
        start.target.command = Some(vec!["numactl".into(), "-m0".into(), "redis-server".into()]);
        start.argv = start.target.command.clone().unwrap_or_default();
        let w = Workload::from_facts(&start, Some(&back));
        assert_eq!((w.argv.len(), w.systemd_unit, w.title_rewritten), (3, None, false));
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
        let c = Constraints {
            allowed: Allowed { cpus: vec![0, 1, 2, 3], mems: vec![0] },
            nodes: topo.nodes.clone(),
            cpuset: Some(cpuset),
            needed_bytes: 1 << 30,
        };
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
