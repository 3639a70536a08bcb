//! Fixes for the unit a service is deployed as, rather than one process:
//! a systemd unit's drop-in, a container's cpuset, a cgroup's cpuset files.
//! Each sets the CPUs and nodes of every process of the service at once,
//! and lasts across restarts of its processes.
use super::{FIXED_BELOW, Fix, FixKind, RESTART_COST, copy_cost, verify_by_diff};
use crate::{facts::ContainerRuntime, machine::cpulist};

/// A systemd `NUMAPolicy=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitNumaPolicy {
    Bind,
    Interleave,
    Preferred,
}

impl UnitNumaPolicy {
    fn word(self) -> &'static str {
        match self {
            UnitNumaPolicy::Bind => "bind",
            UnitNumaPolicy::Interleave => "interleave",
            UnitNumaPolicy::Preferred => "preferred",
        }
    }
}

/// The CPUs and nodes a unit's drop-in sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitPlacement {
    /// `CPUAffinity=` (none: the threads may run anywhere).
    pub cpus: Option<Vec<u32>>,
    pub policy: UnitNumaPolicy,
    /// `NUMAMask=`.
    pub mems: Vec<u32>,
    /// Also set the unit's cgroup cpuset (`AllowedCPUs=`, `AllowedMemoryNodes=`):
    /// its cpuset is what forbids the placement now.
    pub cgroup_cpuset: bool,
}

/// The drop-in's file, as `systemctl edit` would write it.
pub fn unit_dropin_text(p: &UnitPlacement) -> String {
    let mut lines = vec!["[Service]".to_string()];
    if let Some(cpus) = &p.cpus {
        lines.push(format!("CPUAffinity={}", cpulist::format(cpus)));
    }
    lines.push(format!("NUMAPolicy={}", p.policy.word()));
    lines.push(format!("NUMAMask={}", cpulist::format(&p.mems)));
    if p.cgroup_cpuset {
        if let Some(cpus) = &p.cpus {
            lines.push(format!("AllowedCPUs={}", cpulist::format(cpus)));
        }
        lines.push(format!("AllowedMemoryNodes={}", cpulist::format(&p.mems)));
    }
    lines.join("\n")
}

/// The policy in words, for titles.
fn placement_words(p: &UnitPlacement) -> String {
    let mems = cpulist::format(&p.mems);
    let memory = match p.policy {
        UnitNumaPolicy::Bind => format!("memory bound to node(s) {mems}"),
        UnitNumaPolicy::Interleave => format!("memory interleaved over nodes {mems}"),
        UnitNumaPolicy::Preferred => format!("memory preferred from node(s) {mems}"),
    };
    match &p.cpus {
        Some(cpus) => format!("CPUs {}, {memory}", cpulist::format(cpus)),
        None => memory,
    }
}

impl Fix {
    /// A systemd drop-in for `unit`: CPUAffinity, NUMAPolicy and NUMAMask
    /// (and the cgroup's cpuset when it forbids them), written and applied by
    /// restarting the unit. DESTRUCTIVE: the restart stops the service.
    pub fn unit_dropin(unit: &str, p: &UnitPlacement) -> Fix {
        let dir = format!("/etc/systemd/system/{unit}.d");
        let mut show = vec!["CPUAffinity", "NUMAPolicy", "NUMAMask"];
        if p.cgroup_cpuset {
            show.extend(["AllowedCPUs", "AllowedMemoryNodes"]);
        }
        let show: String = show.iter().map(|k| format!(" -p {k}")).collect();
        Fix::new(
            FixKind::UnitDropIn,
            format!("Start every process of {unit} with {} (a systemd drop-in)", placement_words(p)),
            vec![
                format!("mkdir -p {dir}"),
                format!("cat > {dir}/numatrace.conf <<'EOF'\n{}\nEOF", unit_dropin_text(p)),
                "systemctl daemon-reload".into(),
                format!("# DESTRUCTIVE: restarts {unit} (it is down while it restarts)"),
                format!("systemctl restart {unit}"),
            ],
            true,
            format!(
                "systemctl show {unit}{show}; {}",
                verify_by_diff(None, FIXED_BELOW)
                    .replace("-- <the command above>", &format!("--unit {unit} -d 30s"))
            ),
        )
        .with_cost(RESTART_COST, FIXED_BELOW)
        .with_note(format!(
            "The same content by hand: systemctl edit {unit}, then the restart. Every process the unit starts inherits it (the postmaster and its backends, a server and its workers)."
        ))
    }
}

impl Fix {
    /// Move the threads of several live processes (`--pid`s, a tree) to the
    /// node their memory is on: nothing is copied.
    /// `tree`: they were traced as the tree of the first (`--tree`), not as `--pid`s.
    pub fn move_processes_threads(pids: &[u32], node: &crate::machine::Node, tree: bool) -> Fix {
        let again = match (tree, pids.first()) {
            (true, Some(root)) => format!("--pid {root} --tree"),
            _ => pids.iter().map(|p| format!("--pid {p}")).collect::<Vec<_>>().join(" "),
        };
        let cpus = cpulist::format(&node.cpus);
        let list = pids.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
        Fix::new(
            FixKind::MoveThreadsLive,
            format!(
                "Move the threads of its {} processes to node {}, where their memory is (CPUs {cpus}); no memory moves",
                pids.len(),
                node.id
            ),
            vec![format!("for pid in {list}; do taskset -a -p -c {cpus} $pid; done")],
            false,
            verify_by_diff(None, FIXED_BELOW).replace("-- <the command above>", &format!("{again} -d 30s")),
        )
        .with_cost("none copied: each thread moves at its next scheduling and refills its CPU caches; the node's CPUs now carry all their threads", FIXED_BELOW)
        .with_note(format!(
            "Processes they start later inherit the pinning from their parent (a postmaster's new backends too); one that exited in the meantime prints \"No such process\". Node {} has {} MiB free for what they allocate next; a restart forgets the pinning.",
            node.id,
            node.mem_free_bytes >> 20
        ))
    }
}

/// Whether moving a container's or cgroup's `cpuset.mems` moves the memory it already has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemoryMoves {
    /// cgroup v2: the kernel migrates it to the new nodes (some pages may stay behind).
    WithCpuset,
    /// cgroup v1 without `cpuset.memory_migrate`: it stays; migratepages moves it.
    NotWithoutMigratepages,
    /// Not known (no snapshot of the cgroup's version).
    #[default]
    Unknown,
}

/// A container's live update and run flags, with the memory move the new
/// `cpuset.mems` needs. `pages_to_copy`: remote pages on nodes outside `mems`
/// (0: nothing to move, the update only moves threads).
pub struct ContainerPlacement<'a> {
    pub runtime: ContainerRuntime,
    pub id: &'a str,
    /// Its cgroup under /sys/fs/cgroup (`/system.slice/docker-ID.scope`).
    pub cgroup_path: &'a str,
    pub cpus: &'a [u32],
    pub mems: &'a [u32],
    /// Nodes its memory is on now, outside `mems`.
    pub from_nodes: &'a [u32],
    pub pages_to_copy: u64,
    pub memory_moves: MemoryMoves,
}

impl Fix {
    /// `docker update` / `podman update` (live), `crictl update` for CRI
    /// runtimes, and the flags for its next `run`.
    pub fn container_cpuset(p: &ContainerPlacement) -> Fix {
        let (c, m) = (cpulist::format(p.cpus), cpulist::format(p.mems));
        let short = p.id.get(..12).unwrap_or(p.id);
        let (tool, runtime) = match p.runtime {
            ContainerRuntime::Docker => ("docker", "docker"),
            ContainerRuntime::Podman => ("podman", "podman"),
            ContainerRuntime::Containerd => ("crictl", "containerd"),
            ContainerRuntime::CriO => ("crictl", "cri-o"),
        };
        let mut commands = vec![format!("{tool} update --cpuset-cpus={c} --cpuset-mems={m} {short}")];
        let mut notes = Vec::new();
        let moves = !p.from_nodes.is_empty() && p.pages_to_copy > 0;
        if moves {
            let procs = format!("/sys/fs/cgroup{}/cgroup.procs", p.cgroup_path.trim_end_matches('/'));
            let migrate =
                format!("for pid in $(cat {procs}); do migratepages $pid {} {m}; done", cpulist::format(p.from_nodes));
            match p.memory_moves {
                MemoryMoves::WithCpuset => notes.push(format!(
                    "cgroup v2 moves its memory to node(s) {m} as cpuset.mems changes; pages it could not move stay behind (numastat -p shows them): then `{migrate}`."
                )),
                MemoryMoves::NotWithoutMigratepages | MemoryMoves::Unknown => {
                    commands.push(format!("# DESTRUCTIVE: moves the memory already placed (cpuset.mems alone leaves it where it is without memory_migrate)\n{migrate}"));
                }
            }
        }
        match p.runtime {
            ContainerRuntime::Docker | ContainerRuntime::Podman => commands.push(format!(
                "# at its next start, the same as run flags: {tool} run --cpuset-cpus={c} --cpuset-mems={m} <its other options> $({tool} inspect -f '{{{{.Config.Image}}}}' {short})"
            )),
            ContainerRuntime::Containerd | ContainerRuntime::CriO => {
                notes.push(format!(
                    "A {runtime} container of a Kubernetes pod: the kubelet may undo a live update; what lasts is the pod's Guaranteed QoS with the Topology Manager's single-numa-node policy."
                ));
            }
        }
        let mut fix = Fix::new(
            FixKind::ContainerUpdate,
            format!("Move {runtime} container {short} to CPUs {c} with memory from node(s) {m}"),
            commands,
            moves,
            format!(
                "{} ; {}",
                match p.runtime {
                    ContainerRuntime::Docker | ContainerRuntime::Podman => format!(
                        "{tool} inspect -f '{{{{.HostConfig.CpusetCpus}}}} {{{{.HostConfig.CpusetMems}}}}' {short}"
                    ),
                    _ => format!("{tool} inspect {short} | grep -i cpuset"),
                },
                verify_by_diff(None, FIXED_BELOW)
                    .replace("-- <the command above>", &format!("--container {short} -d 30s"))
            ),
        )
        .with_cost(
            if moves {
                copy_cost(p.pages_to_copy)
            } else {
                "none copied: its memory is already there; the threads move at their next scheduling".into()
            },
            FIXED_BELOW,
        );
        fix.notes.extend(notes);
        fix
    }
}

/// The nearest ancestor cgroup known to restrict a cgroup's cpuset, and
/// its effective sets (from the snapshot's `cpus_set_by`/`mems_set_by`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParentLimits {
    /// (ancestor path, its cpuset.cpus.effective) when an ancestor sets cpuset.cpus.
    pub cpus: Option<(String, Vec<u32>)>,
    pub mems: Option<(String, Vec<u32>)>,
}

/// A cgroup v2 whose cpuset is to change.
pub struct CgroupPlacement<'a> {
    /// Path under /sys/fs/cgroup, starting with `/`.
    pub path: &'a str,
    /// The cpuset controller is enabled for it (its effective files exist).
    pub cpuset_enabled: bool,
    pub cpus: &'a [u32],
    pub mems: &'a [u32],
    /// It has live tasks with memory on other nodes: v2 migrates it.
    pub pages_to_copy: u64,
    pub parent: &'a ParentLimits,
}

fn union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = a.iter().chain(b).copied().collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl Fix {
    /// The cgroup's cpuset.cpus and cpuset.mems writes, with the parent's
    /// change first where its effective set lacks the wanted CPUs or nodes.
    pub fn cgroup_cpuset_writes(p: &CgroupPlacement) -> Fix {
        let path = p.path.trim_end_matches('/');
        let dir = format!("/sys/fs/cgroup{path}");
        let parent_dir = match path.rsplit_once('/') {
            Some((parent, _)) => format!("/sys/fs/cgroup{parent}"),
            None => "/sys/fs/cgroup".into(),
        };
        let mut commands = Vec::new();
        let mut notes = Vec::new();
        // An ancestor that restricts what this cgroup may have is widened first.
        let mut widen = |file: &str, wanted: &[u32], limit: &Option<(String, Vec<u32>)>, what: &str| {
            if let Some((ancestor, effective)) = limit
                && ancestor.trim_end_matches('/') != path
                && !wanted.iter().all(|x| effective.contains(x))
            {
                let missing: Vec<u32> = wanted.iter().copied().filter(|x| !effective.contains(x)).collect();
                commands.push(format!(
                    "# {what} {} not in {ancestor}'s {file}.effective ({}): widen {ancestor} first (its other children keep what they have)",
                    cpulist::format(&missing),
                    cpulist::format(effective)
                ));
                commands.push(format!(
                    "echo {} > /sys/fs/cgroup{}/{file}",
                    cpulist::format(&union(effective, wanted)),
                    ancestor.trim_end_matches('/')
                ));
                notes.push(format!(
                    "{ancestor} limits {what} to {}: it must change before {path} can have {}.",
                    cpulist::format(effective),
                    cpulist::format(wanted)
                ));
            }
        };
        widen("cpuset.cpus", p.cpus, &p.parent.cpus, "CPUs");
        widen("cpuset.mems", p.mems, &p.parent.mems, "node(s)");
        if !p.cpuset_enabled {
            commands.push(format!("echo +cpuset > {parent_dir}/cgroup.subtree_control"));
        }
        commands.push(format!("echo {} > {dir}/cpuset.cpus", cpulist::format(p.cpus)));
        let moves = p.pages_to_copy > 0;
        if moves {
            commands.push(format!(
                "# DESTRUCTIVE: cgroup v2 migrates the memory of its tasks to node(s) {} as cpuset.mems changes",
                cpulist::format(p.mems)
            ));
        }
        commands.push(format!("echo {} > {dir}/cpuset.mems", cpulist::format(p.mems)));
        if p.parent.cpus.is_none() && p.parent.mems.is_none() {
            notes.push(format!(
                "A write fails with \"Invalid argument\" or \"Permission denied\" when {parent_dir}/cpuset.cpus.effective or cpuset.mems.effective lacks them: widen the parent first."
            ));
        }
        let mut fix = Fix::new(
            FixKind::CgroupCpuset,
            format!(
                "Give cgroup {path} CPUs {} and memory node(s) {}",
                cpulist::format(p.cpus),
                cpulist::format(p.mems)
            ),
            commands,
            moves,
            format!(
                "cat {dir}/cpuset.cpus.effective {dir}/cpuset.mems.effective; {}",
                verify_by_diff(None, FIXED_BELOW).replace("-- <the command above>", &format!("--cgroup {path} -d 30s"))
            ),
        )
        .with_cost(
            if moves {
                copy_cost(p.pages_to_copy)
            } else {
                "none copied: the threads move at their next scheduling".into()
            },
            FIXED_BELOW,
        );
        fix.notes.extend(notes);
        fix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_dropin_is_pasteable_and_marks_the_restart() {
        let p = UnitPlacement {
            cpus: Some(vec![4, 5, 6, 7]),
            policy: UnitNumaPolicy::Bind,
            mems: vec![1],
            cgroup_cpuset: false,
        };
        let f = Fix::unit_dropin("postgresql@15-main.service", &p);
        assert_eq!(f.kind, FixKind::UnitDropIn);
        assert!(f.destructive);
        assert_eq!(
            f.commands,
            vec![
                "mkdir -p /etc/systemd/system/postgresql@15-main.service.d",
                "cat > /etc/systemd/system/postgresql@15-main.service.d/numatrace.conf <<'EOF'\n[Service]\nCPUAffinity=4-7\nNUMAPolicy=bind\nNUMAMask=1\nEOF",
                "systemctl daemon-reload",
                "# DESTRUCTIVE: restarts postgresql@15-main.service (it is down while it restarts)",
                "systemctl restart postgresql@15-main.service",
            ]
        );
        let p = UnitPlacement {
            cpus: None,
            policy: UnitNumaPolicy::Interleave,
            mems: vec![0, 1, 2, 3],
            cgroup_cpuset: false,
        };
        assert_eq!(unit_dropin_text(&p), "[Service]\nNUMAPolicy=interleave\nNUMAMask=0-3");
        let p = UnitPlacement {
            cpus: Some(vec![4, 5]),
            policy: UnitNumaPolicy::Preferred,
            mems: vec![1],
            cgroup_cpuset: true,
        };
        assert_eq!(
            unit_dropin_text(&p),
            "[Service]\nCPUAffinity=4-5\nNUMAPolicy=preferred\nNUMAMask=1\nAllowedCPUs=4-5\nAllowedMemoryNodes=1"
        );
    }

    #[test]
    fn the_threads_of_several_processes_move_in_one_loop() {
        let topo = crate::machine::Topology::synthetic(&[vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
        let f = Fix::move_processes_threads(&[2000, 2101], &topo.nodes[0], true);
        assert_eq!(f.kind, FixKind::MoveThreadsLive);
        assert!(!f.destructive);
        assert_eq!(f.commands, vec!["for pid in 2000 2101; do taskset -a -p -c 0-3 $pid; done"]);
        assert!(f.verify.starts_with("sudo numatrace -o after.ntrace --pid 2000 --tree -d 30s;"), "{}", f.verify);
        let f = Fix::move_processes_threads(&[2000, 2101], &topo.nodes[0], false);
        assert!(f.verify.starts_with("sudo numatrace -o after.ntrace --pid 2000 --pid 2101 -d 30s;"), "{}", f.verify);
    }

    #[test]
    fn a_container_update_says_how_its_memory_moves() {
        let id = "4f1c0a6e1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d";
        let cgroup = format!("/system.slice/docker-{id}.scope");
        let live = ContainerPlacement {
            runtime: ContainerRuntime::Docker,
            id,
            cgroup_path: &cgroup,
            cpus: &[4, 5, 6, 7],
            mems: &[1],
            from_nodes: &[0],
            pages_to_copy: 1000,
            memory_moves: MemoryMoves::NotWithoutMigratepages,
        };
        let f = Fix::container_cpuset(&live);
        assert_eq!(f.kind, FixKind::ContainerUpdate);
        assert!(f.destructive);
        assert_eq!(f.commands[0], "docker update --cpuset-cpus=4-7 --cpuset-mems=1 4f1c0a6e1a2b");
        assert_eq!(
            f.commands[1],
            format!(
                "# DESTRUCTIVE: moves the memory already placed (cpuset.mems alone leaves it where it is without memory_migrate)\nfor pid in $(cat /sys/fs/cgroup{cgroup}/cgroup.procs); do migratepages $pid 0 1; done"
            )
        );
        assert_eq!(
            f.commands[2],
            "# at its next start, the same as run flags: docker run --cpuset-cpus=4-7 --cpuset-mems=1 <its other options> $(docker inspect -f '{{.Config.Image}}' 4f1c0a6e1a2b)"
        );
        // Nothing to move, podman: the update alone, not destructive.
        let f = Fix::container_cpuset(&ContainerPlacement {
            runtime: ContainerRuntime::Podman,
            pages_to_copy: 0,
            from_nodes: &[],
            ..live
        });
        assert!(!f.destructive);
        assert_eq!(f.commands[0], "podman update --cpuset-cpus=4-7 --cpuset-mems=1 4f1c0a6e1a2b");
        assert_eq!(f.commands.len(), 2);
        // cgroup v2 moves it itself: a note, no command.
        let f = Fix::container_cpuset(&ContainerPlacement { memory_moves: MemoryMoves::WithCpuset, ..live });
        assert_eq!(f.commands.len(), 2);
        assert!(f.notes.iter().any(|n| n.starts_with("cgroup v2 moves its memory")), "{:?}", f.notes);
        let f = Fix::container_cpuset(&ContainerPlacement { runtime: ContainerRuntime::CriO, ..live });
        assert_eq!(f.commands[0], "crictl update --cpuset-cpus=4-7 --cpuset-mems=1 4f1c0a6e1a2b");
    }

    #[test]
    fn a_cgroup_write_widens_the_parent_that_forbids_it_first() {
        let parent = ParentLimits { cpus: None, mems: Some(("/lab.slice".into(), vec![0])) };
        let f = Fix::cgroup_cpuset_writes(&CgroupPlacement {
            path: "/lab.slice/db",
            cpuset_enabled: true,
            cpus: &[4, 5, 6, 7],
            mems: &[1],
            pages_to_copy: 0,
            parent: &parent,
        });
        assert_eq!(f.kind, FixKind::CgroupCpuset);
        assert_eq!(
            f.commands,
            vec![
                "# node(s) 1 not in /lab.slice's cpuset.mems.effective (0): widen /lab.slice first (its other children keep what they have)",
                "echo 0-1 > /sys/fs/cgroup/lab.slice/cpuset.mems",
                "echo 4-7 > /sys/fs/cgroup/lab.slice/db/cpuset.cpus",
                "echo 1 > /sys/fs/cgroup/lab.slice/db/cpuset.mems",
            ]
        );
        assert!(!f.destructive);
        // Set on the cgroup itself, nothing known above: the writes, the
        // controller enabled, the memory move marked.
        let f = Fix::cgroup_cpuset_writes(&CgroupPlacement {
            path: "/lab",
            cpuset_enabled: false,
            cpus: &[4, 5, 6, 7],
            mems: &[1],
            pages_to_copy: 512,
            parent: &ParentLimits::default(),
        });
        assert!(f.destructive);
        assert_eq!(
            f.commands,
            vec![
                "echo +cpuset > /sys/fs/cgroup/cgroup.subtree_control",
                "echo 4-7 > /sys/fs/cgroup/lab/cpuset.cpus",
                "# DESTRUCTIVE: cgroup v2 migrates the memory of its tasks to node(s) 1 as cpuset.mems changes",
                "echo 1 > /sys/fs/cgroup/lab/cpuset.mems",
            ]
        );
        assert!(f.notes[0].contains("/sys/fs/cgroup/cpuset.cpus.effective"), "{:?}", f.notes);
    }
}
