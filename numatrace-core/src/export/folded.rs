//! Collapsed stacks (`process;thread;node;cause count`) for flamegraph.pl,
//! inferno and speedscope. The count is milliseconds: the run time the
//! kernel measured per node when the capture has it, otherwise the time the
//! thread was placed on a CPU of that node.
use std::{collections::BTreeMap, fmt::Write as _};

use super::timeline::{Timeline, UNATTRIBUTED};
use crate::report::Report;

/// A frame name without the separators of the folded format.
pub(super) fn frame(s: &str) -> String {
    s.chars().map(|c| if c == ';' || c.is_control() { '_' } else { c }).collect()
}

/// The folded stacks, one line each.
pub fn render(t: &Timeline, report: &Report) -> String {
    let mut out = String::new();
    let process = frame(&format!("{} ({})", t.process, t.pid));
    for lane in &t.lanes {
        let mut ms_by_node: BTreeMap<String, f64> = report
            .threads
            .iter()
            .find(|r| r.tid == lane.tid)
            .map(|r| r.runtime_ms_by_node.iter().map(|(n, ms)| (format!("node {n}"), *ms)).collect())
            .unwrap_or_default();
        if ms_by_node.values().sum::<f64>() <= 0.0 {
            ms_by_node.clear();
            for s in &lane.segments {
                let name = s.node.map_or("node ?".to_string(), |n| format!("node {n}"));
                *ms_by_node.entry(name).or_default() += (s.to_ns - s.from_ns) as f64 / 1e6;
            }
        }
        let cause = frame(lane.cause.as_deref().unwrap_or(UNATTRIBUTED));
        let thread = frame(&format!("{} {}", lane.comm, lane.tid));
        for (node, ms) in ms_by_node {
            let count = ms.round() as u64;
            if count > 0 {
                let _ = writeln!(out, "{process};{thread};{node};{cause} {count}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::timeline::tests::sample;

    #[test]
    fn one_line_per_thread_and_node_with_its_time() {
        let (capture, report) = sample();
        let t = Timeline::build(&capture, &report);
        let text = render(&t, &report);
        let mut total = 0u64;
        for line in text.lines() {
            let (stack, count) = line.rsplit_once(' ').unwrap();
            assert_eq!(stack.split(';').count(), 4, "{line}");
            assert!(stack.starts_with("app (4242);"), "{line}");
            total += count.parse::<u64>().unwrap();
        }
        // The synthetic capture has no kernel run time: lane time is used, and
        // the hopper's 13 stretches add up to its 8.5 s.
        let hopper: u64 = text
            .lines()
            .filter(|l| l.contains(";hopper 4245;"))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum();
        assert!((8499..=8501).contains(&hopper), "{text}");
        assert!(text.lines().any(|l| l.contains(";hopper 4245;node 1;")));
        assert!(total > 30_000, "{text}");
    }

    #[test]
    fn frames_cannot_break_the_format() {
        assert_eq!(frame("a;b\nc"), "a_b_c");
    }
}
