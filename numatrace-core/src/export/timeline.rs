//! The timeline every exporter draws: per thread, where it was (CPU and
//! node) over time; instants for cross-node migrations, balancer moves and
//! swaps, and page-migration batches; per-second rates. Built from a
//! capture's facts and events, with times relative to the capture's start.
use std::collections::BTreeMap;

use numatrace_common::EventKind;

use crate::{
    capture::CaptureFile,
    event::{Event, comm_str},
    report::Report,
};

/// A stretch of time a thread spent on one CPU.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// Nanoseconds since the capture started.
    pub from_ns: u64,
    pub to_ns: u64,
    /// None when the capture never said where the thread was.
    pub cpu: Option<u32>,
    pub node: Option<u32>,
}

/// One thread's lane.
#[derive(Clone, Debug)]
pub struct Lane {
    pub tid: u32,
    pub tgid: u32,
    pub comm: String,
    pub segments: Vec<Segment>,
    /// The cause the report names this thread in first, if any.
    pub cause: Option<String>,
}

/// What an instant marks.
#[derive(Clone, Debug, PartialEq)]
pub enum MarkKind {
    CrossNodeMigration { from: u32, to: u32 },
    BalancerMove { from: i32, to: i32 },
    BalancerSwap { from: i32, to: i32, with: u32 },
    PageMigrationBatch { pages: u64, reason: String },
}

impl MarkKind {
    /// A short label.
    pub fn label(&self) -> String {
        match self {
            MarkKind::CrossNodeMigration { from, to } => format!("cross-node migration {from}→{to}"),
            MarkKind::BalancerMove { from, to } => format!("balancer move {from}→{to}"),
            MarkKind::BalancerSwap { from, to, with } => format!("balancer swap {from}→{to} with {with}"),
            MarkKind::PageMigrationBatch { pages, reason } => format!("{pages} pages migrated ({reason})"),
        }
    }
}

/// One instant on a thread's lane.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub at_ns: u64,
    pub tid: u32,
    pub kind: MarkKind,
}

/// Per-second sums of one quantity, second 0 first.
#[derive(Clone, Debug, PartialEq)]
pub struct Rate {
    pub name: &'static str,
    pub per_second: Vec<u64>,
}

/// The whole timeline.
#[derive(Clone, Debug)]
pub struct Timeline {
    pub pid: u32,
    pub process: String,
    pub duration_ns: u64,
    pub nodes: Vec<u32>,
    pub lanes: Vec<Lane>,
    pub marks: Vec<Mark>,
    /// remote first-touch pages/s, remote hinting faults/s, local hinting faults/s.
    pub rates: Vec<Rate>,
    /// The report's headline (top cause in a sentence).
    pub title: String,
    /// The top cause's name, or "unattributed".
    pub top_cause: String,
}

/// Name used when the report attributes nothing.
pub const UNATTRIBUTED: &str = "unattributed";

struct Open {
    since: u64,
    cpu: Option<u32>,
}

impl Timeline {
    /// Builds the timeline of a capture, with `report` (its replay) for names and causes.
    pub fn build(capture: &CaptureFile, report: &Report) -> Timeline {
        let start = capture.start.start_ns;
        let topology = &capture.start.topology;
        let last_event = capture.events.iter().map(|e| e.header().ts_ns.saturating_sub(start)).max().unwrap_or(0);
        let duration_ns = ((capture.end.duration_s.max(0.0) * 1e9) as u64).max(last_event);
        let rel = |ts: u64| ts.saturating_sub(start).min(duration_ns);
        let node = |cpu: Option<u32>| cpu.and_then(|c| topology.node_of_cpu(c));

        let mut lanes: BTreeMap<u32, Lane> = BTreeMap::new();
        let mut open: BTreeMap<u32, Open> = BTreeMap::new();
        let lane = |lanes: &mut BTreeMap<u32, Lane>, tid: u32, tgid: u32| {
            lanes.entry(tid).or_insert_with(|| Lane {
                tid,
                tgid,
                comm: String::new(),
                segments: Vec::new(),
                cause: None,
            });
        };
        for t in &capture.start.initial_threads {
            lane(&mut lanes, t.tid, t.tgid);
            if let Some(l) = lanes.get_mut(&t.tid) {
                l.comm = t.comm.clone();
            }
            open.insert(t.tid, Open { since: 0, cpu: t.cpu });
        }
        // Without the migrations within a node, the last CPU known is only
        // right about the node.
        let cpu_known = !capture.start.within_node_migrations_counted_only;
        let close = |lanes: &mut BTreeMap<u32, Lane>, tid: u32, o: Open, at: u64| {
            if let Some(l) = lanes.get_mut(&tid)
                && at > o.since
            {
                l.segments.push(Segment {
                    from_ns: o.since,
                    to_ns: at,
                    cpu: o.cpu.filter(|_| cpu_known),
                    node: node(o.cpu),
                });
            }
        };
        let mut marks = Vec::new();
        let seconds = (duration_ns / 1_000_000_000 + 1) as usize;
        let mut remote_touch = vec![0u64; seconds];
        let mut hint_remote = vec![0u64; seconds];
        let mut hint_local = vec![0u64; seconds];
        for event in &capture.events {
            let h = *event.header();
            let at = rel(h.ts_ns);
            let sec = ((at / 1_000_000_000) as usize).min(seconds - 1);
            match event {
                Event::TaskNew(e) => {
                    lane(&mut lanes, h.tid, h.tgid);
                    if let Some(l) = lanes.get_mut(&h.tid) {
                        l.comm = comm_str(&e.comm);
                    }
                    if let Some(o) = open.insert(h.tid, Open { since: at, cpu: Some(h.cpu) }) {
                        close(&mut lanes, h.tid, o, at);
                    }
                }
                Event::TaskMigration(e) => {
                    lane(&mut lanes, h.tid, h.tgid);
                    let from = u32::try_from(e.orig_cpu).ok();
                    let to = u32::try_from(e.dest_cpu).ok();
                    let before = open
                        .remove(&h.tid)
                        .map(|o| Open { cpu: o.cpu.or(from), ..o })
                        .unwrap_or(Open { since: 0, cpu: from });
                    close(&mut lanes, h.tid, before, at);
                    open.insert(h.tid, Open { since: at, cpu: to });
                    if let (Some(a), Some(b)) = (node(from), node(to))
                        && a != b
                    {
                        marks.push(Mark {
                            at_ns: at,
                            tid: h.tid,
                            kind: MarkKind::CrossNodeMigration { from: a, to: b },
                        });
                    }
                }
                Event::TaskExit(e) => {
                    lane(&mut lanes, h.tid, h.tgid);
                    if let Some(l) = lanes.get_mut(&h.tid) {
                        let comm = comm_str(&e.comm);
                        if !comm.is_empty() {
                            l.comm = comm;
                        }
                    }
                    if let Some(o) = open.remove(&h.tid) {
                        close(&mut lanes, h.tid, o, at);
                    }
                }
                Event::NumaPlacement(e) => {
                    let kind = match EventKind::from_id(h.kind) {
                        Some(EventKind::NumaTaskSwap) => {
                            MarkKind::BalancerSwap { from: e.src_node, to: e.dst_node, with: e.dst_tid }
                        }
                        Some(EventKind::NumaTaskMove) => MarkKind::BalancerMove { from: e.src_node, to: e.dst_node },
                        _ => continue,
                    };
                    let tid = if e.src_tid != 0 { e.src_tid } else { h.tid };
                    lane(&mut lanes, tid, h.tgid);
                    marks.push(Mark { at_ns: at, tid, kind });
                }
                Event::PageMigration(e) => {
                    lane(&mut lanes, h.tid, h.tgid);
                    let reason = capture
                        .start
                        .reason_names
                        .get(&i64::from(e.reason))
                        .cloned()
                        .unwrap_or_else(|| format!("reason_{}", e.reason));
                    marks.push(Mark {
                        at_ns: at,
                        tid: h.tid,
                        kind: MarkKind::PageMigrationBatch { pages: e.succeeded, reason },
                    });
                }
                Event::FirstTouch(e) => {
                    lane(&mut lanes, h.tid, h.tgid);
                    if e.cpu_node != e.page_node {
                        remote_touch[sec] += e.pages;
                    }
                }
                Event::HintingFault(e) => {
                    lane(&mut lanes, h.tid, h.tgid);
                    if e.local != 0 {
                        hint_local[sec] += u64::from(e.faults);
                    } else {
                        hint_remote[sec] += u64::from(e.faults);
                    }
                }
                Event::MisplacedMigration(_)
                | Event::RunTimeSample(_)
                | Event::MigrationCount(_)
                | Event::AffinityChange(_) => {}
            }
        }
        for (tid, o) in std::mem::take(&mut open) {
            close(&mut lanes, tid, o, duration_ns);
        }
        for t in &report.threads {
            lane(&mut lanes, t.tid, t.tgid);
        }
        for l in lanes.values_mut() {
            if let Some(t) = report.threads.iter().find(|t| t.tid == l.tid)
                && l.comm.is_empty()
            {
                l.comm = t.comm.clone();
            }
            if l.segments.is_empty() {
                l.segments.push(Segment { from_ns: 0, to_ns: duration_ns, cpu: None, node: None });
            }
            l.cause = report.causes.iter().find(|c| c.threads.contains(&l.tid)).map(|c| c.kind.name().to_string());
        }
        marks.sort_by_key(|m| m.at_ns);
        Timeline {
            pid: capture.start.target.pid,
            process: capture.start.target.comm.clone(),
            duration_ns,
            nodes: topology.node_ids(),
            lanes: lanes.into_values().collect(),
            marks,
            rates: vec![
                Rate { name: "remote first touches/s", per_second: remote_touch },
                Rate { name: "remote hinting faults/s", per_second: hint_remote },
                Rate { name: "local hinting faults/s", per_second: hint_local },
            ],
            title: report.headline.clone(),
            top_cause: report.causes.first().map_or(UNATTRIBUTED, |c| c.kind.name()).to_string(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::capture::{read_bytes, synthetic};

    pub(crate) fn sample() -> (CaptureFile, Report) {
        let (start, events, end) = synthetic::init_thread_capture();
        let mut w = crate::capture::CaptureWriter::new(Vec::new(), "memory".into());
        use crate::capture::sink::EventSink;
        w.start(&start).unwrap();
        for e in &events {
            w.record(e).unwrap();
        }
        w.end(&end).unwrap();
        let capture = read_bytes(&w.into_inner()).unwrap();
        let report = capture.report();
        (capture, report)
    }

    #[test]
    fn lanes_follow_migrations_across_nodes() {
        let (capture, report) = sample();
        let t = Timeline::build(&capture, &report);
        assert_eq!(t.lanes.len(), report.threads.len());
        let hopper = t.lanes.iter().find(|l| l.comm == "hopper").unwrap();
        assert_eq!(hopper.segments.len(), 13);
        // Consecutive segments alternate nodes and tile the lane without gaps.
        for w in hopper.segments.windows(2) {
            assert_eq!(w[0].to_ns, w[1].from_ns);
            assert_ne!(w[0].node, w[1].node);
        }
        assert_eq!(hopper.segments.last().unwrap().to_ns, 10_000_000_000);
        let crossings = t.marks.iter().filter(|m| matches!(m.kind, MarkKind::CrossNodeMigration { .. })).count() as u64;
        assert_eq!(crossings, report.totals.cross_node_migrations);
        let main = t.lanes.iter().find(|l| l.comm == "app").unwrap();
        assert_eq!(main.segments, vec![Segment { from_ns: 0, to_ns: 10_000_000_000, cpu: Some(0), node: Some(0) }]);
        assert_eq!(t.rates[1].per_second.iter().sum::<u64>(), report.totals.hinting_faults_remote);
    }

    /// Without the within-node migrations, a lane knows its thread's node
    /// but not its CPU.
    #[test]
    fn lanes_name_only_the_node_when_within_node_migrations_were_not_sent() {
        let (mut capture, report) = sample();
        capture.start.within_node_migrations_counted_only = true;
        let t = Timeline::build(&capture, &report);
        let hopper = t.lanes.iter().find(|l| l.comm == "hopper").unwrap();
        assert_eq!(hopper.segments.len(), 13);
        assert!(hopper.segments.iter().all(|s| s.cpu.is_none() && s.node.is_some()), "{:?}", hopper.segments);
    }
}
