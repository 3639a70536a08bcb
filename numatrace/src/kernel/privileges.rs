//! Whether this process may load BPF programs, said in one sentence.
use anyhow::{Result, bail};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What a user without the privileges is told (the live capture's error,
/// `numatrace check`'s verdict).
pub const NEEDED: &str = "numatrace needs root (or CAP_BPF and CAP_PERFMON) to load its kernel programs";

/// This process's effective capabilities, as far as BPF tracing goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Privileges {
    /// Effective capability bits (`CapEff` in /proc/self/status).
    caps: u64,
}

impl Privileges {
    /// This process's (no capability when /proc/self/status cannot be read).
    pub fn current() -> Privileges {
        let caps = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0);
        Privileges { caps }
    }

    fn has(self, cap: u32) -> bool {
        self.caps & (1u64 << cap) != 0
    }

    /// CAP_SYS_ADMIN alone (kernels before 5.8), or CAP_BPF with CAP_PERFMON.
    pub fn can_load_programs(self) -> bool {
        self.has(CAP_SYS_ADMIN) || (self.has(CAP_BPF) && self.has(CAP_PERFMON))
    }

    /// The capabilities among CAP_SYS_ADMIN, CAP_BPF and CAP_PERFMON this process has.
    pub fn held(self) -> Vec<&'static str> {
        [(CAP_SYS_ADMIN, "CAP_SYS_ADMIN"), (CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
            .into_iter()
            .filter(|(cap, _)| self.has(*cap))
            .map(|(_, name)| name)
            .collect()
    }
}

/// Fails with one clear sentence unless BPF tracing is allowed.
pub fn require_bpf() -> Result<()> {
    if Privileges::current().can_load_programs() {
        return Ok(());
    }
    bail!("{NEEDED}: run it with sudo; `numatrace inspect` works without")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_with_perfmon_or_sys_admin_alone_may_load() {
        let with = |caps: &[u32]| Privileges { caps: caps.iter().map(|c| 1u64 << c).sum() };
        assert!(with(&[CAP_SYS_ADMIN]).can_load_programs());
        assert!(with(&[CAP_BPF, CAP_PERFMON]).can_load_programs());
        assert!(!with(&[CAP_BPF]).can_load_programs());
        assert!(!with(&[]).can_load_programs());
        assert_eq!(with(&[CAP_PERFMON]).held(), ["CAP_PERFMON"]);
    }
}
