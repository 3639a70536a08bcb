//! The terminal rendering of a [`Report`].
use std::fmt::Write as _;

use super::Report;
use crate::cpulist;

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn pages(n: u64) -> String {
    if n >= 256 { format!("{n} ({:.1} MiB)", n as f64 * 4096.0 / (1u64 << 20) as f64) } else { n.to_string() }
}

/// The ranked causes with their evidence and fixes.
fn render_causes(o: &mut String, r: &Report) {
    let significant = |c: &&crate::attribution::Cause| c.pages >= crate::attribution::SIGNIFICANT_PAGES || (c.pages == 0 && !c.evidence.is_empty());
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
        crate::attribution::magnitude::ShareBasis::RemotePagesByRunTime => "shares of remote pages, weighed by where their users ran",
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
            c.threads.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            c.window.start_s,
            c.window.end_s
        );
        let _ = writeln!(o, "     {}", c.summary);
        for e in c.evidence.iter().take(3) {
            let _ = writeln!(o, "     - {e}");
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
            if i == 0 && !f.verify.is_empty() {
                let _ = writeln!(o, "          verify: {}", f.verify);
            }
        }
        for b in &c.blocked {
            let _ = writeln!(o, "     cannot apply as is: {b}");
        }
    }
    let _ = writeln!(o, "  verify any fix: capture again with -o after.ntrace and compare with `numatrace diff before.ntrace after.ntrace`");
}

/// Renders the human report.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "numatrace {} on Linux {}", r.tool.version, r.tool.kernel);
    let what = match &r.target.command {
        Some(cmd) => format!("`{}` (pid {})", cmd.join(" "), r.target.pid),
        None => format!("pid {} ({})", r.target.pid, r.target.comm),
    };
    let _ = writeln!(o, "traced {what} for {:.1} s, stopped by {}", r.duration_s, r.stopped_by);
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

    let _ = writeln!(o, "\nThreads");
    let _ = writeln!(
        o,
        "  {:>8} {:<16} {:>6} {:>6} {:>24} {:>8} {:>16} {:>13}",
        "tid", "comm", "migr", "x-node", "first touch by node", "remote", "ran on node (ms)", "hinting l/r"
    );
    for t in &r.threads {
        let ft = t.first_touch_pages.iter().map(|(n, p)| format!("{n}:{p}")).collect::<Vec<_>>().join(" ");
        let rt = t.runtime_ms_by_node.iter().map(|(n, ms)| format!("{n}:{ms:.0}")).collect::<Vec<_>>().join(" ");
        let _ = writeln!(
            o,
            "  {:>8} {:<16} {:>6} {:>6} {:>24} {:>8} {:>16} {:>13}",
            t.tid,
            t.comm,
            t.migrations.map_or("-".to_string(), |m| m.to_string()),
            t.cross_node_migrations,
            if ft.is_empty() { "-".into() } else { ft },
            t.remote_first_touch_pages,
            if rt.is_empty() { "-".into() } else { rt },
            format!("{}/{}", t.hinting_faults_local, t.hinting_faults_remote)
        );
    }

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
    let by_node = tt.first_touch_pages_by_node.iter().map(|(n, p)| format!("node {n}: {p}")).collect::<Vec<_>>().join(", ");
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
    let _ = writeln!(o, "  balancer task moves     {}  swaps {}  sticks {}", tt.numa_task_moves, tt.numa_task_swaps, tt.numa_task_sticks);
    let _ = writeln!(o, "  hinting faults          {} local, {} remote", tt.hinting_faults_local, tt.hinting_faults_remote);
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
        let _ = writeln!(o, "    {kind}: {} events ({} pages/faults) did not fit the ring; raise --ring-size", l.events, l.units);
    }
    for (kind, l) in &r.dropped_by_memory_cap {
        let _ = writeln!(
            o,
            "    {kind}: {} events ({} pages/faults) were pushed out of the --ring window by its memory cap; shorten --ring",
            l.events, l.units
        );
    }
    if r.unread_events > 0 {
        let _ = writeln!(o, "  unread events           {} sent by the kernel but never read (a numatrace bug: please report it)", r.unread_events);
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
