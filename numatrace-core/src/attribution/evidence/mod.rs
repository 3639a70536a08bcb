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
mod hinting;
mod movers;
mod placed_before;
mod run_time;

use std::collections::{BTreeMap, BTreeSet};

use numatrace_common::{EventKind, REGION_SHIFT};

pub use self::movers::{Mover, mover_of};
use self::{
    hinting::{from_hinting_faults, measures_use},
    placed_before::placed_before,
    run_time::{Users, from_run_time},
};
use super::{context::ProcessContext, kinds::CauseKind};
use crate::aggregate::{Aggregator, ThreadStats};

/// Pages one region can hold (2 MiB of 4 KiB pages).
const REGION_PAGES: u64 = 1 << (REGION_SHIFT - 12);

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

/// A thread's local first touches on one node: pages, first and last time, regions.
type LocalTouches = (u64, u64, u64, BTreeSet<u64>);

/// The share of its first-touch pages a thread has placed when its run time
/// starts to count as use. Not all of them: a real program's worker touches
/// a page now and then for as long as it runs (a buffer grown once, a read of
/// its own counters), and its last first touch would turn all its work into
/// placement.
const PLACED_SHARE: f64 = 0.9;

/// Each thread's placement end: the time by which it had first touched
/// [`PLACED_SHARE`] of its pages, each run of touches taken as spread evenly
/// from its first to its last page.
fn placement_ends(agg: &Aggregator) -> BTreeMap<u32, u64> {
    let mut runs: BTreeMap<u32, Vec<(u64, u64, u64)>> = BTreeMap::new();
    for touches in agg.regions.values() {
        for t in touches {
            runs.entry(t.tid).or_default().push((t.first_ns.min(t.last_ns), t.last_ns, t.pages));
        }
    }
    runs.into_iter().map(|(tid, runs)| (tid, placed_by(&runs, PLACED_SHARE))).collect()
}

/// The earliest time by which `share` of the pages of `runs` (first ns,
/// last ns, pages) were placed.
fn placed_by(runs: &[(u64, u64, u64)], share: f64) -> u64 {
    let total: u64 = runs.iter().map(|r| r.2).sum();
    let (Some(lo), Some(hi)) = (runs.iter().map(|r| r.0).min(), runs.iter().map(|r| r.1).max()) else { return 0 };
    let want = total as f64 * share;
    let placed = |at: u64| -> f64 {
        runs.iter()
            .map(|&(first, last, pages)| {
                if at >= last {
                    pages as f64
                } else if at < first {
                    0.0
                } else {
                    pages as f64 * (at - first + 1) as f64 / (last - first + 1) as f64
                }
            })
            .sum()
    };
    let (mut lo, mut hi) = (lo, hi);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if placed(mid) >= want { hi = mid } else { lo = mid + 1 }
    }
    hi
}

/// All contributions found in the aggregator.
/// `start_ns` is when the capture started: a thread there from the start
/// worked from then on.
pub fn collect(agg: &Aggregator, ctx: &ProcessContext, start_ns: u64) -> Vec<Contribution> {
    let mut out = Vec::new();
    let has_hinting = agg.region_uses.values().flatten().any(|u| u.remote_faults + u.local_faults > 0);

    // When each thread had placed most of its memory: its run time after it is use.
    let last_touch = placement_ends(agg);
    let users = Users::new(agg, &last_touch, start_ns, &ctx.shared);

    // Local first touches per (domain, tid, node), for the runtime-based path:
    // a domain is a process, or the processes sharing a mapping.
    let mut local: BTreeMap<(u32, u32, u32), LocalTouches> = BTreeMap::new();
    for (key, touches) in &agg.regions {
        let address = Aggregator::region_known(key).then_some(key.region << REGION_SHIFT);
        let domain = ctx.shared.domain_of(key);
        // The balancer's samples of this region, when its hinting faults count.
        let sampled = agg.region_uses.get(key).filter(|_| has_hinting);
        let shared_between_processes = ctx.shared.object_of_domain(domain).is_some();
        for t in touches {
            // Remote to the thread that touched it, but is it remote to the
            // threads that use it? An init thread's interleaved pages on the
            // workers' node are local to them.
            let weight = if t.page_node != t.cpu_node { users.share_off(domain, t.tid, t.page_node) } else { 0.0 };
            if t.page_node != t.cpu_node && weight > 0.0 {
                let remote = t.pages as f64 * weight;
                let users_note = if weight < 0.999 {
                    format!("; its users ran {:.0}% of their time off that node", weight * 100.0)
                } else {
                    String::new()
                };
                // The toucher's own policy and cpuset (another process's, for shared memory).
                let toucher_ctx = ctx.for_process(agg.threads.get(&t.tid).map_or(key.tgid, |s| s.tgid));
                let c = match toucher_ctx.explains_remote(address, t.cpu_node, t.page_node) {
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
                // Summed exited threads are no thread to name.
                if t.tid != crate::aggregate::SUMMED_TID {
                    c.tids.insert(t.tid);
                }
                if address.is_some() {
                    c.regions.insert(key.region);
                }
                out.push(c);
            } else if t.page_node == t.cpu_node
                && !sampled.is_some_and(|uses| measures_use(agg, uses, Some(touches), t.tid, shared_between_processes))
            {
                // Regions whose use the balancer sampled are measured by their
                // hinting faults; the rest (a short run scans only part) by run time.
                let e = local.entry((domain, t.tid, t.page_node)).or_insert((0, u64::MAX, 0, BTreeSet::new()));
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

#[cfg(test)]
mod placement_tests {
    use super::placed_by;

    #[test]
    fn one_late_page_does_not_end_placement() {
        // 1000 pages in the first second, one page 60 s later.
        let runs = [(0, 1_000_000_000, 1000), (60_000_000_000, 60_000_000_000, 1)];
        let end = placed_by(&runs, 0.9);
        assert!((899_000_000..=901_000_000).contains(&end), "{end}");
        // All of them: the late page.
        assert_eq!(placed_by(&runs, 1.0), 60_000_000_000);
        // Pages spread evenly over one run: 90 % of its span.
        assert!((8_999_000..=9_001_000).contains(&placed_by(&[(0, 10_000_000, 100)], 0.9)));
        assert_eq!(placed_by(&[], 0.9), 0);
    }
}
