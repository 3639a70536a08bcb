//! `numatrace diff before.ntrace after.ntrace`: did the fix work? Per thread
//! and per node, the remote share and where memory was placed, before and
//! after, and whether the top cause is gone. Threads are matched by name
//! (and order of creation among threads of the same name): tids differ
//! between runs.
//!
//! The verdict is one line: "fixed" when the process's remote share after
//! is below `--fixed-below` (5 % by default, [`FIXED_BELOW`]; an interleave
//! fix states its own level, (n-1)/n plus 5 %), "not fixed" otherwise.
//! The remote share is, in order of preference: its own resident memory
//! (not its files' page cache) per node (the capture's last snapshot, when it holds at least half the pages
//! first touched during the capture) weighted by where its threads ran
//! (the share of accesses that are remote if every thread used all memory
//! alike), on the nodes it may still use then; else the share of remote NUMA hinting faults (real accesses,
//! when the balancer runs); else the pages first touched during the
//! capture per node, weighted by run time as the resident memory is.
use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use crate::{
    fixes::FIXED_BELOW,
    report::{Report, ThreadReport},
};

/// The one figure "fixed" is judged on, for one capture.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RemoteShare {
    /// 0..1, or None when the capture has nothing to judge by.
    pub share: Option<f64>,
    /// Pages that are remote, by that measure.
    pub remote_pages: u64,
    /// Pages measured.
    pub pages: u64,
    /// Which measure: `resident_by_run_time`, `hinting_faults` or `first_touch_by_run_time`.
    pub measure: &'static str,
}

/// Minimum pages or faults for a measure to count.
const MIN_SAMPLES: u64 = 256;

/// What a capture's last snapshot saw of its process: its own resident
/// pages per node, and the nodes it may run on then (its main thread's CPUs
/// and where its threads were).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resident {
    pub pages_by_node: BTreeMap<u32, u64>,
    /// Empty when unknown (then every node counts).
    pub allowed_nodes: Vec<u32>,
}

/// Pages per node weighted by the share of `weights` (threads, or run time) off their node.
fn weighted(pages: &BTreeMap<u32, u64>, weights: &BTreeMap<u32, f64>, measure: &'static str) -> Option<RemoteShare> {
    let total: u64 = pages.values().sum();
    let weight: f64 = weights.values().sum();
    (total >= MIN_SAMPLES && weight > 0.0).then(|| {
        let remote: f64 =
            pages.iter().map(|(n, p)| *p as f64 * (1.0 - weights.get(n).copied().unwrap_or(0.0) / weight)).sum();
        RemoteShare { share: Some(remote / total as f64), remote_pages: remote.round() as u64, pages: total, measure }
    })
}

impl RemoteShare {
    /// `resident`: what the capture's last snapshot saw, if it has one.
    pub fn of(r: &Report, resident: Option<&Resident>) -> RemoteShare {
        // A snapshot taken before most of the memory was touched (a short
        // command exits between snapshots) does not stand for it.
        let current = |res: &&Resident| res.pages_by_node.values().sum::<u64>() >= r.totals.first_touch_pages / 2;
        // The main thread's run time on nodes the process may no longer use
        // (its CPUs at the last snapshot) is history from before a fix took
        // hold: a command started under numactl runs as numatrace's child on
        // another node until its exec, as the thread that becomes the main
        // thread. Other threads are born after the exec: all their run time
        // counts (on a loaded machine the last snapshot can come before the
        // workers pinned themselves elsewhere).
        let allowed = resident.map(|res| res.allowed_nodes.as_slice()).unwrap_or_default();
        let mut run_ms: BTreeMap<u32, f64> = BTreeMap::new();
        for t in &r.threads {
            for (node, ms) in &t.runtime_ms_by_node {
                if let Ok(node) = node.parse::<u32>()
                    && (t.tid != r.target.pid || allowed.is_empty() || allowed.contains(&node))
                {
                    *run_ms.entry(node).or_default() += ms;
                }
            }
        }
        if let Some(m) =
            resident.filter(current).and_then(|res| weighted(&res.pages_by_node, &run_ms, "resident_by_run_time"))
        {
            return m;
        }
        let t = &r.totals;
        let faults = t.hinting_faults_local + t.hinting_faults_remote;
        if faults >= MIN_SAMPLES {
            return RemoteShare {
                share: share(t.hinting_faults_remote, faults),
                remote_pages: t.hinting_faults_remote,
                pages: faults,
                measure: "hinting_faults",
            };
        }
        let touched: BTreeMap<u32, u64> =
            t.first_touch_pages_by_node.iter().filter_map(|(n, p)| Some((n.parse().ok()?, *p))).collect();
        weighted(&touched, &run_ms, "first_touch_by_run_time").unwrap_or_default()
    }
}

/// What the capture's last snapshot (or the one at its start) saw of its
/// process: its own memory (heap, stacks, anonymous and hugetlb mappings,
/// in 4 KiB pages), not the page cache of its files, which a fix does not
/// move (a binary's text sits where it was first read, shared by others).
pub fn resident(start: &crate::facts::StartFacts, end: &crate::facts::EndFacts) -> Option<Resident> {
    use crate::machine::MappingKind;
    let snap = end.process_last.as_ref().or(start.process_before.as_ref())?;
    let mut pages_by_node: BTreeMap<u32, u64> = BTreeMap::new();
    for m in snap.numa_maps.iter().flat_map(|maps| maps.mappings.iter()).filter(|m| m.kind != MappingKind::File) {
        for (node, bytes) in m.bytes_by_node() {
            *pages_by_node.entry(node).or_default() += bytes / 4096;
        }
    }
    // The main thread's CPUs, and the nodes its threads were on (a thread
    // may pin itself elsewhere than the main thread may run).
    let mut allowed_nodes: Vec<u32> = snap
        .status
        .iter()
        .flat_map(|st| st.cpus_allowed.iter())
        .filter_map(|cpu| start.topology.node_of_cpu(*cpu))
        .collect();
    allowed_nodes.extend(snap.threads_by_node.keys());
    allowed_nodes.sort_unstable();
    allowed_nodes.dedup();
    Some(Resident { pages_by_node, allowed_nodes })
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
    /// The remote share "fixed" is judged on, before and after.
    pub remote_before: RemoteShare,
    pub remote_after: RemoteShare,
    /// The level below which it counts as fixed (0..1).
    pub fixed_below: f64,
    /// The remote share after is below `fixed_below` (None: nothing to judge by).
    pub fixed: Option<bool>,
    /// "fixed: …" or "not fixed: …", with the figures.
    pub outcome: String,
    /// One sentence about the causes.
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

fn outcome(b: &RemoteShare, a: &RemoteShare, fixed_below: f64) -> (Option<bool>, String) {
    let goal = format!("{:.0} %", fixed_below * 100.0);
    let Some(after) = a.share else {
        return (
            None,
            format!(
                "cannot tell: the capture after has too few pages or faults to measure (under {MIN_SAMPLES}); capture for longer"
            ),
        );
    };
    let before = b.share.map_or("-".to_string(), |s| format!("{:.0} %", s * 100.0));
    let mut measure = a.measure.replace('_', " ");
    if b.measure != a.measure && b.share.is_some() {
        measure = format!("{measure}; before by {}", b.measure.replace('_', " "));
    }
    let figures = format!(
        "remote share {before} -> {:.0} % ({} -> {} remote pages of {} -> {}, by {measure})",
        after * 100.0,
        b.remote_pages,
        a.remote_pages,
        b.pages,
        a.pages
    );
    if after < fixed_below {
        (Some(true), format!("fixed: {figures}, below {goal}"))
    } else {
        (Some(false), format!("not fixed: {figures}, goal below {goal}"))
    }
}

/// Compares two reports (no snapshots: the first-touch or hinting measure), fixed below 5 %.
pub fn compare(before: &Report, after: &Report) -> Diff {
    compare_with(before, None, after, None, FIXED_BELOW)
}

/// Compares two reports with their processes' resident pages per node.
pub fn compare_with(
    before: &Report,
    before_pages: Option<&Resident>,
    after: &Report,
    after_pages: Option<&Resident>,
    fixed_below: f64,
) -> Diff {
    let remote_before = RemoteShare::of(before, before_pages);
    let remote_after = RemoteShare::of(after, after_pages);
    let (fixed, outcome) = outcome(&remote_before, &remote_after, fixed_below);
    let (b, a) = (Locality::of_process(before), Locality::of_process(after));
    let top_before = before.causes.first().map(|c| c.kind);
    let top_cause_gone = top_before.map(|k| !after.causes.iter().any(|c| c.kind == k));
    let mut nodes: Vec<String> =
        b.first_touch_pages_by_node.keys().chain(a.first_touch_pages_by_node.keys()).cloned().collect();
    nodes.sort_by_key(|n| n.parse::<u32>().unwrap_or(u32::MAX));
    nodes.dedup();
    let total_b: u64 = b.first_touch_pages_by_node.values().sum();
    let total_a: u64 = a.first_touch_pages_by_node.values().sum();
    let nodes = nodes
        .into_iter()
        .map(|node| {
            let pages_before = b.first_touch_pages_by_node.get(&node).copied().unwrap_or(0);
            let pages_after = a.first_touch_pages_by_node.get(&node).copied().unwrap_or(0);
            NodeDiff {
                share_before: share(pages_before, total_b),
                share_after: share(pages_after, total_a),
                node,
                pages_before,
                pages_after,
            }
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
            format!(
                "The top cause before, {}, is still there ({} → {} of remote memory); {shares}.",
                k.name(),
                pct(share_of(before)),
                pct(share_of(after))
            )
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
        remote_before,
        remote_after,
        fixed_below,
        fixed,
        outcome,
        verdict,
    }
}

/// The comparison as terminal text.
pub fn render(d: &Diff) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", d.outcome);
    let _ = writeln!(o, "{}\n", d.verdict);
    let _ = writeln!(
        o,
        "Top cause   before: {}   after: {}",
        d.top_cause_before.as_deref().unwrap_or("none"),
        d.top_cause_after.as_deref().unwrap_or("none")
    );
    let _ = writeln!(o, "\nMemory placement (first-touched pages)");
    let _ = writeln!(o, "  {:<8} {:>12} {:>7}   {:>12} {:>7}", "node", "before", "share", "after", "share");
    for n in &d.nodes {
        let _ = writeln!(
            o,
            "  {:<8} {:>12} {:>7}   {:>12} {:>7}",
            n.node,
            n.pages_before,
            pct(n.share_before),
            n.pages_after,
            pct(n.share_after)
        );
    }
    let _ = writeln!(o, "\nRemote share per thread (hinting faults | first touches | cross-node migrations)");
    let _ = writeln!(o, "  {:<20} {:>26}   {:>26}", "thread", "before", "after");
    let cell = |l: &Option<Locality>| match l {
        Some(l) => format!(
            "{:>4} | {:>4} | {:>5}",
            pct(l.remote_hinting_share),
            pct(l.remote_first_touch_share),
            l.cross_node_migrations
        ),
        None => "(absent)".to_string(),
    };
    let _ = writeln!(
        o,
        "  {:<20} {:>26}   {:>26}",
        "(process)",
        cell(&Some(d.before.clone())),
        cell(&Some(d.after.clone()))
    );
    for t in &d.threads {
        let _ = writeln!(o, "  {:<20} {:>26}   {:>26}", t.name, cell(&t.before), cell(&t.after));
    }
    o
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

#[cfg(test)]
mod verdict_tests {
    use super::*;
    use crate::capture::synthetic;

    /// The synthetic capture's report with every thread's run time on `run_on` (node -> ms)
    /// and first touches replaced by `touched` (node -> pages).
    fn report(run_on: &[(u32, f64)], touched: &[(u32, u64)]) -> Report {
        let (start, events, end) = synthetic::init_thread_capture();
        let mut r = crate::facts::SessionFacts { start, end }.replay(&events).0;
        for t in &mut r.threads {
            t.runtime_ms_by_node = run_on.iter().map(|(n, ms)| (n.to_string(), *ms)).collect();
        }
        r.totals.hinting_faults_local = 0;
        r.totals.hinting_faults_remote = 0;
        r.totals.first_touch_pages_by_node = touched.iter().map(|(n, p)| (n.to_string(), *p)).collect();
        r.totals.first_touch_pages = touched.iter().map(|(_, p)| p).sum();
        r
    }

    #[test]
    fn fixed_when_the_remote_share_falls_below_the_goal() {
        // Before: 16384 pages on node 0, threads ran 90 % on node 1. After: memory and threads on node 1.
        let before = report(&[(0, 100.0), (1, 900.0)], &[(0, 16384)]);
        let after = report(&[(1, 1000.0)], &[(1, 16384)]);
        let d = compare(&before, &after);
        assert_eq!(d.fixed, Some(true), "{}", d.outcome);
        assert_eq!(d.remote_before.measure, "first_touch_by_run_time");
        assert!((d.remote_before.share.unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(d.remote_before.remote_pages, 14746);
        assert_eq!(d.remote_after.share, Some(0.0));
        assert_eq!(
            d.outcome,
            "fixed: remote share 90 % -> 0 % (14746 -> 0 remote pages of 16384 -> 16384, by first touch by run time), below 5 %"
        );
        assert!(render(&d).starts_with("fixed: "));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["fixed"], serde_json::json!(true));
        assert_eq!(json["fixed_below"], serde_json::json!(0.05));
        // The same capture twice is not fixed.
        let same = compare(&before, &before);
        assert_eq!(same.fixed, Some(false));
        assert!(same.outcome.starts_with("not fixed: remote share 90 % -> 90 %"), "{}", same.outcome);
    }

    #[test]
    fn interleave_is_judged_at_its_own_level_and_snapshots_come_first() {
        let before = report(&[(1, 1000.0)], &[(0, 10000)]);
        let after = report(&[(1, 1000.0)], &[(0, 5000), (1, 5000)]);
        assert_eq!(compare(&before, &after).fixed, Some(false), "50 % remote is no fix at the 5 % level");
        let goal = crate::fixes::interleave_goal(2);
        let d = compare_with(&before, None, &after, None, goal);
        assert_eq!(d.fixed, Some(true), "{}", d.outcome);
        assert!(d.outcome.ends_with("below 55 %"), "{}", d.outcome);
        // A snapshot of the resident memory outranks the first touches, and
        // run time on nodes the process may no longer use does not count.
        let mut res = Resident { pages_by_node: BTreeMap::from([(1u32, 20000u64)]), allowed_nodes: Vec::new() };
        let wandered = report(&[(0, 250.0), (1, 750.0)], &[(1, 10000)]);
        let d = compare_with(&before, None, &wandered, Some(&res), FIXED_BELOW);
        assert_eq!(d.remote_after.measure, "resident_by_run_time");
        assert_eq!((d.remote_after.share, d.remote_after.remote_pages, d.fixed), (Some(0.25), 5000, Some(false)));
        assert!(
            d.outcome.ends_with("by resident by run time; before by first touch by run time), goal below 5 %"),
            "{}",
            d.outcome
        );
        // The main thread ran on node 0 before its exec under the fix; its
        // other threads only on node 1.
        let mut wandered = report(&[(1, 750.0)], &[(1, 10000)]);
        let pid = wandered.target.pid;
        for t in wandered.threads.iter_mut().filter(|t| t.tid == pid) {
            t.runtime_ms_by_node.insert("0".into(), 250.0);
        }
        assert!(compare_with(&before, None, &wandered, Some(&res), FIXED_BELOW).remote_after.share > Some(0.0));
        res.allowed_nodes = vec![1];
        let d = compare_with(&before, None, &wandered, Some(&res), FIXED_BELOW);
        assert_eq!((d.remote_after.share, d.fixed), (Some(0.0), Some(true)), "{}", d.outcome);
        // A snapshot that holds less than half the pages touched since is stale.
        res.pages_by_node = BTreeMap::from([(1u32, 4000u64)]);
        let d = compare_with(&before, None, &wandered, Some(&res), FIXED_BELOW);
        assert_eq!((d.remote_after.measure, d.remote_after.share), ("first_touch_by_run_time", Some(0.0)));
        // Threads other than the main one keep their run time wherever the
        // snapshot's CPUs say the process may run (it may predate their pinning).
        let mut pinned_later = report(&[(1, 750.0)], &[(1, 10000)]);
        for t in pinned_later.threads.iter_mut().filter(|t| t.tid != pid) {
            t.runtime_ms_by_node.insert("0".into(), 250.0);
        }
        let d = compare_with(&before, None, &pinned_later, Some(&res), FIXED_BELOW);
        assert!(d.remote_after.share > Some(0.1), "{}", d.outcome);
    }

    #[test]
    fn too_little_to_measure_is_said_not_guessed() {
        let before = report(&[(1, 1000.0)], &[(0, 10000)]);
        let after = report(&[(1, 1000.0)], &[(0, 10)]);
        let d = compare(&before, &after);
        assert_eq!(d.fixed, None);
        assert!(d.outcome.starts_with("cannot tell"), "{}", d.outcome);
    }
}
