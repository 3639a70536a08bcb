//! Who moved a thread to another node: an affinity change (taskset,
//! sched_setaffinity), the NUMA balancer, or the load balancer.
use super::*;

/// A cross-node migration within this time of a balancer decision for the same thread is the balancer's.
const BALANCER_MATCH_NS: u64 = 200_000_000;

/// Whether a thread's cross-node move at `ts` was the NUMA balancer's decision.
pub(super) fn balancer_move(agg: &Aggregator, tid: u32, ts: u64) -> bool {
    agg.balancer_task_moves.iter().any(|p| {
        p.tid == tid
            && matches!(p.kind, EventKind::NumaTaskMove | EventKind::NumaTaskSwap)
            && p.ts_ns.abs_diff(ts) <= BALANCER_MATCH_NS
    })
}

/// Who moved a thread that had touched its memory (at or after `since`) to
/// node `to`: its first such cross-node move, and the mover.
pub(super) fn thread_mover(agg: &Aggregator, tid: u32, since: u64, to: u32) -> Option<(u64, Mover)> {
    let t = agg.threads.get(&tid)?;
    // The move that took it where it uses the memory from: the last one there.
    let &(ts, ..) = t.cross_node_moves.iter().rev().find(|(ts, _, dest)| *ts >= since && *dest == to)?;
    Some((ts, mover_of(agg, tid, ts)))
}

/// Who moved a thread that was on `from` when the capture began to `to`
/// during it, if it was moved. Without the move's own event (the hinting
/// fault from `to` shows it ran there), its latest affinity change, if any.
pub(super) fn moved_away(agg: &Aggregator, tid: u32, from: u32, to: u32) -> Option<Mover> {
    let t = agg.threads.get(&tid)?;
    if t.first_node != Some(from) || from == to {
        return None;
    }
    match t.cross_node_moves.iter().find(|(_, f, dest)| *f == from && *dest == to) {
        Some(&(ts, ..)) => Some(mover_of(agg, tid, ts)),
        None => {
            agg.affinity_changes.iter().filter(|a| a.tid == tid).max_by_key(|a| a.ts_ns).map(|a| affinity_mover(agg, a))
        }
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
        return affinity_mover(agg, a);
    }
    if balancer_move(agg, tid, ts) { Mover::NumaBalancer } else { Mover::LoadBalancer }
}

/// The mover an affinity change names. The kernel leaves out the name of a
/// thread that changed its own affinity (`AffinityChangeEvent::by_comm`):
/// it is the thread's own, as the aggregator knows it.
fn affinity_mover(agg: &Aggregator, a: &crate::aggregate::AffinityChange) -> Mover {
    let by_comm = if a.by_comm.is_empty() && a.by_pid == a.tid {
        agg.threads
            .get(&a.tid)
            .map(|t| t.comm.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| format!("thread {}", a.tid))
    } else {
        a.by_comm.clone()
    };
    Mover::AffinityChange { by_pid: a.by_pid, by_comm }
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
    pub(super) fn describe(&self, tid: u32) -> String {
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
