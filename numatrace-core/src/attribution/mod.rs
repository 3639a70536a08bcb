//! Attribution: from the aggregator's facts to ranked causes of remote
//! memory, each with its share, threads, time window, evidence and the fix
//! as exact commands. See `evidence` for how remote pages are counted.
pub mod context;
pub mod evidence;
pub mod kinds;
pub mod magnitude;
pub mod recommend;
pub mod shared;
pub mod sites;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use context::ProcessContext;
pub use kinds::CauseKind;
pub use magnitude::Magnitude;
pub use recommend::FixEnv;

use crate::{aggregate::Aggregator, fixes::Fix, machine::cpulist};

/// One ranked cause.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    pub kind: CauseKind,
    /// This cause's fraction of all attributed remote pages (0..1).
    pub share: f64,
    /// Remote pages attributed to it.
    pub pages: u64,
    /// Threads involved (the ones whose memory is remote, and the ones that placed it).
    pub threads: Vec<u32>,
    /// Nodes the memory is on, and nodes the threads using it ran on.
    pub memory_nodes: Vec<u32>,
    pub thread_nodes: Vec<u32>,
    /// Seconds since the capture started.
    pub window: Window,
    /// Number of 2 MiB regions involved, and their address span.
    pub regions: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_span: Option<String>,
    /// One sentence a DBA understands.
    pub summary: String,
    /// The strongest pieces of evidence, largest first.
    pub evidence: Vec<String>,
    /// The first step to take, as one line.
    pub recommendation: String,
    /// The first step moves memory of a live process or changes a host-wide setting.
    pub destructive: bool,
    /// Every step, with exact commands, best first.
    pub fixes: Vec<Fix>,
    /// Of `pages`, those the NUMA balancer migrated to their users during the
    /// capture: a repair of this cause, not a cause of its own (for shared
    /// memory, the back-and-forth it keeps paying for).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repaired_pages: u64,
    /// Why some fixes cannot apply as they stand (cpuset, missing nodes, no room).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<String>,
    /// In a capture of several processes: the pages of this cause whose
    /// placer or user is in each process, most first (a page placed by one
    /// process and used by another counts for both).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessPages>,
    /// The call sites that placed this memory, most pages first (`--stacks`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<sites::Site>,
}

/// A cause's pages that involve one process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessPages {
    pub pid: u32,
    pub pages: u64,
}

/// Per process, the pages of `parts` whose threads are in it (several processes only).
fn pages_by_process(agg: &Aggregator, parts: &[evidence::Contribution]) -> Vec<ProcessPages> {
    let mut by_pid: BTreeMap<u32, f64> = BTreeMap::new();
    for p in parts {
        let pids: BTreeSet<u32> = p.tids.iter().filter_map(|t| tgid_of(agg, *t)).collect();
        for pid in pids {
            *by_pid.entry(pid).or_default() += p.pages;
        }
    }
    let mut out: Vec<ProcessPages> =
        by_pid.into_iter().map(|(pid, pages)| ProcessPages { pid, pages: pages.round() as u64 }).collect();
    out.sort_by(|a, b| b.pages.cmp(&a.pages).then(a.pid.cmp(&b.pid)));
    out
}

/// For `skip_serializing_if` on counts (here and in the report).
pub(crate) fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub start_s: f64,
    pub end_s: f64,
}

/// Ranks the causes of remote memory in a finished capture.
pub fn attribute(agg: &Aggregator, ctx: &ProcessContext, env: &FixEnv, start_ns: u64) -> Vec<Cause> {
    let contributions = evidence::collect(agg, ctx, start_ns);
    let mut by_kind: BTreeMap<CauseKind, Vec<evidence::Contribution>> = BTreeMap::new();
    for c in contributions {
        by_kind.entry(c.kind).or_default().push(c);
    }
    let total: f64 = by_kind.values().flatten().map(|c| c.pages).sum();
    let several_processes = {
        let mut pids = agg.all_threads().map(|t| t.tgid);
        let first = pids.next();
        pids.any(|p| Some(p) != first)
    };
    let mut causes: Vec<Cause> = by_kind
        .into_iter()
        .map(|(kind, mut parts)| {
            parts.sort_by(|a, b| b.pages.total_cmp(&a.pages));
            let pages: f64 = parts.iter().map(|c| c.pages).sum();
            let mut merged = parts[0].clone();
            for p in &parts[1..] {
                merged.tids.extend(&p.tids);
                merged.memory_nodes.extend(&p.memory_nodes);
                merged.thread_nodes.extend(&p.thread_nodes);
                merged.regions.extend(&p.regions);
                merged.first_ns = merged.first_ns.min(p.first_ns);
                merged.last_ns = merged.last_ns.max(p.last_ns);
                merged.repaired_pages += p.repaired_pages;
            }
            merged.pages = pages;
            let processes = if several_processes { pages_by_process(agg, &parts) } else { Vec::new() };
            let sites = sites::of_cause(agg, kind, &parts);
            let (fixes, blocked) = recommend::fixes_for(kind, &merged, env);
            let first = fixes.first();
            let rel = |ns: u64| if ns == u64::MAX || ns < start_ns { 0.0 } else { (ns - start_ns) as f64 / 1e9 };
            let span = match (merged.regions.iter().next(), merged.regions.iter().next_back()) {
                (Some(lo), Some(hi)) => Some(format!("{:#x}-{:#x}", lo << 21, (hi + 1) << 21)),
                _ => None,
            };
            Cause {
                kind,
                share: if total > 0.0 { pages / total } else { 0.0 },
                pages: pages.round() as u64,
                threads: merged.tids.iter().copied().collect(),
                memory_nodes: merged.memory_nodes.iter().copied().collect(),
                thread_nodes: merged.thread_nodes.iter().copied().collect(),
                window: Window { start_s: rel(merged.first_ns), end_s: rel(merged.last_ns).max(rel(merged.first_ns)) },
                regions: merged.regions.len() as u64,
                address_span: span,
                summary: summary(kind, &merged, agg, pages),
                evidence: repair_evidence(kind, &merged).into_iter().chain(top_evidence(&parts)).collect(),
                repaired_pages: merged.repaired_pages.round() as u64,
                recommendation: first
                    .map(|f| match f.commands.iter().find(|c| !c.starts_with('#')) {
                        Some(cmd) => format!("{}: {cmd}", f.title),
                        None => f.title.clone(),
                    })
                    .unwrap_or_default(),
                destructive: first.is_some_and(|f| f.destructive),
                fixes,
                blocked,
                processes,
                sites,
            }
        })
        .collect();
    causes.sort_by(|a, b| b.share.total_cmp(&a.share).then(b.pages.cmp(&a.pages)).then(a.kind.cmp(&b.kind)));
    causes
}

/// What the balancer did about a cause's remote memory, as the first piece of evidence.
fn repair_evidence(kind: CauseKind, c: &evidence::Contribution) -> Option<String> {
    let repaired = c.repaired_pages.round() as u64;
    if repaired == 0 {
        return None;
    }
    Some(if kind == CauseKind::SharedAcrossNodes {
        format!(
            "the NUMA balancer migrated {repaired} of these pages toward one user or another: with users on several nodes it cannot settle them (ping-pong), and each move costs a copy"
        )
    } else {
        format!(
            "the NUMA balancer migrated {repaired} of these pages to the threads that use them: a repair of this cause, paid for in hinting faults and page copies, not a cause of its own"
        )
    })
}

/// The five strongest distinct pieces of evidence (one per region would repeat itself).
fn top_evidence(parts: &[evidence::Contribution]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in parts {
        if !out.contains(&p.evidence) {
            out.push(p.evidence.clone());
        }
        if out.len() == 5 {
            break;
        }
    }
    out
}

fn nodes(set: &BTreeSet<u32>) -> String {
    let ids: Vec<u32> = set.iter().copied().collect();
    match ids.len() {
        0 => "another node".into(),
        1 => format!("node {}", ids[0]),
        _ => format!("nodes {}", cpulist::format(&ids)),
    }
}

fn mib(pages: f64) -> String {
    format!("{:.0} MiB", pages * 4096.0 / (1u64 << 20) as f64)
}

/// The process a listed thread belongs to.
pub(crate) fn tgid_of(agg: &Aggregator, tid: u32) -> Option<u32> {
    agg.threads.get(&tid).map(|t| t.tgid)
}

/// `process 100 (postgres)`: its main thread's name, else any of its threads'.
pub(crate) fn process_name(agg: &Aggregator, tgid: u32) -> String {
    let comm = agg
        .threads
        .get(&tgid)
        .filter(|t| t.tgid == tgid && !t.comm.is_empty())
        .or_else(|| agg.threads.values().find(|t| t.tgid == tgid && !t.comm.is_empty()))
        .map(|t| t.comm.as_str());
    match comm {
        Some(comm) => format!("process {tgid} ({comm})"),
        None => format!("process {tgid}"),
    }
}

/// A thread named with its process: `process 2101 (postgres)` for a main
/// thread, `thread 2105 (worker) of process 2101 (postgres)` otherwise.
pub(crate) fn thread_in_process(agg: &Aggregator, tid: u32) -> String {
    match tgid_of(agg, tid) {
        Some(pid) if pid == tid => process_name(agg, pid),
        Some(pid) => format!("{} of {}", thread_name(agg, tid), process_name(agg, pid)),
        None => thread_name(agg, tid),
    }
}

fn thread_name(agg: &Aggregator, tid: u32) -> String {
    match agg.threads.get(&tid).map(|t| t.comm.as_str()).filter(|c| !c.is_empty()) {
        Some(comm) => format!("thread {tid} ({comm})"),
        None => format!("thread {tid}"),
    }
}

/// The one-sentence explanation of a cause.
fn summary(kind: CauseKind, c: &evidence::Contribution, agg: &Aggregator, pages: f64) -> String {
    let mem = nodes(&c.memory_nodes);
    let run = nodes(&c.thread_nodes);
    let size = mib(pages);
    match kind {
        CauseKind::FirstTouchByOtherThread => {
            let placer = c
                .tids
                .iter()
                .max_by_key(|t| (agg.threads.get(t).map_or(0, |s| s.first_touch_total()), std::cmp::Reverse(**t)))
                .map(|t| thread_name(agg, *t))
                .unwrap_or_else(|| "one thread".into());
            let pids: BTreeSet<u32> = c.tids.iter().filter_map(|t| tgid_of(agg, *t)).collect();
            let placer_tid = c
                .tids
                .iter()
                .max_by_key(|t| (agg.threads.get(t).map_or(0, |s| s.first_touch_total()), std::cmp::Reverse(**t)))
                .copied();
            match placer_tid {
                // Shared memory one process placed for others (a postmaster's shared buffers).
                Some(tid) if pids.len() > 1 => format!(
                    "{size} of shared memory sits on {mem} because {} touched it first, but the threads of {} other process(es) that use it run on {run}.",
                    thread_in_process(agg, tid),
                    pids.len() - 1
                ),
                _ => format!(
                    "{size} of memory sits on {mem} because {placer} touched it first, but the threads that use it run on {run} (the init-thread pattern)."
                ),
            }
        }
        CauseKind::ThreadMigrated => {
            let moved = match &c.mover {
                Some(evidence::Mover::AffinityChange { by_pid, by_comm }) if c.tids.contains(by_pid) => {
                    format!("then changed their own CPU affinity ({by_comm}) to {run}")
                }
                Some(evidence::Mover::AffinityChange { by_pid, by_comm }) => {
                    format!("then an affinity change by pid {by_pid} ({by_comm}) moved them to {run}")
                }
                Some(evidence::Mover::NumaBalancer) => format!("then the NUMA balancer moved them to {run}"),
                Some(evidence::Mover::LoadBalancer) => {
                    format!("then the scheduler's load balancer moved them to {run}")
                }
                None => format!("then moved to {run}"),
            };
            format!("Threads first touched {size} of memory on {mem}, {moved}; their memory stayed behind.")
        }
        CauseKind::AllocationSpill => {
            format!(
                "{mem} had to take {size} of allocations from threads running on {run}: their own node had no free memory."
            )
        }
        CauseKind::MemoryPolicy => {
            format!("The memory policy or cpuset put {size} on {mem} while the threads run on {run}.")
        }
        CauseKind::NumaBalancer => {
            let moves =
                agg.balancer_task_moves.iter().filter(|p| p.kind != numatrace_common::EventKind::NumaTaskStick).count();
            if pages < 1.0 {
                format!(
                    "The kernel's NUMA balancer moved or swapped {moves} tasks between nodes, without leaving memory remote."
                )
            } else {
                format!(
                    "The kernel's NUMA balancer made {size} remote: it moved threads away from their memory ({moves} task moves), or migrated pages toward a thread that then left."
                )
            }
        }
        CauseKind::SharedAcrossNodes => format!(
            "{size} of memory on {mem} is used by threads on {run} at once (shared data): wherever it sits, some of them reach it remotely."
        ),
        CauseKind::ExplicitMigration => {
            format!("{size} of pages were moved between nodes by explicit migrate_pages/move_pages/mbind calls.")
        }
        CauseKind::PlacedBeforeCapture => {
            format!("{size} of memory was already on {mem} before the capture, while the threads run on {run}.")
        }
    }
}

/// Causes of a finished capture, from its facts: the process context from
/// the latest snapshot (policy, cpuset) and the one taken at start
/// (memory placed before), fixes checked against the machine's nodes.
pub fn from_facts(agg: &Aggregator, facts: &crate::facts::SessionFacts) -> (Vec<Cause>, Magnitude) {
    let start = &facts.start;
    let started_by_numatrace = start.target.command.is_some();
    let latest = facts.end.process_last.as_ref().or(start.process_before.as_ref());
    let mut ctx = latest
        .map(|s| ProcessContext::from_snapshot(s, started_by_numatrace))
        .unwrap_or_else(|| ProcessContext { started_by_numatrace, ..Default::default() });
    if let Some(before) = &start.process_before {
        let at_start = ProcessContext::from_snapshot(before, started_by_numatrace);
        ctx.pages_by_node_at_start = at_start.pages_by_node_at_start;
        ctx.biggest_mappings_at_start = at_start.biggest_mappings_at_start;
    }
    if started_by_numatrace {
        ctx.pages_by_node_at_start.clear();
    }
    // Several processes: each explains its own pages; memory they share is
    // one set of regions, counted once.
    let snapshots = latest_snapshots(facts);
    let target_pid = start.target.pid;
    for snap in snapshots.iter().filter(|s| s.pid != target_pid) {
        ctx.others.entry(snap.pid).or_insert_with(|| ProcessContext::from_snapshot(snap, started_by_numatrace));
    }
    ctx.shared = shared::SharedMappings::from_snapshots_and_forks(snapshots.iter().copied(), &agg.forked_from);
    // A service attached to: the memory all its processes held at the start,
    // shared memory once.
    let before: Vec<&crate::machine::ProcessSnapshot> =
        start.process_before.iter().chain(&start.other_processes_before).collect();
    if !started_by_numatrace && before.len() > 1 {
        let at_start = shared::SharedMappings::from_snapshots(before.iter().copied());
        ctx.pages_by_node_at_start = at_start.combined_own_pages_by_node(before.iter().copied()).into_iter().collect();
    }
    let merged = ctx.shared.with_aliases(agg);
    let agg = merged.as_ref().unwrap_or(agg);
    let nodes = start.topology.nodes.clone();
    let env = FixEnv {
        pid: start.target.pid,
        constraints: crate::fixes::Constraints {
            allowed: restart_allowed(latest, Some(&start.topology)),
            nodes: nodes.clone(),
            cpuset: latest.and_then(|s| s.cpuset.clone()),
            needed_bytes: 0,
        },
        nodes,
        workload: crate::fixes::Workload::from_facts(start, latest),
        started_by_numatrace,
        is_jvm: ctx.is_jvm,
        resident_bytes: latest.map(|s| s.total_bytes()).unwrap_or(0),
        resident_by_node: latest
            .map(|s| s.memory_by_node.iter().map(|(n, c)| (*n, c.total)).collect())
            .unwrap_or_default(),
        ..Default::default()
    };
    let cpuset = latest.and_then(|s| s.cpuset.as_ref());
    let env = FixEnv {
        scope: start.target.scope.clone(),
        parent_limits: parent_limits(start.target.scope.cgroup(), cpuset),
        memory_moves: match cpuset.map(|c| c.version) {
            Some(crate::machine::CgroupVersion::V2) => crate::fixes::scope::MemoryMoves::WithCpuset,
            Some(crate::machine::CgroupVersion::V1) => crate::fixes::scope::MemoryMoves::NotWithoutMigratepages,
            None => crate::fixes::scope::MemoryMoves::Unknown,
        },
        postgres: crate::fixes::postgres::Postgres::recognise(snapshots.iter().copied()),
        // The target first (a tree's root), then the others by pid.
        pids: {
            let mut others: BTreeSet<u32> = agg.all_threads().map(|t| t.tgid).collect();
            others.extend(&start.target.pids);
            others.remove(&start.target.pid);
            std::iter::once(start.target.pid).chain(others).filter(|p| *p != 0).collect()
        },
        ..env
    };
    let env = if snapshots.len() > 1 {
        // The service's memory: every process's, shared mappings once.
        let by_node = ctx.shared.combined_pages_by_node(snapshots.iter().copied());
        FixEnv {
            resident_bytes: by_node.values().sum::<u64>() * 4096,
            resident_by_node: by_node.into_iter().map(|(n, p)| (n, p * 4096)).collect(),
            ..env
        }
    } else {
        env
    };
    let mut causes = attribute(agg, &ctx, &env, start.start_ns);
    for cause in &mut causes {
        sites::resolve(&mut cause.sites, facts.end.stacks.as_ref());
    }
    let magnitude = magnitude::measure(agg, &ctx, &causes, facts.end.duration_s);
    (causes, magnitude)
}

/// The latest snapshot of each traced process, the target's first: the
/// last seen while it ran, else the one taken at the start.
pub fn latest_snapshots(facts: &crate::facts::SessionFacts) -> Vec<&crate::machine::ProcessSnapshot> {
    let (start, end) = (&facts.start, &facts.end);
    let mut out: Vec<&crate::machine::ProcessSnapshot> = Vec::new();
    let all = end
        .process_last
        .iter()
        .chain(&end.other_processes_last)
        .chain(start.process_before.iter())
        .chain(&start.other_processes_before);
    for snap in all {
        if !out.iter().any(|s| s.pid == snap.pid) {
            out.push(snap);
        }
    }
    out
}

/// The ancestors of a scope's cgroup that restrict its cpuset: the nearest
/// cgroup setting cpuset.cpus (cpuset.mems) when it is above the scope's,
/// with the effective set it leaves.
fn parent_limits(
    scope: Option<&crate::facts::CgroupScope>,
    cpuset: Option<&crate::machine::Cpuset>,
) -> crate::fixes::scope::ParentLimits {
    let (Some(scope), Some(cs)) = (scope, cpuset) else { return Default::default() };
    let path = scope.path.trim_end_matches('/');
    let above = |set_by: &Option<String>, effective: &Vec<u32>| {
        set_by
            .as_deref()
            .map(|p| p.trim_end_matches('/'))
            .filter(|p| *p != path && path.starts_with(&format!("{p}/")))
            .map(|p| (p.to_string(), effective.clone()))
    };
    crate::fixes::scope::ParentLimits {
        cpus: above(&cs.cpus_set_by, &cs.effective_cpus),
        mems: above(&cs.mems_set_by, &cs.effective_mems),
    }
}

/// What a restarted or re-pinned process may use: its cgroup's cpuset, not
/// the affinity its threads gave themselves (a program that pins its own
/// threads does not forbid a different pinning from outside).
fn restart_allowed(
    snap: Option<&crate::machine::ProcessSnapshot>,
    machine: Option<&crate::machine::Topology>,
) -> crate::machine::Allowed {
    let all_cpus = machine.map(|m| m.online_cpus.clone()).unwrap_or_default();
    let cs = snap.and_then(|s| s.cpuset.as_ref());
    let cpus = match cs {
        Some(cs) if cs.cpus_set_by.is_some() && !cs.effective_cpus.is_empty() => cs.effective_cpus.clone(),
        _ => all_cpus,
    };
    let mems = match cs {
        Some(cs) if cs.mems_set_by.is_some() && !cs.effective_mems.is_empty() => cs.effective_mems.clone(),
        _ => snap.and_then(|s| s.status.as_ref()).map(|s| s.mems_allowed.clone()).unwrap_or_default(),
    };
    crate::machine::Allowed { cpus, mems }
}

pub use magnitude::SIGNIFICANT_PAGES;

/// The report's first line: the top cause with the size of the problem, or
/// why there is none worth acting on.
pub fn headline(causes: &[Cause], magnitude: &Magnitude, multi_node: bool) -> String {
    if !multi_node {
        return "One NUMA node: threads and memory cannot drift apart here; pinning brings no NUMA benefit.".into();
    }
    match causes.first() {
        Some(top) if magnitude.of_consequence => {
            format!("{} {}. ({:.0}% of remote memory)", top.summary, capitalized(&magnitude.sentence()), top.share * 100.0)
        }
        Some(top) if top.pages == 0 && !top.evidence.is_empty() => top.summary.clone(),
        _ if magnitude.remote_pages > 0 => format!(
            "No NUMA drift of consequence: {}, below the {:.0}% floor (and {} MiB) that would matter; the findings below are details.",
            magnitude.sentence(),
            magnitude::FLOOR * 100.0,
            (SIGNIFICANT_PAGES * 4096) >> 20
        ),
        _ => "No remote memory seen: every page landed on the node of the thread that touched it, and no thread moved away from its memory.".into(),
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
