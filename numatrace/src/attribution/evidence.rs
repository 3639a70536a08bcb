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
    agg.placements.iter().any(|p| {
        p.tid == tid && matches!(p.kind, EventKind::NumaTaskMove | EventKind::NumaTaskSwap) && p.ts_ns.abs_diff(ts) <= BALANCER_MATCH_NS
    })
}

fn total_runtime(t: &ThreadStats) -> u64 {
    t.runtime_ns_by_node.values().sum()
}

fn runtime_off(t: &ThreadStats, node: u32) -> u64 {
    t.runtime_ns_by_node.iter().filter(|(n, _)| **n != node).map(|(_, ns)| *ns).sum()
}

/// All contributions found in the aggregator.
pub fn collect(agg: &Aggregator, ctx: &ProcessContext) -> Vec<Contribution> {
    let mut out = Vec::new();
    let has_hinting = agg.region_uses.values().flatten().any(|u| u.remote_faults + u.local_faults > 0);

    // Local first touches per (tgid, tid, node), for the runtime-based path.
    let mut local: BTreeMap<(u32, u32, u32), (u64, u64, u64, BTreeSet<u64>)> = BTreeMap::new();
    for (key, touches) in &agg.regions {
        let address = Aggregator::region_known(key).then(|| key.region << REGION_SHIFT);
        for t in touches {
            if t.page_node != t.cpu_node {
                let c = match ctx.explains_remote(address, t.cpu_node, t.page_node) {
                    Some(why) => Contribution::new(
                        CauseKind::MemoryPolicy,
                        t.pages as f64,
                        format!("{why}: pages first touched on node {} were placed on node {}", t.cpu_node, t.page_node),
                    ),
                    None => Contribution::new(
                        CauseKind::AllocationSpill,
                        t.pages as f64,
                        format!(
                            "pages first touched from node {} were allocated on node {} with no policy asking for it",
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
            } else {
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

    if has_hinting {
        out.extend(from_hinting_faults(agg, ctx));
    } else {
        out.extend(from_run_time(agg, &local));
    }

    for (reason, m) in &agg.page_migrations {
        let kind = match reason.as_str() {
            "numa_misplaced" => CauseKind::NumaBalancer,
            "syscall_or_cpuset" | "mempolicy_mbind" => CauseKind::ExplicitMigration,
            _ => continue,
        };
        if m.succeeded == 0 {
            continue;
        }
        let how = if kind == CauseKind::NumaBalancer { "the NUMA balancer migrated" } else { "explicit calls migrated" };
        let extra = if m.on_behalf > 0 { format!(" ({} by another process on its behalf)", m.on_behalf) } else { String::new() };
        out.push(
            Contribution::new(kind, m.succeeded as f64, format!("{how} {} pages (reason {reason}){extra}", m.succeeded))
                .window(m.first_ns, m.last_ns),
        );
    }

    let moves: Vec<_> = agg.placements.iter().filter(|p| p.kind != EventKind::NumaTaskStick).collect();
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

    out.extend(placed_before(agg, ctx));
    out
}

/// Remote use seen through NUMA hinting faults.
fn from_hinting_faults(agg: &Aggregator, ctx: &ProcessContext) -> Vec<Contribution> {
    let mut out = Vec::new();
    for (key, uses) in &agg.region_uses {
        let owners = agg.regions.get(key);
        for u in uses.iter().filter(|u| u.remote_faults > 0) {
            // A remote fault whose page the balancer migrated reports the page's new
            // node and is remote no more: those pages count once, as numa_misplaced
            // migrations (below), but the balancer's evidence says what it was repairing.
            if u.migrated_pages > 0 {
                let placed_by = owners.and_then(|ts| ts.iter().max_by_key(|t| t.pages));
                let what = match placed_by {
                    Some(o) if o.tid != u.tid => format!(
                        "memory thread {} first touched on node {} (the init-thread pattern)",
                        o.tid, o.page_node
                    ),
                    Some(o) => format!("memory it first touched on node {} before it moved", o.page_node),
                    None => "memory placed before the capture".to_string(),
                };
                let mut c = Contribution::new(
                    CauseKind::NumaBalancer,
                    0.0,
                    format!("the balancer moved {} pages of {what} to node {}, where thread {} runs", u.migrated_pages, u.cpu_node, u.tid),
                )
                .window(u.first_ns, u.last_ns)
                .nodes(u.cpu_node, u.cpu_node);
                c.tids.insert(u.tid);
                out.push(c);
            }
            let still_remote = u.remote_pages.saturating_sub(u.migrated_pages);
            if still_remote == 0 || u.mem_node == u.cpu_node {
                continue;
            }
            let pages = still_remote.min(REGION_PAGES) as f64;
            let owner = owners.and_then(|ts| ts.iter().filter(|t| t.page_node == u.mem_node).max_by_key(|t| t.pages));
            let c = match owner {
                // Remote from the first touch on: already counted exactly above.
                Some(o) if o.page_node != o.cpu_node => continue,
                Some(o) if o.tid != u.tid => Contribution::new(
                    CauseKind::FirstTouchByOtherThread,
                    pages,
                    format!(
                        "thread {} running on node {} uses memory thread {} first touched on node {}",
                        u.tid, u.cpu_node, o.tid, o.page_node
                    ),
                ),
                Some(o) => {
                    let by_balancer = agg.threads.get(&u.tid).is_some_and(|t| {
                        t.cross_node_moves.iter().any(|(ts, _, to)| *ts >= o.first_ns && *to == u.cpu_node && balancer_move(agg, u.tid, *ts))
                    });
                    let kind = if by_balancer { CauseKind::NumaBalancer } else { CauseKind::ThreadMigrated };
                    Contribution::new(
                        kind,
                        pages,
                        format!(
                            "thread {} first touched this memory on node {} and now runs on node {}",
                            u.tid, o.page_node, u.cpu_node
                        ),
                    )
                }
                None if ctx.started_by_numatrace && Aggregator::region_known(key) => Contribution::new(
                    CauseKind::PlacedBeforeCapture,
                    pages,
                    format!("thread {} on node {} uses memory on node {} that no traced thread allocated (shared or file pages)", u.tid, u.cpu_node, u.mem_node),
                ),
                None => Contribution::new(
                    CauseKind::PlacedBeforeCapture,
                    pages,
                    format!("thread {} on node {} uses memory on node {} placed before the capture", u.tid, u.cpu_node, u.mem_node),
                ),
            };
            let mut c = c.window(u.first_ns, u.last_ns).nodes(u.mem_node, u.cpu_node);
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
    out
}

/// Remote use estimated from where threads ran (no hinting faults).
fn from_run_time(agg: &Aggregator, local: &BTreeMap<(u32, u32, u32), (u64, u64, u64, BTreeSet<u64>)>) -> Vec<Contribution> {
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
        let moved: Vec<_> = toucher.cross_node_moves.iter().filter(|(ts, _, to)| *ts >= *first_ns && *to != node).collect();
        let final_node = toucher.cross_node_moves.iter().filter(|(ts, ..)| *ts >= *first_ns).next_back().map(|m| m.2);
        if let (Some(&&(ts, _, to)), Some(final_node)) = (moved.first(), final_node)
            && final_node != node
        {
            let kind = if balancer_move(agg, tid, ts) { CauseKind::NumaBalancer } else { CauseKind::ThreadMigrated };
            let mut c = Contribution::new(
                kind,
                pages_f,
                format!("thread {tid} ({}) first touched {pages} pages on node {node}, then moved to node {to}", toucher.comm),
            )
            .window(*first_ns, ts.max(*last_ns))
            .nodes(node, final_node);
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
            let remote_fraction = others_off as f64 / others_runtime as f64;
            let users: Vec<&&ThreadStats> = others.iter().filter(|t| runtime_off(t, node) > 0).collect();
            let user_nodes: BTreeSet<u32> =
                users.iter().flat_map(|t| t.runtime_ns_by_node.keys().copied().filter(|n| *n != node)).collect();
            let mut c = Contribution::new(
                CauseKind::FirstTouchByOtherThread,
                pages_f * remote_fraction,
                format!(
                    "thread {tid} ({}) first touched {pages} pages ({:.0}% of the process's) on node {node} but ran {:.0}% of the time; {} other threads ran {:.0}% of their time on node(s) {}",
                    toucher.comm,
                    touch_share * 100.0,
                    run_share * 100.0,
                    users.len(),
                    remote_fraction * 100.0,
                    crate::cpulist::format(&user_nodes.iter().copied().collect::<Vec<_>>())
                ),
            )
            .window(*first_ns, *last_ns);
            c.memory_nodes.insert(node);
            c.thread_nodes.extend(user_nodes);
            c.tids.insert(tid);
            c.tids.extend(users.iter().map(|t| t.tid));
            c.regions.extend(regions.iter().copied());
            out.push(c);
        }
    }
    out
}

/// Memory present at attach time, remote to where the threads then ran.
fn placed_before(agg: &Aggregator, ctx: &ProcessContext) -> Vec<Contribution> {
    if ctx.started_by_numatrace || ctx.pages_by_node_at_start.is_empty() {
        return Vec::new();
    }
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
    // Pages moved since (by the balancer or explicitly) are no longer where they were;
    // they are counted under those causes.
    let mut moved: f64 = agg
        .page_migrations
        .iter()
        .filter(|(r, _)| matches!(r.as_str(), "numa_misplaced" | "syscall_or_cpuset" | "mempolicy_mbind"))
        .map(|(_, m)| m.succeeded as f64)
        .sum();
    let mut out = Vec::new();
    for &(node, pages) in &ctx.pages_by_node_at_start {
        let off = runtime.iter().filter(|(n, _)| **n != node).map(|(_, ns)| *ns).sum::<u64>() as f64 / total as f64;
        let remote = pages as f64 * off;
        let taken = moved.min(remote);
        moved -= taken;
        let still_remote = remote - taken;
        if pages == 0 || still_remote < 1.0 {
            continue;
        }
        let since = if taken >= 1.0 { format!(" ({taken:.0} of them migrated since)") } else { String::new() };
        let mut c = Contribution::new(
            CauseKind::PlacedBeforeCapture,
            still_remote,
            format!("{pages} pages were on node {node} before the capture{since}; the threads ran {:.0}% of their time on other nodes", off * 100.0),
        );
        c.memory_nodes.insert(node);
        c.thread_nodes.extend(runtime.keys().copied().filter(|n| *n != node));
        out.push(c);
    }
    out
}
