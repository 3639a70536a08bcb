//! Naming a cgroup v2 to trace: a path (`--cgroup`), a systemd unit
//! (`--unit`) or a container (`--container`), resolved to a folder under the
//! cgroup v2 mount, its id (the kernel filters on it) and its processes.
use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use numatrace_core::{
    facts::{CgroupScope, ContainerRuntime, TargetScope},
    machine::cpulist,
};

/// Where cgroup v2 is mounted on a systemd host with the unified layout.
const USUAL_MOUNT: &str = "/sys/fs/cgroup";

/// Folders walked below the mount when looking for a container or a unit:
/// kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope is 4.
const MAX_DEPTH: usize = 8;

/// The cgroup v2 hierarchy of this host.
#[derive(Clone, Debug)]
pub struct Hierarchy {
    /// Its mount point (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid host).
    pub mount: PathBuf,
}

/// A resolved cgroup target: what the report names and the folder to read.
#[derive(Clone, Debug)]
pub struct CgroupTarget {
    /// A cgroup, a unit or a container.
    pub scope: TargetScope,
    /// The cgroup itself (the one in `scope`).
    pub cgroup: CgroupScope,
    /// Its folder (the mount joined with the cgroup's path).
    pub dir: PathBuf,
}

impl CgroupTarget {
    fn new(dir: PathBuf, cgroup: CgroupScope, scope: impl FnOnce(CgroupScope) -> TargetScope) -> CgroupTarget {
        CgroupTarget { scope: scope(cgroup.clone()), cgroup, dir }
    }
}

impl Hierarchy {
    /// This host's cgroup v2 mount, from /proc/self/mountinfo.
    pub fn find() -> Result<Hierarchy> {
        let text = fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
        Hierarchy::from_mountinfo(&text)
    }

    /// The cgroup v2 mount a mountinfo table lists.
    fn from_mountinfo(text: &str) -> Result<Hierarchy> {
        match cgroup2_mount(text) {
            Some(mount) => Ok(Hierarchy { mount }),
            None => bail!(
                "this host has no cgroup v2 hierarchy mounted (cgroup v1 only): --cgroup, --unit and --container \
                 need cgroup v2; trace the service's processes with --pid <PID> --tree instead"
            ),
        }
    }

    /// `--cgroup PATH`: relative to the mount (`system.slice/db.service`,
    /// or `/system.slice/db.service` as /proc/PID/cgroup writes it), or a
    /// full path under the mount (`/sys/fs/cgroup/system.slice/db.service`).
    pub fn cgroup(&self, arg: &str) -> Result<CgroupTarget> {
        let dir = self.dir_of(arg);
        let Some(path) = self.path_of(&dir) else {
            bail!("{arg} is not below the cgroup v2 mount {}", self.mount.display());
        };
        if !dir.join("cgroup.procs").is_file() {
            bail!("no cgroup {path} (no folder {} with a cgroup.procs)", dir.display());
        }
        Ok(CgroupTarget::new(dir.clone(), Self::scope_of(&dir, path)?, TargetScope::Cgroup))
    }

    /// The folder `arg` names (not checked).
    fn dir_of(&self, arg: &str) -> PathBuf {
        let path = Path::new(arg);
        if path.starts_with(&self.mount) {
            return path.to_path_buf();
        }
        // A hybrid host mounts v2 at /sys/fs/cgroup/unified: a path written
        // for the usual layout means the same cgroup there.
        let rel = path.strip_prefix(USUAL_MOUNT).unwrap_or(path);
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        self.mount.join(rel)
    }

    /// The cgroup path of a folder below the mount (`/system.slice/db.service`; `/` for the root).
    fn path_of(&self, dir: &Path) -> Option<String> {
        let rel = dir.strip_prefix(&self.mount).ok()?;
        if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return None;
        }
        Some(format!("/{}", rel.to_string_lossy()))
    }

    fn scope_of(dir: &Path, path: String) -> Result<CgroupScope> {
        let id = fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?.ino();
        let list = |file: &str| fs::read_to_string(dir.join(file)).ok().and_then(|t| cpulist::parse(&t).ok());
        Ok(CgroupScope {
            path,
            id,
            cpus_effective: list("cpuset.cpus.effective"),
            mems_effective: list("cpuset.mems.effective"),
        })
    }

    /// `--unit NAME`: a systemd unit's cgroup (`.service` added when the
    /// name has no unit suffix). `systemctl` is asked first; without it, the
    /// unit's folder is looked for below the mount.
    pub fn unit(&self, name: &str) -> Result<CgroupTarget> {
        let unit = unit_name(name);
        let from_systemctl = systemctl_control_group(&unit);
        let dir = match from_systemctl.as_deref().filter(|p| !p.is_empty()) {
            Some(path) => Some(self.dir_of(path)).filter(|d| d.join("cgroup.procs").is_file()),
            None => self.find_dir(|dir_name| dir_name == unit).into_iter().next(),
        };
        let Some(dir) = dir else {
            bail!(
                "no systemd unit {unit} with a cgroup (is it loaded and running? `systemctl status {unit}`; \
                 or give its cgroup with --cgroup)"
            );
        };
        let path = self.path_of(&dir).with_context(|| format!("{} is not below the mount", dir.display()))?;
        let cgroup = Self::scope_of(&dir, path)?;
        Ok(CgroupTarget::new(dir, cgroup, |cgroup| TargetScope::Unit { name: unit, cgroup }))
    }

    /// `--container ID`: the cgroup a container runtime made for a
    /// container id (its first 12 or more hex digits, as `docker ps` shows).
    pub fn container(&self, id: &str) -> Result<CgroupTarget> {
        let id = id.to_ascii_lowercase();
        if id.len() < 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "--container takes a container id (12 or more hex digits, as `docker ps` or `crictl ps` show), \
                 not {id:?}; for a name: docker inspect -f '{{{{.Id}}}}' NAME"
            );
        }
        let mut found: Vec<(PathBuf, ContainerRuntime, String)> = Vec::new();
        let mut unknown: Vec<PathBuf> = Vec::new();
        for dir in self.find_dir(|name| name.contains(&id)) {
            let Some(name) = dir.file_name().and_then(|n| n.to_str()) else { continue };
            // A runtime's monitor (libpod-conmon-<id>, crio-conmon-<id>) is not the container.
            if name.contains("conmon") {
                continue;
            }
            let parent = dir.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("");
            match container_of(name, parent) {
                Some((runtime, full)) if full.starts_with(&id) => found.push((dir.clone(), runtime, full)),
                Some(_) => {}
                None => unknown.push(dir.clone()),
            }
        }
        match found.len() {
            1 => {
                let (dir, runtime, full) = found.remove(0);
                let path = self.path_of(&dir).with_context(|| format!("{} is not below the mount", dir.display()))?;
                let cgroup = Self::scope_of(&dir, path)?;
                Ok(CgroupTarget::new(dir, cgroup, |cgroup| TargetScope::Container { id: full, runtime, cgroup }))
            }
            0 if !unknown.is_empty() => bail!(
                "no container runtime's cgroup matches {id}: {} {} the id but no docker, podman, containerd or \
                 cri-o name; give it with --cgroup",
                unknown.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
                if unknown.len() == 1 { "holds" } else { "hold" }
            ),
            0 => bail!(
                "no container {id}: no docker, podman, containerd or cri-o cgroup below {} names it (is it running?)",
                self.mount.display()
            ),
            _ => bail!(
                "container id {id} is ambiguous: {}; give more of it",
                found.iter().map(|f| f.2.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// Folders below the mount (at most [`MAX_DEPTH`] deep) whose name matches.
    fn find_dir(&self, matches: impl Fn(&str) -> bool) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut level = vec![self.mount.clone()];
        for _ in 0..MAX_DEPTH {
            let mut next = Vec::new();
            for dir in &level {
                let Ok(entries) = fs::read_dir(dir) else { continue };
                for entry in entries.flatten() {
                    if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                        continue;
                    }
                    if entry.file_name().to_str().is_some_and(&matches) {
                        found.push(entry.path());
                    }
                    next.push(entry.path());
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        found.sort();
        found
    }
}

/// Every process in the cgroup at `dir` and below it, in order.
pub fn processes(dir: &Path) -> Vec<u32> {
    let mut pids = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(text) = fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(parse_pids(&text));
        }
        if let Ok(entries) = fs::read_dir(&d) {
            stack.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
    }
    pids.into_iter().collect()
}

/// Whether a process is still in the cgroup or below it (`cgroup.events`:
/// `populated 0` when none is); `None` when the file cannot be read (the
/// cgroup was removed: then none is).
pub fn populated(dir: &Path) -> Option<bool> {
    let text = fs::read_to_string(dir.join("cgroup.events")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("populated ")).map(|v| v.trim() != "0")
}

/// Pids in a `cgroup.procs` or `children` file (whitespace separated).
pub fn parse_pids(text: &str) -> impl Iterator<Item = u32> + '_ {
    text.split_whitespace().filter_map(|p| p.parse().ok())
}

/// The cgroup v2 mount point in a mountinfo table (the first one listed).
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let mount = before.split(' ').nth(4)?;
        (after.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(unescape(mount)))
    })
}

/// Mountinfo writes a space in a path as `\040` (and tab, newline, backslash likewise).
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A unit name with its suffix: `postgresql` is `postgresql.service`.
fn unit_name(name: &str) -> String {
    const SUFFIXES: [&str; 4] = [".service", ".scope", ".slice", ".socket"];
    if SUFFIXES.iter().any(|s| name.ends_with(s)) { name.to_string() } else { format!("{name}.service") }
}

/// `systemctl show -p ControlGroup --value UNIT`: the unit's cgroup path,
/// empty when the unit is unknown or not running; `None` without systemctl.
fn systemctl_control_group(unit: &str) -> Option<String> {
    let out = Command::new("systemctl").args(["show", "-p", "ControlGroup", "--value", unit]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The runtime and full container id a cgroup folder name stands for:
/// `docker-<id>.scope` (systemd driver) or `<id>` below `docker` (cgroupfs
/// driver), `libpod-<id>.scope` (podman), `cri-containerd-<id>.scope`,
/// `crio-<id>.scope`, and `<id>` below a kubepods pod (containerd's cgroupfs
/// driver). A runtime's monitor (`libpod-conmon-`, `crio-conmon-`) is not
/// the container.
fn container_of(name: &str, parent: &str) -> Option<(ContainerRuntime, String)> {
    let id_of = |s: &str| {
        let s = s.strip_suffix(".scope").unwrap_or(s);
        (s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_string())
    };
    const PREFIXES: [(&str, ContainerRuntime); 5] = [
        ("docker-", ContainerRuntime::Docker),
        ("libpod-", ContainerRuntime::Podman),
        ("cri-containerd-", ContainerRuntime::Containerd),
        ("nerdctl-", ContainerRuntime::Containerd),
        ("crio-", ContainerRuntime::CriO),
    ];
    for (prefix, runtime) in PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix) {
            return id_of(rest).map(|id| (runtime, id));
        }
    }
    let id = id_of(name)?;
    if parent == "docker" {
        Some((ContainerRuntime::Docker, id))
    } else if parent.starts_with("pod") || parent.contains("-pod") {
        Some((ContainerRuntime::Containerd, id))
    } else if parent == "libpod_parent" {
        Some((ContainerRuntime::Podman, id))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f3a9c1e2b7d8a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f";

    /// A fake cgroup v2 mount: folders with a cgroup.procs each.
    struct Fixture(PathBuf);

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let root = std::env::temp_dir().join(format!("numatrace-cgroup-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root).unwrap();
            fs::write(root.join("cgroup.procs"), "1\n").unwrap();
            Fixture(root)
        }

        fn group(&self, path: &str, procs: &str) -> PathBuf {
            let dir = self.0.join(path);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("cgroup.procs"), procs).unwrap();
            dir
        }

        fn hierarchy(&self) -> Hierarchy {
            Hierarchy { mount: self.0.clone() }
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn finds_the_cgroup2_mount_on_unified_and_hybrid_hosts() {
        let unified = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        let hybrid = "33 23 0:29 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let v1_only = "33 23 0:29 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n";
        assert_eq!(cgroup2_mount(v1_only), None);
        let err = Hierarchy::from_mountinfo(v1_only).unwrap_err().to_string();
        assert!(err.contains("cgroup v1 only") && err.contains("--pid <PID> --tree"), "{err}");
        let spaced = "41 31 0:38 / /mnt/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(cgroup2_mount(spaced), Some(PathBuf::from("/mnt/my cg")));
    }

    #[test]
    fn a_cgroup_path_is_relative_to_the_mount_absolute_under_it_or_written_for_the_usual_mount() {
        let fx = Fixture::new("paths");
        let dir = fx.group("system.slice/db.service", "10\n11\n");
        let h = fx.hierarchy();
        for arg in ["system.slice/db.service", "/system.slice/db.service", "/sys/fs/cgroup/system.slice/db.service"] {
            let t = h.cgroup(arg).unwrap();
            assert_eq!(t.dir, dir, "{arg}");
            assert_eq!(t.cgroup.path, "/system.slice/db.service", "{arg}");
            assert_eq!(t.cgroup.id, fs::metadata(&dir).unwrap().ino());
        }
        let full = dir.to_string_lossy().into_owned();
        assert_eq!(h.cgroup(&full).unwrap().cgroup.path, "/system.slice/db.service");
        assert_eq!(h.cgroup("/").unwrap().cgroup.path, "/");
        let missing = h.cgroup("system.slice/nope.service").unwrap_err().to_string();
        assert!(missing.starts_with("no cgroup /system.slice/nope.service"), "{missing}");
        let escape = h.cgroup("system.slice/../../etc").unwrap_err().to_string();
        assert!(escape.contains("is not below the cgroup v2 mount"), "{escape}");
    }

    #[test]
    fn reads_the_effective_cpuset_when_the_controller_is_on() {
        let fx = Fixture::new("cpuset");
        let dir = fx.group("pinned", "");
        fs::write(dir.join("cpuset.cpus.effective"), "4-7\n").unwrap();
        fs::write(dir.join("cpuset.mems.effective"), "1\n").unwrap();
        fx.group("plain", "");
        let h = fx.hierarchy();
        let pinned = h.cgroup("pinned").unwrap();
        assert_eq!(pinned.cgroup.cpus_effective, Some(vec![4, 5, 6, 7]));
        assert_eq!(pinned.cgroup.mems_effective, Some(vec![1]));
        assert_eq!(h.cgroup("plain").unwrap().cgroup.cpus_effective, None);
    }

    #[test]
    fn processes_are_those_of_the_cgroup_and_every_folder_below_it() {
        let fx = Fixture::new("procs");
        let top = fx.group("app.slice", "30\n");
        fx.group("app.slice/a.service", "12\n11\n");
        fx.group("app.slice/b.service/worker", "40\n12\n");
        fx.group("other.slice", "99\n");
        assert_eq!(processes(&top), vec![11, 12, 30, 40]);
        fs::write(top.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert_eq!(populated(&top), Some(true));
        fs::write(top.join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
        assert_eq!(populated(&top), Some(false));
        assert_eq!(populated(&fx.0.join("gone")), None);
    }

    #[test]
    fn unit_names_get_service_unless_they_have_a_suffix() {
        assert_eq!(unit_name("postgresql"), "postgresql.service");
        assert_eq!(unit_name("postgresql@15-main.service"), "postgresql@15-main.service");
        assert_eq!(unit_name("session-3.scope"), "session-3.scope");
        assert_eq!(unit_name("machine.slice"), "machine.slice");
    }

    #[test]
    fn a_unit_is_found_by_its_folder_when_systemctl_does_not_know_it() {
        let fx = Fixture::new("unit");
        let dir = fx.group("system.slice/ntfixture-db.service", "500\n");
        let h = fx.hierarchy();
        let t = h.unit("ntfixture-db").unwrap();
        assert_eq!(t.dir, dir);
        match &t.scope {
            TargetScope::Unit { name, cgroup } => {
                assert_eq!(name, "ntfixture-db.service");
                assert_eq!(cgroup.path, "/system.slice/ntfixture-db.service");
            }
            other => panic!("{other:?}"),
        }
        let err = h.unit("ntfixture-nope").unwrap_err().to_string();
        assert!(err.starts_with("no systemd unit ntfixture-nope.service with a cgroup"), "{err}");
    }

    #[test]
    fn containers_are_found_by_id_or_prefix_under_each_runtimes_cgroup() {
        let cases = [
            (format!("system.slice/docker-{ID}.scope"), ContainerRuntime::Docker),
            (format!("docker/{ID}"), ContainerRuntime::Docker),
            (format!("machine.slice/libpod-{ID}.scope"), ContainerRuntime::Podman),
            (
                format!(
                    "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice/cri-containerd-{ID}.scope"
                ),
                ContainerRuntime::Containerd,
            ),
            (format!("kubepods/besteffort/pod1a2b-3c4d/{ID}"), ContainerRuntime::Containerd),
            (format!("kubepods.slice/kubepods-pod9.slice/crio-{ID}.scope"), ContainerRuntime::CriO),
        ];
        for (i, (path, runtime)) in cases.iter().enumerate() {
            let fx = Fixture::new(&format!("container{i}"));
            let dir = fx.group(path, "77\n");
            // The runtime's monitor process sits beside the container: not it.
            if *runtime == ContainerRuntime::Podman {
                fx.group(&format!("machine.slice/libpod-conmon-{ID}.scope"), "76\n");
            }
            let h = fx.hierarchy();
            for given in [ID, &ID[..12], &ID.to_ascii_uppercase()[..20]] {
                let t = h.container(given).unwrap_or_else(|e| panic!("{path} by {given}: {e}"));
                assert_eq!(t.dir, dir, "{path}");
                match &t.scope {
                    TargetScope::Container { id, runtime: found, cgroup } => {
                        assert_eq!(id, ID);
                        assert_eq!(found, runtime, "{path}");
                        assert_eq!(cgroup.path, format!("/{path}"));
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_container_that_is_not_there_or_not_a_runtimes_is_one_clear_error() {
        let fx = Fixture::new("nocontainer");
        fx.group(&format!("system.slice/docker-{ID}.scope"), "77\n");
        fx.group(&format!("custom/{ID}"), "78\n");
        let h = fx.hierarchy();
        let none = h.container("0123456789abcdef").unwrap_err().to_string();
        assert!(none.starts_with("no container 0123456789abcdef"), "{none}");
        let short = h.container("4f3a9c").unwrap_err().to_string();
        assert!(short.starts_with("--container takes a container id"), "{short}");
        let name = h.container("my-postgres").unwrap_err().to_string();
        assert!(name.contains("docker inspect -f '{{.Id}}' NAME"), "{name}");
        // Only the unknown one matches a prefix of a different id.
        let other = "9".repeat(64);
        fx.group(&format!("custom/{other}"), "79\n");
        let unknown = h.container(&other[..16]).unwrap_err().to_string();
        assert!(unknown.starts_with("no container runtime's cgroup matches"), "{unknown}");
        assert!(unknown.contains(&format!("custom/{other}")), "{unknown}");
    }

    #[test]
    fn an_id_prefix_two_containers_share_is_ambiguous() {
        let fx = Fixture::new("ambiguous");
        let twin = format!("{}{}", &ID[..20], "0".repeat(44));
        fx.group(&format!("system.slice/docker-{ID}.scope"), "77\n");
        fx.group(&format!("system.slice/docker-{twin}.scope"), "78\n");
        let err = fx.hierarchy().container(&ID[..14]).unwrap_err().to_string();
        assert!(err.starts_with(&format!("container id {} is ambiguous", &ID[..14])), "{err}");
        assert!(fx.hierarchy().container(&ID[..24]).is_ok());
    }

    #[test]
    fn parses_pid_lists() {
        assert_eq!(parse_pids("12 13 \n14\n").collect::<Vec<_>>(), vec![12, 13, 14]);
        assert_eq!(parse_pids("").count(), 0);
    }
}
