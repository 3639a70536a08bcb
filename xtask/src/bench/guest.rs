//! `cargo xtask bench --lab`: the kernel-side parts of the bench inside a
//! 2-node Debian 6.1 guest (the lab). The guest runs this very xtask binary
//! (`bench --in-guest --json`) with the host's release numatrace on its PATH
//! and the host's bpftrace and perf (each with the libraries ldd lists), and
//! its JSON results come back on the lab's stdout channel.
//!
//! One CPU per node: every migration of the migration-heavy workload crosses
//! nodes. NUMA balancing is off, so that hinting faults and balancer moves do
//! not add to the workloads. Under emulation (TCG) absolute times mean little;
//! the ratios against the empty-program baseline and bpftrace do.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use xtask::lab::{self, Balancing, GuestCommand, GuestNumatrace, LabOptions, Topology, qemu::SOFT_LOCKUP};

use super::{BenchArgs, Part, Results};

/// The guest's shape: 2 nodes, one CPU each (this host has 2 cores), and room
/// for bpftrace's LLVM libraries (about 210 MB) in the initramfs besides the workloads.
const TOPOLOGY: Topology = Topology { nodes: 2, cpus_per_node: 1, mem_per_node_mib: 1536 };
/// The whole guest is killed after this long.
const TIMEOUT_S: u64 = 3 * 3600;

/// Boots the guest, runs the bench in it and returns its results (one retry
/// when the guest kernel hits a soft lockup, seen under heavy host load).
pub fn run(args: &BenchArgs, root: &Path) -> Result<Results> {
    let xtask = guest_xtask(root)?;
    let mut argv =
        vec![xtask.display().to_string(), "bench".into(), "--in-guest".into(), "--json".into(), "--no-build".into()];
    argv.extend(passed_on(args));
    eprintln!("bench: in the lab guest ({} nodes): {}", TOPOLOGY.nodes, argv.join(" "));
    let opts = LabOptions {
        topology: TOPOLOGY,
        timeout: std::time::Duration::from_secs(TIMEOUT_S),
        verbose: false,
        stream_stdout: false,
        numatrace: GuestNumatrace::WorkspaceRelease,
        packages: Vec::new(),
    };
    let commands = [GuestCommand { argv, balancing: Balancing::Off }];
    let with = ["bpftrace".to_string(), "perf".to_string()];
    let run = match lab::run_commands_with(&opts, &commands, &with) {
        Err(e) if format!("{e:#}").contains(SOFT_LOCKUP) => {
            eprintln!("bench: {e:#}; booting the guest once more");
            lab::run_commands_with(&opts, &commands, &with)?
        }
        other => other?,
    };
    let result = run.results.first().context("the guest reported no result")?;
    if result.exit_code != 0 {
        bail!(
            "the bench in the guest exited with status {} (its errors are above; console log: {})",
            result.exit_code,
            run.console_log.display()
        );
    }
    let text = String::from_utf8_lossy(&result.stdout);
    let start = text.find('{').context("the guest's bench printed no JSON")?;
    let mut results: Results = serde_json::from_str(text[start..].trim_end())
        .with_context(|| format!("reading the guest's bench results ({} bytes)", text.len()))?;
    results.machine = format!(
        "lab guest: QEMU TCG, {} nodes x {} CPU x {} MiB, NUMA balancing off (boot {:.1} s)",
        TOPOLOGY.nodes, TOPOLOGY.cpus_per_node, TOPOLOGY.mem_per_node_mib, run.boot_s
    );
    Ok(results)
}

/// The options the guest's bench gets: the sizes as given (the guest picks
/// smaller defaults for those not given), and only the parts that run there.
fn passed_on(args: &BenchArgs) -> Vec<String> {
    let mut out = Vec::new();
    if args.quick {
        out.push("--quick".to_string());
    }
    let sizes = [
        ("--pages", args.pages),
        ("--threads", args.threads.map(u64::from)),
        ("--workload-rounds", args.workload_rounds.map(u64::from)),
        ("--hop-threads", args.hop_threads.map(u64::from)),
        ("--hops", args.hops),
        ("--rounds", args.rounds.map(u64::from)),
    ];
    for (flag, value) in sizes {
        if let Some(v) = value {
            out.push(format!("{flag}={v}"));
        }
    }
    let parts: Vec<&str> =
        Part::IN_GUEST.iter().filter(|p| args.only.is_empty() || args.only.contains(p)).map(|p| p.name()).collect();
    if !parts.is_empty() {
        out.push(format!("--only={}", parts.join(",")));
    }
    out
}

/// This xtask binary, without its debug information (the guest holds every
/// file in RAM): a stripped copy under target/bench, or the binary itself when
/// objcopy is missing.
fn guest_xtask(root: &Path) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let copy = dir.join("xtask-guest");
    let stripped = std::process::Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&exe)
        .arg(&copy)
        .status()
        .is_ok_and(|s| s.success());
    Ok(if stripped { copy } else { exe })
}
