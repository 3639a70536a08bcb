//! The fix for each cause, as exact commands from the shared vocabulary
//! (`crate::fixes`), checked against what the process is allowed.
use std::collections::BTreeMap;

use super::{evidence::Contribution, kinds::CauseKind};
use crate::{
    facts::TargetScope,
    fixes::{
        Constraints, Fix, FixKind, MIN_ROOM_BYTES, Workload,
        postgres::Postgres,
        scope::{CgroupPlacement, ContainerPlacement, MemoryMoves, ParentLimits, UnitNumaPolicy, UnitPlacement},
    },
    machine::Node,
};

/// What the fixes are built from.
#[derive(Clone, Debug, Default)]
pub struct FixEnv {
    pub pid: u32,
    pub nodes: Vec<Node>,
    pub workload: Workload,
    /// The process was started by numatrace (a restart under numactl is natural).
    pub started_by_numatrace: bool,
    pub is_jvm: bool,
    /// Resident memory of the process, bytes.
    pub resident_bytes: u64,
    /// Its memory by node, bytes, as its last snapshot saw it (empty: not read).
    pub resident_by_node: BTreeMap<u32, u64>,
    pub constraints: Constraints,
    /// How the traced processes were named: a unit, a container or a cgroup
    /// gets its own fix, for all its processes at once.
    pub scope: TargetScope,
    /// Ancestors of the scope's cgroup known to restrict its cpuset.
    pub parent_limits: ParentLimits,
    /// Whether a new cpuset.mems moves memory already placed (the cgroup version).
    pub memory_moves: MemoryMoves,
    /// A PostgreSQL instance among the traced processes.
    pub postgres: Option<Postgres>,
    /// Every traced process seen: the target first, then by pid.
    pub pids: Vec<u32>,
}

/// The fix for the unit of deployment (a systemd unit, a container, a
/// cgroup) that puts all its processes on node `n`; none for processes.
fn scope_fix(env: &FixEnv, c: &Contribution, n: &Node, policy: UnitNumaPolicy) -> Option<Fix> {
    let restricted = env.constraints.cpuset.as_ref().is_some_and(|cs| {
        (cs.cpus_set_by.is_some() && !n.cpus.iter().all(|x| cs.effective_cpus.contains(x)))
            || (cs.mems_set_by.is_some() && !cs.effective_mems.contains(&n.id))
    });
    let from: Vec<u32> = c.memory_nodes.iter().copied().filter(|m| *m != n.id).collect();
    let pages_to_copy = if from.is_empty() { 0 } else { c.pages.round().max(0.0) as u64 };
    match &env.scope {
        TargetScope::Unit { name, .. } => Some(Fix::unit_dropin(
            name,
            &UnitPlacement { cpus: Some(n.cpus.clone()), policy, mems: vec![n.id], cgroup_cpuset: restricted },
        )),
        TargetScope::Container { id, runtime, cgroup } => Some(Fix::container_cpuset(&ContainerPlacement {
            runtime: *runtime,
            id,
            cgroup_path: &cgroup.path,
            cpus: &n.cpus,
            mems: &[n.id],
            from_nodes: &from,
            pages_to_copy,
            memory_moves: env.memory_moves,
        })),
        TargetScope::Cgroup(cg) => Some(Fix::cgroup_cpuset_writes(&CgroupPlacement {
            path: &cg.path,
            cpuset_enabled: cg.cpus_effective.is_some(),
            cpus: &n.cpus,
            mems: &[n.id],
            pages_to_copy,
            parent: &env.parent_limits,
        })),
        TargetScope::Process | TargetScope::Processes | TargetScope::Tree => None,
    }
}

/// Memory spread over all nodes: a unit's drop-in for a unit, else the
/// target's command under numactl.
fn interleave(env: &FixEnv) -> Fix {
    match &env.scope {
        TargetScope::Unit { name, .. } if !env.started_by_numatrace => {
            let mems: Vec<u32> = env.nodes.iter().filter(|n| !n.is_memoryless()).map(|n| n.id).collect();
            let goal = crate::fixes::interleave_goal(mems.len());
            let mut f = Fix::unit_dropin(
                name,
                &UnitPlacement { cpus: None, policy: UnitNumaPolicy::Interleave, mems, cgroup_cpuset: false },
            );
            f.goal_remote_share = Some(goal);
            f.with_note(format!(
                "By design {:.0} % of its pages stay remote, spread evenly so that no node's memory bandwidth saturates.",
                (goal - crate::fixes::FIXED_BELOW) * 100.0
            ))
        }
        _ => Fix::interleave_all(&env.workload, &env.nodes),
    }
}

/// Fixes that act on one process (its command, its pid), which a cgroup,
/// unit or container of several does not take: its own fix does it for all.
fn for_one_process(kind: FixKind) -> bool {
    matches!(
        kind,
        FixKind::BindToNode
            | FixKind::Preferred
            | FixKind::Taskset
            | FixKind::MoveThreadsLive
            | FixKind::RepinLive
            | FixKind::MigratePages
            | FixKind::SystemdUnit
            | FixKind::Docker
            | FixKind::CgroupV1Cpuset
            | FixKind::CgroupV2Cpuset
    )
}

/// PostgreSQL's own fix: interleave when its shared memory is bigger than a
/// node, else the instance on the node its users run on (or the one with
/// most room) when it fits there.
fn postgres_fix(env: &FixEnv, c: &Contribution) -> Option<Fix> {
    let pg = env.postgres.as_ref()?;
    let largest = env.largest_node_bytes();
    if pg.shared_memory_bytes > largest / 10 * 9 {
        return Some(Fix::postgres_interleave(pg, &env.nodes));
    }
    let needed = pg.shared_memory_bytes.max(env.resident_bytes).max(MIN_ROOM_BYTES);
    let users = (c.thread_nodes.len() == 1).then(|| c.thread_nodes.iter().next().and_then(|n| env.node(*n))).flatten();
    let node = users.filter(|n| n.mem_free_bytes >= needed).or_else(|| node_with_room(c, env, needed))?;
    Some(Fix::postgres_bind(pg, node))
}

impl FixEnv {
    fn node(&self, id: u32) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    fn largest_node_bytes(&self) -> u64 {
        self.nodes.iter().map(|n| n.mem_total_bytes).max().unwrap_or(0)
    }
}

/// The node a live process's threads can move to instead of moving its
/// memory: the one node all its remote memory is on, when that node has
/// CPUs, room for what the process allocates next (a quarter of its
/// resident size, at least [`MIN_ROOM_BYTES`]), and is not already where
/// the threads run.
fn node_to_move_threads_to<'a>(c: &Contribution, env: &'a FixEnv) -> Option<&'a Node> {
    if env.started_by_numatrace || env.pid == 0 || c.memory_nodes.len() != 1 {
        return None;
    }
    let n = c.memory_nodes.iter().next().and_then(|id| env.node(*id))?;
    // Most of it has moved since (the balancer repairs toward the threads):
    // moving the threads back would make that remote.
    if node_holding_most(env).is_some_and(|m| m != n.id) {
        return None;
    }
    let room = (env.resident_bytes / 4).max(MIN_ROOM_BYTES);
    let already_there = c.thread_nodes.len() == 1 && c.thread_nodes.contains(&n.id);
    (!n.cpus.is_empty() && n.mem_free_bytes >= room && !already_there).then_some(n)
}

/// The node that holds more than half of the process's memory now (its last
/// snapshot), if one does.
fn node_holding_most(env: &FixEnv) -> Option<u32> {
    let total: u64 = env.resident_by_node.values().sum();
    env.resident_by_node.iter().find(|(_, bytes)| **bytes > total / 2).map(|(n, _)| *n)
}

/// The node with CPUs that had room for all `needed` bytes when the capture
/// started, the threads' own node first, else the one with the most free
/// memory.
fn node_with_room<'a>(c: &Contribution, env: &'a FixEnv, needed: u64) -> Option<&'a Node> {
    env.nodes
        .iter()
        .filter(|n| !n.cpus.is_empty() && !n.is_memoryless() && n.mem_free_bytes >= needed)
        .max_by_key(|n| (c.thread_nodes.contains(&n.id), n.mem_free_bytes))
}

/// The threads already run only on `node`, and may run nowhere else: pinning them there changes nothing.
fn threads_only_on(c: &Contribution, env: &FixEnv, node: &Node) -> bool {
    let ran_there = c.thread_nodes.len() == 1 && c.thread_nodes.contains(&node.id);
    let allowed = &env.workload.cpus_allowed;
    ran_there && (allowed.is_empty() || allowed.iter().all(|cpu| node.cpus.contains(cpu)))
}

/// Fixes for one cause, best first, each checked against the process's allowed CPUs and nodes.
/// Returns (steps, problems): a fix the cpuset forbids comes back as the cgroup change then the fix.
///
/// For a live process the cheapest safe step comes first: its threads
/// moved to its memory's node (nothing copied); then the fix that lasts
/// (its systemd unit or container, or a restart under numactl); moving its
/// memory (DESTRUCTIVE) last.
pub fn fixes_for(kind: CauseKind, c: &Contribution, env: &FixEnv) -> (Vec<Fix>, Vec<String>) {
    if env.nodes.len() < 2 {
        return (vec![Fix::no_benefit_from_pinning("this machine has one NUMA node")], Vec::new());
    }
    let thread_node = c.thread_nodes.iter().next().and_then(|n| env.node(*n));
    let memory_node = c.memory_nodes.iter().next().and_then(|n| env.node(*n));
    let too_big_for_a_node = env.resident_bytes > env.largest_node_bytes() / 10 * 9;
    let pages_to_copy = c.pages.round().max(0.0) as u64;
    let live = !env.started_by_numatrace && env.pid != 0;
    let mut fixes = Vec::new();
    if env.is_jvm && too_big_for_a_node {
        fixes.push(Fix::jvm_use_numa(&env.workload));
    }
    // The cheapest safe step for a live process, where the cause allows it.
    let cheap_kinds = matches!(
        kind,
        CauseKind::PlacedBeforeCapture
            | CauseKind::ThreadMigrated
            | CauseKind::MemoryPolicy
            | CauseKind::ExplicitMigration
            | CauseKind::FirstTouchByOtherThread
    );
    // One process's threads: a service of several is moved by its scope's fix.
    let cheap = if cheap_kinds && !too_big_for_a_node && env.scope.is_process() {
        node_to_move_threads_to(c, env)
    } else {
        None
    };
    if let Some(n) = cheap {
        if let Some(container) = env.workload.container.as_ref().filter(|ct| !ct.kubernetes) {
            fixes.push(Fix::container_update(container, &n.cpus, &[n.id], 0));
        }
        fixes.push(Fix::move_threads_to_memory(env.pid, n));
    }
    // Several processes named one by one or as a tree: all their threads.
    let several = matches!(env.scope, TargetScope::Processes | TargetScope::Tree) && env.pids.len() > 1;
    if several
        && cheap_kinds
        && !too_big_for_a_node
        && let Some(n) = node_to_move_threads_to(c, env)
    {
        fixes.push(Fix::move_processes_threads(&env.pids, n, env.scope == TargetScope::Tree));
    }
    // A cgroup's cpuset moves every thread of it to where the memory is, live,
    // nothing copied: its cheapest safe step, before any restart.
    if cheap_kinds
        && !too_big_for_a_node
        && matches!(env.scope, TargetScope::Cgroup(_))
        && let Some(n) = node_to_move_threads_to(c, env)
        && let Some(f) = scope_fix(env, c, n, UnitNumaPolicy::Bind)
    {
        fixes.push(f);
    }
    // PostgreSQL's shared memory: the database's own advice comes first.
    let mut pg_fixed = false;
    if live
        && matches!(
            kind,
            CauseKind::FirstTouchByOtherThread | CauseKind::SharedAcrossNodes | CauseKind::PlacedBeforeCapture
        )
        && let Some(f) = postgres_fix(env, c)
    {
        fixes.push(f);
        pg_fixed = true;
    }
    let pg_fixed = pg_fixed;
    // Its processes first-touch shared memory as the database decides: no code change to suggest.
    let first_touch_per_thread = || (env.postgres.is_none()).then(Fix::first_touch_per_thread);
    // What lasts across restarts, for a process numatrace did not start.
    let lasting = |fixes: &mut Vec<Fix>, n: &Node| {
        if !live {
            return;
        }
        // PostgreSQL's fix already wrote its unit's drop-in.
        if pg_fixed && env.postgres.as_ref().is_some_and(|pg| pg.unit.is_some()) {
            return;
        }
        // A spill needs room, not a wall: preferred (a cpuset binds all the same).
        let policy = if kind == CauseKind::AllocationSpill { UnitNumaPolicy::Preferred } else { UnitNumaPolicy::Bind };
        if let Some(f) = scope_fix(env, c, n, policy) {
            fixes.push(f);
            return;
        }
        if let Some(container) = &env.workload.container {
            if container.kubernetes {
                fixes.push(Fix::kubernetes_single_numa_node());
            } else if cheap.is_none() {
                let copy = if c.memory_nodes.iter().all(|m| *m == n.id) { 0 } else { pages_to_copy };
                fixes.push(Fix::container_update(container, &n.cpus, &[n.id], copy));
            }
        } else if let Some(unit) = &env.workload.systemd_unit {
            fixes.push(Fix::systemd_unit(unit, &n.cpus, &[n.id]));
        }
    };
    let repin = |fixes: &mut Vec<Fix>, n: &Node, from: &[u32]| {
        if live {
            fixes.push(Fix::repin_live(env.pid, n, from, pages_to_copy, threads_only_on(c, env, n)));
        }
    };
    match kind {
        // Its users all run on one node and it fits there: placing the whole
        // process there makes every page local (the lab: 99 % remote -> 0 %),
        // where an interleave leaves (n-1)/n remote. Else the code change
        // first, or the interleave that needs none.
        CauseKind::FirstTouchByOtherThread => {
            let users_node = (c.thread_nodes.len() == 1 && !too_big_for_a_node).then_some(thread_node).flatten();
            if let Some(n) = users_node {
                lasting(&mut fixes, n);
                fixes.push(Fix::bind_to_node(n, &env.workload));
            }
            fixes.extend(first_touch_per_thread());
            fixes.push(interleave(env));
            if users_node.is_none()
                && !too_big_for_a_node
                && let Some(n) = thread_node
            {
                lasting(&mut fixes, n);
                fixes.push(Fix::bind_to_node(n, &env.workload));
            }
        }
        CauseKind::ThreadMigrated | CauseKind::MemoryPolicy | CauseKind::ExplicitMigration => {
            // A live process whose memory has mostly moved to its threads
            // since (the balancer's repair) stays there: the rest follows.
            let now = live.then(|| node_holding_most(env).and_then(|m| env.node(m))).flatten();
            let target = if kind == CauseKind::ThreadMigrated {
                now.or(memory_node).or(thread_node)
            } else {
                thread_node.or(memory_node)
            };
            if too_big_for_a_node {
                fixes.push(interleave(env));
            } else if let Some(n) = target {
                lasting(&mut fixes, n);
                fixes.push(Fix::bind_to_node(n, &env.workload));
                if !live {
                    fixes.push(Fix::systemd_unit(
                        &format!("{}.service", program_name(&env.workload)),
                        &n.cpus,
                        &[n.id],
                    ));
                    fixes.push(Fix::docker_run(&n.cpus, &[n.id], "<image>"));
                    fixes.push(Fix::kubernetes_single_numa_node());
                }
                let from: Vec<u32> = env.nodes.iter().map(|n| n.id).collect();
                repin(&mut fixes, n, &from);
            }
        }
        // Users on several nodes: spread the memory evenly (interleave), or
        // give each thread its own part (first touch), or put the users on
        // one node when they and the memory fit there.
        CauseKind::SharedAcrossNodes => {
            fixes.push(interleave(env));
            fixes.extend(first_touch_per_thread());
            if !too_big_for_a_node && let Some(n) = memory_node {
                fixes.push(Fix::bind_to_node(n, &env.workload));
            }
        }
        // The threads' node was full. The fix is a node with room for all of
        // it (preferred, not bound: a node that fills up spills instead of
        // killing it); where none has room, no placement keeps it local, and
        // the report says so. No interleave: the full node takes no more of
        // it than it has now, so at least as much stays remote, usually more
        // (the lab, run as printed: 19 % -> 50 %, 59 % -> 66 %). Preferring
        // the full node is the default policy already: no fix either.
        CauseKind::AllocationSpill => {
            // What it holds: its resident size, and at least what its threads'
            // node had free when the capture started plus what spilled (the
            // node was full; the last snapshot may predate its allocations).
            let home_free =
                (c.thread_nodes.len() == 1).then_some(thread_node).flatten().map_or(0, |n| n.mem_free_bytes);
            let needed = env.resident_bytes.max(pages_to_copy * 4096 + home_free);
            match node_with_room(c, env, needed) {
                Some(n) => {
                    lasting(&mut fixes, n);
                    fixes.push(Fix::preferred(n, &env.workload).with_note(format!(
                        "Node {} had {} MiB free when the capture started; the process holds about {} MiB.",
                        n.id,
                        n.mem_free_bytes >> 20,
                        needed >> 20
                    )));
                }
                None => fixes.push(Fix::no_node_has_room(needed, &env.nodes, thread_node)),
            }
            if let Some(last) = fixes.pop() {
                fixes.push(last.with_note(format!(
                    "No interleave: {:.0} % of its pages are remote now, the most its own node could not take; an interleave leaves at least as much remote, usually more.",
                    pages_to_copy as f64 * 4096.0 / needed.max(1) as f64 * 100.0
                )));
            }
            fixes.push(Fix::zone_reclaim_off());
        }
        CauseKind::NumaBalancer => {
            if let Some(n) = thread_node.or(memory_node) {
                lasting(&mut fixes, n);
                fixes.push(Fix::bind_to_node(n, &env.workload));
            }
            fixes.push(Fix::disable_numa_balancing());
        }
        CauseKind::PlacedBeforeCapture => {
            if let (Some(n), false) = (thread_node, too_big_for_a_node) {
                // Where the memory is may be unknown (hinting faults saw it
                // remote, the balancer moved it): then from every other node,
                // never a move with no command.
                let mut from: Vec<u32> = c.memory_nodes.iter().copied().collect();
                if from.is_empty() {
                    from = env.nodes.iter().map(|n| n.id).collect();
                }
                let target = cheap.unwrap_or(n);
                lasting(&mut fixes, target);
                fixes.push(Fix::bind_to_node(target, &env.workload));
                repin(&mut fixes, n, &from);
            } else {
                fixes.push(interleave(env));
            }
        }
    }
    if live && env.scope.cgroup().is_some() {
        // The unit, container or cgroup fix came first: not one process's.
        fixes.retain(|f| !for_one_process(f.kind));
    } else if live && env.pids.len() > 1 {
        // Several processes: moving one pid's memory leaves the others'.
        fixes.retain(|f| !matches!(f.kind, FixKind::RepinLive | FixKind::MigratePages));
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
                // The scope's own cgroup fix stands for the generic one a check adds.
                let scoped = live && env.scope.cgroup().is_some() && for_one_process(s.kind);
                if !steps.contains(&s) && !scoped {
                    steps.push(s);
                }
            }
        }
    }
    (steps, problems)
}

fn program_name(w: &Workload) -> String {
    w.program_name().filter(|n| !n.is_empty()).unwrap_or_else(|| "myapp".into())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{
        fixes::FixKind,
        machine::{Container, ContainerRuntime, Topology},
    };

    /// The redis case of the issue: attached to a running server whose 73 MiB
    /// sit on node 0 while its threads run on node 1.
    fn redis(cpus_allowed: Vec<u32>) -> (Contribution, FixEnv) {
        let machine = Topology::synthetic_with_memory(&[vec![0], vec![1]], 512 << 20);
        let c = Contribution {
            kind: CauseKind::PlacedBeforeCapture,
            pages: 18688.0,
            tids: BTreeSet::from([300, 301]),
            first_ns: 0,
            last_ns: 0,
            memory_nodes: BTreeSet::from([0]),
            thread_nodes: BTreeSet::from([1]),
            regions: BTreeSet::new(),
            evidence: String::new(),
            repaired_pages: 0.0,
            mover: None,
        };
        let workload = Workload {
            argv: vec!["/usr/bin/redis-server *:6379".into()],
            exe: Some("/usr/bin/redis-server".into()),
            title_rewritten: true,
            cpus_allowed,
            ..Default::default()
        };
        let env = FixEnv { pid: 300, nodes: machine.nodes, workload, resident_bytes: 73 << 20, ..Default::default() };
        (c, env)
    }

    /// A unit of several processes: its drop-in, with the policy the cause needs.
    #[test]
    fn a_unit_gets_an_interleave_or_preferred_drop_in_and_no_per_process_fix() {
        let (mut c, mut env) = redis(Vec::new());
        env.scope = TargetScope::Unit {
            name: "cache.service".into(),
            cgroup: crate::facts::CgroupScope {
                path: "/system.slice/cache.service".into(),
                id: 7,
                cpus_effective: None,
                mems_effective: None,
            },
        };
        env.pids = vec![300, 400];
        // Bigger than a node: interleave the unit.
        env.resident_bytes = 600 << 20;
        c.kind = CauseKind::SharedAcrossNodes;
        let (fixes, _) = fixes_for(CauseKind::SharedAcrossNodes, &c, &env);
        assert_eq!(fixes[0].kind, FixKind::UnitDropIn);
        assert!(fixes[0].commands[1].contains("NUMAPolicy=interleave\nNUMAMask=0-1\n"), "{}", fixes[0].commands[1]);
        // A spill: a node with room, preferred.
        env.resident_bytes = 64 << 20;
        env.nodes[0].mem_free_bytes = 2 << 30;
        let (fixes, _) = fixes_for(CauseKind::AllocationSpill, &c, &env);
        assert_eq!(fixes[0].kind, FixKind::UnitDropIn);
        assert!(fixes[0].commands[1].contains("NUMAPolicy=preferred"), "{}", fixes[0].commands[1]);
        assert!(fixes.iter().all(|f| !for_one_process(f.kind)), "{fixes:#?}");
    }

    #[test]
    fn a_live_process_moves_its_threads_before_its_memory() {
        let (c, env) = redis(vec![1]);
        let (fixes, problems) = fixes_for(CauseKind::PlacedBeforeCapture, &c, &env);
        assert!(problems.is_empty(), "{problems:?}");
        let kinds: Vec<FixKind> = fixes.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![FixKind::MoveThreadsLive, FixKind::BindToNode, FixKind::RepinLive], "{fixes:#?}");
        assert!(!fixes[0].destructive);
        assert_eq!(fixes[0].commands, vec!["taskset -a -p -c 0 300"]);
        assert_eq!(
            fixes[1].commands,
            vec!["numactl --cpunodebind=0 --membind=0 /usr/bin/redis-server <original arguments>"]
        );
        // The threads may only run on node 1 already: the memory move has no re-pin in front.
        let last = &fixes[2];
        assert!(last.destructive);
        assert_eq!(last.commands, vec!["migratepages 300 0 1"]);
        assert!(last.cost.as_deref().is_some_and(|c| c.contains("18688 pages (73 MiB)")), "{:?}", last.cost);
        // Unpinned threads (they may run anywhere) are pinned with the move, or they could drift back.
        let (c, env) = redis(vec![0, 1]);
        let (fixes, _) = fixes_for(CauseKind::PlacedBeforeCapture, &c, &env);
        assert_eq!(fixes.last().map(|f| f.commands.len()), Some(2));
    }

    #[test]
    fn no_thread_move_back_when_most_memory_has_moved_to_the_threads() {
        // Balancing on: by the end of the capture the balancer had moved 72 %
        // of redis's memory to node 1, where its threads run. Moving the
        // threads to node 0 would make that remote (the lab: 11 % -> 15 %).
        let (c, mut env) = redis(vec![1]);
        env.resident_by_node = BTreeMap::from([(0, 21 << 20), (1, 52 << 20)]);
        let (fixes, _) = fixes_for(CauseKind::PlacedBeforeCapture, &c, &env);
        let kinds: Vec<FixKind> = fixes.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![FixKind::BindToNode, FixKind::RepinLive], "{fixes:#?}");
        assert_eq!(fixes[1].commands, vec!["migratepages 300 0 1"]);
        let (mut c, mut env) = redis(vec![1]);
        c.kind = CauseKind::ThreadMigrated;
        env.resident_by_node = BTreeMap::from([(0, 21 << 20), (1, 52 << 20)]);
        let (fixes, _) = fixes_for(CauseKind::ThreadMigrated, &c, &env);
        assert!(fixes.iter().all(|f| f.kind != FixKind::MoveThreadsLive), "{fixes:#?}");
        assert_eq!(fixes.last().map(|f| f.commands.clone()), Some(vec!["migratepages 300 0 1".to_string()]));
        // Most of it still where it was placed: the threads go to it.
        env.resident_by_node = BTreeMap::from([(0, 70 << 20), (1, 3 << 20)]);
        let (fixes, _) = fixes_for(CauseKind::ThreadMigrated, &c, &env);
        assert_eq!(fixes[0].kind, FixKind::MoveThreadsLive, "{fixes:#?}");
    }

    #[test]
    fn no_thread_move_to_a_node_without_cpus_or_room() {
        let (c, mut env) = redis(vec![1]);
        env.nodes[0].mem_free_bytes = 10 << 20;
        let (fixes, _) = fixes_for(CauseKind::PlacedBeforeCapture, &c, &env);
        assert!(fixes.iter().all(|f| f.kind != FixKind::MoveThreadsLive), "{fixes:#?}");
        let (c, mut env) = redis(vec![1]);
        env.nodes[0].cpus.clear();
        let (fixes, _) = fixes_for(CauseKind::PlacedBeforeCapture, &c, &env);
        assert!(fixes.iter().all(|f| f.kind != FixKind::MoveThreadsLive), "{fixes:#?}");
        // A command numatrace started is restarted, not re-pinned.
        let (c, mut env) = redis(vec![1]);
        env.started_by_numatrace = true;
        let (fixes, _) = fixes_for(CauseKind::ThreadMigrated, &c, &env);
        assert!(fixes.iter().all(|f| f.kind != FixKind::MoveThreadsLive && f.kind != FixKind::RepinLive), "{fixes:#?}");
    }

    /// A command that spilled `spilled` of its `resident` MiB from node 0 to
    /// node 1, on two nodes with `free` MiB free each.
    fn spill(spilled: u64, resident: u64, free: [u64; 2]) -> Vec<Fix> {
        let mut machine = Topology::synthetic_with_memory(&[vec![0], vec![1]], 512 << 20);
        for (n, f) in machine.nodes.iter_mut().zip(free) {
            n.mem_free_bytes = f << 20;
        }
        let c = Contribution {
            kind: CauseKind::AllocationSpill,
            pages: (spilled * 256) as f64,
            tids: BTreeSet::from([300]),
            first_ns: 0,
            last_ns: 0,
            memory_nodes: BTreeSet::from([1]),
            thread_nodes: BTreeSet::from([0]),
            regions: BTreeSet::new(),
            evidence: String::new(),
            repaired_pages: 0.0,
            mover: None,
        };
        let workload =
            Workload::command_line(vec!["numactl".into(), "--cpunodebind=0".into(), "memhog".into(), "406m".into()]);
        let env = FixEnv {
            pid: 300,
            nodes: machine.nodes,
            workload,
            started_by_numatrace: true,
            resident_bytes: resident << 20,
            ..Default::default()
        };
        let (fixes, problems) = fixes_for(CauseKind::AllocationSpill, &c, &env);
        assert!(problems.is_empty(), "{problems:?}");
        fixes
    }

    #[test]
    fn a_spill_goes_to_a_node_with_room_never_first_to_an_interleave() {
        // The lab's memhog: 406 MiB, 191 MiB of it spilled; node 1 had 452 MiB free.
        let fixes = spill(191, 406, [246, 452]);
        assert_eq!(fixes[0].kind, FixKind::Preferred, "{fixes:#?}");
        // The last snapshot predates most of its allocations: what its node had
        // free and what spilled say how much it holds (595 MiB: no node has room).
        let fixes = spill(188, 100, [446, 247]);
        assert_eq!(fixes[0].kind, FixKind::NoNodeHasRoom, "{fixes:#?}");
        let fixes = spill(191, 100, [246, 452]);
        assert_eq!(fixes[0].kind, FixKind::Preferred, "{fixes:#?}");
        assert_eq!(fixes[0].commands, vec!["numactl --cpunodebind=1 --preferred=1 memhog 406m"]);
        assert_eq!(fixes[0].goal_remote_share, Some(crate::fixes::FIXED_BELOW));
        assert!(fixes.iter().all(|f| f.kind != FixKind::InterleaveAll), "47 % remote -> 50 %: {fixes:#?}");
        // No node has room: no command is printed as a fix, and no interleave that raises the share.
        let fixes = spill(71, 370, [299, 237]);
        assert_eq!(fixes[0].kind, FixKind::NoNodeHasRoom, "{fixes:#?}");
        assert!(fixes[0].title.starts_with("No command fixes this: it needs about 370 MiB"), "{}", fixes[0].title);
        assert!(fixes[0].commands.iter().all(|c| c.starts_with('#')), "{:?}", fixes[0].commands);
        assert!(fixes.iter().all(|f| f.kind != FixKind::InterleaveAll && f.kind != FixKind::Preferred), "{fixes:#?}");
        // More than half spilled: still no interleave (the full node takes no more of it).
        let fixes = spill(300, 400, [100, 100]);
        assert_eq!(fixes[0].kind, FixKind::NoNodeHasRoom);
        assert!(fixes.iter().all(|f| f.kind != FixKind::InterleaveAll), "{fixes:#?}");
    }

    #[test]
    fn a_service_or_container_leads_with_its_own_settings() {
        let (c, mut env) = redis(vec![1]);
        env.workload.systemd_unit = Some("redis-server.service".into());
        let (fixes, _) = fixes_for(CauseKind::PlacedBeforeCapture, &c, &env);
        assert_eq!(fixes[1].kind, FixKind::SystemdUnit, "{fixes:#?}");
        assert!(
            fixes[1].commands.iter().any(|c| c.contains("CPUAffinity=0\\nNUMAPolicy=bind\\nNUMAMask=0")),
            "{:?}",
            fixes[1].commands
        );
        assert!(fixes[1].commands.contains(&"systemctl restart redis-server.service".to_string()));
        let (c, mut env) = redis(vec![1]);
        env.workload.container =
            Some(Container { runtime: ContainerRuntime::Docker, id: "0123456789abcdef".into(), kubernetes: false });
        let (fixes, _) = fixes_for(CauseKind::PlacedBeforeCapture, &c, &env);
        assert_eq!(fixes[0].commands[0], "docker update --cpuset-cpus=0 --cpuset-mems=0 0123456789ab", "{fixes:#?}");
        assert!(!fixes[0].destructive);
    }
}
