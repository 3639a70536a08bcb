//! The guest kernel: Debian's cloud kernel, resolved through the
//! `linux-image-cloud-amd64` metapackage (its version changes as Debian
//! updates), downloaded with `apt-get download` (never installed on the host),
//! unpacked with `dpkg-deb -x` and cached under target/lab/kernel/<package>.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::LabDirs;

/// The metapackage that always depends on the current cloud kernel.
pub const METAPACKAGE: &str = "linux-image-cloud-amd64";

/// The kernel package the metapackage depends on now (e.g. `linux-image-6.1.0-56-cloud-amd64`).
pub fn resolve_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", METAPACKAGE])
        .output()
        .context("running apt-cache (is this Debian?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_depends(&text).with_context(|| {
        format!(
            "apt-cache knows no kernel package behind {METAPACKAGE} (exit {}; run `apt-get update`): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// Picks the `Depends: linux-image-…` line of `apt-cache depends` output.
fn parse_depends(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("Depends:")?.trim();
        rest.starts_with("linux-image-").then(|| rest.split_whitespace().next().unwrap_or(rest).to_string())
    })
}

/// The vmlinuz under an unpacked package directory, if there is one.
fn vmlinuz_in(dir: &Path) -> Option<PathBuf> {
    let boot = dir.join("boot");
    fs::read_dir(boot)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))
}

/// Returns the path of the guest kernel, downloading it on first use.
pub fn guest_kernel(dirs: &LabDirs) -> Result<PathBuf> {
    let cache = dirs.lab.join("kernel");
    let package = match resolve_package().or_else(|first| {
        // A fresh machine may have no package lists yet: fetch them once (root only).
        if !cache_has_kernel(&cache) && is_root() {
            eprintln!("lab: {first:#}; running apt-get update");
            let updated = Command::new("apt-get").args(["update", "-q"]).status().is_ok_and(|s| s.success());
            if updated {
                return resolve_package();
            }
        }
        Err(first)
    }) {
        Ok(p) => p,
        Err(err) => {
            // Offline or no package lists: any kernel cached earlier still boots.
            if let Some(cached) = newest_cached(&cache) {
                eprintln!("lab: {err:#}; using the cached {}", cached.display());
                return Ok(cached);
            }
            return Err(err);
        }
    };
    let dir = cache.join(&package);
    if let Some(vmlinuz) = vmlinuz_in(&dir) {
        return Ok(vmlinuz);
    }
    eprintln!("lab: downloading the guest kernel {package} (about 27 MB, once)");
    let download = cache.join("download");
    if download.exists() {
        fs::remove_dir_all(&download).with_context(|| format!("clearing {}", download.display()))?;
    }
    fs::create_dir_all(&download).with_context(|| format!("creating {}", download.display()))?;
    let out = Command::new("apt-get")
        .current_dir(&download)
        .args(["download", "-q", &package])
        .output()
        .context("running apt-get download")?;
    if !out.status.success() {
        bail!("apt-get download {package} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let deb = fs::read_dir(&download)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", download.display()))?;
    let unpacked = download.join("unpacked");
    let status = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked).status().context("running dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb -x {} failed ({status})", deb.display());
    }
    // Keep only /boot (vmlinuz, config, System.map): the guest loads no modules.
    let staged = download.join("keep");
    fs::create_dir_all(&staged)?;
    fs::rename(unpacked.join("boot"), staged.join("boot")).context("the kernel package has no /boot")?;
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::rename(&staged, &dir).with_context(|| format!("moving the kernel into {}", dir.display()))?;
    fs::remove_dir_all(&download).ok();
    vmlinuz_in(&dir).with_context(|| format!("{package} has no boot/vmlinuz-*"))
}

fn cache_has_kernel(cache: &Path) -> bool {
    newest_cached(cache).is_some()
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:").map(|r| r.split_whitespace().next() == Some("0"))))
        .unwrap_or(false)
}

fn newest_cached(cache: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(cache).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    dirs.sort();
    dirs.iter().rev().find_map(|d| vmlinuz_in(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_kernel_package_of_the_metapackage() {
        let text = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(parse_depends(text).as_deref(), Some("linux-image-6.1.0-56-cloud-amd64"));
        assert_eq!(parse_depends("linux-image-cloud-amd64\n"), None);
    }
}
