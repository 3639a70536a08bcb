//! Each process's numa_maps, read in a bounded way. Reading numa_maps walks
//! the process's page tables (measured here: 17 ms per GiB resident in 4 KiB
//! pages, so 1.7 s for a 100 GiB process), so each process is read at most
//! once per `period`, and only when it ran since its last read (or
//! [`IDLE_PERIODS`] periods passed: a sleeping process's memory stays where
//! it is), those never read first (a new process gets its memory shown
//! before a known one is read again), then the largest; a refresh stops reading once it has spent
//! `budget` (it always reads one, so every process gets its turn). What was
//! read stays until the next read.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use numatrace_core::{
    machine::{CpusetMemo, ProcessSnapshot, ThreadPlacement, Topology},
    system::ProcessSample,
};

/// A process that has not run since its numa_maps was read is read again
/// after this many periods only.
const IDLE_PERIODS: u32 = 30;

/// How often and how much numa_maps is read.
#[derive(Clone, Copy, Debug)]
pub struct PlacementOptions {
    /// A process's numa_maps is read again after this long.
    pub period: Duration,
    /// Reading stops for this refresh once this much time was spent (`None`: read every stale one).
    pub budget: Option<Duration>,
}

impl PlacementOptions {
    /// Everything, every time: one snapshot (`top --once`).
    pub fn unbounded() -> PlacementOptions {
        PlacementOptions { period: Duration::ZERO, budget: None }
    }
}

/// What the last refresh spent on numa_maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadCost {
    pub processes_read: u32,
    /// Resident memory of the processes read (what their page-table walks covered).
    pub resident_bytes: u64,
    pub spent: Duration,
    /// Processes due for a read that the budget left for a later refresh.
    pub left_for_later: u32,
}

/// When a process was last read, and whether its numa_maps was readable.
struct Read {
    start_ticks: u64,
    at: Instant,
    denied: bool,
    /// Its threads' CPU time then, in clock ticks.
    ran: u64,
}

fn ran(p: &ProcessSample) -> u64 {
    p.threads.iter().map(|t| t.run_ticks).fold(0, u64::saturating_add)
}

/// The latest numa_maps snapshot of each process.
pub struct Placements {
    options: PlacementOptions,
    reads: HashMap<u32, Read>,
    snapshots: HashMap<u32, ProcessSnapshot>,
    cost: ReadCost,
    paused: bool,
}

impl Placements {
    pub fn new(options: PlacementOptions) -> Placements {
        Placements {
            options,
            reads: HashMap::new(),
            snapshots: HashMap::new(),
            cost: ReadCost::default(),
            paused: false,
        }
    }

    /// While paused a refresh reads no numa_maps (the first sample of `--once`).
    pub fn pause(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Forgets exited processes and reads the numa_maps that are due;
    /// `processes` in pid order, as [`ProcessReader`](super::processes::ProcessReader) lists them.
    pub fn refresh(&mut self, processes: &[ProcessSample], topology: &Topology) {
        // The processes come in pid order (no map of them built each refresh).
        let start_of =
            |pid: &u32| processes.binary_search_by_key(pid, |p| p.pid).ok().map(|i| processes[i].start_ticks);
        self.reads.retain(|pid, r| start_of(pid) == Some(r.start_ticks));
        self.snapshots.retain(|pid, _| self.reads.contains_key(pid));
        self.cost = ReadCost::default();
        if self.paused {
            return;
        }
        let now = Instant::now();
        let mut due: Vec<&ProcessSample> = processes
            .iter()
            .filter(|p| {
                self.reads.get(&p.pid).is_none_or(|r| {
                    let age = now.duration_since(r.at);
                    age >= self.options.period && (r.ran != ran(p) || age >= self.options.period * IDLE_PERIODS)
                })
            })
            .collect();
        due.sort_by_key(|p| (self.reads.contains_key(&p.pid), std::cmp::Reverse(p.rss_bytes)));
        let started = Instant::now();
        // Processes of one cgroup share its cpuset: read once this refresh.
        let mut cpusets = CpusetMemo::default();
        for (i, p) in due.iter().enumerate() {
            if let Some(budget) = self.options.budget
                && i > 0
                && started.elapsed() >= budget
            {
                self.cost.left_for_later = (due.len() - i) as u32;
                break;
            }
            // A process that exited since the listing: gone at the next refresh.
            let threads = p
                .threads
                .iter()
                .map(|t| ThreadPlacement {
                    tid: t.tid,
                    name: String::new(),
                    cpu: t.cpu,
                    node: topology.node_of_cpu(t.cpu),
                })
                .collect();
            let Ok(snapshot) = ProcessSnapshot::read_with_threads(p.pid, threads, &mut cpusets) else { continue };
            let denied = snapshot.numa_maps.is_none();
            self.reads.insert(p.pid, Read { start_ticks: p.start_ticks, at: Instant::now(), denied, ran: ran(p) });
            if denied {
                self.snapshots.remove(&p.pid);
            } else {
                self.snapshots.insert(p.pid, snapshot);
            }
            self.cost.processes_read += 1;
            self.cost.resident_bytes += p.rss_bytes;
        }
        self.cost.spent = started.elapsed();
    }

    /// The latest snapshot of each process whose numa_maps could be read.
    pub fn snapshots(&self) -> &HashMap<u32, ProcessSnapshot> {
        &self.snapshots
    }

    pub fn last_cost(&self) -> ReadCost {
        self.cost
    }

    /// What the view cannot show, in words.
    pub fn cannot_see(&self) -> Vec<String> {
        let mut out = Vec::new();
        let denied = self.reads.values().filter(|r| r.denied).count();
        if denied > 0 {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            let why = if root {
                "permission denied even to root (another user or PID namespace, or a security module)"
            } else {
                "other users' processes; run as root to see them"
            };
            out.push(format!("memory per node of {denied} process(es): their numa_maps is not readable ({why})"));
        }
        if self.cost.left_for_later > 0 {
            out.push(format!(
                "memory per node of {} process(es) not read yet: numa_maps is read for at most {} ms per refresh, largest processes first",
                self.cost.left_for_later,
                self.options.budget.unwrap_or_default().as_millis()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::processes::ProcessReader;

    #[test]
    fn reads_each_process_once_per_period_within_the_budget() {
        let topology = Topology::read().unwrap();
        let processes = ProcessReader::default().read().unwrap();
        let options = PlacementOptions { period: Duration::from_secs(3600), budget: Some(Duration::ZERO) };
        let mut placements = Placements::new(options);
        placements.refresh(&processes, &topology);
        // A zero budget still reads one process per refresh: the largest.
        assert_eq!(placements.last_cost().processes_read, 1);
        let largest = processes.iter().max_by_key(|p| p.rss_bytes).unwrap();
        assert!(placements.reads.contains_key(&largest.pid));
        placements.refresh(&processes, &topology);
        assert_eq!(placements.last_cost().processes_read, 1);
        assert_eq!(placements.reads.len(), 2, "the second refresh reads the next one, not the first again");
        assert!(placements.cannot_see().iter().any(|s| s.contains("not read yet")));
        // Due again (a zero period), the largest waits: a process never read comes first.
        placements.options.period = Duration::ZERO;
        let before: Vec<u32> = placements.reads.keys().copied().collect();
        placements.refresh(&processes, &topology);
        assert_eq!(placements.reads.len(), 3, "a third process, not {before:?} again");

        let mut all = Placements::new(PlacementOptions::unbounded());
        all.refresh(&processes, &topology);
        let me = all.snapshots().get(&std::process::id()).expect("this process's numa_maps");
        assert!(me.total_bytes() > 0);
        assert_eq!(all.last_cost().left_for_later, 0);
        // A process no longer listed has exited: forgotten; the others are kept.
        let read = all.reads.len();
        let others: Vec<ProcessSample> = processes.iter().filter(|p| p.pid != std::process::id()).cloned().collect();
        all.pause(true);
        all.refresh(&others, &topology);
        assert!(!all.snapshots().contains_key(&std::process::id()));
        assert_eq!(all.reads.len(), read - 1);
    }
}
