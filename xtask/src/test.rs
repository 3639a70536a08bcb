//! `cargo xtask test`: setup, then every test of the workspace, as root,
//! including the ones that load real programs into this kernel, and a
//! closing line that sums every test binary's results.
use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

use anyhow::{Context, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Skip the lab scenarios (QEMU multi-node guests).
    #[arg(long)]
    pub no_lab: bool,
    /// Extra arguments for `cargo test` (e.g. a test name filter).
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

/// Sums of libtest's `test result:` lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Adds one `test result: ok. 88 passed; 0 failed; 1 ignored; ...` line, if it is one.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result:") else { return };
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
}

pub fn run(args: &TestArgs) -> Result<i32> {
    crate::setup::run(&crate::setup::SetupArgs { check: false })?;
    // The workspace's default members: every crate but numatrace-ebpf, which only
    // builds for the BPF target (numatrace/build.rs builds and embeds it).
    let mut cmd = Command::new("cargo");
    cmd.arg("test");
    eprintln!(
        "test: unit tests, kernel integration tests (real programs, this kernel), captures, inspect vs numastat{}",
        if args.no_lab {
            ""
        } else {
            ", and the QEMU lab (2- and 4-node guests, fixes run as printed, real software: about 10 minutes)"
        }
    );
    if args.no_lab {
        cmd.env("NUMATRACE_NO_LAB", "1");
    }
    cmd.args(&args.cargo_args).stdout(Stdio::piped());
    let mut child = cmd.spawn().context("running cargo test")?;
    let stdout = child.stdout.take().context("cargo test's output")?;
    let mut totals = Totals::default();
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        totals.add_line(&line);
        writeln!(out, "{line}")?;
    }
    let status = child.wait().context("waiting for cargo test")?;
    // One closing line over every test binary (the last libtest line is often a doc-test run of 0).
    writeln!(out, "tests: {} passed, {} failed, {} skipped", totals.passed, totals.failed, totals.ignored)?;
    Ok(status.code().unwrap_or(1))
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
        assert_eq!(t, Totals { passed: 91, failed: 2, ignored: 1 });
    }
}
