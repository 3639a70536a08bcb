//! `numatrace check`: what this machine lets numatrace trace, and the
//! verdict. The loader fills the model (it loads and attaches every source
//! as a capture would); here are the model, the judgement and the text, so
//! they are tested without root. Its JSON (`numatrace.check/1`) is meant to
//! be pasted into bug reports: fields are only ever added.
pub mod text;

use serde::{Deserialize, Serialize};

use crate::kernel_status::{HookKind, SourceRole, SourceStatus};

pub const SCHEMA: &str = "numatrace.check/1";

/// Everything `numatrace check` found.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckReport {
    pub schema: String,
    pub kernel: KernelInfo,
    pub privileges: PrivilegeCheck,
    pub btf: BtfCheck,
    pub tracefs: TracefsCheck,
    pub kprobes: FeatureCheck,
    pub fentry: FeatureCheck,
    pub lockdown: LockdownCheck,
    pub sysctl: BpfSysctls,
    pub numa_balancing: BalancingCheck,
    pub nodes: Vec<NodeCheck>,
    /// Whether the sources were loaded and attached (then detached): false
    /// without the privileges, or when loading failed before any attach.
    pub sources_checked: bool,
    pub sources: Vec<SourceCheck>,
    /// The always-on counters of `numatrace top` and the exporter (balancer
    /// decisions, per-process moves and remote first touches), tried as
    /// root like the sources; not part of the verdict, which is about captures.
    #[serde(default)]
    pub machine_counters: Vec<SourceCheck>,
    /// What stops any capture here (no privileges, loading refused, ...).
    pub blockers: Vec<String>,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KernelInfo {
    /// `uname -r` (absent when /proc/sys/kernel/osrelease cannot be read).
    pub release: Option<String>,
    pub arch: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PrivilegeCheck {
    pub can_load_programs: bool,
    pub euid: u32,
    /// The effective capabilities among CAP_SYS_ADMIN, CAP_BPF and CAP_PERFMON.
    pub capabilities: Vec<String>,
}

/// How the kernel's BTF (`/sys/kernel/btf/vmlinux`) could be read.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BtfAccess {
    /// Mapped (6.x kernels).
    Mmap,
    /// Read whole (older kernels refuse the mmap).
    File,
    /// Present but not readable.
    Unreadable,
    /// The kernel has none: no BTF-typed tracepoints, no fentry.
    Absent,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BtfCheck {
    pub path: String,
    pub access: BtfAccess,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Whether task_struct's pid, tgid and cpu were found in it (the
    /// BTF-typed programs read them).
    pub task_struct_found: bool,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TracefsState {
    /// Mounted before numatrace ran.
    Mounted,
    /// Not mounted; `check` mounted it, as a capture would.
    MountedByCheck,
    NotMounted,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TracefsCheck {
    pub state: TracefsState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    Yes,
    No,
    /// Not knowable without loading programs (no privileges).
    Unknown,
}

/// A kernel attach mechanism (kprobes, fentry) and how that is known.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FeatureCheck {
    pub available: Availability,
    pub detail: String,
}

/// The kernel lockdown mode (`/sys/kernel/security/lockdown`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Lockdown {
    None,
    /// Kernel memory may not be changed: tracing still works.
    Integrity,
    /// Kernel memory may not be read: no kprobes, no BPF reads of kernel memory, no tracefs.
    Confidentiality,
    /// No lockdown file (no lockdown LSM, or securityfs not mounted).
    Unknown,
}

impl Lockdown {
    /// The bracketed mode of the lockdown file (`none [integrity] confidentiality`).
    pub fn parse(text: &str) -> Lockdown {
        match crate::machine::tunables::selected_choice(text).as_deref() {
            Some("none") => Lockdown::None,
            Some("integrity") => Lockdown::Integrity,
            Some("confidentiality") => Lockdown::Confidentiality,
            _ => Lockdown::Unknown,
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            Lockdown::None => "no lockdown",
            Lockdown::Integrity => "the kernel may not be modified; tracing is allowed",
            Lockdown::Confidentiality => {
                "kernel memory may not be read: kprobes, BPF reads of kernel memory and tracefs are refused"
            }
            Lockdown::Unknown => "no /sys/kernel/security/lockdown (no lockdown LSM, or securityfs not mounted)",
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockdownCheck {
    pub mode: Lockdown,
}

/// The sysctls that decide who may use BPF and perf events.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BpfSysctls {
    /// `kernel.unprivileged_bpf_disabled`: 0 allowed, 1 and 2 only with CAP_BPF.
    pub unprivileged_bpf_disabled: Option<i64>,
    /// `kernel.perf_event_paranoid`: above 1 no kernel tracing without CAP_PERFMON.
    pub perf_event_paranoid: Option<i64>,
}

/// `kernel.numa_balancing`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BalancingMode {
    Off,
    /// 1: NUMA_BALANCING_NORMAL.
    Normal,
    /// 2: memory tiering only (promotes from slow memory nodes).
    MemoryTiering,
    /// 3: both.
    NormalAndMemoryTiering,
    /// The file is missing (no CONFIG_NUMA_BALANCING) or holds something else.
    Unknown,
}

impl BalancingMode {
    pub fn from_value(value: Option<u32>) -> BalancingMode {
        match value {
            Some(0) => BalancingMode::Off,
            Some(1) => BalancingMode::Normal,
            Some(2) => BalancingMode::MemoryTiering,
            Some(3) => BalancingMode::NormalAndMemoryTiering,
            _ => BalancingMode::Unknown,
        }
    }

    /// What it means for a capture.
    pub fn meaning(self) -> &'static str {
        match self {
            BalancingMode::Off => {
                "off: the kernel takes no hinting-fault samples and moves nothing toward its users; remote shares come from pages"
            }
            BalancingMode::Normal => {
                "on: the balancer samples accesses (hinting faults), moves tasks and migrates pages; the report shows them"
            }
            BalancingMode::MemoryTiering => {
                "memory tiering only: pages are promoted from slow nodes; no balancing between ordinary nodes"
            }
            BalancingMode::NormalAndMemoryTiering => {
                "on, with memory tiering: hinting faults, task moves and page migrations"
            }
            BalancingMode::Unknown => {
                "not known (kernel.numa_balancing missing: kernel without CONFIG_NUMA_BALANCING?)"
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BalancingCheck {
    pub value: Option<u32>,
    pub mode: BalancingMode,
}

impl BalancingCheck {
    pub fn from_value(value: Option<u32>) -> BalancingCheck {
        BalancingCheck { value, mode: BalancingMode::from_value(value) }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeCheck {
    pub id: u32,
    pub cpus: Vec<u32>,
    pub mem_total_bytes: u64,
    pub mem_free_bytes: u64,
}

/// What became of one source in the check.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// Its programs loaded and attached (and were detached again).
    Attached,
    /// No variant of it could attach: `reason` says why.
    Unavailable,
    /// Not tried (no privileges, or loading failed before).
    NotChecked,
}

/// One source: what it observes, how it attached, what is lost without it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceCheck {
    pub name: String,
    pub observes: String,
    pub role: SourceRole,
    pub state: SourceState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<HookKind>,
    /// The hooks attached, as a capture's `sources[].hooks` names them.
    pub hooks: Vec<String>,
    /// Attached, but not the cheapest way: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// Why it cannot attach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the report lacks without it (when it cannot attach).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loses: Option<String>,
}

impl SourceCheck {
    /// A source that was not tried.
    pub fn not_checked(name: &str, observes: &str, role: SourceRole) -> SourceCheck {
        SourceCheck {
            name: name.to_string(),
            observes: observes.to_string(),
            role,
            state: SourceState::NotChecked,
            kind: None,
            hooks: Vec::new(),
            fallback_reason: None,
            reason: None,
            loses: None,
        }
    }

    /// A source the loader tried, with `loses` said when it did not attach.
    pub fn tried(status: &SourceStatus, observes: &str, role: SourceRole, loses: &str) -> SourceCheck {
        SourceCheck {
            state: if status.attached { SourceState::Attached } else { SourceState::Unavailable },
            kind: status.kind,
            hooks: status.hooks.clone(),
            fallback_reason: status.fallback_reason.clone(),
            reason: status.reason.clone(),
            loses: (!status.attached).then(|| loses.to_string()),
            ..SourceCheck::not_checked(&status.name, observes, role)
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VerdictLevel {
    /// Every source tried attached.
    Full,
    /// The core sources attached, some others did not.
    Reduced,
    /// numatrace cannot trace here.
    CannotTrace,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Verdict {
    pub level: VerdictLevel,
    /// One line, the last the text prints.
    pub line: String,
}

impl Verdict {
    /// Judges from what stops any capture and the sources tried.
    pub fn judge(blockers: &[String], sources: &[SourceCheck]) -> Verdict {
        if !blockers.is_empty() {
            return Verdict {
                level: VerdictLevel::CannotTrace,
                line: format!("cannot trace here: {}", blockers.join("; ")),
            };
        }
        let tried: Vec<&SourceCheck> = sources.iter().filter(|s| s.state != SourceState::NotChecked).collect();
        let missing = |role: SourceRole| -> Vec<&str> {
            tried
                .iter()
                .filter(|s| s.role == role && s.state == SourceState::Unavailable)
                .map(|s| s.name.as_str())
                .collect()
        };
        let (core, detail) = (missing(SourceRole::Core), missing(SourceRole::Detail));
        if tried.is_empty() {
            return Verdict {
                level: VerdictLevel::CannotTrace,
                line: "cannot trace here: no source could be tried".to_string(),
            };
        }
        if !core.is_empty() {
            return Verdict {
                level: VerdictLevel::CannotTrace,
                line: format!(
                    "cannot trace here: {} cannot attach, and numatrace cannot work without {} (reasons above)",
                    core.join(", "),
                    if core.len() == 1 { "it" } else { "them" }
                ),
            };
        }
        if !detail.is_empty() {
            return Verdict {
                level: VerdictLevel::Reduced,
                line: format!(
                    "numatrace will work with reduced detail: {} of {} sources attach; without {} (what is lost: above)",
                    tried.len() - detail.len(),
                    tried.len(),
                    detail.join(", ")
                ),
            };
        }
        let classic = tried.iter().filter(|s| s.fallback_reason.is_some()).count();
        let costlier =
            if classic > 0 { format!(" ({classic} through costlier fallbacks, see above)") } else { String::new() };
        Verdict {
            level: VerdictLevel::Full,
            line: format!("numatrace can trace here: all {} sources attach{costlier}", tried.len()),
        }
    }

    /// The exit status: 0 when a capture works, even with less detail.
    pub fn exit_code(&self) -> i32 {
        match self.level {
            VerdictLevel::Full | VerdictLevel::Reduced => 0,
            VerdictLevel::CannotTrace => 1,
        }
    }
}

#[cfg(test)]
mod tests;
