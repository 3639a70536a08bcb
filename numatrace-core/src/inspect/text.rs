//! The inspect report as text, laid out like the tools users know
//! (numactl --hardware, numastat -m, numastat -p).
use std::fmt::Write;

use super::{
    findings::{Finding, Severity},
    model::{InspectReport, ProcessView},
};
use crate::machine::cpulist;

fn mib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / (1u64 << 20) as f64)
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_else(|| "?".into())
}

/// Renders the whole report.
pub fn render(r: &InspectReport) -> String {
    let mut s = String::new();
    let t = &r.topology.machine;
    let vm = match (&r.virtualization.is_vm, &r.virtualization.hypervisor) {
        (true, Some(h)) => format!("virtual machine ({h})"),
        (true, None) => "virtual machine".into(),
        (false, _) => "bare metal".into(),
    };
    let _ = writeln!(
        s,
        "{} node(s), {} socket(s), {} CPUs, {}{}",
        t.nodes.len(),
        t.sockets,
        t.online_cpus.len(),
        vm,
        t.cpu_model.as_ref().map(|m| format!(", {m}")).unwrap_or_default()
    );
    let _ = writeln!(s, "\nNodes");
    let _ = writeln!(
        s,
        "  {:<5} {:<16} {:>10} {:>10} {:>10}  hugepages (total/free per size)",
        "node", "cpus", "total", "free", "used"
    );
    for n in &t.nodes {
        let huge: Vec<String> = n
            .hugepages
            .iter()
            .filter(|h| h.total > 0)
            .map(|h| format!("{}kB:{}/{}", h.page_size_bytes / 1024, h.total, h.free))
            .collect();
        let mut cpus = cpulist::format(&n.cpus);
        if cpus.is_empty() {
            cpus = "(none)".into();
        }
        let _ = writeln!(
            s,
            "  {:<5} {:<16} {:>10} {:>10} {:>10}  {}",
            n.id,
            cpus,
            gib(n.mem_total_bytes),
            gib(n.mem_free_bytes),
            gib(n.mem_used_bytes),
            if huge.is_empty() { "-".into() } else { huge.join(" ") }
        );
    }
    if !r.topology.cpuless_nodes.is_empty() {
        let _ = writeln!(s, "  CPU-less nodes: {}", cpulist::format(&r.topology.cpuless_nodes));
    }
    if !r.topology.memoryless_nodes.is_empty() {
        let _ = writeln!(s, "  memory-less nodes: {}", cpulist::format(&r.topology.memoryless_nodes));
    }
    let _ = writeln!(s, "\nDistances");
    let _ = write!(s, "  {:<5}", "");
    for n in &t.nodes {
        let _ = write!(s, "{:>5}", n.id);
    }
    let _ = writeln!(s);
    for (n, row) in t.nodes.iter().zip(&t.distances) {
        let _ = write!(s, "  {:<5}", n.id);
        for d in row {
            let _ = write!(s, "{d:>5}");
        }
        let _ = writeln!(s);
    }

    let _ = writeln!(s, "\nMemory per node in MiB (as numastat -m)");
    let ids: Vec<u32> = r.meminfo.keys().copied().collect();
    let _ = write!(s, "  {:<18}", "");
    for id in &ids {
        let _ = write!(s, "{:>13}", format!("Node {id}"));
    }
    let _ = writeln!(s, "{:>13}", "Total");
    if let Some(first) = r.meminfo.values().next() {
        for field in first.ordered_fields() {
            let _ = write!(s, "  {field:<18}");
            let mut total = 0u64;
            for id in &ids {
                let v = r.meminfo.get(id).and_then(|m| m.get(field)).unwrap_or(0);
                total += v;
                let _ = write!(s, "{:>13}", mib(v));
            }
            let _ = writeln!(s, "{:>13}", mib(total));
        }
    }

    match (&r.counter_rates, r.interval_seconds) {
        (Some(rates), Some(secs)) => {
            let _ = writeln!(s, "\nAllocation counters per node, pages/s over {secs:.1}s");
            let _ = writeln!(
                s,
                "  {:<5} {:>12} {:>12} {:>12} {:>14} {:>12} {:>12}",
                "node", "numa_hit", "numa_miss", "numa_foreign", "interleave_hit", "local_node", "other_node"
            );
            for (id, c) in rates {
                let _ = writeln!(
                    s,
                    "  {:<5} {:>12.1} {:>12.1} {:>12.1} {:>14.1} {:>12.1} {:>12.1}",
                    id, c.numa_hit, c.numa_miss, c.numa_foreign, c.interleave_hit, c.local_node, c.other_node
                );
            }
        }
        _ => {
            let _ = writeln!(s, "\nAllocation counters per node, pages since boot (--interval 5s for rates)");
            let _ = writeln!(
                s,
                "  {:<5} {:>12} {:>12} {:>12} {:>14} {:>12} {:>12}",
                "node", "numa_hit", "numa_miss", "numa_foreign", "interleave_hit", "local_node", "other_node"
            );
            for (id, c) in &r.counters {
                let _ = writeln!(
                    s,
                    "  {:<5} {:>12} {:>12} {:>12} {:>14} {:>12} {:>12}",
                    id, c.numa_hit, c.numa_miss, c.numa_foreign, c.interleave_hit, c.local_node, c.other_node
                );
            }
        }
    }
    let balancer_keys = [
        "numa_pte_updates",
        "numa_huge_pte_updates",
        "numa_hint_faults",
        "numa_hint_faults_local",
        "numa_pages_migrated",
        "pgmigrate_success",
        "pgmigrate_fail",
    ];
    let _ = write!(
        s,
        "\nBalancer (/proc/vmstat{})\n ",
        if r.balancer_rates.is_some() { ", per second" } else { ", since boot" }
    );
    for k in balancer_keys {
        match &r.balancer_rates {
            Some(rates) => {
                if let Some(v) = rates.get(k) {
                    let _ = write!(s, " {k}={v:.1}");
                }
            }
            None => {
                if let Some(v) = r.balancer.get(k) {
                    let _ = write!(s, " {k}={v}");
                }
            }
        }
    }
    let _ = writeln!(s);
    let thp = &r.transparent_hugepages;
    let _ = writeln!(
        s,
        "\nSettings: kernel.numa_balancing={}  vm.zone_reclaim_mode={}  THP enabled={} defrag={}",
        opt(&r.sysctl.numa_balancing),
        opt(&r.sysctl.zone_reclaim_mode),
        opt(&thp.enabled),
        opt(&thp.defrag)
    );

    if let Some(p) = &r.process {
        let _ = writeln!(s, "\nProcess {} ({})", p.pid, p.name);
        // Without numa_maps there is no per-node memory: say so where the
        // figures would be, not as a table of zeros.
        let numa_maps = format!("/proc/{}/numa_maps", p.pid);
        let maps_unreadable = r.unreadable.iter().find(|u| u.path == numa_maps);
        match maps_unreadable {
            Some(u) => {
                let _ = writeln!(s, "  Memory per node in MiB (as numastat -p): unreadable ({}: {})", u.path, u.reason);
            }
            None => render_process_memory(&mut s, p),
        }
        let threads: Vec<String> = p.threads_by_node.iter().map(|(n, c)| format!("node {n}: {c}")).collect();
        let _ = writeln!(s, "  Threads now: {} ({})", p.threads.len(), threads.join(", "));
        let _ = writeln!(
            s,
            "  Cpus_allowed {}  Mems_allowed {}",
            cpulist::format(&p.cpus_allowed),
            cpulist::format(&p.mems_allowed)
        );
        if let Some(cs) = &p.cpuset {
            let _ = writeln!(
                s,
                "  cgroup {:?} {}: cpuset.cpus effective {} (set by {}), cpuset.mems effective {} (set by {})",
                cs.version,
                cs.cgroup,
                cpulist::format(&cs.effective_cpus),
                cs.cpus_set_by.as_deref().unwrap_or("nobody"),
                cpulist::format(&cs.effective_mems),
                cs.mems_set_by.as_deref().unwrap_or("nobody")
            );
        }
        match (p.locality.remote_share, p.locality.memory_outside_thread_nodes_share) {
            (Some(remote), Some(outside)) => {
                let _ = writeln!(
                    s,
                    "  Locality: {:.0}% of its memory is remote to the average thread; {:.0}% is on nodes where none of its threads runs",
                    remote * 100.0,
                    outside * 100.0
                );
            }
            _ if maps_unreadable.is_some() => {
                let _ = writeln!(s, "  Locality: unknown (its memory per node is unreadable, above)");
            }
            _ => {
                let _ = writeln!(s, "  Locality: unknown (no threads or no memory seen)");
            }
        }
        if maps_unreadable.is_none() {
            let _ = writeln!(s, "  Biggest mappings");
        }
        for m in &p.biggest_mappings {
            let split: Vec<String> = m.bytes_by_node.iter().map(|(n, b)| format!("N{n}={}", mib(*b))).collect();
            let _ = writeln!(
                s,
                "    {:>14} {:>10} MiB  {:<7} {:<18} {}  {}",
                m.start,
                mib(m.bytes),
                format!("{:?}", m.kind).to_lowercase(),
                m.policy,
                split.join(" "),
                m.file.as_deref().unwrap_or("")
            );
        }
        if p.numa_maps_skipped_lines > 0 {
            let _ = writeln!(s, "  ({} numa_maps lines did not parse and were left out)", p.numa_maps_skipped_lines);
        }
    }

    let _ = writeln!(s, "\nFindings");
    if r.findings.is_empty() {
        let _ = writeln!(s, "  none: nothing known to be wrong with NUMA placement here");
    }
    for f in &r.findings {
        render_finding(&mut s, f);
    }
    if !r.unreadable.is_empty() {
        let _ = writeln!(s, "\nCould not read");
        for u in &r.unreadable {
            let _ = writeln!(s, "  {}: {}", u.path, u.reason);
        }
    }
    s
}

/// The process's memory per node, laid out like `numastat -p`.
fn render_process_memory(s: &mut String, p: &ProcessView) {
    let _ = writeln!(s, "  Memory per node in MiB (as numastat -p)");
    let _ = write!(s, "  {:<16}", "");
    for id in p.memory_by_node.keys() {
        let _ = write!(s, "{:>13}", format!("Node {id}"));
    }
    let _ = writeln!(s, "{:>13}", "Total");
    type Row = (&'static str, fn(&crate::machine::CategoryBytes) -> u64);
    let rows: [Row; 5] = [
        ("Huge", |c| c.huge),
        ("Heap", |c| c.heap),
        ("Stack", |c| c.stack),
        ("Private", |c| c.private),
        ("Total", |c| c.total),
    ];
    for (label, get) in rows {
        let _ = write!(s, "  {label:<16}");
        let mut total = 0;
        for c in p.memory_by_node.values() {
            total += get(c);
            let _ = write!(s, "{:>13}", mib(get(c)));
        }
        let _ = writeln!(s, "{:>13}", mib(total));
    }
}

fn render_finding(s: &mut String, f: &Finding) {
    let sev = match f.severity {
        Severity::Problem => "PROBLEM",
        Severity::Warning => "WARNING",
        Severity::Info => "INFO",
    };
    let _ = writeln!(s, "  [{sev}] {}: {}", f.kind, f.evidence);
    let _ = writeln!(s, "    -> {}", f.recommendation);
    for b in &f.blocked_by {
        let _ = writeln!(s, "    ! {b}");
    }
    for fix in &f.fixes {
        let _ = writeln!(s, "    * {}{}", fix.title, if fix.destructive { "  [DESTRUCTIVE]" } else { "" });
        for c in &fix.commands {
            let _ = writeln!(s, "        {}{c}", if c.starts_with('#') { "" } else { "$ " });
        }
        for n in &fix.notes {
            let _ = writeln!(s, "        note: {n}");
        }
        if !fix.commands.is_empty() {
            let _ = writeln!(s, "        verify: {}", fix.verify);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{
        Mapping, MappingKind, NumaMaps, ProcessSnapshot, ProcessStatus, Sysctls, SystemSnapshot, ThreadPlacement,
        Topology, Unreadable,
    };

    fn system() -> SystemSnapshot {
        let topology = Topology::synthetic_with_memory(&[vec![0, 1], vec![2, 3]], 4 << 30);
        SystemSnapshot::synthetic(topology, Sysctls { numa_balancing: Some(0), zone_reclaim_mode: Some(0) })
    }

    /// Process 4242 with one thread on node 1; its numa_maps readable (8 MiB on node 1) or not.
    fn process(numa_maps_readable: bool) -> ProcessSnapshot {
        let maps = numa_maps_readable.then(|| NumaMaps {
            mappings: vec![Mapping {
                start: 0x7f00_0000_0000,
                policy: "default".into(),
                kind: MappingKind::Anon,
                file: None,
                pages_by_node: [(1, 2048)].into_iter().collect(),
                page_size_bytes: 4096,
                anon_pages: 2048,
                dirty_pages: 2048,
            }],
            skipped_lines: 0,
        });
        let unreadable = if numa_maps_readable {
            Vec::new()
        } else {
            vec![Unreadable {
                path: "/proc/4242/numa_maps".into(),
                reason: "permission denied: run as root, or as the user that owns the process".into(),
            }]
        };
        ProcessSnapshot {
            pid: 4242,
            taken_at_unix_ms: 0,
            status: Some(ProcessStatus {
                name: "db".into(),
                cpus_allowed: vec![0, 1, 2, 3],
                mems_allowed: vec![0, 1],
                rss_bytes: 8 << 20,
            }),
            memory_by_node: maps.as_ref().map(NumaMaps::memory_by_node).unwrap_or_default(),
            numa_maps: maps,
            threads: vec![ThreadPlacement { tid: 4242, name: "db".into(), cpu: 2, node: Some(1) }],
            threads_by_node: [(1, 1)].into_iter().collect(),
            cpuset: None,
            identity: None,
            unreadable,
        }
    }

    /// The text between the process heading and the findings.
    fn process_section(text: &str) -> &str {
        let start = text.find("\nProcess 4242 (db)").expect("a process section");
        let end = text[start..].find("\nFindings").map(|e| start + e).expect("a findings section after it");
        &text[start..end]
    }

    #[test]
    fn unreadable_numa_maps_is_said_in_the_memory_table_not_shown_as_zeros() {
        let text = render(&InspectReport::build(&system(), None, Some(&process(false)), 10));
        let section = process_section(&text);
        assert!(
            section.contains("Memory per node in MiB (as numastat -p): unreadable (/proc/4242/numa_maps: permission denied: run as root, or as the user that owns the process)"),
            "{section}"
        );
        assert!(!section.contains("0.00"), "no table of zeros: {section}");
        assert!(!section.contains("Private"), "no table rows: {section}");
        assert!(!section.contains("Biggest mappings"), "{section}");
        assert!(section.contains("Locality: unknown (its memory per node is unreadable, above)"), "{section}");
        // The list of what could not be read at the end stays.
        assert!(text.contains("Could not read\n  /proc/4242/numa_maps: permission denied"), "{text}");
    }

    #[test]
    fn readable_numa_maps_gives_the_numastat_p_table() {
        let text = render(&InspectReport::build(&system(), None, Some(&process(true)), 10));
        let section = process_section(&text);
        assert!(!section.contains("unreadable"), "{section}");
        let private = section.lines().find(|l| l.trim_start().starts_with("Private")).expect("a Private row");
        assert_eq!(private.split_whitespace().collect::<Vec<_>>(), ["Private", "8.00", "8.00"], "{section}");
        assert!(section.contains("Locality: 0% of its memory is remote"), "{section}");
        assert!(section.contains("Biggest mappings"), "{section}");
    }
}
