//! A process's cgroup cpuset: which CPUs and nodes its cgroup allows,
//! on cgroup v2 (`cpuset.cpus[.effective]`, `cpuset.mems[.effective]`) and
//! v1 (`cpuset.cpus`, `cpuset.effective_cpus`, ...).
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use procfs::{FromBufRead, ProcessCGroups, process::MountInfos};
use serde::{Deserialize, Serialize};

use crate::machine::cpulist;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The cpuset a process lives in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpuset {
    pub version: CgroupVersion,
    /// The cgroup as /proc/<pid>/cgroup names it (`/system.slice/db.service`).
    pub cgroup: String,
    /// Its folder on this host (`/sys/fs/cgroup/system.slice/db.service`).
    pub dir: PathBuf,
    /// `cpuset.cpus` as configured on the cgroup itself (v2: empty = inherited from the parent).
    pub cpus: Vec<u32>,
    /// `cpuset.mems` as configured on the cgroup itself (v2: empty = inherited).
    pub mems: Vec<u32>,
    /// The CPUs the cgroup actually allows (`cpuset.cpus.effective` / `cpuset.effective_cpus`).
    pub effective_cpus: Vec<u32>,
    /// The nodes the cgroup actually allows (`cpuset.mems.effective` / `cpuset.effective_mems`).
    pub effective_mems: Vec<u32>,
    /// The nearest cgroup (itself or an ancestor) that sets `cpuset.cpus`; `None` = nobody restricts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_set_by: Option<String>,
    /// The nearest cgroup (itself or an ancestor) that sets `cpuset.mems`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mems_set_by: Option<String>,
}

/// Cpusets of many processes read at once (`numatrace top`'s refresh):
/// processes of one cgroup share its cpuset, read once, and the mount table
/// is read once. Keep one for a moment only: cgroups and their cpusets change.
#[derive(Default)]
pub struct CpusetMemo {
    mounts: Option<MountInfos>,
    /// By the text of /proc/PID/cgroup: the same text, the same cgroups.
    by_groups: HashMap<String, Option<Cpuset>>,
}

impl CpusetMemo {
    /// The cpuset of a process, as [`Cpuset::read`] finds it.
    pub fn read(&mut self, pid: u32) -> Result<Option<Cpuset>> {
        let path = format!("/proc/{pid}/cgroup");
        let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        if let Some(known) = self.by_groups.get(&text) {
            return Ok(known.clone());
        }
        let groups = ProcessCGroups::from_buf_read(text.as_bytes()).with_context(|| format!("reading {path}"))?;
        let mounts = match self.mounts.take() {
            Some(m) => m,
            None => procfs::process::Process::myself()
                .and_then(|p| p.mountinfo())
                .context("reading /proc/self/mountinfo")?,
        };
        let cpuset = Cpuset::of_groups(&groups, &mounts);
        self.mounts = Some(mounts);
        let cpuset = cpuset?;
        self.by_groups.insert(text, cpuset.clone());
        Ok(cpuset)
    }
}

impl Cpuset {
    /// The cpuset of a process, from /proc/<pid>/cgroup and this process's mount table.
    /// `Ok(None)`: no cpuset controller is mounted (or it is not enabled for the cgroup on v2).
    pub fn read(pid: u32) -> Result<Option<Cpuset>> {
        let process = procfs::process::Process::new(pid as i32).with_context(|| format!("opening /proc/{pid}"))?;
        let groups = process.cgroups().with_context(|| format!("reading /proc/{pid}/cgroup"))?;
        let mounts =
            procfs::process::Process::myself().and_then(|p| p.mountinfo()).context("reading /proc/self/mountinfo")?;
        Cpuset::of_groups(&groups, &mounts)
    }

    /// The cpuset of these cgroups (a process's), found through this mount table.
    fn of_groups(groups: &ProcessCGroups, mounts: &MountInfos) -> Result<Option<Cpuset>> {
        // v1 first: on a hybrid host the cpuset controller sits in v1 and v2 has none.
        if let Some(group) = groups.0.iter().find(|g| g.hierarchy != 0 && g.controllers.iter().any(|c| c == "cpuset"))
            && let Some(mount) = mounts.iter().find(|m| m.fs_type == "cgroup" && m.super_options.contains_key("cpuset"))
        {
            return Cpuset::read_dir(CgroupVersion::V1, &group.pathname, &mount.mount_point, &mount.root).map(Some);
        }
        if let Some(group) = groups.0.iter().find(|g| g.hierarchy == 0)
            && let Some(mount) = mounts.iter().find(|m| m.fs_type == "cgroup2")
        {
            let controllers = fs::read_to_string(mount.mount_point.join("cgroup.controllers")).unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "cpuset") {
                return Cpuset::read_dir(CgroupVersion::V2, &group.pathname, &mount.mount_point, &mount.root).map(Some);
            }
        }
        Ok(None)
    }

    /// Reads a cgroup below a mounted hierarchy (`mount_root`: the mount's root within the hierarchy).
    pub fn read_dir(version: CgroupVersion, cgroup: &str, mount_point: &Path, mount_root: &str) -> Result<Cpuset> {
        let rel = cgroup.strip_prefix(mount_root.trim_end_matches('/')).unwrap_or(cgroup);
        let dir = mount_point.join(rel.trim_start_matches('/'));
        if !dir.is_dir() {
            bail!("cgroup folder {} not found (the process may live in another cgroup namespace)", dir.display());
        }
        let (cpus_file, mems_file, eff_cpus_file, eff_mems_file) = match version {
            CgroupVersion::V2 => ("cpuset.cpus", "cpuset.mems", "cpuset.cpus.effective", "cpuset.mems.effective"),
            CgroupVersion::V1 => ("cpuset.cpus", "cpuset.mems", "cpuset.effective_cpus", "cpuset.effective_mems"),
        };
        let list = |d: &Path, f: &str| -> Option<Vec<u32>> {
            fs::read_to_string(d.join(f)).ok().and_then(|t| cpulist::parse(&t).ok())
        };
        // The nearest folder from `dir` up to the mount point where a file is readable (and, for `nonempty`, not empty).
        let nearest = |file: &str, nonempty: bool| -> Option<(PathBuf, Vec<u32>)> {
            let mut d = dir.clone();
            loop {
                if let Some(v) = list(&d, file)
                    && (!nonempty || !v.is_empty())
                {
                    return Some((d, v));
                }
                if d == mount_point {
                    return None;
                }
                d = d.parent()?.to_path_buf();
            }
        };
        let name_of = |d: &Path| -> String {
            let rel = d.strip_prefix(mount_point).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            format!("/{rel}")
        };
        let effective_cpus =
            nearest(eff_cpus_file, false).map(|(_, v)| v).or_else(|| list(&dir, cpus_file)).unwrap_or_default();
        let effective_mems =
            nearest(eff_mems_file, false).map(|(_, v)| v).or_else(|| list(&dir, mems_file)).unwrap_or_default();
        let cpus_set = nearest(cpus_file, true);
        let mems_set = nearest(mems_file, true);
        // On v1 the root always lists everything: that is not a restriction.
        let is_root = |d: &Path| d == mount_point;
        Ok(Cpuset {
            version,
            cgroup: cgroup.to_string(),
            cpus: list(&dir, cpus_file).unwrap_or_default(),
            mems: list(&dir, mems_file).unwrap_or_default(),
            effective_cpus,
            effective_mems,
            cpus_set_by: cpus_set.filter(|(d, _)| !is_root(d)).map(|(d, _)| name_of(&d)),
            mems_set_by: mems_set.filter(|(d, _)| !is_root(d)).map(|(d, _)| name_of(&d)),
            dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn v2_cpus_without_mems_is_seen() {
        let root = std::env::temp_dir().join(format!("numatrace-cpuset-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        write(&root, "cpuset.cpus.effective", "0-7\n");
        write(&root, "cpuset.mems.effective", "0-1\n");
        let pod = root.join("kubepods/pod1");
        write(&root.join("kubepods"), "cpuset.cpus", "\n");
        write(&pod, "cpuset.cpus", "0-3\n");
        write(&pod, "cpuset.mems", "\n");
        write(&pod, "cpuset.cpus.effective", "0-3\n");
        write(&pod, "cpuset.mems.effective", "0-1\n");
        let c = Cpuset::read_dir(CgroupVersion::V2, "/kubepods/pod1", &root, "/").unwrap();
        assert_eq!(c.effective_cpus, vec![0, 1, 2, 3]);
        assert_eq!(c.effective_mems, vec![0, 1]);
        assert_eq!(c.cpus_set_by.as_deref(), Some("/kubepods/pod1"));
        assert_eq!(c.mems_set_by, None);
        assert!(Cpuset::read_dir(CgroupVersion::V2, "/missing", &root, "/").is_err());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn reads_this_process() {
        // Whatever the host uses (v1 here, v2 elsewhere), our own cpuset must allow the CPU we run on.
        let Some(c) = Cpuset::read(std::process::id()).expect("own cgroup readable") else { return };
        assert!(!c.effective_cpus.is_empty());
        assert!(!c.effective_mems.is_empty());
    }

    #[test]
    fn the_memo_reads_a_cgroup_once_and_finds_what_read_finds() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let mut memo = CpusetMemo::default();
        for pid in [std::process::id(), child.id()] {
            assert_eq!(memo.read(pid).unwrap(), Cpuset::read(pid).unwrap(), "process {pid}");
        }
        // A child stays in its parent's cgroup: one entry for both.
        assert_eq!(memo.by_groups.len(), 1);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(memo.read(child.id()).is_err(), "a process that is gone");
    }
}
