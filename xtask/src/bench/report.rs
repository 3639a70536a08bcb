//! The benchmark's results as markdown tables (for the README).
use std::{collections::BTreeMap, fmt::Write};

use serde_json::Value;

use super::{ALL_MIGRATIONS_PREFIX, BPFTRACE_PREFIX, Comparison, EMPTY_PREFIX, Results, Single, variants::Variant};

/// Median of a list (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// Per-round slowdowns of `variant` against the untraced run of the same
/// round, in any per-variant series (wall time, workload CPU time).
pub fn slowdowns_in(series: &BTreeMap<Variant, Vec<f64>>, variant: Variant) -> Vec<f64> {
    let (Some(base), Some(traced)) = (series.get(&Variant::Untraced), series.get(&variant)) else {
        return Vec::new();
    };
    base.iter().zip(traced).filter(|(b, _)| **b > 0.0).map(|(b, t)| t / b - 1.0).collect()
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{:+.1} %", x * 100.0))
}

/// The header of a comparison table: a column per variant run, in their order.
fn comparison_header(out: &mut String, variants: &[Variant]) {
    let labels: Vec<&str> = variants.iter().map(|v| v.label()).collect();
    let _ = writeln!(out, "| workload | {} | numatrace added / bpftrace added |", labels.join(" | "));
    let _ = writeln!(out, "|---|{}---|", "---|".repeat(labels.len()));
}

/// One row under [`comparison_header`].
fn comparison_rows(out: &mut String, variants: &[Variant], title: &str, series: &BTreeMap<Variant, Vec<f64>>) {
    if series.is_empty() {
        return;
    }
    let med = |v: Variant| series.get(&v).and_then(|s| median(s));
    let slow = |v: Variant| median(&slowdowns_in(series, v));
    let ratio = match (slow(Variant::Numatrace), slow(Variant::Bpftrace)) {
        (Some(n), Some(b)) if b > 0.0 => format!("{:.2}", n / b),
        _ => "-".into(),
    };
    let cell = |v: Variant| match med(v) {
        Some(s) if v == Variant::Untraced => format!("{s:.3} s"),
        Some(s) => format!("{s:.3} s ({})", pct(slow(v))),
        None => "-".into(),
    };
    let cells: Vec<String> = variants.iter().map(|v| cell(*v)).collect();
    let _ = writeln!(out, "| {title} | {} | {ratio} |", cells.join(" | "));
}

fn spread(cmp: &Comparison, v: Variant) -> String {
    let s = slowdowns_in(&cmp.seconds, v);
    if s.is_empty() {
        return "-".into();
    }
    let lo = s.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{} .. {}", pct(Some(lo)), pct(Some(hi)))
}

fn tracer_rows(out: &mut String, title: &str, cmp: &Comparison) {
    for v in variants_of(cmp).into_iter().filter(|v| *v != Variant::Untraced) {
        let cpu = cmp.tracer_cpu_s.get(&v).and_then(|c| median(c));
        let rss = cmp.tracer_peak_rss_kib.get(&v).and_then(|r| r.iter().max().copied());
        let _ = writeln!(
            out,
            "| {title} | {} | {} | {} | {} |",
            v.label(),
            spread(cmp, v),
            cpu.map_or("-".into(), |c| format!("{c:.2} s")),
            rss.map_or("-".into(), |r| format!("{:.1} MiB", r as f64 / 1024.0)),
        );
    }
}

fn program_rows(out: &mut String, title: &str, cmp: &Comparison) {
    let all = median(&cmp.all_programs_ns).map_or("-".into(), |n| format!("{n:.0}"));
    let total_runs: u64 = cmp.program_runs.iter().filter(|(n, _)| is_default_numatrace(n)).map(|(_, r)| r).sum();
    let _ = writeln!(out, "| {title} | numatrace, all programs | {total_runs} | {all} |");
    let mut progs: Vec<_> = cmp.program_ns.iter().collect();
    progs.sort_by_key(|(name, _)| std::cmp::Reverse(cmp.program_runs.get(*name).copied().unwrap_or(0)));
    for (name, ns) in progs {
        let runs = cmp.program_runs.get(name).copied().unwrap_or(0);
        let _ =
            writeln!(out, "| {title} | {name} | {runs} | {} |", median(ns).map_or("-".into(), |n| format!("{n:.0}")));
    }
}

/// The kernel programs' own CPU time per workload run, and what it would add
/// to the untraced run if all of it sat on the critical path: a noise-free
/// bound to read beside the wall-clock slowdown, which single rounds swing
/// by tens of percent on this machine. Dispatch cost outside the programs
/// is not in the kernel's accounting, the stats' own clock reads are.
pub fn program_share(cmp: &Comparison) -> Option<String> {
    let stats_runs = cmp.all_programs_ns.len();
    let untraced = median(cmp.seconds.get(&Variant::Untraced)?)?;
    if stats_runs == 0 || untraced <= 0.0 {
        return None;
    }
    let per_run_s = |keep: &dyn Fn(&str) -> bool| {
        let total_ns: f64 = cmp
            .program_ns
            .iter()
            .filter(|(name, _)| keep(name))
            .filter_map(|(name, ns)| Some(median(ns)? * cmp.program_runs.get(name).copied()? as f64))
            .sum();
        total_ns / stats_runs as f64 / 1e9
    };
    let default = per_run_s(&is_default_numatrace);
    let all = per_run_s(&|name| name.starts_with(ALL_MIGRATIONS_PREFIX));
    let with_all = if cmp.variants.is_empty() || cmp.variants.contains(&Variant::NumatraceAllMigrations) {
        format!(" ({:.1} ms, {:.1} %, with --all-migrations)", all * 1e3, all / untraced * 100.0)
    } else {
        String::new()
    };
    Some(format!(
        "numatrace's programs ran {:.1} ms of CPU per workload run (kernel accounting), {:.1} % of the untraced run's {untraced:.3} s{with_all}.",
        default * 1e3,
        default / untraced * 100.0,
    ))
}

/// The variants a comparison ran (every one for results from before they were recorded).
fn variants_of(cmp: &Comparison) -> Vec<Variant> {
    if cmp.variants.is_empty() { Variant::ALL.to_vec() } else { cmp.variants.clone() }
}

/// A program of the default numatrace run (not bpftrace's, not the `--all-migrations` run's).
fn is_default_numatrace(name: &str) -> bool {
    [BPFTRACE_PREFIX, ALL_MIGRATIONS_PREFIX, EMPTY_PREFIX].iter().all(|p| !name.starts_with(p))
}

/// A command line with its binaries shown by file name only.
pub fn short(argv: &[String]) -> String {
    argv.iter()
        .map(|a| if a.starts_with('/') { a.rsplit('/').next().unwrap_or(a).to_string() } else { a.clone() })
        .collect::<Vec<_>>()
        .join(" ")
}

fn counter(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Every table, with the command that produced them.
pub fn markdown(r: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Produced by `{}` on kernel {}, {} CPUs (load average before {}, after {}).",
        r.command, r.kernel, r.cpus, r.load_before, r.load_after
    );
    let _ = writeln!(
        out,
        "Medians of {} rounds; the variants alternate within each round. Slowdowns are per round against that round's untraced run.\n",
        r.rounds
    );
    if r.faults.is_some() || r.migrations.is_some() {
        let _ = writeln!(out, "#### Workload time (the workload's own clock) and slowdown\n");
        let variants = r.faults.as_ref().or(r.migrations.as_ref()).map(variants_of).unwrap_or_default();
        comparison_header(&mut out, &variants);
        if let Some(c) = &r.faults {
            comparison_rows(&mut out, &variants, &format!("fault-heavy: `{}`", short(&c.workload)), &c.seconds);
        }
        if let Some(c) = &r.migrations {
            comparison_rows(&mut out, &variants, &format!("migration-heavy: `{}`", short(&c.workload)), &c.seconds);
        }
        if let Some(c) = r.faults.as_ref().filter(|c| !c.workload_cpu_s.is_empty()) {
            let _ = writeln!(
                out,
                "\n#### Workload CPU time (user + system of the workload process, where the programs of its own page faults are charged; steadier than wall time on a shared machine)\n"
            );
            comparison_header(&mut out, &variants);
            comparison_rows(&mut out, &variants, "fault-heavy", &c.workload_cpu_s);
        }
        let _ = writeln!(out, "\n#### Tracers: slowdown range over rounds, own CPU time (median), own peak memory\n");
        let _ = writeln!(out, "| workload | tracer | slowdown min .. max | tracer CPU | tracer peak RSS |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        if let Some(c) = &r.faults {
            tracer_rows(&mut out, "fault-heavy", c);
        }
        if let Some(c) = &r.migrations {
            tracer_rows(&mut out, "migration-heavy", c);
        }
        let _ = writeln!(
            out,
            "\n#### numatrace's kernel programs: run time per run (kernel accounting, `BPF_ENABLE_STATS`; separate untimed runs, median over rounds)\n"
        );
        let _ = writeln!(out, "| workload | program | runs (all rounds) | ns per run |");
        let _ = writeln!(out, "|---|---|---|---|");
        if let Some(c) = &r.faults {
            program_rows(&mut out, "fault-heavy", c);
        }
        if let Some(c) = &r.migrations {
            program_rows(&mut out, "migration-heavy", c);
        }
        for (name, c) in [("fault-heavy", &r.faults), ("migration-heavy", &r.migrations)] {
            if let Some(c) = c {
                let k = &c.kernel_counters;
                let _ = writeln!(
                    out,
                    "\n{name}: numatrace's kernel counters (last run): {} page faults, {} first-touch pages, {} task migrations; most events lost in any run: {}.",
                    counter(k, "page_faults"),
                    counter(k, "first_touch_pages"),
                    counter(k, "task_migrations"),
                    c.max_lost_events
                );
                if let Some(line) = program_share(c) {
                    let _ = writeln!(out, "{name}: {line}");
                }
            }
        }
    }
    if let Some(a) = &r.always_on {
        always_on_table(&mut out, a);
    }
    if let Some(s) = &r.stacks {
        stacks_table(&mut out, s);
    }
    if let Some(t) = &r.top {
        top_table(&mut out, t);
    }
    if let Some(e) = &r.exporter {
        exporter_table(&mut out, e);
    }
    if !r.aggregator.is_empty() {
        let _ = writeln!(
            out,
            "\n#### The aggregator alone (1 M pre-encoded records: 16 threads x 8192 regions, one core)\n"
        );
        let _ = writeln!(out, "| path | events | seconds | events/s | ns per event | core per 1 M events/s |");
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for a in &r.aggregator {
            let path = match a.get("bench").and_then(Value::as_str) {
                Some("aggregator_batch") => "batches of 256 (`ingest_batch`, as the live drain)",
                _ => "one record at a time (`ingest_bytes`)",
            };
            let events = a.get("events").and_then(Value::as_f64).unwrap_or(0.0);
            let secs = a.get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
            if events > 0.0 && secs > 0.0 {
                let ns = secs * 1e9 / events;
                let _ = writeln!(
                    out,
                    "| {path} | {events:.0} | {secs:.3} | {:.1} M | {ns:.0} | {:.3} |",
                    events / secs / 1e6,
                    ns * 1e6 / 1e9
                );
            }
        }
    }
    if !r.load.is_empty() {
        let _ = writeln!(out, "\n#### Sustained load: the kernel's event count against what numatrace read\n");
        let _ = writeln!(
            out,
            "| load | workload s | events produced (kernel) | events/s | read by numatrace | lost (counted) | unread | numatrace CPU | core per 1 M events/s | peak RSS |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for s in &r.load {
            load_row(&mut out, s);
        }
        let _ = writeln!(out, "\nWorkloads:");
        for s in &r.load {
            let _ = writeln!(out, "- {}: `{}`", s.label, short(&s.workload));
        }
        let _ = writeln!(
            out,
            "\nReal page faults: every touch in a new 2 MiB region, so each fault is its own event. Generator: \
             `numatrace --load-generator` writes 64 synthetic first-touch events (8192 regions) into the same ring on \
             each getppid(2) of the target, which `workload flood` calls at the set rate. numatrace CPU includes its \
             start-up (see the 1-page row of the footprint table)."
        );
    }
    if let Some(s) = &r.startup {
        startup_table(&mut out, s);
    }
    if !r.footprint.is_empty() {
        let _ = writeln!(out, "\n#### numatrace's own CPU time and peak memory by process size\n");
        let _ = writeln!(
            out,
            "| target | workload | workload s | first-touch pages | numatrace CPU | numatrace peak RSS | lost |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for s in &r.footprint {
            let _ = writeln!(
                out,
                "| {} | `{}` | {:.2} | {} | {:.2} s | {:.1} MiB | {} |",
                s.label,
                short(&s.workload),
                s.seconds,
                counter(&s.kernel_counters, "first_touch_pages"),
                s.cpu_s,
                s.peak_rss_kib as f64 / 1024.0,
                s.lost_events
            );
        }
    }
    out
}

/// Start-up and detach, per tracer: median and range over rounds.
fn startup_table(out: &mut String, s: &super::startup::Startup) {
    let _ = writeln!(out, "\n#### Start-up and detach (attached to a running `{}`)\n", short(&s.target));
    let _ = writeln!(out, "| tracer | what | median | min .. max | rounds |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for (tracer, what, v) in [
        ("numatrace", "start to \"tracing\" on stderr", &s.numatrace_attach_s),
        ("bpftrace", "start to its BEGIN line (every probe attached)", &s.bpftrace_attach_s),
        ("numatrace", "SIGINT to exit (report written)", &s.numatrace_detach_s),
        ("numatrace", "end of `--duration` to exit", &s.numatrace_duration_detach_s),
        ("bpftrace", "SIGINT to exit (maps printed)", &s.bpftrace_detach_s),
    ] {
        let lo = v.iter().copied().reduce(f64::min);
        let hi = v.iter().copied().reduce(f64::max);
        let _ = writeln!(
            out,
            "| {tracer} | {what} | {} | {} |  {} |",
            median(v).map_or("-".into(), |m| format!("{m:.3} s")),
            match (lo, hi) {
                (Some(lo), Some(hi)) => format!("{lo:.3} .. {hi:.3} s"),
                _ => "-".into(),
            },
            v.len()
        );
    }
    for f in &s.failures {
        let _ = writeln!(out, "\nNo figure: {f}.");
    }
}

fn load_row(out: &mut String, s: &Single) {
    let secs = s.seconds.max(1e-9);
    let per_m = if s.ring_events > 0 { s.cpu_s / (s.ring_events as f64 / 1e6) } else { 0.0 };
    let _ = writeln!(
        out,
        "| {} | {:.2} | {} | {:.2} M | {} | {} | {} | {:.2} s | {:.3} | {:.1} MiB |",
        s.label,
        s.seconds,
        s.ring_events,
        s.ring_events as f64 / secs / 1e6,
        s.received_events,
        s.lost_events,
        s.unread_events,
        s.cpu_s,
        per_m,
        s.peak_rss_kib as f64 / 1024.0
    );
}

fn always_on_table(out: &mut String, a: &super::always_on::AlwaysOn) {
    let _ = writeln!(
        out,
        "\n#### Always on: `{}` traced (medians over rounds; programs' time from BPF run-time stats kept on, an upper bound; start-up CPU {:.3} s)\n",
        short(&a.workload),
        a.startup_cpu_s
    );
    let _ = writeln!(
        out,
        "| setting | workload s | programs' CPU | numatrace process CPU | % of one core | after start-up | own measure | first-touch pages counted | traced share | paused | 1 in N at the end | lost |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for setting in super::always_on::AlwaysOn::settings() {
        let m = |f: &dyn Fn(&super::always_on::Run) -> f64| a.median_of(setting, f);
        let opt = |f: &dyn Fn(&super::always_on::Run) -> Option<f64>, unit: &str| {
            let v: Vec<f64> = a.runs.iter().filter(|r| r.setting == setting).filter_map(f).collect();
            median(&v).map_or("-".to_string(), |x| format!("{x:.2}{unit}"))
        };
        let Some(seconds) = m(&|r| r.seconds) else { continue };
        let _ = writeln!(
            out,
            "| {setting} | {seconds:.1} | {:.3} s | {:.3} s | {:.2} % | {:.2} % | {} | {:.0} | {} | {} | {} | {:.0} |",
            m(&|r| r.programs_s).unwrap_or(0.0),
            m(&|r| r.process_cpu_s).unwrap_or(0.0),
            m(&|r| r.percent).unwrap_or(0.0),
            m(&|r| r.steady_percent).unwrap_or(0.0),
            opt(&|r| r.own_measure_percent, " %"),
            m(&|r| r.first_touch_pages_counted as f64).unwrap_or(0.0),
            opt(&|r| r.traced_share.map(|x| x * 100.0), " %"),
            opt(&|r| r.paused_s, " s"),
            opt(&|r| r.final_one_in.map(|n| n as f64), ""),
            m(&|r| r.lost_events as f64).unwrap_or(0.0),
        );
    }
}

/// `numatrace top`: every run, then the medians against the goal.
pub fn top_table(out: &mut String, t: &super::top::Top) {
    use super::top::User;
    let _ = writeln!(
        out,
        "\n#### `{}` with {} idle processes: its CPU over two windows after its first screens (the first, in which it reads every process's numa_maps once within its budget per refresh; then steady)\n",
        t.command, t.idle_processes
    );
    let _ = writeln!(
        out,
        "| run | user | processes in /proc | start-up CPU | first window | CPU | % of one core | steady window | CPU | % of one core | BPF programs held |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, r) in t.runs.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.3} s | {:.1} s | {:.3} s | {:.2} % | {:.1} s | {:.3} s | {:.2} % | {} |",
            i + 1,
            r.user.label(),
            r.processes,
            r.startup_cpu_s,
            r.seconds,
            r.cpu_s,
            r.percent(),
            r.steady_seconds,
            r.steady_cpu_s,
            r.steady_percent(),
            r.bpf_programs
        );
    }
    let p = |u: User| t.median_percent(u).map_or("-".to_string(), |x| format!("{x:.2} %"));
    let first = |u: User| t.median_first_percent(u).map_or("-".to_string(), |x| format!("{x:.2} %"));
    let verdict = match t.goal_met() {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    };
    let _ = writeln!(
        out,
        "\nSteady, median {} as nobody, {} as root (first window {} and {}); {}: {verdict} (goal: under {:.0} % of one core).",
        p(User::Unprivileged),
        p(User::Root),
        first(User::Unprivileged),
        first(User::Root),
        t.kernel_side(),
        super::top::TOP_GOAL_PERCENT
    );
}

/// `numatrace exporter`: medians per setting, then the goal.
pub fn exporter_table(out: &mut String, e: &super::exporter::Exporter) {
    use super::exporter::{Exporter, Run};
    let _ = writeln!(
        out,
        "\n#### `numatrace exporter` left on (default 15 s refresh), scraped every second, while `{}` runs again and again: its CPU over a 30 s window after {:.0} s of warm-up (medians over rounds; programs' time from BPF run-time stats kept on, an upper bound)\n",
        short(&e.workload),
        e.warm_up_s
    );
    let _ = writeln!(
        out,
        "| setting | runs | process CPU | programs' CPU | of which first-touch counter | % of one core | page allocations/s | counter runs per allocation | counted ratio served (last in the window) | scrapes (failed) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for setting in Exporter::settings() {
        let runs: Vec<&Run> = e.runs.iter().filter(|r| r.setting == setting).collect();
        if runs.is_empty() {
            continue;
        }
        let m = |f: &dyn Fn(&Run) -> f64| e.median_of(setting, f).unwrap_or(0.0);
        let ratios: Vec<f64> = runs.iter().filter_map(|r| r.counted_ratio).collect();
        let per_allocation: Vec<f64> = runs.iter().filter_map(|r| r.runs_per_allocation()).collect();
        let _ = writeln!(
            out,
            "| {setting} | {} | {:.2} % | {:.2} % | {:.2} % | {:.2} % | {:.0} k | {} | {} | {} ({}) |",
            runs.len(),
            m(&Run::process_percent),
            m(&Run::programs_percent),
            m(&|r| if r.seconds > 0.0 { 100.0 * r.first_touch_program_s / r.seconds } else { 0.0 }),
            m(&Run::percent),
            m(&|r| r.allocations_per_s) / 1e3,
            median(&per_allocation).map_or("-".to_string(), |x| format!("{x:.3}")),
            median(&ratios).map_or("-".to_string(), |x| format!("{x:.2}")),
            runs.iter().map(|r| r.scrapes).sum::<u32>(),
            runs.iter().map(|r| r.failed_scrapes).sum::<u32>(),
        );
    }
    let verdict = match e.goal_met() {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    };
    let _ = writeln!(
        out,
        "\nExporter always on under {:.0} % of one core (the default and the budgeted setting): {verdict}.",
        super::exporter::EXPORTER_GOAL_PERCENT
    );
}

/// `--stacks` against plain numatrace: medians per setting, then the cost.
pub fn stacks_table(out: &mut String, s: &super::stacks::Stacks) {
    use super::stacks::Setting;
    let _ = writeln!(
        out,
        "\n#### `--stacks` on the fault-heavy workload: `{}` (medians of {} interleaved rounds)\n",
        short(&s.workload),
        s.rounds()
    );
    let _ = writeln!(
        out,
        "| median | workload s | workload CPU | numatrace's own CPU | added CPU (workload over untraced + numatrace's own) | stacks taken | stacks lost |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let seconds = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.3} s"));
    let count = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.0}"));
    for setting in Setting::ALL {
        if s.median_of(setting, |r| Some(r.seconds)).is_none() {
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            setting.label(),
            seconds(s.median_of(setting, |r| Some(r.seconds))),
            seconds(s.median_of(setting, |r| Some(r.workload_cpu_s))),
            seconds(s.median_of(setting, |r| r.tracer_cpu_s)),
            seconds(median(&s.added(setting))),
            count(s.median_of(setting, |r| r.stacks_taken.map(|n| n as f64))),
            count(s.median_of(setting, |r| r.stacks_lost.map(|n| n as f64))),
        );
    }
    let _ = writeln!(out, "\n{}", stacks_cost(s));
}

/// The cost of `--stacks` in one sentence, with the verdict against the goal.
pub fn stacks_cost(s: &super::stacks::Stacks) -> String {
    let p = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:+.1} %"));
    let verdict = match s.goal_met() {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    };
    format!(
        "`--stacks` adds {} to numatrace's added CPU (ratio of the medians; median of per-round ratios {}): {verdict} (goal: at most +{:.0} %).",
        p(s.extra_percent()),
        p(s.extra_percent_per_round()),
        super::stacks::STACKS_GOAL_PERCENT
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stacks_table_has_a_row_per_setting_and_the_cost() {
        let s = super::super::stacks::tests::sample();
        let mut out = String::new();
        stacks_table(&mut out, &s);
        assert!(out.contains("`touch` (medians of 3 interleaved rounds)"), "{out}");
        assert!(out.contains("| untraced | 1.250 s | 2.500 s | - | - | - | - |"), "{out}");
        assert!(out.contains("| numatrace | 1.350 s | 2.700 s | 0.400 s | 0.600 s | - | - |"), "{out}");
        assert!(out.contains("| numatrace --stacks | 1.400 s | 2.800 s | 0.500 s | 0.800 s | 40 | 0 |"), "{out}");
        assert!(
            out.contains("`--stacks` adds +33.3 % to numatrace's added CPU (ratio of the medians; median of per-round ratios +28.6 %): **not met**"),
            "{out}"
        );
    }

    #[test]
    fn the_top_table_has_a_row_per_run_and_the_medians() {
        let t = super::super::top::tests::sample();
        let mut out = String::new();
        top_table(&mut out, &t);
        assert!(
            out.contains("| 3 | root | 1100 | 0.100 s | 20.0 s | 0.480 s | 2.40 % | 20.0 s | 0.240 s | 1.20 % | 0 |"),
            "{out}"
        );
        assert!(
            out.contains("Steady, median 1.50 % as nobody, 1.20 % as root (first window 3.00 % and 2.40 %);"),
            "{out}"
        );
        assert!(out.contains(": **met** (goal: under 2 % of one core)."), "{out}");
    }

    #[test]
    fn the_exporter_table_has_a_row_per_setting_with_its_medians() {
        let e = super::super::exporter::tests::sample();
        let mut out = String::new();
        exporter_table(&mut out, &e);
        assert!(out.contains("| default | 2 | 0.20 % | 0.10 % | 0.00 % | 0.30 % | 0 k | - | - | 0 (0) |"), "{out}");
        assert!(
            out.contains("| --remote-first-touches (default budget, 1 %) | 2 | 0.40 % | 0.50 % | 0.00 % | 0.90 % | 0 k | - | 0.20 |"),
            "{out}"
        );
        assert!(out.contains("(the default and the budgeted setting): **met**."), "{out}");
    }
}
