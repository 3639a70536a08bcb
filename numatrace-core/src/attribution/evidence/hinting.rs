//! Remote use seen through NUMA hinting faults (balancing on): each remote
//! fault names its user and region; the region's history names the cause.
use super::{
    movers::{moved_away, thread_mover},
    *,
};
use crate::attribution::{tgid_of, thread_in_process};

/// A region's users are on several nodes: each of two or more nodes
/// brought at least this fraction of the region's hinting faults.
const SHARED_MIN_FRACTION: f64 = 0.1;

/// A thread whose hinting faults on a region began while it was still
/// first-touching it, and ended within this long of its last first touch
/// there, was placing the region, not using it. The scanner marks pages at
/// most once per scan period (1 s at the least by default).
const PLACING_GRACE_NS: u64 = 1_000_000_000;

/// A thread's faults that began while it was still first-touching the
/// region, and stopped soon after, are its placing it (the scanner marked
/// pages under an init thread's memset), not use. One that goes on
/// faulting there (a worker that placed part of a buffer it shares) uses it.
fn placing(u: &crate::aggregate::RegionUse, touches: Option<&crate::aggregate::RegionTouches>) -> bool {
    touches.is_some_and(|ts| {
        ts.iter().any(|t| {
            t.tid == u.tid && u.first_ns <= t.last_ns && u.last_ns <= t.last_ns.saturating_add(PLACING_GRACE_NS)
        })
    })
}

/// Whether a region's hinting faults measure how the memory `toucher` first
/// touched there is used, so that where threads ran need not stand in.
/// Remote faults always do (they are counted from the faults). Otherwise a
/// fault that is use, not placement, does, with one exception: the
/// balancer scans each process's page tables apart, so in memory shared
/// between processes the toucher's own process sampling it says nothing
/// of the others' use (a backend that prewarms shared buffers and is the
/// only one whose scanner reached them).
pub(super) fn measures_use(
    agg: &Aggregator,
    uses: &crate::aggregate::RegionUses,
    touches: Option<&crate::aggregate::RegionTouches>,
    toucher: u32,
    shared_between_processes: bool,
) -> bool {
    let toucher_process = tgid_of(agg, toucher);
    // The toucher's own process, sampling memory other processes use.
    let sampled_for_itself =
        |u: &crate::aggregate::RegionUse| shared_between_processes && tgid_of(agg, u.tid) == toucher_process;
    uses.iter().any(|u| u.remote_faults > 0 || !(placing(u, touches) || sampled_for_itself(u)))
}

/// The nodes a region is used from, when it is shared: two or more nodes
/// each bring a real part of its hinting faults, from two or more threads.
/// (One thread that moved has uses on two nodes too: that is not sharing.)
pub(super) fn shared_by(
    uses: &crate::aggregate::RegionUses,
    touches: Option<&crate::aggregate::RegionTouches>,
) -> Option<BTreeSet<u32>> {
    let uses: Vec<&crate::aggregate::RegionUse> = uses.iter().filter(|u| !placing(u, touches)).collect();
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

/// Remote use seen through NUMA hinting faults: each remote fault names the
/// user (thread, node) and the region; the region's history says why its
/// memory was on the other node. Pages the balancer migrated to their user
/// while handling the fault were remote all the same: they count for the
/// root cause, and as repaired. Also returns the pages they measured of
/// memory no traced thread first-touched (placed before an attach), by node.
pub(super) fn from_hinting_faults(
    agg: &Aggregator,
    ctx: &ProcessContext,
) -> (Vec<Contribution>, BTreeMap<Option<u32>, f64>) {
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
                    match (tgid_of(agg, u.tid), tgid_of(agg, o.tid)) {
                        // Shared memory another process placed: name both.
                        (Some(user), Some(placer)) if user != placer => format!(
                            "{} running on node {} uses {} that {} first touched on node {}",
                            thread_in_process(agg, u.tid),
                            u.cpu_node,
                            ctx.shared
                                .object_of(key)
                                .map_or_else(|| "shared memory".to_string(), |s| format!("shared memory {}", s.file)),
                            thread_in_process(agg, o.tid),
                            o.page_node
                        ),
                        _ => format!(
                            "thread {} running on node {} uses memory thread {} first touched on node {}",
                            u.tid, u.cpu_node, o.tid, o.page_node
                        ),
                    },
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
                    None => match mem_node.and_then(|m| {
                        ctx.for_process(tgid_of(agg, u.tid).unwrap_or(key.tgid)).cpuset_explains(u.cpu_node, m)
                    }) {
                        // Its cpuset put it there, and keeps it there.
                        Some(why) => (
                            CauseKind::MemoryPolicy,
                            format!(
                                "{why}: thread {} on node {} uses memory on {} placed before the capture",
                                u.tid,
                                u.cpu_node,
                                on(mem_node)
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
