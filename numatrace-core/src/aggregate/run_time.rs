//! Run time per node without a kernel program on every context switch:
//! each traced thread's cumulative run time is read from
//! /proc/<tgid>/task/<tid>/schedstat, and the aggregator splits each delta
//! over the nodes its migration events say it visited. The samples travel as
//! events (`RunTimeSample`), so a capture replays to the same figures. The
//! kernel sends one more as each thread exits (`sched_process_exit`), so a
//! thread's last stretch, or all of a short-lived thread, is not lost.
use std::time::{Duration, Instant};

use numatrace_common::{EventHeader, EventKind, RunTimeSampleEvent};

use crate::{aggregate::Aggregator, event::Event, machine::per_thread};

/// When to sample: often for a few threads, less often for many (each is a
/// file read), and never more than [`READ_BUDGET`] of the time: a capture
/// left on for hours on a process of 10 000 threads must stay cheap.
pub struct Sampler {
    next: Instant,
    min_interval: Duration,
}

/// The share of wall time the samples may take: the next sample waits at
/// least the last one's duration divided by this. 5 %: one core's worth of
/// /proc reads for a huge process is spread out, while an emulated guest,
/// where every read is slow, keeps the usual cadence (1 % delayed its
/// snapshots past what the lab's scripts wait for).
pub const READ_BUDGET: f64 = 0.05;

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new()
    }
}

impl Sampler {
    pub fn new() -> Sampler {
        Sampler::at_least(Duration::ZERO)
    }

    /// Samples no more often than every `min_interval`: under an overhead
    /// budget, left on for hours, a second's resolution of run time is
    /// plenty and ten reads a second per thread are not.
    pub fn at_least(min_interval: Duration) -> Sampler {
        Sampler { next: Instant::now(), min_interval }
    }

    /// Samples when due; returns the samples (possibly none).
    pub fn maybe_sample(&mut self, agg: &Aggregator, now_ns: u64) -> Vec<Event> {
        let started = Instant::now();
        if started < self.next {
            return Vec::new();
        }
        let samples = sample(agg, now_ns);
        self.next = Instant::now() + interval(samples.len(), started.elapsed()).max(self.min_interval);
        samples
    }
}

/// The wait after a sample of `threads` threads that took `took`: 100 ms for
/// up to 100 threads, then 1 ms per thread up to 2 s, and longer when the
/// reads cost more than [`READ_BUDGET`] of the time.
pub fn interval(threads: usize, took: Duration) -> Duration {
    let by_count = Duration::from_millis((threads as u64).clamp(100, 2000));
    by_count.max(took.div_f64(READ_BUDGET))
}

/// One sample of every traced thread that has not exited (threads that are gone are skipped).
pub fn sample(agg: &Aggregator, now_ns: u64) -> Vec<Event> {
    let threads: Vec<(u32, u32)> =
        agg.threads.values().filter(|t| t.exited_ns.is_none()).map(|t| (t.tgid, t.tid)).collect();
    per_thread::map(&threads, |&(tgid, tid)| {
        let run_ns = read_run_ns(tgid, tid)?;
        Some(Event::RunTimeSample(RunTimeSampleEvent {
            header: EventHeader { kind: EventKind::RunTimeSample as u32, cpu: 0, ts_ns: now_ns, tgid, tid },
            run_ns,
        }))
    })
    .into_iter()
    .flatten()
    .collect()
}

/// The first field of schedstat: nanoseconds the thread has run.
fn read_run_ns(tgid: u32, tid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/schedstat")).ok()?;
    parse_schedstat(&text)
}

fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use numatrace_common::TaskMigrationEvent;

    use super::*;
    use crate::machine::Topology;

    #[test]
    fn samples_less_often_when_reads_cost_more_than_the_budget() {
        assert_eq!(interval(10, Duration::from_micros(50)), Duration::from_millis(100));
        assert_eq!(interval(10_000, Duration::from_millis(5)), Duration::from_secs(2));
        // 10 000 threads read in 300 ms: at most 5 % of the time.
        assert_eq!(interval(10_000, Duration::from_millis(300)), Duration::from_secs(6));
    }

    #[test]
    fn parses_schedstat() {
        assert_eq!(parse_schedstat("123456 789 10\n"), Some(123_456));
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn samples_this_thread() {
        let mut agg = Aggregator::new(Topology::synthetic(&[vec![0, 1]]), BTreeMap::new());
        let pid = std::process::id();
        agg.add_thread(pid, pid, "me", Some(0));
        let samples = sample(&agg, 1);
        assert_eq!(samples.len(), 1);
    }

    fn run_sample(tid: u32, ts_ns: u64, run_ns: u64) -> Event {
        Event::RunTimeSample(RunTimeSampleEvent {
            header: EventHeader { kind: EventKind::RunTimeSample as u32, cpu: 0, ts_ns, tgid: 1, tid },
            run_ns,
        })
    }

    #[test]
    fn splits_run_time_over_the_nodes_a_thread_visited() {
        let mut agg = Aggregator::new(Topology::synthetic(&[vec![0, 1], vec![2, 3]]), BTreeMap::new());
        agg.add_thread(7, 1, "t", Some(0));
        agg.ingest(&run_sample(7, 1_000, 5_000)); // baseline: ran before the capture
        agg.ingest(&Event::TaskMigration(TaskMigrationEvent {
            header: EventHeader { kind: EventKind::TaskMigration as u32, cpu: 0, ts_ns: 1_250, tgid: 1, tid: 7 },
            orig_cpu: 1,
            dest_cpu: 2,
        }));
        agg.ingest(&run_sample(7, 2_000, 9_000));
        let t = &agg.threads[&7];
        // 4000 ns over (1000, 2000]: a quarter of the wall time on node 0, the rest on node 1.
        assert_eq!(t.runtime_ns_by_node, BTreeMap::from([(0, 1000), (1, 3000)]));
        agg.ingest(&run_sample(7, 3_000, 10_000));
        assert_eq!(agg.threads[&7].runtime_ns_by_node[&1], 4000);
    }

    /// The kernel's sample at exit can be folded before a userspace sample
    /// read earlier; the older one must neither add nor reset the baseline.
    #[test]
    fn an_older_sample_arriving_late_adds_nothing() {
        let mut agg = Aggregator::new(Topology::synthetic(&[vec![0, 1]]), BTreeMap::new());
        agg.add_thread(7, 1, "t", Some(0));
        agg.ingest(&run_sample(7, 1_000, 5_000));
        agg.ingest(&run_sample(7, 3_000, 9_000)); // the kernel's, at exit
        agg.ingest(&run_sample(7, 2_000, 8_000)); // userspace's, read before it
        agg.ingest(&run_sample(7, 4_000, 9_500));
        assert_eq!(agg.threads[&7].runtime_ns_by_node, BTreeMap::from([(0, 4_500)]));
    }
}
