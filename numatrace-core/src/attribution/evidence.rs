//! Turning the aggregator's facts into contributions: "these pages are
//! remote to the threads that use them, because of this cause".
//!
//! The unit is remote pages:
//! - remote at first touch (exact, from the kernel): allocation spill, or
//!   memory policy / cpuset when one explains it;
//! - first touched locally, later used from another node: with NUMA hinting
//!   faults (balancing on), each remote fault names the user and the region,
//!   and the region's first toucher says whether another thread placed it
//!   (init-thread pattern) or the user itself moved away; remote fault pages
//!   are capped at one region (512 pages) per thread and region so that
//!   rescans do not count a page twice;
//! - without hinting faults, from where threads ran: a thread that moved
//!   to another node after touching has its pages remote; pages of an
//!   init-like thread (touched much more than it ran) are remote to the
//!   other threads in proportion to their run time on other nodes;
//! - balancer (numa_misplaced) and explicit (syscall, mbind) page migrations;
//! - memory placed before an attach, weighed by where the threads ran.
use std::collections::{BTreeMap, BTreeSet};

use numatrace_common::{EventKind, REGION_SHIFT};

use super::{context::ProcessContext, kinds::CauseKind};
use crate::aggregate::{Aggregator, ThreadStats};

/// Pages one region can hold (2 MiB of 4 KiB pages).
const REGION_PAGES: u64 = 1 << (REGION_SHIFT - 12);
/// A cross-node migration within this time of a balancer decision for the same thread is the balancer's.
const BALANCER_MATCH_NS: u64 = 200_000_000;

/// Remote pages of one cause, from one piece of evidence.
#[derive(Clone, Debug, PartialEq)]
pub struct Contribution {
    pub kind: CauseKind,
    pub pages: f64,
    pub tids: BTreeSet<u32>,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Node(s) the memory is on.
    pub memory_nodes: BTreeSet<u32>,
    /// Node(s) the threads that use it run on.
    pub thread_nodes: BTreeSet<u32>,
    /// Regions (address >> 21) involved, when known.
    pub regions: BTreeSet<u64>,
    /// One line of evidence.
    pub evidence: String,
    /// Of `pages`, those the NUMA balancer has since migrated to their user (a repair, not a cause).
    pub repaired_pages: f64,
    /// What moved the thread away from this memory, when a move did.
    pub mover: Option<Mover>,
}

impl Contribution {
    fn new(kind: CauseKind, pages: f64, evidence: String) -> Contribution {
        Contribution {
            kind,
            pages,
            tids: BTreeSet::new(),
            first_ns: u64::MAX,
            last_ns: 0,
            memory_nodes: BTreeSet::new(),
            thread_nodes: BTreeSet::new(),
            regions: BTreeSet::new(),
            evidence,
            repaired_pages: 0.0,
            mover: None,
        }
    }

    fn window(mut self, first_ns: u64, last_ns: u64) -> Contribution {
        self.first_ns = self.first_ns.min(first_ns);
        self.last_ns = self.last_ns.max(last_ns);
        self
    }

    fn nodes(mut self, memory: u32, thread: u32) -> Contribution {
        self.memory_nodes.insert(memory);
        self.thread_nodes.insert(thread);
        self
    }
}

/// Whether a thread's cross-node move at `ts` was the NUMA balancer's decision.
fn balancer_move(agg: &Aggregator, tid: u32, ts: u64) -> bool {
    agg.balancer_task_moves.iter().any(|p| {
        p.tid == tid
            && matches!(p.kind, EventKind::NumaTaskMove | EventKind::NumaTaskSwap)
            && p.ts_ns.abs_diff(ts) <= BALANCER_MATCH_NS
    })
}

fn total_runtime(t: &ThreadStats) -> u64 {
    t.runtime_ns_by_node.values().sum()
}

fn runtime_off(t: &ThreadStats, node: u32) -> u64 {
    t.runtime_ns_by_node.iter().filter(|(n, _)| **n != node).map(|(_, ns)| *ns).sum()
}

/// Where a process's threads used memory, by run time: a thread's run time
/// after its last first touch is use; before it, placement.
struct Users<'a> {
    agg: &'a Aggregator,
    last_touch: &'a BTreeMap<u32, u64>,
    start_ns: u64,
}

impl Users<'_> {
    /// Run time of `t` that was use, not placement (after its last first touch).
    fn use_ns(&self, t: &ThreadStats) -> u64 {
        match self.last_touch.get(&t.tid) {
            Some(&last) => self.run_after_placing(t, last),
            None => total_runtime(t),
        }
    }

    /// Run time of `t` after it placed memory until `placed_until`: it ran at
    /// most from its birth, or the capture's start, to then.
    fn run_after_placing(&self, t: &ThreadStats, placed_until: u64) -> u64 {
        let since = t.born_ns.unwrap_or(self.start_ns).max(self.start_ns);
        total_runtime(t).saturating_sub(placed_until.saturating_sub(since))
    }

    /// The share of the process's use that ran off `node`: how remote pages
    /// on `node` are to their users. A thread alone (or users that never ran)
    /// leaves the toucher as the user: 1.
    fn share_off(&self, tgid: u32, toucher: u32, node: u32) -> f64 {
        let (mut off, mut all) = (0.0, 0.0);
        for t in self.agg.threads.values().filter(|t| t.tgid == tgid) {
            let used = self.use_ns(t) as f64;
            let total = total_runtime(t) as f64;
            if used <= 0.0 || total <= 0.0 {
                continue;
            }
            all += used;
            off += used * runtime_off(t, node) as f64 / total;
        }
        if all <= 0.0
            || self.agg.threads.values().filter(|t| t.tgid == tgid && t.tid != toucher).all(|t| total_runtime(t) == 0)
        {
            return 1.0;
        }
        off / all
    }
}

/// A thread's local first touches on one node: pages, first and last time, regions.
type LocalTouches = (u64, u64, u64, BTreeSet<u64>);

/// All contributions found in the aggregator.
/// `start_ns` is when the capture started: a thread there from the start
/// worked from then on.
pub fn collect(agg: &Aggregator, ctx: &ProcessContext, start_ns: u64) -> Vec<Contribution> {
    let mut out = Vec::new();
    let has_hinting = agg.region_uses.values().flatten().any(|u| u.remote_faults + u.local_faults > 0);

    // Each thread's last first touch: its run time after it is use, not placement.
    let mut last_touch: BTreeMap<u32, u64> = BTreeMap::new();
    for touches in agg.regions.values() {
        for t in touches {
            let e = last_touch.entry(t.tid).or_default();
            *e = (*e).max(t.last_ns);
        }
    }
    let users = Users { agg, last_touch: &last_touch, start_ns };

    // Local first touches per (tgid, tid, node), for the runtime-based path.
    let mut local: BTreeMap<(u32, u32, u32), LocalTouches> = BTreeMap::new();
    for (key, touches) in &agg.regions {
        let address = Aggregator::region_known(key).then_some(key.region << REGION_SHIFT);
        for t in touches {
            // Remote to the thread that touched it, but is it remote to the
            // threads that use it? An init thread's interleaved pages on the
            // workers' node are local to them.
            let weight = if t.page_node != t.cpu_node { users.share_off(key.tgid, t.tid, t.page_node) } else { 0.0 };
            if t.page_node != t.cpu_node && weight > 0.0 {
                let remote = t.pages as f64 * weight;
                let users_note = if weight < 0.999 {
                    format!("; its users ran {:.0}% of their time off that node", weight * 100.0)
                } else {
                    String::new()
                };
                let c = match ctx.explains_remote(address, t.cpu_node, t.page_node) {
                    Some(why) => Contribution::new(
                        CauseKind::MemoryPolicy,
                        remote,
                        format!(
                            "{why}: pages first touched on node {} were placed on node {}{users_note}",
                            t.cpu_node, t.page_node
                        ),
                    ),
                    None => Contribution::new(
                        CauseKind::AllocationSpill,
                        remote,
                        format!(
                            "pages first touched from node {} were allocated on node {} with no policy asking for it{users_note}",
                            t.cpu_node, t.page_node
                        ),
                    ),
                };
                let mut c = c.window(t.first_ns, t.last_ns).nodes(t.page_node, t.cpu_node);
                c.tids.insert(t.tid);
                if address.is_some() {
                    c.regions.insert(key.region);
                }
                out.push(c);
            } else if t.page_node == t.cpu_node && !(has_hinting && agg.region_uses.get(key).is_some()) {
                // Regions the balancer sampled are measured by their hinting
                // faults; the rest (a short run scans only part) by run time.
                let e = local.entry((key.tgid, t.tid, t.page_node)).or_insert((0, u64::MAX, 0, BTreeSet::new()));
                e.0 += t.pages;
                e.1 = e.1.min(t.first_ns);
                e.2 = e.2.max(t.last_ns);
                if address.is_some() {
                    e.3.insert(key.region);
                }
            }
        }
    }

    let mut sampled_before: BTreeMap<Option<u32>, f64> = BTreeMap::new();
    if has_hinting {
        let (hinted, before) = from_hinting_faults(agg, ctx);
        sampled_before = before;
        out.extend(hinted);
    }
    out.extend(from_run_time(agg, &local, &users));

    for (reason, m) in &agg.page_migrations {
        // The balancer's misplaced-page migrations bring memory to its users:
        // repairs, shown with their cost (see `magnitude`), owned by the cause
        // that made the memory remote.
        if !matches!(reason.as_str(), "syscall_or_cpuset" | "mempolicy_mbind") || m.succeeded == 0 {
            continue;
        }
        let (kind, how) = (CauseKind::ExplicitMigration, "explicit calls migrated");
        let extra = if m.on_behalf > 0 {
            format!(" ({} by another process on its behalf)", m.on_behalf)
        } else {
            String::new()
        };
        out.push(
            Contribution::new(
                kind,
                m.succeeded as f64,
                format!("{how} {} pages (reason {reason}){extra}", m.succeeded),
            )
            .window(m.first_ns, m.last_ns),
        );
    }

    let moves: Vec<_> = agg.balancer_task_moves.iter().filter(|p| p.kind != EventKind::NumaTaskStick).collect();
    if !moves.is_empty() && !out.iter().any(|c| c.kind == CauseKind::NumaBalancer) {
        // Task moves without page migrations still churn; they carry no pages of their own.
        let mut c = Contribution::new(
            CauseKind::NumaBalancer,
            0.0,
            format!("the NUMA balancer moved or swapped {} tasks between nodes", moves.len()),
        );
        for p in &moves {
            c.tids.insert(p.tid);
            c = c.window(p.ts_ns, p.ts_ns);
        }
        out.push(c);
    }

    // Memory placed before an attach: what the hinting faults did not measure, by run time.
    out.extend(placed_before(agg, ctx, &sampled_before));
    out
}

/// A region's users are on several nodes: each of two or more nodes
/// brought at least this fraction of the region's hinting faults.
const SHARED_MIN_FRACTION: f64 = 0.1;

/// The nodes a region is used from, when it is shared: two or more nodes
/// each bring a real part of its hinting faults, from two or more threads.
/// (One thread that moved has uses on two nodes too: that is not sharing.)
fn shared_by(
    uses: &crate::aggregate::RegionUses,
    touches: Option<&crate::aggregate::RegionTouches>,
) -> Option<BTreeSet<u32>> {
    // A thread's faults that began while it was still first-touching the
    // region are its placing it (the scanner marked pages under an init
    // thread's memset), not use.
    let placing = |u: &crate::aggregate::RegionUse| {
        touches.is_some_and(|ts| ts.iter().any(|t| t.tid == u.tid && u.first_ns <= t.last_ns))
    };
    let uses: Vec<&crate::aggregate::RegionUse> = uses.iter().filter(|u| !placing(u)).collect();
    // Each thread counts for the node it used the region from most: threads
    // that moved together (started beside their creator, then pinned away)
    // are not users on two nodes.
    let mut by_thread: BTreeMap<u32, BTreeMap<u32, u64>> = BTreeMap::new();
    for u in &uses {
        *by_thread.entry(u.tid).or_default().entry(u.cpu_node).or_default() += u.local_faults + u.remote_faults;
    }
    let mut by_node: BTreeMap<u32, (u64, BTreeSet<u32>)> = BTreeMap::new();
    for (tid, nodes) in &by_thread {
        if let Some((node, _)) = nodes.iter().max_by_key(|(_, f)| **f) {
            let e = by_node.entry(*node).or_default();
            e.0 += nodes.values().sum::<u64>();
            e.1.insert(*tid);
        }
    }
    let total: u64 = by_node.values().map(|(f, _)| f).sum();
    let floor = ((total as f64 * SHARED_MIN_FRACTION) as u64).max(2);
    let nodes: BTreeSet<u32> = by_node.iter().filter(|(_, (f, _))| *f >= floor).map(|(n, _)| *n).collect();
    let tids: BTreeSet<u32> =
        by_node.iter().filter(|(n, _)| nodes.contains(n)).flat_map(|(_, (_, t))| t.iter().copied()).collect();
    (nodes.len() >= 2 && tids.len() >= 2).then_some(nodes)
}

/// Who moved a thread that had touched its memory (at or after `since`) to
/// node `to`: its first such cross-node move, and the mover.
fn thread_mover(agg: &Aggregator, tid: u32, since: u64, to: u32) -> Option<(u64, Mover)> {
    let t = agg.threads.get(&tid)?;
    // The move that took it where it uses the memory from: the last one there.
    let &(ts, ..) = t.cross_node_moves.iter().rev().find(|(ts, _, dest)| *ts >= since && *dest == to)?;
    Some((ts, mover_of(agg, tid, ts)))
}

/// Who moved a thread that was on `from` when the capture began to `to`
/// during it, if it was moved. Without the move's own event (the hinting
/// fault from `to` shows it ran there), its latest affinity change, if any.
fn moved_away(agg: &Aggregator, tid: u32, from: u32, to: u32) -> Option<Mover> {
    let t = agg.threads.get(&tid)?;
    if t.first_node != Some(from) || from == to {
        return None;
    }
    match t.cross_node_moves.iter().find(|(_, f, dest)| *f == from && *dest == to) {
        Some(&(ts, ..)) => Some(mover_of(agg, tid, ts)),
        None => agg
            .affinity_changes
            .iter()
            .filter(|a| a.tid == tid)
            .max_by_key(|a| a.ts_ns)
            .map(|a| Mover::AffinityChange { by_pid: a.by_pid, by_comm: a.by_comm.clone() }),
    }
}

/// A thread's first cross-node move after an affinity change is that change's
/// doing if it came within this time (a thread asleep longer moves later).
const AFFINITY_MATCH_NS: u64 = 10_000_000_000;

/// Who made a thread's cross-node move at `ts`: an affinity change when it
/// is the thread's first cross-node move since the latest one (a sleeping
/// thread moves only when it next wakes up, so no fixed delay fits).
pub fn mover_of(agg: &Aggregator, tid: u32, ts: u64) -> Mover {
    let latest = agg.affinity_changes.iter().filter(|a| a.tid == tid && a.ts_ns <= ts).max_by_key(|a| a.ts_ns);
    if let Some(a) = latest
        && ts - a.ts_ns <= AFFINITY_MATCH_NS
        && !agg.threads.get(&tid).is_some_and(|t| t.cross_node_moves.iter().any(|(at, ..)| *at >= a.ts_ns && *at < ts))
    {
        return Mover::AffinityChange { by_pid: a.by_pid, by_comm: a.by_comm.clone() };
    }
    if balancer_move(agg, tid, ts) { Mover::NumaBalancer } else { Mover::LoadBalancer }
}

/// What moved a thread to another node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mover {
    /// The scheduler's load balancer (no balancer decision, no affinity change).
    LoadBalancer,
    /// The NUMA balancer's task move or swap.
    NumaBalancer,
    /// sched_setaffinity(2) on the thread (`taskset -p`), by this thread (pid) and its name.
    AffinityChange { by_pid: u32, by_comm: String },
}

impl Mover {
    fn describe(&self, tid: u32) -> String {
        match self {
            Mover::LoadBalancer => "the scheduler's load balancer moved it".into(),
            Mover::NumaBalancer => "the NUMA balancer moved it".into(),
            Mover::AffinityChange { by_pid, by_comm } if *by_pid == tid => {
                format!("it changed its own CPU affinity ({by_comm})")
            }
            Mover::AffinityChange { by_pid, by_comm } => {
                format!("an affinity change by pid {by_pid} ({by_comm}) moved it")
            }
        }
    }
}

/// Remote use seen through NUMA hinting faults: each remote fault names the
/// user (thread, node) and the region; the region's history says why its
/// memory was on the other node. Pages the balancer migrated to their user
/// while handling the fault were remote all the same: they count for the
/// root cause, and as repaired. Also returns the pages they measured of
/// memory no traced thread first-touched (placed before an attach), by node.
fn from_hinting_faults(agg: &Aggregator, ctx: &ProcessContext) -> (Vec<Contribution>, BTreeMap<Option<u32>, f64>) {
    // By the node the memory was on (None: not known).
    let mut placed_before_pages: BTreeMap<Option<u32>, f64> = BTreeMap::new();
    let explicit_moves = agg
        .page_migrations
        .iter()
        .any(|(r, m)| matches!(r.as_str(), "syscall_or_cpuset" | "mempolicy_mbind") && m.succeeded > 0);
    let mut out = Vec::new();
    for (key, uses) in &agg.region_uses {
        let touches = agg.regions.get(key);
        let shared = shared_by(uses, touches);
        for u in uses.iter().filter(|u| u.remote_faults > 0) {
            // The fault gives the memory's node after a migration it caused;
            // before it, the memory was where it was first touched.
            let mem_node = if u.mem_node != u.cpu_node {
                Some(u.mem_node)
            } else {
                touches
                    .and_then(|ts| ts.iter().filter(|t| t.page_node != u.cpu_node).max_by_key(|t| t.pages))
                    .map(|t| t.page_node)
            };
            let pages = u.remote_pages.min(REGION_PAGES) as f64;
            let owner = mem_node
                .and_then(|m| touches.and_then(|ts| ts.iter().filter(|t| t.page_node == m).max_by_key(|t| t.pages)));
            let on = |n: Option<u32>| n.map_or_else(|| "another node".to_string(), |n| format!("node {n}"));
            let (kind, evidence) = match (&shared, owner) {
                (Some(nodes), _) => (
                    CauseKind::SharedAcrossNodes,
                    format!(
                        "threads on nodes {} all use the same memory; thread {} on node {} reaches it on {}",
                        crate::machine::cpulist::format(&nodes.iter().copied().collect::<Vec<_>>()),
                        u.tid,
                        u.cpu_node,
                        on(mem_node)
                    ),
                ),
                // Remote from its first touch on: counted exactly from the first touch.
                (None, Some(o)) if o.page_node != o.cpu_node => continue,
                (None, Some(o)) if o.tid != u.tid => (
                    CauseKind::FirstTouchByOtherThread,
                    format!(
                        "thread {} running on node {} uses memory thread {} first touched on node {}",
                        u.tid, u.cpu_node, o.tid, o.page_node
                    ),
                ),
                (None, Some(o)) => match thread_mover(agg, u.tid, o.first_ns, u.cpu_node) {
                    Some((_, mover)) => (
                        if mover == Mover::NumaBalancer { CauseKind::NumaBalancer } else { CauseKind::ThreadMigrated },
                        format!(
                            "thread {} first touched this memory on node {}, then {} to node {}",
                            u.tid,
                            o.page_node,
                            mover.describe(u.tid),
                            u.cpu_node
                        ),
                    ),
                    None => (
                        CauseKind::ThreadMigrated,
                        format!(
                            "thread {} first touched this memory on node {} and now runs on node {}",
                            u.tid, o.page_node, u.cpu_node
                        ),
                    ),
                },
                // First touched elsewhere, on mem_node since: moved there after its first touch.
                (None, None) if touches.is_some_and(|ts| !ts.is_empty()) && mem_node.is_some() => {
                    if explicit_moves {
                        (
                            CauseKind::ExplicitMigration,
                            format!(
                                "thread {} on node {} uses memory moved to {} by an explicit migration",
                                u.tid,
                                u.cpu_node,
                                on(mem_node)
                            ),
                        )
                    } else {
                        (
                            CauseKind::NumaBalancer,
                            format!(
                                "the NUMA balancer migrated this memory to {} after its first touch; thread {} uses it from node {}",
                                on(mem_node),
                                u.tid,
                                u.cpu_node
                            ),
                        )
                    }
                }
                // No traced thread allocated it. A command numatrace started was traced
                // from its first instruction: another process placed these (file, shared
                // or page-cache pages). An attached process may have placed them itself.
                // Migrated to its user while handling the fault, with no first
                // touch to say where it was: now local, origin unknown; nothing to blame.
                (None, None) if ctx.started_by_numatrace && mem_node.is_none() => continue,
                (None, _) if ctx.started_by_numatrace => (
                    CauseKind::FirstTouchByOtherThread,
                    format!(
                        "thread {} on node {} uses memory on {} that another process allocated (file, shared or page-cache pages)",
                        u.tid,
                        u.cpu_node,
                        on(mem_node)
                    ),
                ),
                // Where the memory was is unknown (the balancer moved it to the thread
                // while handling the fault): where the thread was when the capture began.
                (None, _) => match mem_node
                    .or_else(|| agg.threads.get(&u.tid).and_then(|t| t.first_node))
                    .and_then(|m| moved_away(agg, u.tid, m, u.cpu_node))
                {
                    Some(mover) => (
                        CauseKind::ThreadMigrated,
                        format!(
                            "thread {} ran on {} with this memory when the capture began; then {} to node {}",
                            u.tid,
                            on(mem_node),
                            mover.describe(u.tid),
                            u.cpu_node
                        ),
                    ),
                    None => (
                        CauseKind::PlacedBeforeCapture,
                        format!(
                            "thread {} on node {} uses memory on {} placed before the capture",
                            u.tid,
                            u.cpu_node,
                            on(mem_node)
                        ),
                    ),
                },
            };
            if !ctx.started_by_numatrace && touches.is_none_or(|ts| ts.is_empty()) {
                // Remote when it faulted: on a node other than the thread's; where
                // the thread was at the start, else the other node holding most.
                let was_on = mem_node
                    .or_else(|| agg.threads.get(&u.tid).and_then(|t| t.first_node).filter(|n| *n != u.cpu_node))
                    .or_else(|| {
                        ctx.pages_by_node_at_start
                            .iter()
                            .filter(|(n, _)| *n != u.cpu_node)
                            .max_by_key(|(_, p)| *p)
                            .map(|(n, _)| *n)
                    });
                *placed_before_pages.entry(was_on).or_default() += pages;
            }
            let mut c = Contribution::new(kind, pages, evidence).window(u.first_ns, u.last_ns);
            c.repaired_pages = u.migrated_pages.min(REGION_PAGES) as f64;
            if kind == CauseKind::ThreadMigrated {
                c.mover = owner
                    .and_then(|o| thread_mover(agg, u.tid, o.first_ns, u.cpu_node).map(|(_, m)| m))
                    .or_else(|| mem_node.and_then(|m| moved_away(agg, u.tid, m, u.cpu_node)));
            }
            c.thread_nodes.insert(u.cpu_node);
            c.memory_nodes.extend(mem_node);
            c.tids.insert(u.tid);
            if let Some(o) = owner {
                c.tids.insert(o.tid);
            }
            if Aggregator::region_known(key) {
                c.regions.insert(key.region);
            }
            out.push(c);
        }
    }
    (out, placed_before_pages)
}

/// Without hinting faults, threads that rely on another's memory share it
/// across nodes when some of them spend this much of their run time on its
/// node and some this much off it.
const SHARED_MIN_RUN_SHARE: f64 = 0.2;

/// Remote use estimated from where threads ran (no hinting faults).
fn from_run_time(
    agg: &Aggregator,
    local: &BTreeMap<(u32, u32, u32), LocalTouches>,
    users_of: &Users,
) -> Vec<Contribution> {
    let mut out = Vec::new();
    let mut touched_by_tgid: BTreeMap<u32, u64> = BTreeMap::new();
    for ((tgid, _, _), (pages, ..)) in local {
        *touched_by_tgid.entry(*tgid).or_default() += pages;
    }
    let mut runtime_by_tgid: BTreeMap<u32, u64> = BTreeMap::new();
    for t in agg.threads.values() {
        *runtime_by_tgid.entry(t.tgid).or_default() += total_runtime(t);
    }
    for (&(tgid, tid, node), (pages, first_ns, last_ns, regions)) in local {
        let Some(toucher) = agg.threads.get(&tid) else { continue };
        let pages_f = *pages as f64;

        // The toucher moved to another node after touching.
        let moved: Vec<_> =
            toucher.cross_node_moves.iter().filter(|(ts, _, to)| *ts >= *first_ns && *to != node).collect();
        let final_node = toucher.cross_node_moves.iter().rfind(|(ts, ..)| *ts >= *first_ns).map(|m| m.2);
        // The move after which it stayed away (the last one leaving the node).
        let leaving = moved.iter().rev().find(|(_, from, _)| *from == node).or(moved.first());
        if let (Some(&&(ts, _, to)), Some(final_node)) = (leaving, final_node)
            && final_node != node
        {
            let mover = mover_of(agg, tid, ts);
            let kind = if mover == Mover::NumaBalancer { CauseKind::NumaBalancer } else { CauseKind::ThreadMigrated };
            let mut c = Contribution::new(
                kind,
                pages_f,
                format!(
                    "thread {tid} ({}) first touched {pages} pages on node {node}, then {} to node {to}",
                    toucher.comm,
                    mover.describe(tid)
                ),
            )
            .window(*first_ns, ts.max(*last_ns))
            .nodes(node, final_node);
            c.mover = Some(mover);
            c.tids.insert(tid);
            c.regions.extend(regions.iter().copied());
            out.push(c);
            continue;
        }

        // Init-like: this thread first-touched most of the process's memory, and the
        // threads that run on other nodes touched little of their own, so they work
        // on memory it placed.
        let touch_share = pages_f / touched_by_tgid.get(&tgid).copied().unwrap_or(1).max(1) as f64;
        let tgid_runtime = runtime_by_tgid.get(&tgid).copied().unwrap_or(0);
        let run_share = if tgid_runtime > 0 { total_runtime(toucher) as f64 / tgid_runtime as f64 } else { 0.0 };
        let others: Vec<&ThreadStats> = agg.threads.values().filter(|t| t.tgid == tgid && t.tid != tid).collect();
        let others_runtime: u64 = others.iter().map(|t| total_runtime(t)).sum();
        let others_off: u64 = others.iter().map(|t| runtime_off(t, node)).sum();
        let others_remote_users: Vec<&&ThreadStats> = others.iter().filter(|t| runtime_off(t, node) > 0).collect();
        let others_own_pages: u64 = others_remote_users.iter().map(|t| t.first_touch_total()).sum();
        let others_rely_on_it = others_own_pages * 2 < *pages;
        if touch_share >= 0.5 && others_rely_on_it && others_runtime > 0 && others_off > 0 {
            // The toucher uses its memory too, for the time it ran after its
            // last touch (an init thread: hardly any; a thread that works on
            // what it allocated: most of it).
            let toucher_use = users_of.run_after_placing(toucher, *last_ns);
            let toucher_use_on = if toucher.main_node() == Some(node) { toucher_use } else { 0 };
            // Only run time after the memory was placed is use of it (a main
            // thread that started the process, then waited, used none).
            let (mut used, mut used_off) = (toucher_use_on as f64, 0.0);
            for t in &others {
                let total = total_runtime(t);
                if total == 0 {
                    continue;
                }
                let after = t.run_ns_after(*last_ns).unwrap_or(total).min(total) as f64;
                used += after;
                used_off += after * runtime_off(t, node) as f64 / total as f64;
            }
            let remote_fraction = if used > 0.0 { used_off / used } else { others_off as f64 / others_runtime as f64 };
            let users: Vec<&&ThreadStats> = others.iter().filter(|t| runtime_off(t, node) > 0).collect();
            let user_nodes: BTreeSet<u32> =
                users.iter().flat_map(|t| t.runtime_ns_by_node.keys().copied().filter(|n| *n != node)).collect();
            // Users on the memory's node as well as off it (and not one thread
            // that moved between them): the memory is shared across nodes, and
            // no first-touch change would make it local to all of them.
            // On the node, only use after the memory was placed counts: a main
            // thread that started the process there and then waited is not a user.
            let use_on = |t: &ThreadStats| {
                let total = total_runtime(t);
                let on = t.runtime_ns_by_node.get(&node).copied().unwrap_or(0);
                let after = t.run_ns_after(*last_ns).unwrap_or(total).min(total);
                if total == 0 { 0.0 } else { after as f64 * on as f64 / total as f64 }
            };
            let users_on: BTreeSet<u32> = others
                .iter()
                .filter(|t| use_on(t) >= others_runtime as f64 * SHARED_MIN_RUN_SHARE)
                .map(|t| t.tid)
                .collect();
            let users_off: BTreeSet<u32> = others
                .iter()
                .filter(|t| runtime_off(t, node) as f64 >= others_runtime as f64 * SHARED_MIN_RUN_SHARE)
                .map(|t| t.tid)
                .collect();
            let shared = !users_on.is_empty() && !users_off.is_empty() && users_on.union(&users_off).count() >= 2;
            let (kind, evidence) = if shared {
                (
                    CauseKind::SharedAcrossNodes,
                    format!(
                        "thread {tid} ({}) first touched {pages} pages on node {node}; {} threads use them from node {node} and {} from node(s) {} ({:.0}% of their run time)",
                        toucher.comm,
                        users_on.len(),
                        users_off.len(),
                        crate::machine::cpulist::format(&user_nodes.iter().copied().collect::<Vec<_>>()),
                        remote_fraction * 100.0
                    ),
                )
            } else {
                (
                    CauseKind::FirstTouchByOtherThread,
                    format!(
                        "thread {tid} ({}) first touched {pages} pages ({:.0}% of the process's) on node {node} but ran {:.0}% of the time; {} other threads ran {:.0}% of their time on node(s) {}",
                        toucher.comm,
                        touch_share * 100.0,
                        run_share * 100.0,
                        users.len(),
                        remote_fraction * 100.0,
                        crate::machine::cpulist::format(&user_nodes.iter().copied().collect::<Vec<_>>())
                    ),
                )
            };
            let mut c = Contribution::new(kind, pages_f * remote_fraction, evidence).window(*first_ns, *last_ns);
            c.memory_nodes.insert(node);
            c.thread_nodes.extend(user_nodes);
            if shared {
                c.thread_nodes.insert(node);
            }
            c.tids.insert(tid);
            c.tids.extend(users.iter().map(|t| t.tid));
            c.regions.extend(regions.iter().copied());
            out.push(c);
        }
    }
    out
}

/// Memory present at attach time, remote to where the threads then ran.
fn placed_before(
    agg: &Aggregator,
    ctx: &ProcessContext,
    already_measured: &BTreeMap<Option<u32>, f64>,
) -> Vec<Contribution> {
    if ctx.started_by_numatrace || ctx.pages_by_node_at_start.is_empty() {
        return Vec::new();
    }
    let resident: f64 = ctx.pages_by_node_at_start.iter().map(|(_, p)| *p as f64).sum();
    // Measured pages of an unknown node are taken from every node alike.
    let unknown = already_measured.get(&None).copied().unwrap_or(0.0);
    let unknown_share = if resident > 0.0 { (unknown / resident).clamp(0.0, 1.0) } else { 0.0 };
    let any_measured = already_measured.values().any(|p| *p > 0.0);
    let mut runtime: BTreeMap<u32, u64> = BTreeMap::new();
    for t in agg.threads.values() {
        for (n, ns) in &t.runtime_ns_by_node {
            *runtime.entry(*n).or_default() += ns;
        }
    }
    let total: u64 = runtime.values().sum();
    if total == 0 {
        return Vec::new();
    }
    // Pages moved since are no longer where they were: explicit moves count
    // under explicit_migration; the balancer's, where hinting faults saw
    // them, are in `already_measured` (as repairs of their cause).
    let mut moved: f64 = agg
        .page_migrations
        .iter()
        .filter(|(r, _)| match r.as_str() {
            "syscall_or_cpuset" | "mempolicy_mbind" => true,
            "numa_misplaced" => !any_measured,
            _ => false,
        })
        .map(|(_, m)| m.succeeded as f64)
        .sum();
    let mut out = Vec::new();
    for &(node, resident_pages) in &ctx.pages_by_node_at_start {
        let measured = already_measured.get(&Some(node)).copied().unwrap_or(0.0);
        let pages = ((resident_pages as f64 * (1.0 - unknown_share)) - measured).max(0.0).round() as u64;
        // Off-node run time, split: threads that were on this node when the
        // capture began and were moved off it during it (their memory stayed
        // behind: thread_migrated, with the mover), and the rest.
        let mut moved_off: u64 = 0;
        let mut movers: Vec<(u32, Mover)> = Vec::new();
        for t in agg.threads.values() {
            let off = runtime_off(t, node);
            let away = t.cross_node_moves.iter().find(|(_, from, to)| *from == node && *to != node);
            match away {
                Some(&(ts, ..)) if t.first_node == Some(node) && off > 0 => {
                    moved_off += off;
                    movers.push((t.tid, mover_of(agg, t.tid, ts)));
                }
                _ => {}
            }
        }
        let off_ns = runtime.iter().filter(|(n, _)| **n != node).map(|(_, ns)| *ns).sum::<u64>();
        let off = off_ns as f64 / total as f64;
        let remote = pages as f64 * off;
        let taken = moved.min(remote);
        moved -= taken;
        let still_remote = remote - taken;
        if pages == 0 || still_remote < 1.0 {
            continue;
        }
        let moved_share = if off_ns > 0 { moved_off.min(off_ns) as f64 / off_ns as f64 } else { 0.0 };
        let thread_nodes: BTreeSet<u32> = runtime.keys().copied().filter(|n| *n != node).collect();
        if moved_share > 0.0 {
            let (tid, mover) = &movers[0];
            let mut c = Contribution::new(
                CauseKind::ThreadMigrated,
                still_remote * moved_share,
                format!(
                    "{pages} pages were on node {node}, where thread {tid} ran when the capture began; then {} to node(s) {}, away from that memory",
                    mover.describe(*tid),
                    crate::machine::cpulist::format(&thread_nodes.iter().copied().collect::<Vec<_>>())
                ),
            );
            c.mover = Some(mover.clone());
            c.tids.extend(movers.iter().map(|(t, _)| *t));
            c.memory_nodes.insert(node);
            c.thread_nodes.extend(thread_nodes.iter().copied());
            out.push(c);
        }
        if moved_share >= 1.0 {
            continue;
        }
        let since = if taken >= 1.0 { format!(" ({taken:.0} of them migrated since)") } else { String::new() };
        let mut c = Contribution::new(
            CauseKind::PlacedBeforeCapture,
            still_remote * (1.0 - moved_share),
            format!(
                "{pages} pages were on node {node} before the capture{since}; the threads ran {:.0}% of their time on other nodes",
                off * 100.0
            ),
        );
        c.memory_nodes.insert(node);
        c.thread_nodes.extend(thread_nodes);
        out.push(c);
    }
    out
}
