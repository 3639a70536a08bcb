//! The terminal rendering of a [`Report`].
use std::fmt::Write as _;

use std::collections::BTreeMap;

use super::{Report, ThreadReport};
use crate::{facts::TargetScope, machine::cpulist};

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn pages(n: u64) -> String {
    if n >= 256 { format!("{n} ({:.1} MiB)", n as f64 * 4096.0 / (1u64 << 20) as f64) } else { n.to_string() }
}

/// The ranked causes with their evidence and fixes.
fn render_causes(o: &mut String, r: &Report) {
    // A sampled capture's cause pages are of the traced regions: the floor is
    // for the whole process.
    let scale = r.sampling.as_ref().map_or(1.0, |s| 1.0 / s.traced_share.max(f64::MIN_POSITIVE));
    let significant = |c: &&crate::attribution::Cause| {
        c.pages as f64 * scale >= crate::attribution::SIGNIFICANT_PAGES as f64
            || (c.pages == 0 && !c.evidence.is_empty())
    };
    let shown: Vec<_> = r.causes.iter().filter(significant).collect();
    if shown.is_empty() {
        return;
    }
    let m = &r.magnitude;
    if let Some(cost) = m.cost_line() {
        let _ = writeln!(o, "Cost: {cost}");
    }
    let basis = match m.share_basis {
        crate::attribution::magnitude::ShareBasis::RemoteHintingFaults => "shares of remote hinting faults",
        crate::attribution::magnitude::ShareBasis::RemotePagesByRunTime => {
            "shares of remote pages, weighed by where their users ran"
        }
    };
    if m.of_consequence {
        let _ = writeln!(o, "\nCauses of remote memory, largest first ({basis})");
    } else {
        let _ = writeln!(o, "\nSmall findings, below the floor of consequence ({basis})");
    }
    for (i, c) in shown.iter().enumerate() {
        let _ = writeln!(
            o,
            "  {}. {:<28} {:>5.1}%  {} pages  threads {}  {:.1}-{:.1} s",
            i + 1,
            c.kind.name(),
            c.share * 100.0,
            c.pages,
            tid_list(&c.threads),
            c.window.start_s,
            c.window.end_s
        );
        let _ = writeln!(o, "     {}", c.summary);
        for e in c.evidence.iter().take(3) {
            let _ = writeln!(o, "     - {e}");
        }
        for site in c.sites.iter().take(SITES_SHOWN) {
            let _ = writeln!(
                o,
                "     site: {} pages  threads {}  {}",
                site.pages,
                tid_list(&site.threads),
                site_chain(&site.frames)
            );
        }
        // The top cause gets every step; the others their first.
        let steps = if i == 0 { c.fixes.len() } else { c.fixes.len().min(1) };
        for f in c.fixes.iter().take(steps) {
            let mark = if f.destructive { "DESTRUCTIVE: " } else { "" };
            let _ = writeln!(o, "     fix: {mark}{}", f.title);
            for cmd in &f.commands {
                let _ = writeln!(o, "          {cmd}");
            }
            for note in &f.notes {
                let _ = writeln!(o, "          note: {note}");
            }
            if let (0, Some(cost)) = (i, &f.cost) {
                let _ = writeln!(o, "          cost: {cost}");
            }
            if i == 0 && !f.verify.is_empty() {
                let _ = writeln!(o, "          verify: {}", f.verify);
            }
        }
        for b in &c.blocked {
            let _ = writeln!(o, "     cannot apply as is: {b}");
        }
    }
    if let Some(stacks) = &r.stacks {
        let _ = writeln!(
            o,
            "  call stacks: {} taken, {} lost, {} distinct, {} truncated ({} of the {} pages they placed)",
            stacks.taken, stacks.lost, stacks.distinct, stacks.truncated, stacks.truncated_pages, stacks.pages
        );
        if let Some(hint) = &stacks.hint {
            let _ = writeln!(o, "     {hint}");
        }
    }
    let _ = writeln!(
        o,
        "  verify any fix: capture again with -o after.ntrace and compare with `numatrace diff before.ntrace after.ntrace`"
    );
}

/// Call sites shown per cause; `--json` has up to ten.
const SITES_SHOWN: usize = 3;
/// Frames of a site's chain shown.
const SITE_FRAMES_SHOWN: usize = 4;

/// `function (file:line) <- caller (file:line) <- ...`, innermost first,
/// past the standard library's own frames (a write_volatile says nothing).
fn site_chain(frames: &[crate::stacks::Frame]) -> String {
    let library = |f: &crate::stacks::Frame| {
        f.function.as_deref().is_some_and(|n| ["core::", "std::", "alloc::"].iter().any(|p| n.starts_with(p)))
    };
    let skip = frames.iter().take_while(|f| library(f)).count();
    let shown = if skip == frames.len() { frames } else { &frames[skip..] };
    if shown.is_empty() {
        return "(no frames: the stack was not kept)".into();
    }
    let labels: Vec<String> = shown.iter().take(SITE_FRAMES_SHOWN).map(|f| f.label()).collect();
    labels.join(" <- ")
}

/// Threads a cause's line names; `--json` names all.
const CAUSE_TIDS_SHOWN: usize = 12;

/// `1,2,3` or, for a cause of hundreds of processes, the first few and how many more.
fn tid_list(tids: &[u32]) -> String {
    let shown: Vec<String> = tids.iter().take(CAUSE_TIDS_SHOWN).map(ToString::to_string).collect();
    match tids.len().saturating_sub(CAUSE_TIDS_SHOWN) {
        0 => shown.join(","),
        more => format!("{},... ({more} more)", shown.join(",")),
    }
}

/// How many threads the text report lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThreadsShown {
    /// Every thread when there are at most TOP_THREADS; else the threads
    /// grouped by name pattern and lifetime, the top TOP_THREADS groups by
    /// remote memory and one line for the rest.
    #[default]
    Top,
    /// Every thread, one line each.
    All,
}

/// Lines of the thread table before threads are grouped.
pub const TOP_THREADS: usize = 20;

/// A thread name with its numbers taken out: `worker-17` -> `worker-%d`.
pub fn name_pattern(comm: &str) -> String {
    let mut out = String::with_capacity(comm.len());
    let mut in_digits = false;
    for c in comm.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push_str("%d");
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

fn lifetime(t: &ThreadReport) -> &'static str {
    match (t.born_during_capture, t.exited_during_capture) {
        (false, false) => "whole capture",
        (true, false) => "born",
        (false, true) => "exited",
        (true, true) => "born, exited",
    }
}

/// Threads with one name pattern and lifetime, summed.
#[derive(Default)]
struct Group<'a> {
    pattern: String,
    lifetime: &'static str,
    threads: Vec<&'a ThreadReport>,
    migrations: Option<u64>,
    cross_node_migrations: u64,
    first_touch: BTreeMap<String, u64>,
    remote_first_touch: u64,
    runtime_ms: BTreeMap<String, f64>,
    hinting_local: u64,
    hinting_remote: u64,
}

impl Group<'_> {
    /// Remote memory: pages first touched remote and remote hinting faults.
    fn remote(&self) -> u64 {
        self.remote_first_touch + self.hinting_remote
    }
}

fn groups(r: &Report) -> Vec<Group<'_>> {
    let mut by_key: BTreeMap<(String, &'static str), Group<'_>> = BTreeMap::new();
    for t in &r.threads {
        let key = (name_pattern(&t.comm), lifetime(t));
        let g = by_key.entry(key.clone()).or_insert_with(|| Group {
            pattern: key.0,
            lifetime: key.1,
            migrations: Some(0),
            ..Default::default()
        });
        g.threads.push(t);
        g.migrations = g.migrations.zip(t.migrations).map(|(a, b)| a + b);
        g.cross_node_migrations += t.cross_node_migrations;
        for (n, p) in &t.first_touch_pages {
            *g.first_touch.entry(n.clone()).or_default() += p;
        }
        g.remote_first_touch += t.remote_first_touch_pages;
        for (n, ms) in &t.runtime_ms_by_node {
            *g.runtime_ms.entry(n.clone()).or_default() += ms;
        }
        g.hinting_local += t.hinting_faults_local;
        g.hinting_remote += t.hinting_faults_remote;
    }
    let mut out: Vec<Group<'_>> = by_key.into_values().collect();
    let touched = |g: &Group<'_>| g.first_touch.values().sum::<u64>();
    let ran = |g: &Group<'_>| g.runtime_ms.values().sum::<f64>();
    out.sort_by(|a, b| {
        b.remote()
            .cmp(&a.remote())
            .then(touched(b).cmp(&touched(a)))
            .then(ran(b).total_cmp(&ran(a)))
            .then(a.pattern.cmp(&b.pattern))
    });
    out
}

fn node_list<V: std::fmt::Display>(m: &BTreeMap<String, V>, fmt: impl Fn(&V) -> String) -> String {
    let s = m.iter().map(|(n, v)| format!("{n}:{}", fmt(v))).collect::<Vec<_>>().join(" ");
    if s.is_empty() { "-".into() } else { s }
}

/// Processes the text report lists; `--json` lists all.
pub const TOP_PROCESSES: usize = 10;

/// A command line cut to `max` characters.
fn short_command(words: &[String], max: usize) -> String {
    let line = words.join(" ");
    if line.chars().count() <= max {
        line
    } else {
        format!("{}...", line.chars().take(max.saturating_sub(3)).collect::<String>())
    }
}

/// One line per process, the top ones by remote pages (several processes only).
fn render_processes(o: &mut String, r: &Report) {
    if r.processes.len() < 2 {
        return;
    }
    let mut ranked: Vec<&super::ProcessReport> = r.processes.iter().collect();
    ranked.sort_by(|a, b| b.remote_pages.cmp(&a.remote_pages).then(a.pid.cmp(&b.pid)));
    let shown = ranked.len().min(TOP_PROCESSES);
    let _ = writeln!(
        o,
        "\nProcesses: {}, {} by remote pages (--json lists all)",
        r.processes.len(),
        if shown < ranked.len() { format!("the top {shown}") } else { "all".to_string() }
    );
    let _ = writeln!(
        o,
        "  {:>8} {:<16} {:>7} {:>22} {:>8}  {:<32} command",
        "pid", "comm", "threads", "memory by node (MiB)", "remote", "top cause"
    );
    for p in &ranked[..shown] {
        let mem = node_list(&p.memory_by_node, |b| format!("{}", b >> 20));
        let mem = match p.memory_source {
            super::MemorySource::Snapshot => mem,
            super::MemorySource::FirstTouch => format!("{mem} (ft)"),
        };
        let top =
            p.causes.first().map_or_else(|| "-".to_string(), |c| format!("{} {:.0}%", c.kind.name(), c.share * 100.0));
        let _ = writeln!(
            o,
            "  {:>8} {:<16} {:>7} {:>22} {:>8}  {:<32} {}",
            p.pid,
            p.comm,
            p.threads.len() as u64 + p.exited_threads_summed,
            mem,
            p.remote_pages,
            top,
            short_command(&p.command, 60)
        );
    }
    let rest = &ranked[shown..];
    if !rest.is_empty() {
        let threads: u64 = rest.iter().map(|p| p.threads.len() as u64 + p.exited_threads_summed).sum();
        let remote: u64 = rest.iter().map(|p| p.remote_pages).sum();
        let _ = writeln!(o, "  ... and {} more processes ({threads} threads): {remote} remote pages", rest.len());
    }
    if ranked.iter().any(|p| p.memory_source == super::MemorySource::FirstTouch) {
        let _ =
            writeln!(o, "  (ft): no snapshot of the process: the memory its threads first touched during the capture");
    }
}

/// The thread table: every thread, or the groups when there are too many.
fn render_threads(o: &mut String, r: &Report, shown: ThreadsShown) {
    let grouped = shown == ThreadsShown::Top && r.threads.len() > TOP_THREADS;
    if !grouped {
        let _ = writeln!(o, "\nThreads");
        let _ = writeln!(
            o,
            "  {:>8} {:<16} {:>6} {:>6} {:>24} {:>8} {:>16} {:>13}",
            "tid", "comm", "migr", "x-node", "first touch by node", "remote", "ran on node (ms)", "hinting l/r"
        );
        for t in &r.threads {
            let _ = writeln!(
                o,
                "  {:>8} {:<16} {:>6} {:>6} {:>24} {:>8} {:>16} {:>13}",
                t.tid,
                t.comm,
                t.migrations.map_or("-".to_string(), |m| m.to_string()),
                t.cross_node_migrations,
                node_list(&t.first_touch_pages, |p| p.to_string()),
                t.remote_first_touch_pages,
                node_list(&t.runtime_ms_by_node, |ms| format!("{ms:.0}")),
                format!("{}/{}", t.hinting_faults_local, t.hinting_faults_remote)
            );
        }
        return;
    }
    let all = groups(r);
    let _ = writeln!(
        o,
        "\nThreads: {} in {} groups by name and lifetime, the top {} by remote memory (--threads all lists each)",
        r.threads.len(),
        all.len(),
        TOP_THREADS.min(all.len())
    );
    let _ = writeln!(
        o,
        "  {:>8} {:<16} {:<13} {:>6} {:>6} {:>24} {:>8} {:>16} {:>13}",
        "threads",
        "name",
        "lifetime",
        "migr",
        "x-node",
        "first touch by node",
        "remote",
        "ran on node (ms)",
        "hinting l/r"
    );
    for g in all.iter().take(TOP_THREADS) {
        // A group of one is that thread: its tid and its own name.
        let (count, name) = match g.threads.as_slice() {
            [one] => (format!("tid {}", one.tid), one.comm.clone()),
            many => (many.len().to_string(), g.pattern.clone()),
        };
        let _ = writeln!(
            o,
            "  {:>8} {:<16} {:<13} {:>6} {:>6} {:>24} {:>8} {:>16} {:>13}",
            count,
            name,
            g.lifetime,
            g.migrations.map_or("-".to_string(), |m| m.to_string()),
            g.cross_node_migrations,
            node_list(&g.first_touch, |p| p.to_string()),
            g.remote_first_touch,
            node_list(&g.runtime_ms, |ms| format!("{ms:.0}")),
            format!("{}/{}", g.hinting_local, g.hinting_remote)
        );
    }
    let rest = &all[TOP_THREADS.min(all.len())..];
    if !rest.is_empty() {
        let threads: usize = rest.iter().map(|g| g.threads.len()).sum();
        let touched: u64 = rest.iter().flat_map(|g| g.first_touch.values()).sum();
        let remote: u64 = rest.iter().map(|g| g.remote_first_touch).sum();
        let hinting: u64 = rest.iter().map(|g| g.hinting_remote).sum();
        let _ = writeln!(
            o,
            "  and {} more groups ({threads} threads): {touched} pages first touched, {remote} remote; {hinting} remote hinting faults",
            rest.len()
        );
    }
}

/// The exited threads summed instead of listed (a fork-heavy process).
fn render_summed_threads(o: &mut String, r: &Report) {
    for s in &r.exited_threads_summed {
        let _ = writeln!(
            o,
            "  and {} exited threads of pid {} summed, not listed (more than {} threads seen; each placed at most {} pages): first touch by node {}, {} remote; {} migrations sent, {} across nodes; ran on node (ms) {}",
            s.threads,
            s.tgid,
            crate::aggregate::MAX_THREADS_LISTED,
            crate::aggregate::SUM_MAX_PAGES,
            node_list(&s.first_touch_pages, |p| p.to_string()),
            s.remote_first_touch_pages,
            s.migrations,
            s.cross_node_migrations,
            node_list(&s.runtime_ms_by_node, |ms| format!("{ms:.0}"))
        );
    }
}

/// How many changes of the sampling rate the text lists (`--json` has all).
const RATE_STEPS_SHOWN: usize = 8;

fn percent_error(e: &crate::sampling::Estimate) -> String {
    format!("{} (±{:.1}%)", e.estimate, e.relative_error * 100.0)
}

/// What the overhead budget left out, before anything that counts pages.
fn render_sampling(o: &mut String, s: &super::SamplingReport) {
    let _ = writeln!(
        o,
        "sampled under an overhead budget of {}% of one core (measured: {:.2}%): first touches traced in 1 of {} 2 MiB regions at the end (at most 1 of {})",
        s.budget_percent, s.measured_cpu_percent, s.final_one_in, s.max_one_in
    );
    let _ = writeln!(
        o,
        "  {:.1}% of the {} first-touch pages the kernel counted were traced; the remote share is scaled to the whole process, page counts of causes, threads and totals are of the traced regions",
        s.traced_share * 100.0,
        s.first_touch_pages_counted
    );
    if s.traced_share < 1.0 {
        let by_node = s
            .first_touch_pages_by_node
            .iter()
            .map(|(n, e)| format!("node {n}: {}", percent_error(e)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            o,
            "  whole process, scaled (one sigma): remote first touches {}; first touches {by_node}",
            percent_error(&s.remote_first_touch_pages)
        );
    }
    let steps = s
        .rate_over_time
        .iter()
        .take(RATE_STEPS_SHOWN)
        .map(|c| {
            if c.attached { format!("{:.1} s: 1 in {}", c.at_s, c.one_in) } else { format!("{:.1} s: paused", c.at_s) }
        })
        .collect::<Vec<_>>()
        .join(", ");
    if !steps.is_empty() {
        let more = s.rate_over_time.len().saturating_sub(RATE_STEPS_SHOWN);
        let more = if more > 0 {
            format!(" and {more} more changes (--json: sampling.rate_over_time)")
        } else {
            String::new()
        };
        let _ = writeln!(o, "  rate over time: {steps}{more}");
    }
    if s.paused_s > 0.0 {
        let _ = writeln!(
            o,
            "  first-touch hooks paused {:.1} s in all (to keep the budget; --no-budget-pauses never pauses): pages first touched then are in no count",
            s.paused_s
        );
    }
}

/// Renders the human report, threads as `top` shows them.
pub fn render(r: &Report) -> String {
    render_with(r, ThreadsShown::Top)
}

/// Renders the human report.
pub fn render_with(r: &Report, threads: ThreadsShown) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "numatrace {} on Linux {}", r.tool.version, r.tool.kernel);
    let what = match &r.target.command {
        Some(cmd) => format!("`{}` (pid {})", cmd.join(" "), r.target.pid),
        None => format!("pid {} ({})", r.target.pid, r.target.comm),
    };
    // A service: what was named, and how many processes it held.
    let processes = match r.processes.len() {
        1 => "1 process".to_string(),
        n => format!("{n} processes"),
    };
    let what = match &r.target.scope {
        TargetScope::Process => what,
        TargetScope::Processes => format!(
            "pids {}: {processes}",
            r.target.pids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ),
        TargetScope::Tree => format!("the process tree of {what}: {processes}"),
        TargetScope::Cgroup(cg) => format!("cgroup {}: {processes}", cg.path),
        TargetScope::Unit { name, .. } => format!("unit {name}: {processes}"),
        TargetScope::Container { id, runtime, .. } => {
            format!("{} container {}: {processes}", runtime.name(), id.get(..12).unwrap_or(id))
        }
    };
    let _ = writeln!(o, "traced {what} for {:.1} s, stopped by {}", r.duration_s, r.stopped_by);
    if let Some(s) = &r.sampling {
        render_sampling(&mut o, s);
    }
    if !r.multi_node {
        let _ = writeln!(
            o,
            "\nThis machine has one NUMA node: threads and memory cannot drift apart here, and pinning brings no NUMA benefit."
        );
    } else {
        let _ = writeln!(o, "\n{}", r.headline);
    }
    render_causes(&mut o, r);
    if !r.host_findings.is_empty() {
        let _ = writeln!(o, "\nHost settings");
        for f in &r.host_findings {
            let _ = writeln!(o, "  {}: {}", f.kind, f.evidence);
            for fix in f.fixes.iter().take(1) {
                let mark = if fix.destructive { "DESTRUCTIVE: " } else { "" };
                let _ = writeln!(o, "     fix: {mark}{}", fix.title);
                for cmd in &fix.commands {
                    let _ = writeln!(o, "          {cmd}");
                }
            }
        }
    }

    let _ = writeln!(o, "\nTopology");
    for n in &r.topology.nodes {
        let _ = writeln!(
            o,
            "  node {}: cpus {:<12} memory {} ({} free)",
            n.id,
            cpulist::format(&n.cpus),
            mib(n.mem_total_bytes),
            mib(n.mem_free_bytes)
        );
    }

    render_processes(&mut o, r);
    render_threads(&mut o, r, threads);
    render_summed_threads(&mut o, r);

    let tt = &r.totals;
    let _ = writeln!(o, "\nTotals");
    let _ = writeln!(o, "  threads                 {}", tt.threads);
    let _ = writeln!(o, "  migrations              {} ({} across nodes)", tt.migrations, tt.cross_node_migrations);
    if tt.migrations_within_node_counted > 0 {
        let _ = writeln!(
            o,
            "                          {} within a node, counted by the kernel only (--all-migrations sends them)",
            tt.migrations_within_node_counted
        );
    }
    let by_node =
        tt.first_touch_pages_by_node.iter().map(|(n, p)| format!("node {n}: {p}")).collect::<Vec<_>>().join(", ");
    let _ = writeln!(o, "  first-touch pages       {} [{}]", pages(tt.first_touch_pages), by_node);
    let u = &tt.unknown_nodes;
    if u.page_outside_known_memory + u.cpu_without_node > 0 {
        let _ = writeln!(
            o,
            "                          of them on no known node: {} outside the memory blocks read at start, {} from a CPU with no node",
            u.page_outside_known_memory, u.cpu_without_node
        );
    }
    let _ = writeln!(o, "  remote first touches    {}", pages(tt.remote_first_touch_pages));
    let _ = writeln!(
        o,
        "  balancer task moves     {}  swaps {}  sticks {}",
        tt.numa_task_moves, tt.numa_task_swaps, tt.numa_task_sticks
    );
    let _ =
        writeln!(o, "  hinting faults          {} local, {} remote", tt.hinting_faults_local, tt.hinting_faults_remote);
    if tt.page_migrations.is_empty() {
        let _ = writeln!(o, "  page migrations         none");
    } else {
        let list = tt.page_migrations.iter().map(|(r, p)| format!("{r}: {p}")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(o, "  page migrations         {list}");
    }
    if tt.misplaced_migration_calls > 0 {
        let _ = writeln!(
            o,
            "  misplaced migrations    {} calls, {:.1} ms in the kernel",
            tt.misplaced_migration_calls, tt.misplaced_migration_ms
        );
    }
    let _ = writeln!(o, "  lost events             {}", r.lost_events);
    for (kind, l) in &r.lost {
        let _ = writeln!(
            o,
            "    {kind}: {} events ({} pages/faults) did not fit the ring; raise --ring-size",
            l.events, l.units
        );
    }
    for (kind, l) in &r.dropped_by_memory_cap {
        let _ = writeln!(
            o,
            "    {kind}: {} events ({} pages/faults) were pushed out of the --ring window by its memory cap; shorten --ring",
            l.events, l.units
        );
    }
    if r.unread_events > 0 {
        let _ = writeln!(
            o,
            "  unread events           {} sent by the kernel but never read (a numatrace bug: please report it)",
            r.unread_events
        );
    }

    let skipped: Vec<_> = r.sources.iter().filter(|s| !s.attached).collect();
    if !skipped.is_empty() {
        let _ = writeln!(o, "\nSources this kernel could not give");
        for s in skipped {
            let _ = writeln!(o, "  {}: {}", s.name, s.reason.as_deref().unwrap_or("unknown"));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{capture::synthetic, machine::Topology};

    /// A process of 10 000 threads: 9 990 `worker-N` (a few touching remote
    /// memory), 9 `io-N` and the main thread.
    fn big() -> Report {
        const S: u64 = 1_000_000_000;
        let t0 = 1_000 * S;
        let pid = 5000;
        let topology = Topology::synthetic(&[vec![0, 1], vec![2, 3]]);
        let start = synthetic::start_facts(&topology, t0, pid, &[(pid, "db", 0)]);
        let mut events = Vec::new();
        for k in 1..10_000u32 {
            let name = if k < 10 { format!("io-{k}") } else { format!("worker-{k}") };
            events.push(synthetic::thread_new(t0 + u64::from(k), pid, pid + k, pid, &name, k % 4));
        }
        // worker-42 touches 300 pages remote; every io thread 10 pages local.
        events.push(synthetic::first_touch(t0 + S, pid, pid + 42, 7, 300, 1, 0));
        for k in 1..10u32 {
            events.push(synthetic::first_touch(t0 + S, pid, pid + k, 100 + u64::from(k), 10, 0, 0));
        }
        let end = crate::facts::EndFacts::cut_short(2.0, crate::facts::StopReason::Duration);
        crate::facts::SessionFacts { start, end }.replay(&events).0
    }

    #[test]
    fn ten_thousand_threads_make_a_short_report_unless_all_are_asked_for() {
        let r = big();
        assert_eq!(r.threads.len(), 10_000);
        let text = render(&r);
        let lines = text.lines().count();
        assert!(lines < 80, "{lines} lines:\n{text}");
        let table: Vec<&str> =
            text.lines().skip_while(|l| !l.starts_with("Threads:")).take_while(|l| !l.is_empty()).collect();
        assert!(table[0].starts_with("Threads: 10000 in 3 groups by name and lifetime"), "{}", table[0]);
        // The group with remote memory comes first, with its count and pattern.
        assert!(
            table[2].contains("9990 worker-%d") && table[2].contains("born") && table[2].contains("0:300"),
            "{}",
            table[2]
        );
        assert!(table[3].contains("9 io-%d") && table[3].contains("0:90"), "{}", table[3]);
        assert!(table[4].contains("tid 5000 db") && table[4].contains("whole capture"), "{}", table[4]);
        let all = render_with(&r, ThreadsShown::All);
        assert!(all.lines().count() > 10_000);
        assert!(all.contains("worker-9999"));
        // JSON keeps every thread whatever the text shows.
        assert_eq!(serde_json::to_value(&r).unwrap()["threads"].as_array().map(Vec::len), Some(10_000));
    }

    /// 8 regions of 512 pages traced (4 remote) of 64 counted: the report
    /// says the rate and the share, and scales with an error; without a
    /// budget there is no sampling section at all.
    #[test]
    fn a_sampled_capture_says_its_rate_share_and_precision() {
        use crate::sampling::{SamplingChange, SamplingFacts};
        const S: u64 = 1_000_000_000;
        let (t0, pid) = (1_000 * S, 700);
        let topology = Topology::synthetic(&[vec![0, 1], vec![2, 3]]);
        let start = synthetic::start_facts(&topology, t0, pid, &[(pid, "app", 0)]);
        let events: Vec<_> =
            (0..8u64).map(|r| synthetic::first_touch(t0 + S, pid, pid, r * 97, 512, 0, (r % 2) as u16)).collect();
        let mut end = crate::facts::EndFacts::cut_short(3.0, crate::facts::StopReason::Duration);
        end.kernel.counters = vec![0; numatrace_common::COUNTER_SLOTS as usize];
        end.kernel.counters[numatrace_common::Counter::FirstTouchPages as usize] = 64 * 512;
        end.kernel.counters[numatrace_common::Counter::UnsampledFirstTouchPages as usize] = 56 * 512;
        let plain = crate::facts::SessionFacts { start: start.clone(), end: end.clone() }.replay(&events).0;
        assert!(plain.sampling.is_none());
        assert!(!render(&plain).contains("sampled"));
        assert!(serde_json::to_value(&plain).unwrap().get("sampling").is_none());

        end.sampling = Some(SamplingFacts {
            budget_percent: 1.0,
            changes: vec![
                SamplingChange { at_ns: t0, one_in: 1, attached: true },
                SamplingChange { at_ns: t0 + S / 2, one_in: 8, attached: true },
            ],
            measured_cpu_ns: S / 100,
            measured_wall_ns: 2 * S,
            ..Default::default()
        });
        let r = crate::facts::SessionFacts { start, end }.replay(&events).0;
        let s = r.sampling.as_ref().expect("a sampling section");
        assert_eq!((s.final_one_in, s.first_touch_pages_traced), (8, 8 * 512));
        assert!((s.traced_share - 0.125).abs() < 1e-9);
        assert_eq!(s.remote_first_touch_pages.traced, 4 * 512);
        assert_eq!(s.remote_first_touch_pages.estimate, 32 * 512);
        assert!(s.remote_first_touch_pages.relative_error > 0.3, "{s:?}");
        // The magnitude judges the whole process: 64 regions' pages, not the 8 traced.
        assert_eq!(r.magnitude.memory_pages, 64 * 512);
        assert_eq!(plain.magnitude.memory_pages, 64 * 512, "the kernel's counters say what was sampled");
        let text = render(&r);
        assert!(text.contains("budget of 1% of one core (measured: 0.50%)"), "{text}");
        assert!(text.contains("1 of 8 2 MiB regions"), "{text}");
        assert!(text.contains("12.5% of the 32768 first-touch pages"), "{text}");
        assert!(text.contains("rate over time: 0.0 s: 1 in 1, 0.5 s: 1 in 8"), "{text}");
        assert!(text.contains("remote first touches 16384 (±"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["sampling"]["rate_over_time"][1]["one_in"], 8);
        assert_eq!(json["kernel_counters"]["first_touch_pages_unsampled"], 56 * 512);
    }

    #[test]
    fn more_groups_than_the_top_end_in_one_line() {
        let mut r = big();
        // Give 30 threads names of their own: 30 groups of one, plus the rest.
        for (k, t) in r.threads.iter_mut().skip(100).take(30).enumerate() {
            t.comm = format!("own{}x", "y".repeat(k));
        }
        let text = render(&r);
        let table: Vec<&str> =
            text.lines().skip_while(|l| !l.starts_with("Threads:")).take_while(|l| !l.is_empty()).collect();
        assert_eq!(table.len(), 2 + TOP_THREADS + 1, "{}", table.join("\n"));
        assert!(table.last().is_some_and(|l| l.starts_with("  and 13 more groups (")), "{}", table.join("\n"));
        assert_eq!(name_pattern("worker-17"), "worker-%d");
        assert_eq!(name_pattern("pool-3-thread-12"), "pool-%d-thread-%d");
        assert_eq!(name_pattern("db"), "db");
    }
}
