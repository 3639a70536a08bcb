//! What `cargo xtask dist` ships works where it is meant to: the .deb
//! installs on a clean Debian bookworm (a debootstrap chroot, no Rust, no
//! BPF toolchain), and the installed numatrace says its version, has its man
//! pages and completions, the exporter's unit (neither enabled nor started,
//! accepted by `systemd-analyze verify`), Grafana dashboard and alert rules,
//! and traces a command through this kernel.
//!
//! The chroot is bootstrapped once (minbase with man-db, from this machine's
//! apt mirror) and cached as a tarball under `target/dist-test/`; each run
//! unpacks a fresh copy. Every command in it runs in a private mount
//! namespace (`unshare --mount`) that mounts proc, sys, tracefs, bpffs and
//! /dev for it: the mounts end with the command, whatever way it ends, and
//! are never seen outside it.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Instant,
};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

const SUITE: &str = "bookworm";

#[test]
#[ignore = "needs root"]
fn the_deb_installs_and_traces_on_a_clean_debian() -> Result<()> {
    let start = Instant::now();
    let dist = xtask::dist::build().context("cargo xtask dist")?;
    eprintln!("dist: {:.1} s", start.elapsed().as_secs_f64());

    // The .sha256 is what `sha256sum -c` checks a download with.
    let out_dir = dist.binary.parent().context("the binary has a directory")?;
    let checked = Command::new("sha256sum").arg("-c").arg(&dist.sha256).current_dir(out_dir).output()?;
    ensure!(checked.status.success(), "sha256sum -c: {}", text(&checked.stdout) + &text(&checked.stderr));

    let (_, target) = xtask::static_build::workspace_dirs()?;
    let cache = target.join("dist-test");
    let tarball = debian_tarball(&cache)?;
    let root = Chroot::unpack(&tarball, &cache.join(format!("root-{}", std::process::id())))?;
    eprintln!("chroot ready: {:.1} s", start.elapsed().as_secs_f64());

    let deb_name = dist.deb.file_name().context("the .deb has a name")?.to_string_lossy().into_owned();
    fs::copy(&dist.deb, root.path.join("tmp").join(&deb_name)).context("copying the .deb into the chroot")?;
    let installed = root.run(&format!("dpkg -i /tmp/{deb_name} && dpkg-query -W -f='${{Status}}' numatrace"))?;
    ensure!(text(&installed.stdout).ends_with("install ok installed"), "{}", both(&installed));

    // The installed binary is the shipped one, bit for bit, and says what it is.
    let installed_sum = root.run("sha256sum /usr/bin/numatrace")?;
    let shipped_sum = fs::read_to_string(&dist.sha256)?;
    ensure!(
        text(&installed_sum.stdout).split_whitespace().next() == shipped_sum.split_whitespace().next(),
        "/usr/bin/numatrace is not the binary {} names: {}",
        dist.sha256.display(),
        text(&installed_sum.stdout)
    );
    let version = root.run("numatrace --version")?;
    let host_version = Command::new(&dist.binary).arg("--version").output()?;
    let version_text = text(&version.stdout);
    ensure!(version_text == text(&host_version.stdout), "{version_text} vs {}", text(&host_version.stdout));
    for line in ["numatrace 0.", "commit:", "kernel programs: sha256 ", "x86_64-unknown-linux-gnu, static"] {
        ensure!(version_text.contains(line), "--version lacks {line:?}: {version_text}");
    }
    ensure!(!version_text.contains("commit:          unknown"), "{version_text}");
    let short = root.run("numatrace -V")?;
    ensure!(text(&short.stdout).trim().lines().count() == 1, "-V is one line: {}", text(&short.stdout));

    // man finds and renders the pages: the main one and a subcommand's.
    let pages = root.run("man -w numatrace numatrace-inspect")?;
    ensure!(
        text(&pages.stdout).split_whitespace().collect::<Vec<_>>()
            == ["/usr/share/man/man1/numatrace.1.gz", "/usr/share/man/man1/numatrace-inspect.1.gz"],
        "{}",
        both(&pages)
    );
    let page = root.run("MANWIDTH=100 man -P cat numatrace")?;
    ensure!(text(&page.stdout).contains("--duration"), "numatrace(1) renders without --duration: {}", both(&page));
    let page = root.run("MANWIDTH=100 man -P cat numatrace-inspect")?;
    ensure!(text(&page.stdout).contains("numatrace-inspect"), "{}", both(&page));

    // Completions where each shell looks; bash's loads and completes numatrace.
    root.run(
        "test -s /usr/share/bash-completion/completions/numatrace \
         && test -s /usr/share/zsh/vendor-completions/_numatrace \
         && test -s /usr/share/fish/vendor_completions.d/numatrace.fish",
    )?;
    let bash = root.run(". /usr/share/bash-completion/completions/numatrace; complete -p numatrace")?;
    ensure!(text(&bash.stdout).contains("numatrace"), "{}", both(&bash));

    exporter_packaging(&root, &dist.deb)?;

    // A live trace through this kernel, from inside the chroot.
    let traced = root.run("numatrace --json -- numatrace example touch --pages 4096 --threads 2")?;
    let stdout = text(&traced.stdout);
    let (truth, report) = stdout.split_once("\n{\n").context(format!("no report in: {}", both(&traced)))?;
    let truth: Value = serde_json::from_str(truth.trim()).context(format!("the workload's line: {truth}"))?;
    let report: Value = serde_json::from_str(&format!("{{\n{report}")).context("the report is JSON")?;
    let touched: u64 = truth["threads"]
        .as_array()
        .context("the workload's threads")?
        .iter()
        .filter_map(|t| t["first_touch_pages"].as_u64())
        .sum();
    let seen = report["totals"]["first_touch_pages"].as_u64().context("totals.first_touch_pages")?;
    ensure!(
        touched >= 8192 && seen >= touched,
        "the kernel saw {seen} first-touch pages, the workload touched {touched}"
    );
    ensure!(report["kernel_counters"]["first_touch_pages"] == report["totals"]["first_touch_pages"], "{report}");
    ensure!(report["lost_events"] == 0, "{report}");
    eprintln!("traced in the chroot: the kernel saw {seen} first-touch pages, the workload touched {touched}");
    eprintln!("dist test: {:.1} s in all", start.elapsed().as_secs_f64());
    Ok(())
}

/// The exporter's unit, dashboard and alert rules, as `packaging/` has
/// them, where the package puts them.
const EXPORTER_FILES: &[(&str, &str)] = &[
    ("packaging/numatrace-exporter.service", "lib/systemd/system/numatrace-exporter.service"),
    ("packaging/grafana-dashboard.json", "usr/share/numatrace/grafana-dashboard.json"),
    ("packaging/alerts.yml", "usr/share/numatrace/alerts.yml"),
];

/// The .deb installs the exporter's packaging, byte for byte, and leaves
/// the unit neither enabled nor started (no maintainer scripts); the
/// installed unit runs /usr/bin/numatrace and `systemd-analyze verify`
/// accepts it: in the chroot where it has systemd-analyze, else (minbase
/// has no systemd) on this machine, against the unit `dpkg-deb -x` takes
/// out of the .deb, with the packaged binary in place of /usr/bin/numatrace.
fn exporter_packaging(root: &Chroot, deb: &Path) -> Result<()> {
    let (workspace, _) = xtask::static_build::workspace_dirs()?;
    let listed = root.run("dpkg -L numatrace")?;
    for (source, installed) in EXPORTER_FILES {
        let want = fs::read(workspace.join(source)).with_context(|| format!("reading {source}"))?;
        let got = fs::read(root.path.join(installed)).with_context(|| format!("/{installed} in the chroot"))?;
        ensure!(got == want, "/{installed} is not {source}");
        ensure!(text(&listed.stdout).lines().any(|l| l == format!("/{installed}")), "dpkg -L lacks /{installed}");
    }
    let unit = "/lib/systemd/system/numatrace-exporter.service";
    let enabled = root.run("ls /etc/systemd/system/*/numatrace-exporter.service 2>/dev/null || true")?;
    ensure!(text(&enabled.stdout).trim().is_empty(), "the package enabled the unit: {}", both(&enabled));
    let control = tempdir("deb-control")?;
    let out = Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control).output()?;
    ensure!(out.status.success(), "dpkg-deb -e: {}", both(&out));
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        ensure!(!control.join(script).exists(), "the package has a {script}: it may start the exporter");
    }
    let exec = root.run(&format!("grep '^ExecStart=' {unit}"))?;
    ensure!(text(&exec.stdout).starts_with("ExecStart=/usr/bin/numatrace exporter "), "{}", both(&exec));

    let in_chroot = root.run("command -v systemd-analyze || true")?;
    if !text(&in_chroot.stdout).trim().is_empty() {
        root.run(&format!("systemd-analyze verify --man=no {unit}"))?;
        eprintln!("systemd-analyze verify accepts {unit} in the chroot");
        return Ok(());
    }
    let files = tempdir("deb-files")?;
    let out = Command::new("dpkg-deb").arg("-x").arg(deb).arg(&files).output()?;
    ensure!(out.status.success(), "dpkg-deb -x: {}", both(&out));
    let extracted = fs::read_to_string(files.join(&unit[1..]))?;
    ensure!(extracted.as_bytes() == fs::read(root.path.join(&unit[1..]))?, "the .deb's unit is not the installed one");
    let binary = files.join("usr/bin/numatrace");
    ensure!(binary.is_file(), "the .deb has no /usr/bin/numatrace");
    let copy = files.join("numatrace-exporter.service");
    fs::write(&copy, extracted.replace("/usr/bin/numatrace", &binary.to_string_lossy()))?;
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .current_dir(&files)
        .output()
        .context("running systemd-analyze (cargo xtask setup installs systemd)")?;
    ensure!(verify.status.success() && verify.stderr.is_empty(), "systemd-analyze verify: {}", both(&verify));
    eprintln!("systemd-analyze verify accepts {unit} (this machine's: the chroot has none)");
    let _ = fs::remove_dir_all(&files);
    let _ = fs::remove_dir_all(&control);
    Ok(())
}

/// A fresh, empty directory of this test process.
fn tempdir(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("numatrace-dist-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[test]
fn the_mirror_comes_from_apt_sources_in_either_format() {
    let deb822 = "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n";
    assert_eq!(mirror_in(deb822).as_deref(), Some("http://mirror.example/debian"));
    let one_line = "# deb http://old.example/debian bookworm main\ndeb-src http://src.example/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib\n";
    assert_eq!(mirror_in(one_line).as_deref(), Some("http://one.example/debian"));
    assert_eq!(mirror_in("deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"), None);
}

/// A clean Debian root as a tarball, bootstrapped on first use.
fn debian_tarball(cache: &Path) -> Result<PathBuf> {
    let tarball = cache.join(format!("debian-{SUITE}-minbase-man-db.tar"));
    if tarball.is_file() {
        return Ok(tarball);
    }
    let mirror = apt_mirror()?;
    let dir = cache.join(format!("bootstrap-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(cache)?;
    eprintln!("debootstrap --variant=minbase --include=man-db {SUITE} from {mirror} (cached as {})", tarball.display());
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "--include=man-db", SUITE])
        .arg(&dir)
        .arg(&mirror)
        .output()
        .context("running debootstrap (cargo xtask setup installs it)")?;
    if !out.status.success() {
        let log = fs::read_to_string(dir.join("debootstrap/debootstrap.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        let _ = fs::remove_dir_all(&dir);
        bail!("debootstrap {SUITE} from {mirror} failed: {}\n{}", both(&out), tail.join("\n"));
    }
    // The downloaded packages are not part of the system.
    for deb in fs::read_dir(dir.join("var/cache/apt/archives"))?.filter_map(|e| e.ok()) {
        if deb.path().extension().is_some_and(|e| e == "deb") {
            fs::remove_file(deb.path())?;
        }
    }
    let partial = tarball.with_extension("tar.partial");
    let packed =
        Command::new("tar").arg("-C").arg(&dir).args(["--numeric-owner", "-cf"]).arg(&partial).arg(".").output()?;
    let _ = fs::remove_dir_all(&dir);
    ensure!(packed.status.success(), "tar: {}", both(&packed));
    fs::rename(&partial, &tarball)?;
    Ok(tarball)
}

/// The first Debian `bookworm` mirror this machine's apt uses.
fn apt_mirror() -> Result<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .find_map(|text| mirror_in(&text))
        .context(format!("no `deb ... {SUITE}` entry in /etc/apt/sources.list or sources.list.d"))
}

/// The URI of the first `deb` entry for [`SUITE`] in an apt sources file
/// (one-line `deb URI SUITE ...` or deb822 `Types:`/`URIs:`/`Suites:` stanzas).
fn mirror_in(text: &str) -> Option<String> {
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        // Options in brackets may span several words.
        let rest: Vec<&str> = words.collect();
        let skip = if rest.first().is_some_and(|w| w.starts_with('[')) {
            rest.iter().position(|w| w.ends_with(']')).map_or(rest.len(), |i| i + 1)
        } else {
            0
        };
        if let [uri, suite, ..] = &rest[skip..]
            && *suite == SUITE
        {
            return Some((*uri).to_string());
        }
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| l.strip_prefix(name).map(|v| v.split_whitespace().collect::<Vec<_>>()))
        };
        let (Some(types), Some(uris), Some(suites)) = (field("Types:"), field("URIs:"), field("Suites:")) else {
            continue;
        };
        if types.contains(&"deb") && suites.contains(&SUITE) {
            return uris.first().map(|u| (*u).to_string());
        }
    }
    None
}

/// An unpacked root, removed when dropped.
struct Chroot {
    path: PathBuf,
}

impl Chroot {
    fn unpack(tarball: &Path, path: &Path) -> Result<Chroot> {
        let _ = fs::remove_dir_all(path);
        fs::create_dir_all(path)?;
        let root = Chroot { path: path.to_path_buf() };
        let out = Command::new("tar").arg("-C").arg(path).args(["--numeric-owner", "-xf"]).arg(tarball).output()?;
        ensure!(out.status.success(), "unpacking {}: {}", tarball.display(), both(&out));
        Ok(root)
    }

    /// Runs `script` with sh -e in the chroot as root, with proc, sys,
    /// tracefs, bpffs and /dev mounted in a mount namespace of its own;
    /// fails unless it exits 0.
    fn run(&self, script: &str) -> Result<Output> {
        const ENTER: &str = r#"r=$1
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount -t tracefs tracefs "$r/sys/kernel/tracing"
mount -t bpf bpf "$r/sys/fs/bpf"
mount --bind /dev "$r/dev"
exec chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LANG=C.UTF-8 TERM=dumb /bin/bash -ec "$2""#;
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-ec", ENTER, "sh"])
            .arg(&self.path)
            .arg(script)
            .output()
            .context("running unshare")?;
        ensure!(out.status.success(), "in the chroot, `{script}` failed ({}): {}", out.status, both(&out));
        Ok(out)
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        // Mounts live in each command's own namespace; if one ever showed here, removing would go through it.
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.path.to_string_lossy();
        if mounts.lines().any(|l| l.split_whitespace().nth(4).is_some_and(|m| m.starts_with(&*prefix))) {
            eprintln!("leaving {}: something is mounted under it", self.path.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn both(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}
