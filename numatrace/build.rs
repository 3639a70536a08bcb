//! Builds the kernel programs (numatrace-ebpf) and embeds the object.
//!
//! Toolchain choice, first that is complete wins:
//! 1. `NUMATRACE_EBPF_OBJECT=<path>`: a prebuilt object, used as is.
//! 2. a rustup `nightly` with rust-src, and bpf-linker (the usual aya setup);
//! 3. Debian's Rust (`rustc-web`, `cargo-web`, `rust-web-src`: /usr/bin/cargo,
//!    library source under /usr/lib/rustlib) with `RUSTC_BOOTSTRAP=1`, and bpf-linker.
//!
//! `cargo xtask setup` installs route 3. A missing piece is one clear message.
//!
//! It also says what went into the binary, for `--version` (`cargo:rustc-env`):
//! the git commit, the embedded object's sha256 and what linked it, the target.
use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, exit},
};

use sha2::{Digest, Sha256};

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().expect("numatrace/ sits in the workspace").to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out_dir.join("numatrace.bpf.o");

    for dir in ["numatrace-ebpf/src", "numatrace-ebpf/Cargo.toml", "numatrace-common/src"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=NUMATRACE_EBPF_OBJECT");

    let built_by = build_object(&workspace, &object);
    version_info(&workspace, &object, &built_by);
}

/// Builds (or copies) the kernel object to `object`; returns what linked it.
fn build_object(workspace: &Path, object: &Path) -> String {
    if let Some(prebuilt) = env::var_os("NUMATRACE_EBPF_OBJECT") {
        if let Err(err) = std::fs::copy(&prebuilt, object) {
            fail(&format!("NUMATRACE_EBPF_OBJECT={}: {err}", Path::new(&prebuilt).display()));
        }
        return "a prebuilt object (NUMATRACE_EBPF_OBJECT)".into();
    }

    let Some(linker) = find_on_path("bpf-linker") else {
        fail(
            "bpf-linker is not installed (it links the kernel programs). Run `cargo xtask setup`, or: RUSTFLAGS=\"-C link-arg=-lLLVM-22\" cargo install bpf-linker@0.13.0 --no-default-features --features llvm-22,no-llvm-linking",
        );
    };
    let target_dir = workspace.join("target").join("bpf");
    let mut cmd = match choose_toolchain() {
        Some(cmd) => cmd,
        None => fail(
            "no Rust toolchain that can build eBPF programs: need a rustup nightly with rust-src, or Debian's rustc-web, cargo-web and rust-web-src. Run `cargo xtask setup`.",
        ),
    };
    // The outer build's flags (e.g. +crt-static for the lab) must not reach the BPF target.
    for key in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(key);
    }
    let linker_dir = linker.parent().map(Path::to_path_buf).unwrap_or_default();
    let path = env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![linker_dir];
    paths.extend(env::split_paths(&path));
    cmd.env("PATH", env::join_paths(paths).unwrap_or(path));
    cmd.current_dir(workspace).args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "numatrace-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--target-dir",
    ]);
    cmd.arg(&target_dir);
    // The load generator's program only where numatrace's bench-hooks feature asks for it.
    if env::var_os("CARGO_FEATURE_BENCH_HOOKS").is_some() {
        cmd.args(["--features", "load-generator"]);
    }
    let output = match cmd.output() {
        Ok(output) => output,
        Err(err) => fail(&format!("cannot run {cmd:?}: {err}")),
    };
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        fail("the kernel programs (numatrace-ebpf) did not build; the compiler's messages are above.");
    }
    let built = target_dir.join("bpfel-unknown-none/release/numatrace");
    if let Err(err) = std::fs::copy(&built, object) {
        fail(&format!("cannot copy {}: {err}", built.display()));
    }
    // "bpf-linker 0.13.0"; the name alone if it does not say.
    Command::new(&linker)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "bpf-linker".into())
}

/// `NUMATRACE_COMMIT` (short hash, `-dirty`, or `unknown` outside git),
/// `NUMATRACE_BPF_SHA256` (12 hex digits), `NUMATRACE_BPF_LINKER`,
/// `NUMATRACE_TARGET` (triple, static or dynamic) for `--version`.
fn version_info(workspace: &Path, object: &Path, built_by: &str) {
    let bytes = match std::fs::read(object) {
        Ok(bytes) => bytes,
        Err(err) => fail(&format!("cannot read {}: {err}", object.display())),
    };
    let digest: String = Sha256::digest(&bytes).iter().take(6).map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=NUMATRACE_BPF_SHA256={digest}");
    println!("cargo:rustc-env=NUMATRACE_BPF_LINKER={built_by}");
    println!("cargo:rustc-env=NUMATRACE_COMMIT={}", git_commit(workspace));
    let triple = env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let linking = if features.split(',').any(|f| f == "crt-static") { "static" } else { "dynamic" };
    println!("cargo:rustc-env=NUMATRACE_TARGET={triple}, {linking}");
}

/// The commit the tree is at, `-dirty` when a tracked file differs from it.
/// Reruns when HEAD moves (a commit, a checkout) and when a source of the
/// binary changes (so `-dirty` follows edits), not on every build.
fn git_commit(workspace: &Path) -> String {
    let git = |args: &[&str]| -> Option<String> {
        // No optional locks: `git status` would otherwise rewrite the index it reads.
        let out = Command::new("git")
            .arg("--no-optional-locks")
            .args(args)
            .current_dir(workspace)
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let Some(dirs) = git(&["rev-parse", "--path-format=absolute", "--git-dir", "--git-common-dir"]) else {
        return "unknown".into();
    };
    let mut dirs = dirs.lines().map(PathBuf::from);
    let (Some(git_dir), Some(common_dir)) = (dirs.next(), dirs.next()) else { return "unknown".into() };
    let mut watched = vec![git_dir.join("HEAD"), common_dir.join("packed-refs")];
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common_dir.join(head_ref));
    }
    for source in ["numatrace/src", "numatrace-core/src", "workloads/src", "Cargo.toml", "Cargo.lock"] {
        watched.push(workspace.join(source));
    }
    // A watched path that does not exist would rerun this script on every build.
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let Some(hash) = git(&["rev-parse", "--short=12", "HEAD"]) else { return "unknown".into() };
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if changes.is_empty() => hash,
        Some(_) => format!("{hash}-dirty"),
        None => format!("{hash}-unknown-state"),
    }
}

/// A `cargo` command for the first complete eBPF toolchain, if any.
fn choose_toolchain() -> Option<Command> {
    if let Some(rustup) = find_on_path("rustup") {
        let sysroot = Command::new(&rustup)
            .args(["run", "nightly", "rustc", "--print", "sysroot"])
            .env_remove("RUSTUP_TOOLCHAIN")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        if let Some(sysroot) = sysroot
            && sysroot.join("lib/rustlib/src/rust/library/core").is_dir()
        {
            let mut cmd = Command::new(rustup);
            cmd.args(["run", "nightly", "cargo"]);
            cmd.env_remove("RUSTC").env_remove("RUSTUP_TOOLCHAIN");
            return Some(cmd);
        }
    }
    let debian_cargo = Path::new("/usr/bin/cargo");
    let debian_rustc = Path::new("/usr/bin/rustc");
    if debian_cargo.exists() && debian_rustc.exists() && Path::new("/usr/lib/rustlib/src/rust/library/core").is_dir() {
        let mut cmd = Command::new(debian_cargo);
        cmd.env("RUSTC", debian_rustc).env("RUSTC_BOOTSTRAP", "1").env_remove("RUSTUP_TOOLCHAIN");
        return Some(cmd);
    }
    None
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH").map(|p| env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    println!("cargo:warning={message}");
    exit(1)
}
