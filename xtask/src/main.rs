//! `cargo xtask <command>`: everything around numatrace that is not numatrace.
mod bench;
mod demo;
mod setup;
mod test;

// The lab and dist live in the library, where the tests use them too.
use xtask::{dist, lab};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Build, set up, test, lab, demo, bench and package numatrace")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what building and testing need (Debian/Ubuntu packages, bpf-linker). Idempotent.
    Setup(setup::SetupArgs),
    /// Set up, build, and run every test (unit, kernel integration, lab scenarios).
    Test(test::TestArgs),
    /// Run numatrace on a built-in workload with a known NUMA pathology (in the lab on a one-node host).
    Demo(demo::DemoArgs),
    /// Boot a multi-node NUMA kernel under QEMU and run a command in it.
    Lab(lab::LabArgs),
    /// Measure numatrace's overhead against untraced runs, bpftrace and perf.
    Bench(bench::BenchArgs),
    /// Build the static x86_64 binary (kernel programs embedded), its .sha256 and a .deb under target/dist/.
    Dist(dist::DistArgs),
}

fn main() {
    let cli = Cli::parse();
    let result: Result<i32> = match cli.command {
        Command::Setup(args) => setup::run(&args).map(|()| 0),
        Command::Test(args) => test::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Lab(args) => lab::run(&args),
        Command::Bench(args) => bench::run(&args).map(|()| 0),
        Command::Dist(args) => dist::run(&args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            let msg = err.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ");
            eprintln!("xtask: error: {msg}");
            std::process::exit(1);
        }
    }
}
