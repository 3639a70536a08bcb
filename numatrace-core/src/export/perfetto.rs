//! Chrome trace event JSON (opens in ui.perfetto.dev and chrome://tracing):
//! a track per thread with one slice per stretch on a CPU, named by node;
//! instant events for migrations, balancer decisions and page-migration
//! batches; counter tracks for the per-second rates. Times in µs. Process
//! and thread names are the names alone: every viewer adds the pid and tid.
use anyhow::Result;
use serde_json::{Value, json};

use super::timeline::{MarkKind, Timeline};

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// The trace as JSON text.
pub fn render(t: &Timeline) -> Result<String> {
    let pid = t.pid;
    let mut events: Vec<Value> =
        vec![json!({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": t.process}})];
    for (i, lane) in t.lanes.iter().enumerate() {
        events
            .push(json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": lane.tid, "args": {"name": lane.comm}}));
        events.push(
            json!({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": lane.tid, "args": {"sort_index": i}}),
        );
        for s in &lane.segments {
            let name = s.node.map_or("node ?".to_string(), |n| format!("node {n}"));
            events.push(json!({
                "ph": "X", "cat": "placement", "name": name, "pid": pid, "tid": lane.tid,
                "ts": us(s.from_ns), "dur": us(s.to_ns - s.from_ns),
                "args": {"node": s.node, "cpu": s.cpu},
            }));
        }
    }
    for m in &t.marks {
        let cat = match m.kind {
            MarkKind::CrossNodeMigration { .. } => "migration",
            MarkKind::BalancerMove { .. } | MarkKind::BalancerSwap { .. } => "balancer",
            MarkKind::PageMigrationBatch { .. } => "page_migration",
        };
        let args = match &m.kind {
            MarkKind::CrossNodeMigration { from, to } => json!({"from_node": from, "to_node": to}),
            MarkKind::BalancerMove { from, to } => json!({"from_node": from, "to_node": to}),
            MarkKind::BalancerSwap { from, to, with } => {
                json!({"from_node": from, "to_node": to, "swapped_with": with})
            }
            MarkKind::PageMigrationBatch { pages, reason } => json!({"pages": pages, "reason": reason}),
        };
        events.push(json!({"ph": "i", "s": "t", "cat": cat, "name": m.kind.label(), "pid": pid, "tid": m.tid, "ts": us(m.at_ns), "args": args}));
    }
    for rate in &t.rates {
        for (sec, v) in rate.per_second.iter().enumerate() {
            events
                .push(json!({"ph": "C", "name": rate.name, "pid": pid, "ts": sec as f64 * 1e6, "args": {"value": v}}));
        }
    }
    let trace = json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "metadata": {"numatrace": {"top_cause": t.top_cause, "headline": t.title}},
    });
    Ok(serde_json::to_string(&trace)?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::export::timeline::tests::sample;

    #[test]
    fn every_thread_has_a_track_and_every_crossing_an_instant() {
        let (capture, report) = sample();
        let t = Timeline::build(&capture, &report);
        let v: Value = serde_json::from_str(&render(&t).unwrap()).unwrap();
        let events = v["traceEvents"].as_array().unwrap();
        let with = |ph: &'static str| events.iter().filter(move |e| e["ph"] == ph);
        let named: BTreeSet<u64> =
            with("M").filter(|e| e["name"] == "thread_name").map(|e| e["tid"].as_u64().unwrap()).collect();
        let sliced: BTreeSet<u64> = with("X").map(|e| e["tid"].as_u64().unwrap()).collect();
        let threads: BTreeSet<u64> = report.threads.iter().map(|t| u64::from(t.tid)).collect();
        assert_eq!(named, threads);
        assert_eq!(sliced, threads);
        let crossings = with("i").filter(|e| e["cat"] == "migration").count() as u64;
        assert_eq!(crossings, report.totals.cross_node_migrations);
        assert_eq!(with("i").filter(|e| e["cat"] == "balancer").count(), 2);
        assert_eq!(with("i").filter(|e| e["cat"] == "page_migration").count(), 6);
        let remote: u64 = with("C")
            .filter(|e| e["name"] == "remote hinting faults/s")
            .map(|e| e["args"]["value"].as_u64().unwrap())
            .sum();
        assert_eq!(remote, report.totals.hinting_faults_remote);
        // Slices of one thread never overlap (Perfetto would nest them).
        for tid in threads {
            let mut spans: Vec<(f64, f64)> = with("X")
                .filter(|e| e["tid"] == tid)
                .map(|e| (e["ts"].as_f64().unwrap(), e["dur"].as_f64().unwrap()))
                .collect();
            spans.sort_by(|a, b| a.0.total_cmp(&b.0));
            for w in spans.windows(2) {
                assert!(w[0].0 + w[0].1 <= w[1].0 + 1e-6, "thread {tid}: {w:?}");
            }
        }
    }
}
