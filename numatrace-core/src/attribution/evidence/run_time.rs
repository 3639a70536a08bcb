//! Remote use estimated from where threads ran, when there are no hinting
//! faults (balancing off).
use super::*;
use crate::attribution::shared::SharedMappings;

pub(super) fn total_runtime(t: &ThreadStats) -> u64 {
    t.runtime_ns_by_node.values().sum()
}

pub(super) fn runtime_off(t: &ThreadStats, node: u32) -> u64 {
    t.runtime_ns_by_node.iter().filter(|(n, _)| **n != node).map(|(_, ns)| *ns).sum()
}

/// Where a process's threads used memory, by run time: a thread's run time
/// after its last first touch is use; before it, placement.
pub(super) struct Users<'a> {
    pub(super) agg: &'a Aggregator,
    /// Which processes use which memory (a domain: a process, or the
    /// processes sharing a mapping).
    pub(super) shared: &'a SharedMappings,
    pub(super) last_touch: &'a BTreeMap<u32, u64>,
    pub(super) start_ns: u64,
    /// (domain, node) -> the sums of [`Users::share_off`] (off, all), for every
    /// node of the machine: asked once per remote first touch, a sum over
    /// the threads each time made 30 000 threads take minutes.
    off_sums: BTreeMap<(u32, u32), (f64, f64)>,
    /// domain -> its threads that ran at all.
    running: BTreeMap<u32, usize>,
}

impl<'a> Users<'a> {
    pub(super) fn new(
        agg: &'a Aggregator,
        last_touch: &'a BTreeMap<u32, u64>,
        start_ns: u64,
        shared: &'a SharedMappings,
    ) -> Users<'a> {
        let mut users =
            Users { agg, shared, last_touch, start_ns, off_sums: BTreeMap::new(), running: BTreeMap::new() };
        let nodes: Vec<u32> = agg.topology.nodes.iter().map(|n| n.id).collect();
        for t in agg.all_threads() {
            let total = total_runtime(t);
            let used = users.use_ns(t) as f64;
            for domain in shared.domains_of(t.tgid) {
                if total > 0 {
                    *users.running.entry(domain).or_default() += 1;
                }
                for &node in &nodes {
                    let (off, all) = users.off_sums.entry((domain, node)).or_default();
                    // The same sums, in the same order, as `sum_off` makes.
                    if used > 0.0 && total > 0 {
                        *all += used;
                        *off += used * runtime_off(t, node) as f64 / total as f64;
                    }
                }
            }
        }
        users
    }

    /// The sums of [`Users::share_off`], counted now (a node the machine's
    /// topology does not list).
    fn sum_off(&self, domain: u32, node: u32) -> (f64, f64) {
        let (mut off, mut all) = (0.0, 0.0);
        for t in self.agg.all_threads().filter(|t| self.shared.in_domain(domain, t.tgid)) {
            let used = self.use_ns(t) as f64;
            let total = total_runtime(t) as f64;
            if used <= 0.0 || total <= 0.0 {
                continue;
            }
            all += used;
            off += used * runtime_off(t, node) as f64 / total;
        }
        (off, all)
    }

    /// Run time of `t` that was use, not placement (after its last first touch).
    pub(super) fn use_ns(&self, t: &ThreadStats) -> u64 {
        match self.last_touch.get(&t.tid) {
            Some(&last) => self.run_after_placing(t, last),
            None => total_runtime(t),
        }
    }

    /// Run time of `t` after it placed memory until `placed_until`: it ran at
    /// most from its birth, or the capture's start, to then.
    pub(super) fn run_after_placing(&self, t: &ThreadStats, placed_until: u64) -> u64 {
        let since = t.born_ns.unwrap_or(self.start_ns).max(self.start_ns);
        total_runtime(t).saturating_sub(placed_until.saturating_sub(since))
    }

    /// The share of the process's use that ran off `node`: how remote pages
    /// on `node` are to their users. A thread alone (or users that never ran)
    /// leaves the toucher as the user: 1.
    pub(super) fn share_off(&self, domain: u32, toucher: u32, node: u32) -> f64 {
        let (off, all) = match self.off_sums.get(&(domain, node)) {
            Some(&sums) => sums,
            None => self.sum_off(domain, node),
        };
        let toucher_ran = self
            .agg
            .threads
            .get(&toucher)
            .is_some_and(|t| self.shared.in_domain(domain, t.tgid) && total_runtime(t) > 0);
        let others_ran = self.running.get(&domain).copied().unwrap_or(0) > usize::from(toucher_ran);
        if all <= 0.0 || !others_ran {
            return 1.0;
        }
        off / all
    }
}

/// Without hinting faults, threads that rely on another's memory share it
/// across nodes when some of them spend this much of their run time on its
/// node and some this much off it.
const SHARED_MIN_RUN_SHARE: f64 = 0.2;

/// Remote use estimated from where threads ran (no hinting faults).
pub(super) fn from_run_time(
    agg: &Aggregator,
    local: &BTreeMap<(u32, u32, u32), LocalTouches>,
    users_of: &Users,
) -> Vec<Contribution> {
    let mut out = Vec::new();
    let mut touched_by_tgid: BTreeMap<u32, u64> = BTreeMap::new();
    for ((tgid, _, _), (pages, ..)) in local {
        *touched_by_tgid.entry(*tgid).or_default() += pages;
    }
    let mappings = users_of.shared;
    let mut runtime_by_tgid: BTreeMap<u32, u64> = BTreeMap::new();
    for t in agg.all_threads() {
        for domain in mappings.domains_of(t.tgid) {
            *runtime_by_tgid.entry(domain).or_default() += total_runtime(t);
        }
    }
    // Per (tgid, node) of a local first touch: the run time its threads spent
    // off the node, and the pages first touched by those that ran off it, so
    // that each toucher's "others" are these less its own (not a pass over
    // every thread per toucher: a fork-heavy process has tens of thousands).
    let touched_nodes: BTreeSet<(u32, u32)> = local.keys().map(|&(tgid, _, node)| (tgid, node)).collect();
    let mut off_by_tgid_node: BTreeMap<(u32, u32), (u64, u64)> = BTreeMap::new();
    for t in agg.all_threads() {
        for domain in mappings.domains_of(t.tgid) {
            for &(_, node) in touched_nodes.range((domain, 0)..=(domain, u32::MAX)) {
                let off = runtime_off(t, node);
                let sums = off_by_tgid_node.entry((domain, node)).or_default();
                sums.0 += off;
                if off > 0 {
                    sums.1 += t.first_touch_total();
                }
            }
        }
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
        let others_runtime = tgid_runtime.saturating_sub(total_runtime(toucher));
        let (off_all, off_pages_all) = off_by_tgid_node.get(&(tgid, node)).copied().unwrap_or_default();
        let toucher_off = runtime_off(toucher, node);
        let others_off = off_all.saturating_sub(toucher_off);
        let others_own_pages =
            off_pages_all.saturating_sub(if toucher_off > 0 { toucher.first_touch_total() } else { 0 });
        let others_rely_on_it = others_own_pages * 2 < *pages;
        if touch_share >= 0.5 && others_rely_on_it && others_runtime > 0 && others_off > 0 {
            let others: Vec<&ThreadStats> =
                agg.all_threads().filter(|t| mappings.in_domain(tgid, t.tgid) && t.tid != tid).collect();
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
            } else if let Some(object) = mappings.object_of_domain(tgid) {
                // Shared memory one process placed and others use.
                (
                    CauseKind::FirstTouchByOtherThread,
                    format!(
                        "{} first touched {pages} pages of shared memory {} on node {node} and ran {:.0}% of the time its {} processes ran; {} threads of theirs ran {:.0}% of their time on node(s) {}",
                        crate::attribution::thread_in_process(agg, tid),
                        object.file,
                        run_share * 100.0,
                        object.pids.len(),
                        users.len(),
                        remote_fraction * 100.0,
                        crate::machine::cpulist::format(&user_nodes.iter().copied().collect::<Vec<_>>())
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
