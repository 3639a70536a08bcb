//! The traced processes' NUMA state (policy, cpuset, placement), re-read
//! while they run: a policy set by e.g. `numactl` exists only after its
//! exec, and a process that exits takes its numa_maps with it. The first
//! process is read in the event loop, as it always was; the others (a
//! service of hundreds of processes takes seconds) on a thread of their
//! own, so that the loop keeps draining the ring meanwhile.
use std::{
    thread::JoinHandle,
    time::{Duration, Instant},
};

use numatrace_core::{
    aggregate::run_time::READ_BUDGET,
    machine::{ProcessSnapshot, Topology},
};

use super::processes;

pub struct Snapshots {
    topology: Topology,
    /// The first process's latest (kept after it exits).
    latest: Option<ProcessSnapshot>,
    next: Instant,
    taken: u32,
    /// The other live processes' at the last finished reading.
    others: Vec<ProcessSnapshot>,
    /// A reading of the others under way: when it started, and its thread.
    reading: Option<(Instant, JoinHandle<Vec<ProcessSnapshot>>)>,
    others_next: Instant,
    others_taken: u32,
}

impl Snapshots {
    pub fn new(topology: Topology) -> Snapshots {
        let first = Instant::now() + Duration::from_millis(100);
        Snapshots {
            topology,
            latest: None,
            next: first,
            taken: 0,
            others: Vec::new(),
            reading: None,
            others_next: first,
            others_taken: 0,
        }
    }

    /// Takes snapshots when due: at 100 ms, 1 s, then every 5 s, or less
    /// often where reading them (numa_maps walks the page tables; one stat
    /// file per thread) costs more than `READ_BUDGET` of the time. The
    /// first two of the first process come on time whatever they cost: they
    /// say how it started, and `numatrace diff` weighs by the last.
    /// `others` lists the other live processes (asked only when a reading
    /// of them is due).
    pub fn maybe_take(&mut self, pid: u32, others: impl FnOnce() -> Vec<u32>) {
        self.collect_others();
        let started = Instant::now();
        if self.reading.is_none() && started >= self.others_next {
            let pids = others();
            if !pids.is_empty() {
                let topology = self.topology.clone();
                let thread = std::thread::Builder::new()
                    .name("snapshots".into())
                    .spawn(move || processes::snapshots(&pids, &topology));
                // No thread (out of resources): the others keep their last reading.
                self.reading = thread.ok().map(|t| (started, t));
            }
            // Retried after the usual wait when there is nothing to read.
            self.others_next = started + Duration::from_secs(1);
        }
        if started < self.next {
            return;
        }
        if let Ok(snap) = ProcessSnapshot::read_with(pid, &self.topology)
            && snap.numa_maps.is_some()
        {
            self.latest = Some(snap);
        }
        self.taken += 1;
        self.next = Instant::now() + wait_after(self.taken, started.elapsed());
    }

    /// Keeps a finished reading of the others, and schedules the next.
    fn collect_others(&mut self) {
        let Some((started, thread)) = self.reading.take_if(|(_, t)| t.is_finished()) else { return };
        if let Ok(taken) = thread.join() {
            self.others = taken.into_iter().filter(|s| s.numa_maps.is_some()).collect();
        }
        self.others_taken += 1;
        self.others_next = Instant::now() + wait_after(self.others_taken, started.elapsed());
    }

    /// The first process's latest snapshot and the others' (waiting for a
    /// reading under way: it is the freshest).
    pub fn finish(mut self) -> (Option<ProcessSnapshot>, Vec<ProcessSnapshot>) {
        if let Some((_, thread)) = self.reading.take()
            && let Ok(taken) = thread.join()
        {
            self.others = taken.into_iter().filter(|s| s.numa_maps.is_some()).collect();
        }
        (self.latest, self.others)
    }
}

/// The wait after the `taken`-th reading, which took `took`: 900 ms after
/// the first, then 5 s, or `took` / [`READ_BUDGET`] when that is longer.
fn wait_after(taken: u32, took: Duration) -> Duration {
    match taken {
        1 => Duration::from_millis(900),
        _ => Duration::from_secs(5).max(took.div_f64(READ_BUDGET)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_longer_than_the_budget_allows_for_slow_readings() {
        assert_eq!(wait_after(1, Duration::from_secs(3)), Duration::from_millis(900));
        assert_eq!(wait_after(2, Duration::from_millis(10)), Duration::from_secs(5));
        assert_eq!(wait_after(3, Duration::from_secs(1)), Duration::from_secs(20));
    }

    #[test]
    fn reads_the_others_on_a_thread_and_keeps_the_latest() {
        let topology = Topology::read().expect("topology");
        let mut snaps = Snapshots::new(topology);
        snaps.others_next = Instant::now();
        let me = std::process::id();
        snaps.maybe_take(me, || vec![me]);
        assert!(snaps.reading.is_some(), "a reading started");
        let (_, others) = snaps.finish();
        assert_eq!(others.iter().map(|s| s.pid).collect::<Vec<_>>(), vec![me]);
    }
}
