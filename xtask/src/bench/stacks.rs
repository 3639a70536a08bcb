//! `--stacks`: what taking a user call stack per first-touch run adds to
//! numatrace's cost on the fault-heavy workload (issue #19). The workload
//! runs untraced, under numatrace and under `numatrace --stacks`, interleaved
//! and rotated within each round; a traced run's added CPU is the workload's
//! CPU over the same round's untraced run (where the kernel programs are
//! charged) plus numatrace's own process CPU (reading the stacks, the
//! mappings, symbolizing at the end).
use anyhow::{Context, Result};
use serde_json::Value;

use super::{
    report::median,
    variants::{self, NumatraceOptions, Tools, Variant},
};

/// The goal: `--stacks` adds at most this many percent to numatrace's added CPU.
pub const STACKS_GOAL_PERCENT: f64 = 30.0;

/// The ways the workload is run, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    Untraced,
    Numatrace,
    NumatraceStacks,
}

impl Setting {
    pub const ALL: [Setting; 3] = [Setting::Untraced, Setting::Numatrace, Setting::NumatraceStacks];

    pub fn label(self) -> &'static str {
        match self {
            Setting::Untraced => "untraced",
            Setting::Numatrace => "numatrace",
            Setting::NumatraceStacks => "numatrace --stacks",
        }
    }

    fn variant(self) -> Variant {
        match self {
            Setting::Untraced => Variant::Untraced,
            Setting::Numatrace | Setting::NumatraceStacks => Variant::Numatrace,
        }
    }

    fn extra_args(self) -> Vec<String> {
        match self {
            Setting::NumatraceStacks => vec!["--stacks".to_string()],
            Setting::Untraced | Setting::Numatrace => Vec::new(),
        }
    }
}

/// One run of the workload.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Run {
    /// The bench round (from 0): traced runs are compared with the untraced run of theirs.
    pub round: u32,
    pub setting: Setting,
    /// The workload's own clock.
    pub seconds: f64,
    /// The workload's own CPU (user + system, where its page faults' programs are charged).
    pub workload_cpu_s: f64,
    /// numatrace's own process CPU (none untraced).
    pub tracer_cpu_s: Option<f64>,
    /// From the report's `stacks` (with `--stacks` only).
    pub stacks_taken: Option<u64>,
    pub stacks_lost: Option<u64>,
}

/// Everything the part measured.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Stacks {
    pub workload: Vec<String>,
    pub runs: Vec<Run>,
}

impl Stacks {
    fn of(&self, setting: Setting) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(move |r| r.setting == setting)
    }

    /// The median of a figure over the runs of one setting (runs without it left out).
    pub fn median_of(&self, setting: Setting, figure: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
        let values: Vec<f64> = self.of(setting).filter_map(figure).collect();
        median(&values)
    }

    /// Rounds with an untraced run.
    pub fn rounds(&self) -> usize {
        self.of(Setting::Untraced).count()
    }

    /// Per-round added CPU of a traced setting: its workload CPU over the same
    /// round's untraced run, plus numatrace's own.
    pub fn added(&self, setting: Setting) -> Vec<f64> {
        self.added_by_round(setting).into_iter().map(|(_, added)| added).collect()
    }

    fn added_by_round(&self, setting: Setting) -> Vec<(u32, f64)> {
        self.of(setting)
            .filter_map(|run| {
                let base = self.of(Setting::Untraced).find(|u| u.round == run.round)?;
                Some((run.round, run.workload_cpu_s - base.workload_cpu_s + run.tracer_cpu_s?))
            })
            .collect()
    }

    /// What `--stacks` adds to numatrace's added CPU, in percent: the ratio of
    /// the medians over rounds, minus one (none when plain numatrace added nothing).
    pub fn extra_percent(&self) -> Option<f64> {
        let with = median(&self.added(Setting::NumatraceStacks))?;
        let without = median(&self.added(Setting::Numatrace))?;
        (without > 0.0).then(|| (with / without - 1.0) * 100.0)
    }

    /// The same per round, then the median: a check on the ratio of medians.
    pub fn extra_percent_per_round(&self) -> Option<f64> {
        let with = self.added_by_round(Setting::NumatraceStacks);
        let ratios: Vec<f64> = self
            .added_by_round(Setting::Numatrace)
            .into_iter()
            .filter(|(_, without)| *without > 0.0)
            .filter_map(|(round, without)| {
                let (_, with) = with.iter().find(|(r, _)| *r == round)?;
                Some((with / without - 1.0) * 100.0)
            })
            .collect();
        median(&ratios)
    }

    /// Whether the goal is met (none when not measured).
    pub fn goal_met(&self) -> Option<bool> {
        self.extra_percent().map(|p| p <= STACKS_GOAL_PERCENT)
    }
}

/// One untimed warm-up run, then every setting once per round, the order rotated.
pub fn measure(tools: &Tools, workload: &[String], rounds: u32) -> Result<Stacks> {
    variants::run(tools, Variant::Untraced, workload, &NumatraceOptions::default()).context("the warm-up run")?;
    let mut out = Stacks { workload: workload.to_vec(), runs: Vec::new() };
    for round in 0..rounds {
        for k in 0..Setting::ALL.len() {
            let setting = Setting::ALL[(k + round as usize) % Setting::ALL.len()];
            let opts = NumatraceOptions { extra_args: setting.extra_args(), ..Default::default() };
            let r = variants::run(tools, setting.variant(), workload, &opts)
                .with_context(|| format!("--stacks, round {}, {}", round + 1, setting.label()))?;
            let workload_cpu_s =
                r.cpu_seconds.with_context(|| format!("the workload reported no cpu_seconds ({})", setting.label()))?;
            let stacks = r.report.as_ref().and_then(|rep| rep.get("stacks")).filter(|s| !s.is_null());
            let count = |key: &str| stacks.and_then(|s| s.get(key)).and_then(Value::as_u64);
            let run = Run {
                round,
                setting,
                seconds: r.seconds,
                workload_cpu_s,
                tracer_cpu_s: r.tracer.map(|t| t.cpu_s),
                stacks_taken: count("taken"),
                stacks_lost: count("lost"),
            };
            eprintln!(
                "bench:   round {} {:<18} {:.3} s, workload CPU {:.3} s, numatrace CPU {}",
                round + 1,
                setting.label(),
                run.seconds,
                run.workload_cpu_s,
                run.tracer_cpu_s.map_or("-".into(), |c| format!("{c:.3} s"))
            );
            out.runs.push(run);
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn run(round: u32, setting: Setting, workload_cpu_s: f64, tracer_cpu_s: Option<f64>) -> Run {
        Run {
            round,
            setting,
            seconds: workload_cpu_s / 2.0,
            workload_cpu_s,
            tracer_cpu_s,
            stacks_taken: (setting == Setting::NumatraceStacks).then_some(40),
            stacks_lost: (setting == Setting::NumatraceStacks).then_some(0),
        }
    }

    /// Three rounds: numatrace adds 0.5, 0.6, 0.7 s; --stacks 0.6, 0.8, 0.9 s.
    pub(in super::super) fn sample() -> Stacks {
        let mut s = Stacks { workload: vec!["touch".into()], runs: Vec::new() };
        for (round, base, plain, stacks) in
            [(0, 2.5, (2.7, 0.3), (2.8, 0.3)), (1, 2.4, (2.6, 0.4), (2.7, 0.5)), (2, 2.6, (2.9, 0.4), (3.0, 0.5))]
        {
            s.runs.push(run(round, Setting::Untraced, base, None));
            s.runs.push(run(round, Setting::Numatrace, plain.0, Some(plain.1)));
            s.runs.push(run(round, Setting::NumatraceStacks, stacks.0, Some(stacks.1)));
        }
        s
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn added_cpu_pairs_each_run_with_its_rounds_untraced_run() {
        let s = sample();
        let added = s.added(Setting::Numatrace);
        assert_eq!(added.len(), 3);
        for (a, want) in added.iter().zip([0.5, 0.6, 0.7]) {
            assert!((a - want).abs() < 1e-9, "{added:?}");
        }
        assert!(s.added(Setting::Untraced).is_empty(), "untraced has no numatrace CPU");
        assert_eq!(s.rounds(), 3);
    }

    #[test]
    fn extra_percent_is_the_ratio_of_the_medians() {
        let s = sample();
        // Medians 0.8 / 0.6 - 1.
        assert!(close(s.extra_percent(), (0.8 / 0.6 - 1.0) * 100.0), "{:?}", s.extra_percent());
        // Per round: 0.6/0.5, 0.8/0.6, 0.9/0.7 -> +20 %, +33.3 %, +28.6 %: median +28.6 %.
        assert!(close(s.extra_percent_per_round(), (0.9 / 0.7 - 1.0) * 100.0));
        assert_eq!(s.goal_met(), Some(false));
        assert!(close(s.median_of(Setting::NumatraceStacks, |r| r.stacks_taken.map(|n| n as f64)), 40.0));
        assert_eq!(s.median_of(Setting::Numatrace, |r| r.stacks_taken.map(|n| n as f64)), None);
    }

    #[test]
    fn no_ratio_without_a_positive_baseline() {
        let mut s = sample();
        s.runs.retain(|r| r.setting != Setting::Numatrace);
        assert_eq!(s.extra_percent(), None);
        assert_eq!(s.goal_met(), None);
        let mut s = sample();
        for r in s.runs.iter_mut().filter(|r| r.setting == Setting::Numatrace) {
            r.tracer_cpu_s = Some(0.0);
            r.workload_cpu_s = 0.0;
        }
        assert_eq!(s.extra_percent(), None, "plain numatrace added nothing (noise): no ratio");
    }

    #[test]
    fn within_the_goal_is_met() {
        let mut s = sample();
        for r in s.runs.iter_mut().filter(|r| r.setting == Setting::NumatraceStacks) {
            r.tracer_cpu_s = r.tracer_cpu_s.map(|c| c - 0.1);
        }
        // Medians 0.7 / 0.6 - 1 = +16.7 %.
        assert!(close(s.extra_percent(), (0.7 / 0.6 - 1.0) * 100.0));
        assert_eq!(s.goal_met(), Some(true));
    }
}
