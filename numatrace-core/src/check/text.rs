//! The check as text: facts first, then each source, the verdict last.
use std::fmt::Write;

use super::{Availability, BtfAccess, CheckReport, Lockdown, SourceCheck, SourceState, TracefsState};
use crate::{kernel_status::SourceRole, machine::cpulist};

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn or_unknown<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
}

fn availability(a: Availability) -> &'static str {
    match a {
        Availability::Yes => "yes",
        Availability::No => "no",
        Availability::Unknown => "unknown",
    }
}

/// Renders the whole check; the verdict is the last line.
pub fn render(r: &CheckReport) -> String {
    let mut s = String::new();
    let _ =
        writeln!(s, "numatrace check: what numatrace can trace on this machine (paste all of it into a bug report)\n");
    let row = |s: &mut String, what: &str, text: String| {
        let _ = writeln!(s, "  {what:<16} {text}");
    };
    row(&mut s, "kernel", format!("{} ({})", or_unknown(r.kernel.release.as_deref()), r.kernel.arch));
    let p = &r.privileges;
    let caps = if p.capabilities.is_empty() {
        "none of CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON".into()
    } else {
        p.capabilities.join(", ")
    };
    row(
        &mut s,
        "privileges",
        format!(
            "euid {}, {caps}: {}",
            p.euid,
            if p.can_load_programs { "can load programs" } else { "cannot load programs" }
        ),
    );
    let b = &r.btf;
    let access = match b.access {
        BtfAccess::Mmap => "present, mapped",
        BtfAccess::File => "present, read whole (mmap refused)",
        BtfAccess::Unreadable => "present but unreadable",
        BtfAccess::Absent => "absent: no BTF-typed tracepoints, no fentry",
    };
    let task = if b.access == BtfAccess::Mmap || b.access == BtfAccess::File {
        if b.task_struct_found { "; task_struct offsets found" } else { "; task_struct offsets NOT found" }
    } else {
        ""
    };
    row(&mut s, "BTF", format!("{} {access}{task}", b.path));
    if let Some(note) = &b.note {
        row(&mut s, "", note.clone());
    }
    let t = &r.tracefs;
    let path = t.path.as_deref().unwrap_or("/sys/kernel/tracing");
    row(
        &mut s,
        "tracefs",
        match t.state {
            TracefsState::Mounted => format!("mounted at {path}"),
            TracefsState::MountedByCheck => format!("was not mounted; mounted at {path} (as a capture does)"),
            TracefsState::NotMounted => "not mounted".to_string(),
        },
    );
    if let Some(note) = &t.note {
        row(&mut s, "", note.clone());
    }
    row(&mut s, "kprobes", format!("{}: {}", availability(r.kprobes.available), r.kprobes.detail));
    row(&mut s, "fentry", format!("{}: {}", availability(r.fentry.available), r.fentry.detail));
    let lockdown = match r.lockdown.mode {
        Lockdown::None => "none",
        Lockdown::Integrity => "integrity",
        Lockdown::Confidentiality => "confidentiality",
        Lockdown::Unknown => "unknown",
    };
    row(&mut s, "lockdown", format!("{lockdown}: {}", r.lockdown.mode.meaning()));
    let bpf = match r.sysctl.unprivileged_bpf_disabled {
        Some(0) => " (any user may load BPF)",
        Some(_) => " (BPF needs CAP_BPF)",
        None => "",
    };
    let perf = match r.sysctl.perf_event_paranoid {
        Some(p) if p > 1 => " (kernel tracing needs CAP_PERFMON)",
        _ => "",
    };
    row(
        &mut s,
        "BPF sysctls",
        format!(
            "kernel.unprivileged_bpf_disabled={}{bpf}  kernel.perf_event_paranoid={}{perf}",
            or_unknown(r.sysctl.unprivileged_bpf_disabled),
            or_unknown(r.sysctl.perf_event_paranoid)
        ),
    );
    row(
        &mut s,
        "NUMA balancing",
        format!("kernel.numa_balancing={} ({})", or_unknown(r.numa_balancing.value), r.numa_balancing.mode.meaning()),
    );
    row(&mut s, "nodes", r.nodes.len().to_string());
    for n in &r.nodes {
        let cpus = if n.cpus.is_empty() { "(none)".to_string() } else { cpulist::format(&n.cpus) };
        let _ = writeln!(
            s,
            "    node {:<3} cpus {:<16} {} ({} free)",
            n.id,
            cpus,
            gib(n.mem_total_bytes),
            gib(n.mem_free_bytes)
        );
    }
    let _ = writeln!(
        s,
        "\nSources{}",
        if r.sources_checked {
            " (each loaded and attached as a capture would, then detached)"
        } else {
            " (not tried: their programs could not be loaded)"
        }
    );
    for src in &r.sources {
        source(&mut s, src);
    }
    if !r.machine_counters.is_empty() {
        let _ = writeln!(s, "\nAlways-on counters of `numatrace top` and the exporter (not part of the verdict)");
        for src in &r.machine_counters {
            source(&mut s, src);
        }
    }
    let _ = writeln!(s, "\n{}", r.verdict.line);
    s
}

fn source(s: &mut String, src: &SourceCheck) {
    let role = match src.role {
        SourceRole::Core => "core",
        SourceRole::Detail => "detail",
    };
    let (mark, how) = match src.state {
        SourceState::Attached => {
            ("ok", format!("{} {}", src.kind.map(|k| k.name()).unwrap_or("?"), src.hooks.join(", ")))
        }
        SourceState::Unavailable => ("MISSING", String::new()),
        SourceState::NotChecked => ("-", "not tried".to_string()),
    };
    let _ = writeln!(s, "  {mark:<8} {:<33} {role:<7} {how}", src.name);
    let _ = writeln!(s, "  {:<8} observes: {}", "", src.observes);
    if let Some(why) = &src.fallback_reason {
        let _ = writeln!(s, "  {:<8} not the cheaper hook because: {why}", "");
    }
    if let Some(why) = &src.reason {
        let _ = writeln!(s, "  {:<8} why: {why}", "");
    }
    if let Some(loses) = &src.loses {
        let _ = writeln!(s, "  {:<8} without it: {loses}", "");
    }
}
