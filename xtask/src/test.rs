//! `cargo xtask test`: setup, then every test of the workspace, as root,
//! including the ones that load real programs into this kernel and the QEMU
//! lab, and a closing line that sums every test binary's results.
//!
//! Tests that need root are `#[ignore = "needs root"]` and the lab's are
//! `#[ignore = "boots QEMU"]`, so that a plain `cargo test` runs neither and
//! shows them as ignored, never as passed. This runs them with
//! `--include-ignored`; `--no-lab` leaves the lab's ignored (and counted so).
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Skip the lab scenarios (QEMU multi-node guests): they are listed as ignored.
    #[arg(long)]
    pub no_lab: bool,
    /// Extra arguments for `cargo test`, given to each of its runs: a test name
    /// filter, then after another `--` libtest's own (e.g. `--nocapture`).
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

/// Sums of libtest's `test result:` lines, and why the ignored tests were.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
    /// `test NAME ... ignored, REASON` lines by reason ("" for none).
    ignored_why: BTreeMap<String, u64>,
}

impl Totals {
    /// Adds one line of libtest's output: a result line
    /// (`test result: ok. 88 passed; 0 failed; 1 ignored; ...`) or an ignored test's.
    fn add_line(&mut self, line: &str) {
        let line = line.trim();
        if line.starts_with("test ")
            && let Some((_, outcome)) = line.split_once(" ... ")
            && let Some(why) = outcome.strip_prefix("ignored")
        {
            let why = why.strip_prefix(',').unwrap_or(why).trim();
            *self.ignored_why.entry(why.to_string()).or_default() += 1;
            return;
        }
        let Some(rest) = line.strip_prefix("test result:") else { return };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else { continue };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }

    /// The closing line: ignored tests are not passed ones, and say why.
    fn summary(&self) -> String {
        let mut line = format!("tests: {} passed, {} failed, {} ignored", self.passed, self.failed, self.ignored);
        if self.ignored > 0 && !self.ignored_why.is_empty() {
            let why: Vec<String> = self
                .ignored_why
                .iter()
                .map(|(why, n)| if why.is_empty() { format!("{n} without a reason") } else { format!("{n} {why}") })
                .collect();
            line.push_str(&format!(" ({})", why.join(", ")));
        }
        line
    }
}

/// The `cargo test` runs, each with what it covers: the workspace's default
/// members but the lab's with every ignored test, then the lab's crate, with
/// its QEMU tests unless `--no-lab`.
fn cargo_runs(args: &TestArgs) -> Vec<(&'static str, Command)> {
    let lab = if args.no_lab {
        "the lab's own unit tests (--no-lab: its QEMU scenarios are listed as ignored)"
    } else {
        "the QEMU lab (2- and 4-node guests, fixes run as printed, real software: about 10 minutes)"
    };
    let runs: [(&str, &[&str], bool); 2] = [
        (
            "unit tests, kernel integration tests (real programs, this kernel), captures, inspect vs numastat",
            // Every crate but numatrace-ebpf, which only builds for the BPF
            // target (numatrace/build.rs builds and embeds it), and the lab's.
            // bench-hooks: the load generator and --classic-tracepoints, which some tests drive.
            &[
                "--workspace",
                "--exclude",
                "numatrace-ebpf",
                "--exclude",
                "numatrace-tests",
                "--features",
                "numatrace/bench-hooks",
            ],
            true,
        ),
        (lab, &["-p", "numatrace-tests"], !args.no_lab),
    ];
    // The caller's arguments: cargo's (a filter), then after `--` libtest's.
    let (cargo_args, libtest_args) = match args.cargo_args.iter().position(|a| a == "--") {
        Some(i) => (&args.cargo_args[..i], &args.cargo_args[i + 1..]),
        None => (&args.cargo_args[..], &[][..]),
    };
    runs.into_iter()
        .map(|(what, packages, include_ignored)| {
            let mut cmd = Command::new("cargo");
            // Every test binary runs, also after one fails: the closing line covers them all.
            cmd.arg("test").arg("--no-fail-fast").args(packages).args(cargo_args).arg("--");
            if include_ignored {
                cmd.arg("--include-ignored");
            }
            cmd.args(libtest_args);
            (what, cmd)
        })
        .collect()
}

pub fn run(args: &TestArgs) -> Result<i32> {
    crate::setup::run(&crate::setup::SetupArgs { check: false })?;
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "cargo xtask test runs the tests that load BPF programs into this kernel: run it as root \
             (sudo -E env \"PATH=$PATH\" cargo xtask test). Plain `cargo test` runs the tests that need \
             neither root nor QEMU (tests/README.md)"
        );
    }
    let mut totals = Totals::default();
    let mut code = 0;
    for (what, mut cmd) in cargo_runs(args) {
        eprintln!("test: {what}");
        cmd.stdout(Stdio::piped());
        let mut child = cmd.spawn().context("running cargo test")?;
        let stdout = child.stdout.take().context("cargo test's output")?;
        let mut out = std::io::stdout().lock();
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading cargo test's output")?;
            totals.add_line(&line);
            writeln!(out, "{line}")?;
        }
        let status = child.wait().context("waiting for cargo test")?;
        if code == 0 && !status.success() {
            code = status.code().unwrap_or(1);
        }
    }
    // One closing line over every test binary (the last libtest line is often a doc-test run of 0).
    writeln!(std::io::stdout(), "{}", totals.summary())?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_libtest_result_lines() {
        let mut t = Totals::default();
        t.add_line("test result: ok. 88 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 2.09s");
        t.add_line("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s");
        t.add_line("running 5 tests");
        assert_eq!((t.passed, t.failed, t.ignored), (91, 2, 1));
    }

    #[test]
    fn says_why_tests_were_ignored() {
        let mut t = Totals::default();
        for line in [
            "test scenario_1_init_thread_counts_2_nodes ... ignored, boots QEMU",
            "test fix_as_printed_spill_2_nodes ... ignored, boots QEMU",
            "test old_helper ... ignored",
            "test counts_every_first_touch_of_every_thread ... ok",
            "test result: ok. 1 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.00s",
        ] {
            t.add_line(line);
        }
        assert_eq!(t.summary(), "tests: 1 passed, 0 failed, 3 ignored (1 without a reason, 2 boots QEMU)");
        assert_eq!(Totals::default().summary(), "tests: 0 passed, 0 failed, 0 ignored");
    }

    fn args_of(cmd: &Command) -> Vec<String> {
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn runs_ignored_tests_and_the_lab_unless_told_not_to() {
        let all = cargo_runs(&TestArgs { no_lab: false, cargo_args: vec![] });
        let all: Vec<Vec<String>> = all.iter().map(|(_, c)| args_of(c)).collect();
        assert_eq!(
            all[0],
            [
                "test",
                "--no-fail-fast",
                "--workspace",
                "--exclude",
                "numatrace-ebpf",
                "--exclude",
                "numatrace-tests",
                "--features",
                "numatrace/bench-hooks",
                "--",
                "--include-ignored"
            ]
        );
        assert_eq!(all[1], ["test", "--no-fail-fast", "-p", "numatrace-tests", "--", "--include-ignored"]);
        let no_lab = cargo_runs(&TestArgs { no_lab: true, cargo_args: vec![] });
        assert!(args_of(&no_lab[0].1).contains(&"--include-ignored".to_string()), "root tests still run");
        assert_eq!(args_of(&no_lab[1].1), ["test", "--no-fail-fast", "-p", "numatrace-tests", "--"]);
    }

    #[test]
    fn passes_a_filter_to_cargo_and_the_rest_to_libtest() {
        let runs = cargo_runs(&TestArgs {
            no_lab: true,
            cargo_args: vec!["fix_as_printed".into(), "--".into(), "--nocapture".into()],
        });
        assert_eq!(
            args_of(&runs[1].1),
            ["test", "--no-fail-fast", "-p", "numatrace-tests", "fix_as_printed", "--", "--nocapture"]
        );
    }
}
