//! `cargo xtask demo`: the README's first command. Runs `numatrace demo` (a
//! built-in workload whose init thread first-touches memory that threads on
//! another node then use) and prints numatrace's report: directly on a host
//! with several NUMA nodes, inside a 2-node lab guest on a one-node host.
//! It installs what it needs first (`cargo xtask setup`, idempotent), so it
//! works as the first command on a fresh machine.
use std::{fs, path::Path, process::Command, time::Duration};

use anyhow::{Context, Result, bail};
use clap::Args;

use xtask::lab::{self, Balancing, GuestCommand, GuestNumatrace, LabOptions, Topology};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Use the lab even on a multi-node host.
    #[arg(long)]
    pub lab: bool,
    /// Nodes of the lab guest (one-node hosts).
    #[arg(long, default_value_t = 2)]
    pub nodes: u32,
}

/// NUMA nodes of this host that have CPUs.
fn host_nodes_with_cpus() -> usize {
    let Ok(entries) = fs::read_dir("/sys/devices/system/node") else { return 1 };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().strip_prefix("node").is_some_and(|n| n.parse::<u32>().is_ok()))
        .filter(|e| fs::read_to_string(e.path().join("cpulist")).is_ok_and(|c| !c.trim().is_empty()))
        .count()
        .max(1)
}

pub fn run(args: &DemoArgs) -> Result<i32> {
    crate::setup::run(&crate::setup::SetupArgs { check: false })?;
    let mut demo = vec!["numatrace".to_string(), "demo".to_string()];
    if args.json {
        demo.push("--json".into());
    }
    let nodes = host_nodes_with_cpus();
    if nodes >= 2 && !args.lab {
        eprintln!("demo: this host has {nodes} NUMA nodes; building numatrace and running `numatrace demo` here");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("xtask has no parent directory")?;
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(&cargo)
            .current_dir(workspace)
            .args(["build", "--quiet", "--release", "-p", "numatrace"])
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("cargo build -p numatrace failed ({status})");
        }
        let target = std::env::var_os("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|| workspace.join("target"));
        let status = Command::new(target.join("release/numatrace"))
            .args(&demo[1..])
            .status()
            .context("running numatrace demo")?;
        return Ok(status.code().unwrap_or(1));
    }
    eprintln!(
        "demo: this host has one NUMA node, so the demo runs in a {}-node guest (cargo xtask lab); first run downloads a kernel and builds numatrace",
        args.nodes
    );
    let opts = LabOptions {
        topology: Topology { nodes: args.nodes, cpus_per_node: 1, mem_per_node_mib: 512 },
        timeout: Duration::from_secs(600),
        verbose: false,
        stream_stdout: true,
        numatrace: GuestNumatrace::StaticRelease,
        packages: Vec::new(),
    };
    let run = lab::run_commands(&opts, &[GuestCommand { argv: demo, balancing: Balancing::Off }])?;
    let code = run.results.first().map(|r| r.exit_code).context("the guest reported no result")?;
    eprintln!("demo: guest booted in {:.1} s, ran for {:.1} s in all; exit status {code}", run.boot_s, run.total_s);
    Ok(code)
}
