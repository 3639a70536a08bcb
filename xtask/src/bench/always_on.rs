//! Always on: numatrace left on a long fault-heavy run, without a budget and
//! under `--overhead-budget 1` (with its pauses, the default, and without),
//! and what it costs as a share of one core: its programs' run time (the
//! kernel's accounting, BPF run-time stats on for the whole run, so an upper
//! bound: the stats add two clock reads to every run) plus its own process's
//! CPU, over the run's time. "Steady" leaves out the start-up (loading,
//! attaching, calibrating: the CPU of tracing `true`), which an always-on
//! capture pays once.
use anyhow::{Context, Result};
use serde_json::Value;

use super::{
    report::median,
    variants::{self, NumatraceOptions, Tools, Variant},
};

/// The goal: numatrace's whole cost under 1 % of one core with a 1 % budget.
pub const ALWAYS_ON_GOAL_PERCENT: f64 = 1.0;

/// The ways numatrace is left on: (label, extra flags).
const SETTINGS: [(&str, &[&str]); 3] = [
    ("no budget (every page traced)", &[]),
    ("--overhead-budget 1", &["--overhead-budget", "1"]),
    ("--overhead-budget 1 --no-budget-pauses", &["--overhead-budget", "1", "--no-budget-pauses"]),
];

/// The label of the setting the goal is about.
pub const BUDGET_LABEL: &str = SETTINGS[1].0;

/// One traced run.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Run {
    pub setting: String,
    /// The workload's own clock.
    pub seconds: f64,
    pub process_cpu_s: f64,
    pub programs_s: f64,
    /// (programs + process) / seconds, in percent of one core.
    pub percent: f64,
    /// The same without the start-up CPU.
    pub steady_percent: f64,
    /// From the report's `sampling` (none without a budget).
    pub own_measure_percent: Option<f64>,
    pub traced_share: Option<f64>,
    pub paused_s: Option<f64>,
    pub final_one_in: Option<u64>,
    pub first_touch_pages_counted: u64,
    pub lost_events: u64,
}

/// Everything the part measured.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct AlwaysOn {
    pub workload: Vec<String>,
    /// numatrace's process CPU tracing `true` (median): start-up and exit.
    pub startup_cpu_s: f64,
    pub runs: Vec<Run>,
}

impl AlwaysOn {
    /// The median of a figure over the runs of one setting.
    pub fn median_of(&self, setting: &str, figure: impl Fn(&Run) -> f64) -> Option<f64> {
        let values: Vec<f64> = self.runs.iter().filter(|r| r.setting == setting).map(figure).collect();
        median(&values)
    }

    pub fn settings() -> impl Iterator<Item = &'static str> {
        SETTINGS.iter().map(|(label, _)| *label)
    }
}

/// Runs every setting once per round, in turn.
pub fn measure(tools: &Tools, workload: &[String], rounds: u32) -> Result<AlwaysOn> {
    let mut startup = Vec::new();
    for _ in 0..3 {
        let r = variants::run(
            tools,
            Variant::Numatrace,
            &[tools.numatrace.display().to_string(), "workload".into(), "touch".into(), "--pages".into(), "1".into()],
            &NumatraceOptions::default(),
        )
        .context("tracing a one-page run (start-up CPU)")?;
        startup.push(r.tracer.map_or(0.0, |t| t.cpu_s));
    }
    let startup_cpu_s = median(&startup).unwrap_or(0.0);
    let mut out = AlwaysOn { workload: workload.to_vec(), startup_cpu_s, runs: Vec::new() };
    for round in 0..rounds {
        for k in 0..SETTINGS.len() {
            let (label, flags) = SETTINGS[(k + round as usize) % SETTINGS.len()];
            let opts = NumatraceOptions {
                sample_programs: true,
                extra_args: flags.iter().map(|f| f.to_string()).collect(),
                ..Default::default()
            };
            let r = variants::run(tools, Variant::Numatrace, workload, &opts)
                .with_context(|| format!("always on, round {}, {label}", round + 1))?;
            let process_cpu_s = r.tracer.map_or(0.0, |t| t.cpu_s);
            let programs_s = r.programs.values().map(|p| p.run_time_ns).sum::<u64>() as f64 / 1e9;
            let report = r.report.unwrap_or(Value::Null);
            let sampling = report.get("sampling").filter(|s| !s.is_null());
            let f = |key: &str| sampling.and_then(|s| s.get(key)).and_then(Value::as_f64);
            let percent_of = |cpu: f64| if r.seconds > 0.0 { 100.0 * cpu / r.seconds } else { 0.0 };
            let run = Run {
                setting: label.to_string(),
                seconds: r.seconds,
                process_cpu_s,
                programs_s,
                percent: percent_of(programs_s + process_cpu_s),
                steady_percent: percent_of(programs_s + (process_cpu_s - startup_cpu_s).max(0.0)),
                own_measure_percent: f("measured_cpu_percent"),
                traced_share: f("traced_share"),
                paused_s: f("paused_s"),
                final_one_in: sampling.and_then(|s| s.get("final_one_in")).and_then(Value::as_u64),
                first_touch_pages_counted: report
                    .pointer("/kernel_counters/first_touch_pages")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                lost_events: report.get("lost_events").and_then(Value::as_u64).unwrap_or(0),
            };
            eprintln!(
                "bench:   round {} {label:<40} {:.1} s, {:.2} % of a core ({:.2} % steady)",
                round + 1,
                run.seconds,
                run.percent,
                run.steady_percent
            );
            out.runs.push(run);
        }
    }
    Ok(out)
}
