//! `numatrace diff before.ntrace after.ntrace`: did the fix work? Per thread
//! and per node, the remote share and where memory was placed, before and
//! after, and whether the top cause is gone. Threads are matched by name
//! (and order of creation among threads of the same name): tids differ
//! between runs.
use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::report::{Report, ThreadReport};

/// `numatrace diff` options.
#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// The capture before the fix.
    #[arg(value_name = "BEFORE")]
    pub before: PathBuf,
    /// The capture after the fix.
    #[arg(value_name = "AFTER")]
    pub after: PathBuf,
    /// Print the comparison as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Remote shares of one thread (or of the whole process) in one capture.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Locality {
    /// Pages first touched, by node id.
    pub first_touch_pages_by_node: BTreeMap<String, u64>,
    /// Share of first-touched pages that landed off the toucher's node (0..1), if any were touched.
    pub remote_first_touch_share: Option<f64>,
    /// Share of NUMA hinting faults that were remote (0..1), if any were seen.
    pub remote_hinting_share: Option<f64>,
    pub cross_node_migrations: u64,
}

fn share(part: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| part as f64 / total as f64)
}

impl Locality {
    fn of_thread(t: &ThreadReport) -> Locality {
        let pages: u64 = t.first_touch_pages.values().sum();
        Locality {
            first_touch_pages_by_node: t.first_touch_pages.clone(),
            remote_first_touch_share: share(t.remote_first_touch_pages, pages),
            remote_hinting_share: share(t.hinting_faults_remote, t.hinting_faults_local + t.hinting_faults_remote),
            cross_node_migrations: t.cross_node_migrations,
        }
    }

    fn of_process(r: &Report) -> Locality {
        let t = &r.totals;
        Locality {
            first_touch_pages_by_node: t.first_touch_pages_by_node.clone(),
            remote_first_touch_share: share(t.remote_first_touch_pages, t.first_touch_pages),
            remote_hinting_share: share(t.hinting_faults_remote, t.hinting_faults_local + t.hinting_faults_remote),
            cross_node_migrations: t.cross_node_migrations,
        }
    }
}

/// One thread, before and after (absent on a side where it did not exist).
#[derive(Clone, Debug, Serialize)]
pub struct ThreadDiff {
    /// `comm` or `comm#2` for the second thread of that name.
    pub name: String,
    pub before: Option<Locality>,
    pub after: Option<Locality>,
}

/// One node's share of the first-touched memory, before and after.
#[derive(Clone, Debug, Serialize)]
pub struct NodeDiff {
    pub node: String,
    pub pages_before: u64,
    pub pages_after: u64,
    pub share_before: Option<f64>,
    pub share_after: Option<f64>,
}

/// The whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Diff {
    pub before: Locality,
    pub after: Locality,
    pub top_cause_before: Option<String>,
    pub top_cause_after: Option<String>,
    /// Whether the top cause before is absent after (None when there was none before).
    pub top_cause_gone: Option<bool>,
    pub nodes: Vec<NodeDiff>,
    pub threads: Vec<ThreadDiff>,
    /// One sentence.
    pub verdict: String,
}

fn by_name(r: &Report) -> BTreeMap<String, &ThreadReport> {
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    let mut out = BTreeMap::new();
    let mut threads: Vec<&ThreadReport> = r.threads.iter().collect();
    threads.sort_by_key(|t| t.tid);
    for t in threads {
        let n = seen.entry(t.comm.as_str()).or_default();
        *n += 1;
        out.insert(if *n == 1 { t.comm.clone() } else { format!("{}#{n}", t.comm) }, t);
    }
    out
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.0}%", v * 100.0))
}

/// Compares two reports.
pub fn compare(before: &Report, after: &Report) -> Diff {
    let (b, a) = (Locality::of_process(before), Locality::of_process(after));
    let top_before = before.causes.first().map(|c| c.kind);
    let top_cause_gone = top_before.map(|k| !after.causes.iter().any(|c| c.kind == k));
    let mut nodes: Vec<String> = b.first_touch_pages_by_node.keys().chain(a.first_touch_pages_by_node.keys()).cloned().collect();
    nodes.sort_by_key(|n| n.parse::<u32>().unwrap_or(u32::MAX));
    nodes.dedup();
    let total_b: u64 = b.first_touch_pages_by_node.values().sum();
    let total_a: u64 = a.first_touch_pages_by_node.values().sum();
    let nodes = nodes
        .into_iter()
        .map(|node| {
            let pages_before = b.first_touch_pages_by_node.get(&node).copied().unwrap_or(0);
            let pages_after = a.first_touch_pages_by_node.get(&node).copied().unwrap_or(0);
            NodeDiff { share_before: share(pages_before, total_b), share_after: share(pages_after, total_a), node, pages_before, pages_after }
        })
        .collect();
    let (tb, ta) = (by_name(before), by_name(after));
    let mut names: Vec<&String> = tb.keys().chain(ta.keys()).collect();
    names.sort();
    names.dedup();
    let threads = names
        .into_iter()
        .map(|name| ThreadDiff {
            name: name.clone(),
            before: tb.get(name).map(|t| Locality::of_thread(t)),
            after: ta.get(name).map(|t| Locality::of_thread(t)),
        })
        .collect();
    let shares = format!(
        "remote hinting faults {} → {}, remote first touches {} → {}",
        pct(b.remote_hinting_share),
        pct(a.remote_hinting_share),
        pct(b.remote_first_touch_share),
        pct(a.remote_first_touch_share)
    );
    let verdict = match (top_before, top_cause_gone) {
        (Some(k), Some(true)) => format!("The top cause before, {}, is gone; {shares}.", k.name()),
        (Some(k), _) => {
            let share_of = |r: &Report| r.causes.iter().find(|c| c.kind == k).map(|c| c.share);
            format!("The top cause before, {}, is still there ({} → {} of remote memory); {shares}.", k.name(), pct(share_of(before)), pct(share_of(after)))
        }
        (None, _) => format!("No cause was attributed before; {shares}."),
    };
    Diff {
        before: b,
        after: a,
        top_cause_before: top_before.map(|k| k.name().to_string()),
        top_cause_after: after.causes.first().map(|c| c.kind.name().to_string()),
        top_cause_gone,
        nodes,
        threads,
        verdict,
    }
}

/// The comparison as terminal text.
pub fn render(d: &Diff) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}\n", d.verdict);
    let _ = writeln!(o, "Top cause   before: {}   after: {}", d.top_cause_before.as_deref().unwrap_or("none"), d.top_cause_after.as_deref().unwrap_or("none"));
    let _ = writeln!(o, "\nMemory placement (first-touched pages)");
    let _ = writeln!(o, "  {:<8} {:>12} {:>7}   {:>12} {:>7}", "node", "before", "share", "after", "share");
    for n in &d.nodes {
        let _ = writeln!(o, "  {:<8} {:>12} {:>7}   {:>12} {:>7}", n.node, n.pages_before, pct(n.share_before), n.pages_after, pct(n.share_after));
    }
    let _ = writeln!(o, "\nRemote share per thread (hinting faults | first touches | cross-node migrations)");
    let _ = writeln!(o, "  {:<20} {:>26}   {:>26}", "thread", "before", "after");
    let cell = |l: &Option<Locality>| match l {
        Some(l) => format!("{:>4} | {:>4} | {:>5}", pct(l.remote_hinting_share), pct(l.remote_first_touch_share), l.cross_node_migrations),
        None => "(absent)".to_string(),
    };
    let _ = writeln!(o, "  {:<20} {:>26}   {:>26}", "(process)", cell(&Some(d.before.clone())), cell(&Some(d.after.clone())));
    for t in &d.threads {
        let _ = writeln!(o, "  {:<20} {:>26}   {:>26}", t.name, cell(&t.before), cell(&t.after));
    }
    o
}

/// Runs `numatrace diff`.
pub fn run(args: &DiffArgs) -> Result<i32> {
    let before = crate::capture::cli::open(&args.before)?.report();
    let after = crate::capture::cli::open(&args.after)?.report();
    let diff = compare(&before, &after);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&diff)?);
    } else {
        print!("{}", render(&diff));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::synthetic;

    fn report(events: &[crate::event::Event]) -> Report {
        let (start, _, end) = synthetic::init_thread_capture();
        crate::facts::SessionFacts { start, end }.replay(events).0
    }

    #[test]
    fn says_the_top_cause_is_gone_when_the_fix_worked() {
        let (_, events, _) = synthetic::init_thread_capture();
        let before = report(&events);
        assert!(!before.causes.is_empty(), "the synthetic capture has a cause");
        // After the fix: every worker touches and uses its memory locally.
        let pid = 4242;
        let after_events = vec![
            synthetic::thread_new(1_001_000_000_000, pid, pid + 1, pid, "worker-a", 1),
            synthetic::thread_new(1_001_000_000_000, pid, pid + 2, pid, "worker-b", 5),
            synthetic::first_touch(1_001_100_000_000, pid, pid + 2, 5000, 4096, 1, 1),
            synthetic::hinting(1_002_000_000_000, pid, pid + 2, 5000, 100, 1, 1),
        ];
        let after = report(&after_events);
        let d = compare(&before, &after);
        assert_eq!(d.top_cause_gone, Some(true), "{:?}", after.causes);
        assert!(d.verdict.contains("is gone"), "{}", d.verdict);
        assert_eq!(d.after.remote_hinting_share, Some(0.0));
        assert!(d.before.remote_hinting_share.unwrap() > 0.5);
        let b = d.threads.iter().find(|t| t.name == "worker-b").unwrap();
        assert_eq!(b.after.as_ref().unwrap().first_touch_pages_by_node, BTreeMap::from([("1".to_string(), 4096)]));
        assert!(d.threads.iter().any(|t| t.name == "hopper" && t.after.is_none()));
        let node1 = d.nodes.iter().find(|n| n.node == "1").unwrap();
        assert_eq!(node1.pages_after, 4096);
        assert!(render(&d).contains("(absent)"));
    }

    #[test]
    fn the_same_capture_twice_keeps_its_cause() {
        let (_, events, _) = synthetic::init_thread_capture();
        let r = report(&events);
        let d = compare(&r, &r);
        assert_eq!(d.top_cause_gone, Some(false));
        assert!(d.verdict.contains("still there"), "{}", d.verdict);
        assert_eq!(d.before, d.after);
    }
}
