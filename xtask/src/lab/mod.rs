//! `cargo xtask lab`: a multi-node NUMA machine inside this one. Boots
//! Debian's cloud kernel under QEMU (TCG) with the requested topology, with an
//! initramfs holding busybox, a static numatrace and every host program the
//! command names (also inside `sh -c` scripts; plus the libraries `ldd`
//! lists, see `initramfs`), runs the command, and brings its stdout and exit
//! status back. The guest's loopback interface is up (a local client and
//! server work); it has no other network.
//!
//! Channels: the guest's ttyS0 is the console (kernel messages, lab markers,
//! the command's stderr), read by the host line by line into a log; ttyS1 in
//! raw mode carries only the command's stdout, into a file the host tails.
pub mod initramfs;
pub mod kernel;
pub mod qemu;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

/// The guest machine's NUMA shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    pub nodes: u32,
    pub cpus_per_node: u32,
    pub mem_per_node_mib: u64,
}

impl Topology {
    /// Checks the shape against what QEMU and this host can do.
    pub fn validate(&self) -> Result<()> {
        if !(1..=8).contains(&self.nodes) {
            bail!("--nodes must be between 1 and 8, not {}", self.nodes);
        }
        if !(1..=8).contains(&self.cpus_per_node) {
            bail!("--cpus-per-node must be between 1 and 8, not {}", self.cpus_per_node);
        }
        if self.mem_per_node_mib < 128 {
            bail!(
                "--mem-per-node must be at least 128M (the kernel and the initramfs live in it), not {}M",
                self.mem_per_node_mib
            );
        }
        if self.mem_per_node_mib * u64::from(self.nodes) > 16 * 1024 {
            bail!("the guest would need {} MiB; keep it under 16 GiB", self.mem_per_node_mib * u64::from(self.nodes));
        }
        Ok(())
    }
}

/// What automatic NUMA balancing does in the guest while a command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Balancing {
    /// kernel.numa_balancing = 0.
    Off,
    /// kernel.numa_balancing = 1 with the kernel's own scan timing (first scan after 1 s).
    On,
    /// Balancing on, scanning starting after 100 ms and repeating every 100 ms, so that
    /// the balancer acts within seconds under emulation.
    Fast,
}

/// One command to run in the guest.
#[derive(Clone, Debug)]
pub struct GuestCommand {
    pub argv: Vec<String>,
    pub balancing: Balancing,
}

/// How to run the guest.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub topology: Topology,
    /// The whole guest (boot and every command) is killed after this long.
    pub timeout: Duration,
    /// Echo the guest console (kernel messages) to stderr, not only to the log.
    pub verbose: bool,
    /// Copy the command's stdout to this process's stdout as it arrives (one command only).
    pub stream_stdout: bool,
    /// Which numatrace build goes into the guest.
    pub numatrace: GuestNumatrace,
    /// Installed Debian packages whose files (as `dpkg -L` lists them, less
    /// documentation) go into the guest with the libraries their programs need.
    pub packages: Vec<String>,
}

/// The numatrace executable the guest gets (NUMATRACE_LAB_NUMATRACE overrides both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestNumatrace {
    /// A static release build for x86_64-unknown-linux-gnu (its own target directory:
    /// a first build compiles everything once more).
    StaticRelease,
    /// The workspace's ordinary debug build, dynamically linked (its libraries are
    /// copied in): free when `cargo test` has just built it.
    WorkspaceDebug,
    /// The workspace's release build (target/release/numatrace), as built
    /// already, with whatever features it was built with (the bench builds it
    /// with `bench-hooks`); dynamically linked, its libraries are copied in.
    WorkspaceRelease,
}

/// What one command did.
#[derive(Clone, Debug)]
pub struct CommandResult {
    pub stdout: Vec<u8>,
    pub exit_code: i32,
}

/// A finished guest.
#[derive(Clone, Debug)]
pub struct LabRun {
    pub results: Vec<CommandResult>,
    /// From QEMU start to the guest's init running.
    pub boot_s: f64,
    /// From QEMU start to its exit.
    pub total_s: f64,
    /// The guest console log.
    pub console_log: PathBuf,
}

/// `cargo xtask lab` arguments.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  cargo xtask lab --nodes 2 -- numatrace --json -- numatrace workload touch\n  cargo xtask lab --nodes 2 -- sh -c 'redis-server --daemonize yes; sleep 1; redis-cli ping'\n  cargo xtask lab --nodes 2 -- numactl --cpunodebind=1 --membind=0 numatrace workload place\n  cargo xtask lab --nodes 4 --cpus-per-node 1 -- numactl --hardware\n  cargo xtask lab --package postgresql-15 -- /usr/lib/postgresql/15/bin/postgres --version"
)]
pub struct LabArgs {
    /// NUMA nodes of the guest.
    #[arg(long, default_value_t = 2)]
    pub nodes: u32,
    /// CPUs per node (every guest CPU is a host thread under TCG; this host has few cores).
    #[arg(long, default_value_t = 1)]
    pub cpus_per_node: u32,
    /// Memory per node (e.g. 512M, 1G).
    #[arg(long, default_value = "512M", value_parser = parse_mib)]
    pub mem_per_node: u64,
    /// Automatic NUMA balancing in the guest.
    #[arg(long, value_enum, default_value_t = Balancing::On)]
    pub numa_balancing: Balancing,
    /// Kill the guest after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Also show the guest console (kernel messages) on stderr.
    #[arg(short, long)]
    pub verbose: bool,
    /// Also carry this host program into the guest (a name on PATH or a path), with its
    /// libraries; for programs the command reaches only indirectly. Repeatable.
    /// Programs named in the command, also inside `sh -c` scripts, are carried anyway.
    #[arg(long = "with", value_name = "PROG")]
    pub with: Vec<String>,
    /// Also carry an installed Debian package into the guest: every file `dpkg -L PKG`
    /// lists (less documentation), with the libraries its programs need; for software
    /// that needs more than its programs (PostgreSQL: `--package postgresql-15`). Repeatable.
    #[arg(long = "package", value_name = "PKG")]
    pub packages: Vec<String>,
    /// The command to run in the guest, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Parses a memory size like `512M`, `1G` or `768` (MiB) into MiB.
pub fn parse_mib(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, scale) = match t.chars().last() {
        Some('G' | 'g') => (&t[..t.len() - 1], 1024),
        Some('M' | 'm') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    digits.parse::<u64>().map(|n| n * scale).map_err(|_| format!("not a memory size: {text:?} (use e.g. 512M or 1G)"))
}

/// Runs `cargo xtask lab`; returns the command's exit status.
pub fn run(args: &LabArgs) -> Result<i32> {
    let topology =
        Topology { nodes: args.nodes, cpus_per_node: args.cpus_per_node, mem_per_node_mib: args.mem_per_node };
    let opts = LabOptions {
        topology,
        timeout: Duration::from_secs(args.timeout),
        verbose: args.verbose,
        stream_stdout: true,
        numatrace: GuestNumatrace::StaticRelease,
        packages: args.packages.clone(),
    };
    let run = run_commands_with(
        &opts,
        &[GuestCommand { argv: args.command.clone(), balancing: args.numa_balancing }],
        &args.with,
    )?;
    let result = run.results.first().context("the guest reported no command result")?;
    eprintln!(
        "lab: {} nodes, boot {:.1} s, total {:.1} s, exit status {} (console log: {})",
        topology.nodes,
        run.boot_s,
        run.total_s,
        result.exit_code,
        run.console_log.display()
    );
    Ok(result.exit_code)
}

/// Boots one guest and runs `commands` in it one after the other (sharing the
/// boot). Fails when the guest cannot be built or booted, hangs past the
/// timeout, or ends without reporting every command's exit status.
pub fn run_commands(opts: &LabOptions, commands: &[GuestCommand]) -> Result<LabRun> {
    run_commands_with(opts, commands, &[])
}

/// [`run_commands`], carrying the host programs `with` (names on PATH or
/// paths) into the guest besides those the commands name.
pub fn run_commands_with(opts: &LabOptions, commands: &[GuestCommand], with: &[String]) -> Result<LabRun> {
    opts.topology.validate()?;
    if commands.is_empty() {
        bail!("no command to run in the guest");
    }
    if let Some(empty) = commands.iter().position(|c| c.argv.is_empty()) {
        bail!("command {empty} is empty");
    }
    if opts.stream_stdout && commands.len() > 1 {
        bail!("stdout can be streamed for one command only");
    }
    let dirs = LabDirs::new()?;
    let qemu_bin = qemu::binary()?;
    let kernel = kernel::guest_kernel(&dirs).context("getting the guest kernel")?;
    let numatrace = guest_numatrace(&dirs, opts.numatrace).context("building numatrace for the guest")?;
    let image = dirs.run.join("initramfs.cpio");
    initramfs::build(&image, &numatrace, commands, with, &opts.packages, opts.stream_stdout)
        .context("packing the guest initramfs")?;
    qemu::boot(&qemu_bin, &kernel, &image, &dirs, opts, commands.len())
}

/// Where the lab keeps its downloads and its per-run files.
#[derive(Clone, Debug)]
pub struct LabDirs {
    /// The workspace root.
    pub workspace: PathBuf,
    /// Cargo's target directory.
    pub target: PathBuf,
    /// target/lab: the kernel cache.
    pub lab: PathBuf,
    /// target/lab/run-<pid>-<n>: this guest's initramfs, console log, stdout file.
    pub run: PathBuf,
}

impl LabDirs {
    fn new() -> Result<LabDirs> {
        let (workspace, target) = crate::static_build::workspace_dirs()?;
        let lab = target.join("lab");
        // One directory per guest, also when one process runs several guests at once.
        static GUESTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nth = GUESTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let run = lab.join(format!("run-{}-{nth}", std::process::id()));
        prune_old_runs(&lab);
        std::fs::create_dir_all(&run).with_context(|| format!("creating {}", run.display()))?;
        Ok(LabDirs { workspace, target, lab, run })
    }
}

/// Removes run directories older than a day (a run keeps its own only when it failed).
fn prune_old_runs(lab: &Path) {
    let Ok(entries) = std::fs::read_dir(lab) else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(86_400));
        if old && entry.file_name().to_string_lossy().starts_with("run-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Names a numatrace executable to put in the guest instead of building one
/// (for example the one CI built already, or one built from another checkout).
pub const NUMATRACE_ENV: &str = "NUMATRACE_LAB_NUMATRACE";

/// Builds numatrace for the guest and returns its path; cargo skips the build
/// when it is up to date. A static build needs no shared library in the guest;
/// a dynamically linked one works too, its libraries are copied like those of
/// any other host program.
fn guest_numatrace(dirs: &LabDirs, which: GuestNumatrace) -> Result<PathBuf> {
    if let Some(given) = std::env::var_os(NUMATRACE_ENV) {
        let exe = PathBuf::from(given);
        if !exe.is_file() {
            bail!("{NUMATRACE_ENV}={} is not a file", exe.display());
        }
        return Ok(exe);
    }
    if which == GuestNumatrace::StaticRelease {
        eprint!("lab: ");
        return crate::static_build::build(&dirs.workspace, &dirs.target);
    }
    if which == GuestNumatrace::WorkspaceRelease {
        let exe = dirs.target.join("release").join("numatrace");
        if !exe.is_file() {
            bail!("{} is missing: build it first (cargo build --release -p numatrace)", exe.display());
        }
        return Ok(exe);
    }
    // The workspace's debug build (the others returned above).
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&dirs.workspace).args(["build", "--quiet", "-p", "numatrace"]);
    let exe = dirs.target.join("debug").join("numatrace");
    let status = cmd.status().with_context(|| format!("running {}", Path::new(&cargo).display()))?;
    if !status.success() {
        bail!("cargo build -p numatrace for the guest failed ({status})");
    }
    if !exe.is_file() {
        bail!("the build did not produce {}", exe.display());
    }
    Ok(exe)
}
