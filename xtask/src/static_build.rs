//! The statically linked x86_64 numatrace, kernel programs embedded: what
//! the lab puts in its guests and what `cargo xtask dist` ships. One build,
//! in its own target directory (`target/x86_64-unknown-linux-gnu/release/`),
//! so it never disturbs the workspace's dynamic builds.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

/// The triple the static build is for.
pub const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// The workspace root and cargo's target directory (`CARGO_TARGET_DIR` if set).
pub fn workspace_dirs() -> Result<(PathBuf, PathBuf)> {
    let workspace =
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("xtask has no parent directory")?.to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
    Ok((workspace, target))
}

/// The directory the static build writes to (cargo-deb's `target/release/`).
pub fn output_dir(target: &Path) -> PathBuf {
    target.join(TRIPLE).join("release")
}

/// Builds the static numatrace (cargo skips it when up to date) and returns
/// its path. When numatrace's build script stops the build (no bpf-linker,
/// no eBPF toolchain), the error is its one line.
pub fn build(workspace: &Path, target: &Path) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building a static numatrace (cargo build --release --target {TRIPLE}, +crt-static)");
    let output = Command::new(&cargo)
        .current_dir(workspace)
        .args(["build", "--quiet", "-p", "numatrace", "--release", "--target", TRIPLE])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .with_context(|| format!("running {}", Path::new(&cargo).display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if let Some(stop) = BuildScriptStop::parse(&stderr) {
            // The compiler's messages, when the build script passed them on, come first.
            for line in &stop.other_output {
                eprintln!("{line}");
            }
            bail!("{}", stop.message);
        }
        eprint!("{stderr}");
        bail!("cargo build --release --target {TRIPLE} -p numatrace failed ({})", output.status);
    }
    eprint!("{stderr}");
    let exe = output_dir(target).join("numatrace");
    if !exe.is_file() {
        bail!("the build did not produce {}", exe.display());
    }
    Ok(exe)
}

/// Why numatrace's build script stopped a build, from cargo's stderr.
#[derive(Debug, PartialEq, Eq)]
pub struct BuildScriptStop {
    /// Its one-line message (numatrace/build.rs `fail`: `cargo:warning=...`).
    pub message: String,
    /// What else the script wrote to stderr (a compiler's messages), without its `error:` line.
    pub other_output: Vec<String>,
}

impl BuildScriptStop {
    /// Reads cargo's report of a failed build script: its stdout (where the
    /// `cargo:warning=` line is), then its stderr, each line indented.
    pub fn parse(stderr: &str) -> Option<BuildScriptStop> {
        if !stderr.contains("failed to run custom build command for `numatrace ") {
            return None;
        }
        let mut message = None;
        let mut other_output = Vec::new();
        let mut in_stderr = false;
        for line in stderr.lines() {
            let text = line.trim();
            match text {
                "--- stdout" => in_stderr = false,
                "--- stderr" => in_stderr = true,
                // The script's output is indented; cargo's own next line is not.
                _ if in_stderr && !line.is_empty() && !line.starts_with(' ') => in_stderr = false,
                _ if in_stderr => {
                    let own = message.as_deref().is_some_and(|m: &str| text.strip_prefix("error: ") == Some(m));
                    if !own && !text.is_empty() {
                        other_output.push(line.strip_prefix("  ").unwrap_or(line).to_string());
                    }
                }
                _ => {
                    if let Some(m) = text.strip_prefix("cargo:warning=") {
                        message = Some(m.to_string());
                    }
                }
            }
        }
        message.map(|message| BuildScriptStop { message, other_output })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cargo 1.95's report, as seen with NUMATRACE_EBPF_OBJECT naming no file.
    const NO_OBJECT: &str = "error: failed to run custom build command for `numatrace v0.1.0 (/w/numatrace)`
note: To improve backtraces for build dependencies, set the CARGO_PROFILE_DEV_BUILD_OVERRIDE_DEBUG=true environment variable to enable debug information generation.

Caused by:
  process didn't exit successfully: `/w/target/debug/build/numatrace-ba40fc286ddecbd7/build-script-build` (exit status: 1)
  --- stdout
  cargo:rerun-if-changed=/w/numatrace-ebpf/src
  cargo:rerun-if-env-changed=NUMATRACE_EBPF_OBJECT
  cargo:warning=NUMATRACE_EBPF_OBJECT=/nonexistent/numatrace.bpf.o: No such file or directory (os error 2)

  --- stderr
  error: NUMATRACE_EBPF_OBJECT=/nonexistent/numatrace.bpf.o: No such file or directory (os error 2)
";

    #[test]
    fn a_stopped_build_script_is_its_one_line() {
        let stop = BuildScriptStop::parse(NO_OBJECT).expect("recognised");
        assert_eq!(
            stop.message,
            "NUMATRACE_EBPF_OBJECT=/nonexistent/numatrace.bpf.o: No such file or directory (os error 2)"
        );
        assert!(stop.other_output.is_empty(), "{:?}", stop.other_output);
    }

    #[test]
    fn the_compilers_messages_the_script_passed_on_are_kept() {
        let failed = NO_OBJECT.replace(
            "  --- stderr\n",
            "  --- stderr\n  error[E0425]: cannot find value `x` in this scope\n   --> src/probes/fork.rs:3:5\n\n",
        ) + "warning: build failed, waiting for other jobs to finish...\n";
        let stop = BuildScriptStop::parse(&failed).expect("recognised");
        assert_eq!(
            stop.other_output,
            ["error[E0425]: cannot find value `x` in this scope", " --> src/probes/fork.rs:3:5"]
        );
    }

    #[test]
    fn other_failures_are_not_the_build_scripts() {
        let compile_error = "error[E0308]: mismatched types\n --> numatrace/src/main.rs:3:5\n";
        assert_eq!(BuildScriptStop::parse(compile_error), None);
        let other_script = NO_OBJECT.replace("`numatrace v0.1.0", "`ring v0.17.8");
        assert_eq!(BuildScriptStop::parse(&other_script), None);
    }
}
