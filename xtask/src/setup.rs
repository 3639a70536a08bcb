//! Installs the build and test prerequisites on a Debian/Ubuntu machine:
//! Debian's Rust with library source (for -Z build-std=core on the BPF
//! target), bpf-linker built against Debian's LLVM 22, the tools the tests,
//! lab and bench use, and the real programs of the lab suite (memhog,
//! sysbench, stress-ng, redis, PostgreSQL), the viewers the export tests open
//! (Chromium, speedscope), clippy and rustfmt for CI's checks, and for
//! `cargo xtask dist` and its test cargo-deb and debootstrap, and the
//! Prometheus server the exporter's test scrapes with.
//! Skips what is already there.
use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Only check, print what is missing, install nothing.
    #[arg(long)]
    pub check: bool,
}

/// Debian packages: (package, a file it installs that proves it is there).
const PACKAGES: &[(&str, &str)] = &[
    ("rustc-web", "/usr/bin/rustc"),
    ("cargo-web", "/usr/bin/cargo"),
    ("rust-web-src", "/usr/lib/rustlib/src/rust/library/core/Cargo.toml"),
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ("busybox-static", "/bin/busybox"),
    ("cpio", "/usr/bin/cpio"),
    ("numactl", "/usr/bin/numastat"),
    ("bpftrace", "/usr/bin/bpftrace"),
    ("linux-perf", "/usr/bin/perf"),
    // rsvg-convert: the capture_export test renders the SVG timeline to PNG.
    ("librsvg2-bin", "/usr/bin/rsvg-convert"),
    // The viewers test (numatrace/tests/viewers.rs) opens the exports in headless Chromium,
    // and speedscope (an npm package, below) in it. A machine whose Node.js came from
    // elsewhere (NodeSource's bundles npm) already has both files.
    ("chromium", "/usr/bin/chromium"),
    ("nodejs", "/usr/bin/node"),
    ("npm", "/usr/bin/npm"),
    // Real software for the lab suite (tests/tests/lab_real.rs), carried into the guest:
    // numactl's memhog (above), sysbench memory, stress-ng --vm/--numa, redis over loopback.
    ("sysbench", "/usr/bin/sysbench"),
    ("stress-ng", "/usr/bin/stress-ng"),
    // /usr/bin/redis-server is a link into redis-tools' redis-check-rdb: it proves both.
    // Where apt may start services, its postinst also starts a host daemon; the lab does not use it.
    ("redis-server", "/usr/bin/redis-server"),
    ("redis-tools", "/usr/bin/redis-benchmark"),
    // PostgreSQL for the whole-service suite (tests/tests/lab_services.rs), carried in with
    // `--package`: the server with pgbench, psql from the client, time zones for initdb.
    // Its postinst may create and start a host cluster; the lab does not use it.
    ("postgresql-15", "/usr/lib/postgresql/15/bin/pgbench"),
    ("postgresql-client-15", "/usr/lib/postgresql/15/bin/psql"),
    ("tzdata", "/usr/share/zoneinfo/UTC"),
    // The dist test installs the .deb in a clean Debian chroot it bootstraps (tests/tests/dist.rs).
    ("debootstrap", "/usr/sbin/debootstrap"),
    // The exporter's test verifies packaging/numatrace-exporter.service with systemd-analyze.
    ("systemd", "/usr/bin/systemd-analyze"),
    // `numatrace top` is driven in a real terminal: numatrace/tests/top.rs runs it in tmux.
    ("tmux", "/usr/bin/tmux"),
];

/// The Prometheus server (and promtool) numatrace/tests/exporter.rs runs on
/// its own port and storage. Installed apart, without recommends (no
/// node exporter daemon), and its own daemon stopped (see `install_prometheus`).
const PROMETHEUS: (&str, &str) = ("prometheus", "/usr/bin/prometheus");

const BPF_LINKER_VERSION: &str = "0.13.0";

/// speedscope, pinned: the viewers test loads the folded and Trace Event
/// exports in its release files.
const SPEEDSCOPE_VERSION: &str = "1.25.0";
/// `npm install --prefix` of speedscope: outside the work tree, so that a
/// fresh clone (CI) or `cargo clean` does not fetch it again. The viewers
/// test reads `node_modules/speedscope/dist/release` below it.
const SPEEDSCOPE_DIR: &str = "/var/cache/numatrace/speedscope";

/// Installs Debian's Prometheus for the exporter's test. Its postinst enables
/// and, where apt may start services, starts a daemon on :9090 that scrapes
/// every 15 s and writes to /var/lib/prometheus: the test never uses it, so
/// it is stopped and disabled again (it was not there before).
fn install_prometheus() -> Result<()> {
    eprintln!("setup: installing Debian package {} (without recommends)", PROMETHEUS.0);
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!("no apt-get here; install Prometheus (prometheus and promtool on PATH)");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends", PROMETHEUS.0])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get install {} failed", PROMETHEUS.0);
    }
    if Path::new("/run/systemd/system").exists() {
        // Best effort: a failure here leaves an idle daemon, not a broken setup.
        let _ = Command::new("systemctl").args(["disable", "--now", "prometheus.service"]).status();
    } else if Path::new("/etc/init.d/prometheus").exists() {
        let _ = Command::new("/etc/init.d/prometheus").arg("stop").status();
    }
    Ok(())
}

/// The version of speedscope installed in [`SPEEDSCOPE_DIR`], if any.
fn speedscope_version() -> Option<String> {
    let manifest = Path::new(SPEEDSCOPE_DIR).join("node_modules/speedscope/package.json");
    let text = std::fs::read_to_string(manifest).ok()?;
    let line = text.lines().find(|l| l.trim_start().starts_with("\"version\""))?;
    Some(line.split('"').nth(3)?.to_string())
}

fn have_speedscope() -> bool {
    speedscope_version().as_deref() == Some(SPEEDSCOPE_VERSION)
        && Path::new(SPEEDSCOPE_DIR).join("node_modules/speedscope/dist/release/index.html").is_file()
}

fn install_speedscope() -> Result<()> {
    eprintln!("setup: installing speedscope {SPEEDSCOPE_VERSION} (npm) in {SPEEDSCOPE_DIR}");
    std::fs::create_dir_all(SPEEDSCOPE_DIR).with_context(|| format!("creating {SPEEDSCOPE_DIR}"))?;
    let status = Command::new("npm")
        .args(["install", "--prefix", SPEEDSCOPE_DIR, "--no-audit", "--no-fund", "--ignore-scripts"])
        .arg(format!("speedscope@{SPEEDSCOPE_VERSION}"))
        .status()
        .context("running npm install speedscope")?;
    if !status.success() || !have_speedscope() {
        bail!("npm install speedscope@{SPEEDSCOPE_VERSION} into {SPEEDSCOPE_DIR} failed ({status})");
    }
    Ok(())
}

/// cargo-deb packs the .deb of `cargo xtask dist` (pinned: its config keys change between majors).
const CARGO_DEB_VERSION: &str = "3.8.0";

fn have_cargo_deb() -> bool {
    Command::new("cargo").args(["deb", "--version"]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// Cargo subcommands CI runs besides build and test (.ci/run), with the
/// rustup component that brings each.
const CARGO_TOOLS: &[(&str, &str)] = &[("clippy", "clippy"), ("fmt", "rustfmt")];

/// The rustup components of [`CARGO_TOOLS`] that `cargo <subcommand>` cannot run.
fn missing_cargo_tools() -> Vec<&'static str> {
    CARGO_TOOLS
        .iter()
        .filter(|(sub, _)| {
            !Command::new("cargo").args([sub, "--version"]).output().map(|o| o.status.success()).unwrap_or(false)
        })
        .map(|(_, component)| *component)
        .collect()
}

fn have_bpf_linker() -> bool {
    Command::new("bpf-linker").arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
        || std::env::var_os("HOME").is_some_and(|h| Path::new(&h).join(".cargo/bin/bpf-linker").is_file())
}

pub fn run(args: &SetupArgs) -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().filter(|(_, file)| !Path::new(file).exists()).map(|(p, _)| *p).collect();
    let linker = have_bpf_linker();
    let tools = missing_cargo_tools();
    let speedscope = have_speedscope();
    let cargo_deb = have_cargo_deb();
    let prometheus = Path::new(PROMETHEUS.1).exists();
    if args.check {
        if missing.is_empty() && linker && tools.is_empty() && speedscope && cargo_deb && prometheus {
            eprintln!("setup: everything is installed");
            return Ok(());
        }
        let mut all = missing;
        all.extend(&tools);
        if !linker {
            all.push("bpf-linker");
        }
        if !speedscope {
            all.push("speedscope");
        }
        if !cargo_deb {
            all.push("cargo-deb");
        }
        if !prometheus {
            all.push(PROMETHEUS.0);
        }
        bail!("missing: {}", all.join(" "));
    }
    if !tools.is_empty() {
        // rustup's default profile has them; a minimal one does not.
        eprintln!("setup: adding rustup components: {}", tools.join(" "));
        let added = Command::new("rustup").args(["component", "add"]).args(&tools).status();
        let still = missing_cargo_tools();
        if !still.is_empty() {
            let why = match added {
                Ok(status) => status.to_string(),
                Err(e) => e.to_string(),
            };
            bail!(
                "`rustup component add {}` did not make them work ({why}); CI runs cargo clippy and cargo fmt",
                still.join(" ")
            );
        }
    }
    if !missing.is_empty() {
        eprintln!("setup: installing Debian packages: {}", missing.join(" "));
        if !Path::new("/usr/bin/apt-get").exists() {
            bail!("no apt-get here; install the equivalents of: {}", missing.join(" "));
        }
        let status =
            Command::new("apt-get").arg("update").arg("-q").env("DEBIAN_FRONTEND", "noninteractive").status()?;
        if !status.success() {
            bail!("apt-get update failed");
        }
        // With recommends, as the verified recipe (shared/TOOLCHAIN.md) installs them.
        let status = Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("apt-get install {} failed", missing.join(" "));
        }
    }
    if !linker {
        eprintln!("setup: building bpf-linker {BPF_LINKER_VERSION} against Debian's LLVM 22 (about a minute)");
        let status = Command::new("cargo")
            .args([
                "install",
                "--locked",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--no-default-features",
                "--features",
                "llvm-22,no-llvm-linking",
            ])
            .env("RUSTFLAGS", "-C link-arg=-lLLVM-22")
            .status()
            .context("running cargo install bpf-linker")?;
        if !status.success() {
            bail!("cargo install bpf-linker failed");
        }
    }
    if !prometheus {
        install_prometheus()?;
    }
    // After the packages: npm may have come with them.
    if !speedscope {
        install_speedscope()?;
    }
    if !cargo_deb {
        eprintln!("setup: building cargo-deb {CARGO_DEB_VERSION} (about a minute)");
        let status = Command::new("cargo")
            .args(["install", "--locked", &format!("cargo-deb@{CARGO_DEB_VERSION}")])
            .status()
            .context("running cargo install cargo-deb")?;
        if !status.success() {
            bail!("cargo install cargo-deb failed");
        }
    }
    eprintln!("setup: done");
    Ok(())
}
