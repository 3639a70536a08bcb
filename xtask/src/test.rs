//! `cargo xtask test`: setup, then every test of the workspace, as root,
//! including the ones that load real programs into this kernel.
use std::process::Command;

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

pub fn run(args: &TestArgs) -> Result<i32> {
    crate::setup::run(&crate::setup::SetupArgs { check: false })?;
    // The workspace's default members: every crate but numatrace-ebpf, which only
    // builds for the BPF target (numatrace/build.rs builds and embeds it).
    let mut cmd = Command::new("cargo");
    cmd.arg("test");
    eprintln!(
        "test: unit tests, kernel integration tests (real programs, this kernel), captures, inspect vs numastat{}",
        if args.no_lab { "" } else { ", and the QEMU lab (2- and 4-node guests, several minutes)" }
    );
    if args.no_lab {
        cmd.env("NUMATRACE_NO_LAB", "1");
    }
    cmd.args(&args.cargo_args);
    let status = cmd.status().context("running cargo test")?;
    Ok(status.code().unwrap_or(1))
}
