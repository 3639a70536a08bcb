//! Collapsed stacks by call site (`export --format folded --by stack`):
//! `cause;thread;outermost frame;...;innermost frame count`, the count in
//! remote pages, so that flamegraph.pl, inferno or speedscope draw where
//! the remote memory came from. A site's pages are split over its threads
//! in proportion to what each placed from it.
use std::{collections::BTreeMap, fmt::Write as _};

use super::folded::frame;
use crate::{aggregate::Aggregator, report::Report, stacks::StackKey};

/// The folded stacks of every cause's sites; empty for a capture without stacks.
pub fn render(report: &Report, agg: &Aggregator) -> String {
    // Per stack, what each thread placed (or faulted remotely) with it.
    let mut by_stack: BTreeMap<StackKey, BTreeMap<u32, u64>> = BTreeMap::new();
    for (_, stack, touch) in agg.stacks.iter() {
        *by_stack.entry(stack).or_default().entry(touch.tid).or_default() += touch.pages + touch.remote_faults;
    }
    let mut lines: BTreeMap<String, u64> = BTreeMap::new();
    for cause in &report.causes {
        for site in &cause.sites {
            let weights: Vec<(u32, u64)> = by_stack
                .get(&site.stack)
                .map(|t| t.iter().filter(|(tid, _)| site.threads.contains(tid)).map(|(t, w)| (*t, *w)).collect())
                .unwrap_or_default();
            let total: u64 = weights.iter().map(|(_, w)| w).sum();
            let frames: Vec<String> = if site.frames.is_empty() {
                vec![format!("stack {}", site.stack.id)]
            } else {
                site.frames.iter().rev().map(|f| frame(&f.label())).collect()
            };
            for (tid, w) in weights {
                let pages = (site.pages as f64 * w as f64 / total.max(1) as f64).round() as u64;
                if pages == 0 {
                    continue;
                }
                let comm = agg.threads.get(&tid).map_or_else(|| format!("thread {tid}"), |t| t.comm.clone());
                let stack = format!("{};{};{}", cause.kind.name(), frame(&comm), frames.join(";"));
                *lines.entry(stack).or_default() += pages;
            }
        }
    }
    let mut out = String::new();
    for (stack, pages) in lines {
        let _ = writeln!(out, "{stack} {pages}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        attribution::{CauseKind, sites::Site},
        stacks::Frame,
    };

    #[test]
    fn rooted_at_cause_and_thread_outermost_frame_first() {
        let (capture, mut report) = crate::export::timeline::tests::sample();
        let (_, mut agg) = capture.replay();
        let key = StackKey { tgid: 4242, id: 3 };
        let tid = agg.threads.values().next().map(|t| t.tid).unwrap_or_default();
        agg.stacks.first_touch(crate::aggregate::RegionKey { tgid: 4242, region: 9 }, 3, tid, 512, false);
        let named = |f: &str, line| Frame {
            function: Some(f.into()),
            file: Some(format!("src/{f}.rs")),
            line: Some(line),
            ..Default::default()
        };
        report.causes.truncate(1);
        report.causes[0].kind = CauseKind::FirstTouchByOtherThread;
        report.causes[0].sites = vec![Site {
            frames: vec![named("fill", 7), named("init; setup", 3)],
            pages: 300,
            threads: vec![tid],
            stack: key,
        }];
        let text = render(&report, &agg);
        let comm = &agg.threads.get(&tid).map(|t| t.comm.clone()).unwrap_or_default();
        assert_eq!(
            text,
            format!("first_touch_by_other_thread;{comm};init_ setup (src/init; setup.rs:3);fill (src/fill.rs:7) 300\n")
                .replace("init; setup.rs", "init_ setup.rs")
        );
    }
}
