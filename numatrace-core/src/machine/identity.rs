//! Who a process is, for fixes that restart or reconfigure it: its real
//! executable (/proc/PID/exe), its command line and whether the program
//! rewrote it (redis-server shows `/usr/bin/redis-server *:6379`), and the
//! systemd unit or container it runs in (from /proc/PID/cgroup).
use std::{fs, path::Path};

use serde::{Deserialize, Serialize};

/// A container runtime, as its cgroup names it: the one type for a
/// process's container and for a `--container` target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerRuntime {
    Docker,
    Podman,
    Containerd,
    /// `crio` in files; a process's identity was written `cri_o` before.
    #[serde(rename = "crio", alias = "cri_o")]
    CriO,
}

impl ContainerRuntime {
    pub fn name(self) -> &'static str {
        match self {
            ContainerRuntime::Docker => "docker",
            ContainerRuntime::Podman => "podman",
            ContainerRuntime::Containerd => "containerd",
            ContainerRuntime::CriO => "cri-o",
        }
    }
}

/// The container a process runs in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub runtime: ContainerRuntime,
    /// The container id (64 hex digits usually).
    pub id: String,
    /// A Kubernetes pod's container (its cgroup is under `kubepods`).
    pub kubernetes: bool,
}

impl Container {
    /// The id as `docker ps` shows it (12 characters).
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}

/// The facts about a process that a restart or reconfiguration needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// The executable, from /proc/PID/exe (` (deleted)` removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// The command line, from /proc/PID/cmdline.
    #[serde(default)]
    pub cmdline: Vec<String>,
    /// The program rewrote its command line (a process title): `cmdline`
    /// is not a command that can be run again.
    #[serde(default)]
    pub title_rewritten: bool,
    /// The system service it belongs to (`redis-server.service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
}

impl ProcessIdentity {
    /// Reads a process's identity; what cannot be read stays empty.
    pub fn read(pid: u32) -> ProcessIdentity {
        let exe = fs::read_link(format!("/proc/{pid}/exe")).ok().map(|p| {
            let s = p.to_string_lossy().into_owned();
            s.strip_suffix(" (deleted)").map(str::to_string).unwrap_or(s)
        });
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).map(|b| split_cmdline(&b)).unwrap_or_default();
        let title_rewritten = title_rewritten(&cmdline, exe.as_deref(), |p| Path::new(p).exists());
        let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let (systemd_unit, container) = from_cgroup(&cgroup);
        ProcessIdentity { exe, cmdline, title_rewritten, systemd_unit, container }
    }
}

/// /proc/PID/cmdline's NUL-separated words (empty ones dropped).
pub fn split_cmdline(bytes: &[u8]) -> Vec<String> {
    bytes.split(|&c| c == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// Whether a command line is a rewritten process title rather than the
/// command that started the process: its first word holds spaces and is no
/// file (`/usr/bin/redis-server *:6379`, `nginx: master process …`), or it
/// names a program whose name is not the executable's.
pub fn title_rewritten(cmdline: &[String], exe: Option<&str>, exists: impl Fn(&str) -> bool) -> bool {
    let Some(first) = cmdline.first() else { return exe.is_some() };
    if first.contains(char::is_whitespace) && !exists(first) {
        return true;
    }
    // `postgres: checkpointer` style titles end the program name with a colon.
    if first.ends_with(':') && !exists(first) {
        return true;
    }
    false
}

/// The system service and the container a process belongs to, from the
/// contents of /proc/PID/cgroup (v2 line `0::/…`, or v1's name=systemd line).
pub fn from_cgroup(text: &str) -> (Option<String>, Option<Container>) {
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| text.lines().find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p)))
        .or_else(|| text.lines().find_map(|l| l.splitn(3, ':').nth(2)))
        .unwrap_or("");
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let kubernetes = parts.iter().any(|p| p.starts_with("kubepods"));
    let mut container = None;
    for (k, p) in parts.iter().enumerate() {
        let scoped = |prefix: &str| {
            p.strip_prefix(prefix).map(|r| r.trim_end_matches(".scope").to_string()).filter(|id| is_container_id(id))
        };
        let found = if p.contains("-conmon-") {
            None
        } else if let Some(id) = scoped("docker-") {
            Some((ContainerRuntime::Docker, id))
        } else if let Some(id) = scoped("libpod-") {
            Some((ContainerRuntime::Podman, id))
        } else if let Some(id) = scoped("cri-containerd-") {
            Some((ContainerRuntime::Containerd, id))
        } else if let Some(id) = scoped("crio-") {
            Some((ContainerRuntime::CriO, id))
        } else if k > 0 && parts[k - 1] == "docker" && is_container_id(p) {
            Some((ContainerRuntime::Docker, p.to_string()))
        } else if k > 0 && parts[k - 1].starts_with("pod") && kubernetes && is_container_id(p) {
            Some((ContainerRuntime::Containerd, p.to_string()))
        } else {
            None
        };
        if let Some((runtime, id)) = found {
            container = Some(Container { runtime, id, kubernetes });
        }
    }
    // A system service: the last `.service` in the path, not within a user's manager.
    let user_manager = parts.iter().any(|p| p.starts_with("user@"));
    let unit = if container.is_some() || user_manager {
        None
    } else {
        parts.iter().rev().find(|p| p.ends_with(".service")).map(|p| p.to_string())
    };
    (unit, container)
}

fn is_container_id(id: &str) -> bool {
    id.len() >= 12 && id.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn a_runtime_reads_back_under_both_names_captures_used() {
        assert_eq!(serde_json::to_string(&ContainerRuntime::CriO).unwrap(), "\"crio\"");
        for old in ["\"crio\"", "\"cri_o\""] {
            assert_eq!(serde_json::from_str::<ContainerRuntime>(old).unwrap(), ContainerRuntime::CriO, "{old}");
        }
        assert_eq!(serde_json::from_str::<ContainerRuntime>("\"docker\"").unwrap(), ContainerRuntime::Docker);
        assert_eq!(ContainerRuntime::CriO.name(), "cri-o");
    }

    #[test]
    fn a_rewritten_title_is_told_from_a_command() {
        let no_file = |_: &str| false;
        assert!(title_rewritten(&words(&["/usr/bin/redis-server *:6379"]), Some("/usr/bin/redis-server"), no_file));
        assert!(title_rewritten(
            &words(&["nginx: master process /usr/sbin/nginx -g daemon on;"]),
            Some("/usr/sbin/nginx"),
            no_file
        ));
        assert!(title_rewritten(
            &words(&["postgres:", "checkpointer"]),
            Some("/usr/lib/postgresql/15/bin/postgres"),
            no_file
        ));
        assert!(!title_rewritten(
            &words(&["/usr/bin/redis-server", "/etc/redis/redis.conf"]),
            Some("/usr/bin/redis-server"),
            no_file
        ));
        assert!(!title_rewritten(&words(&["python3", "app.py"]), Some("/usr/bin/python3.11"), no_file));
        // A program really installed under a name with a space is a command.
        assert!(!title_rewritten(&words(&["/opt/My App/bin/app"]), Some("/opt/My App/bin/app"), |p| p
            == "/opt/My App/bin/app"));
        // No command line at all (a kernel-visible exe only).
        assert!(title_rewritten(&[], Some("/usr/bin/x"), no_file));
        assert!(!title_rewritten(&[], None, no_file));
    }

    #[test]
    fn units_and_containers_come_from_the_cgroup_path() {
        assert_eq!(from_cgroup("0::/system.slice/redis-server.service\n"), (Some("redis-server.service".into()), None));
        assert_eq!(from_cgroup("12:cpuset:/\n1:name=systemd:/system.slice/postgresql@15-main.service\n0::/\n").0, None);
        assert_eq!(
            from_cgroup("1:name=systemd:/system.slice/postgresql@15-main.service\n").0,
            Some("postgresql@15-main.service".into())
        );
        assert_eq!(from_cgroup("0::/user.slice/user-1000.slice/user@1000.service/app.slice/x.service\n"), (None, None));
        assert_eq!(from_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n"), (None, None));
        let id = "4f1c0a6e1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d";
        let (unit, c) = from_cgroup(&format!("0::/system.slice/docker-{id}.scope\n"));
        assert_eq!(unit, None);
        let c = c.unwrap();
        assert_eq!(
            (c.runtime, c.id.as_str(), c.kubernetes, c.short_id()),
            (ContainerRuntime::Docker, id, false, "4f1c0a6e1a2b")
        );
        assert_eq!(from_cgroup(&format!("11:cpuset:/docker/{id}\n")).1.unwrap().runtime, ContainerRuntime::Docker);
        assert_eq!(
            from_cgroup(&format!("0::/machine.slice/libpod-{id}.scope/container\n")).1.unwrap().runtime,
            ContainerRuntime::Podman
        );
        assert_eq!(from_cgroup(&format!("0::/machine.slice/libpod-conmon-{id}.scope\n")).1, None);
        let k8s = from_cgroup(&format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{id}.scope\n"
        ))
        .1
        .unwrap();
        assert!(k8s.kubernetes && k8s.runtime == ContainerRuntime::Containerd);
        assert_eq!(
            from_cgroup(&format!("0::/kubepods.slice/kubepods-pod1.slice/crio-{id}.scope\n")).1.unwrap().runtime,
            ContainerRuntime::CriO
        );
        assert!(from_cgroup(&format!("7:cpuset:/kubepods/burstable/pod0a-1b/{id}\n")).1.unwrap().kubernetes);
        assert_eq!(from_cgroup(""), (None, None));
        assert_eq!(from_cgroup("garbage"), (None, None));
    }

    #[test]
    fn a_live_process_with_a_title_for_argv_is_seen_as_one() {
        // bash's `exec -a` sets argv[0] as redis does with its title.
        let mut child = std::process::Command::new("bash")
            .args(["-c", "exec -a '/usr/bin/redis-server *:6379' sleep 30"])
            .spawn()
            .expect("bash runs");
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut id = ProcessIdentity::read(pid);
        while id.cmdline.first().is_none_or(|a| !a.contains("redis")) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            id = ProcessIdentity::read(pid);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(id.cmdline, vec!["/usr/bin/redis-server *:6379", "30"], "{id:?}");
        assert!(id.title_rewritten, "{id:?}");
        assert!(id.exe.as_deref().is_some_and(|e| e.ends_with("/sleep")), "{id:?}");
    }

    #[test]
    fn reads_this_process() {
        let me = ProcessIdentity::read(std::process::id());
        assert!(me.exe.as_deref().is_some_and(|e| Path::new(e).is_absolute()), "{me:?}");
        assert!(!me.cmdline.is_empty());
        assert!(!me.title_rewritten, "{me:?}");
        let back: ProcessIdentity = serde_json::from_str(&serde_json::to_string(&me).unwrap()).unwrap();
        assert_eq!(back, me);
        // Older capture files have no identity fields at all.
        assert_eq!(serde_json::from_str::<ProcessIdentity>("{}").unwrap(), ProcessIdentity::default());
    }
}
