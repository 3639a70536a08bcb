//! Memory present when numatrace attached, remote to where the threads ran.
use super::{run_time::runtime_off, *};

/// Memory present at attach time, remote to where the threads then ran.
pub(super) fn placed_before(
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
    for t in agg.all_threads() {
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
        for t in agg.all_threads() {
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
        let placed = format!(
            "{pages} pages were on node {node} before the capture{since}; the threads ran {:.0}% of their time on other nodes",
            off * 100.0
        );
        // A cpuset that keeps the memory off the threads' nodes placed it, and keeps it there.
        let mut c = match thread_nodes.iter().find_map(|t| ctx.any_cpuset_explains(*t, node)) {
            Some(why) => Contribution::new(
                CauseKind::MemoryPolicy,
                still_remote * (1.0 - moved_share),
                format!("{why}: {placed}"),
            ),
            None => Contribution::new(CauseKind::PlacedBeforeCapture, still_remote * (1.0 - moved_share), placed),
        };
        c.memory_nodes.insert(node);
        c.thread_nodes.extend(thread_nodes);
        out.push(c);
    }
    out
}
