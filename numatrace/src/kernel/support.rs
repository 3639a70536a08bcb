//! What this kernel offers for tracing, as far as files tell without
//! loading anything (`numatrace check`): its release, the kprobe PMU, the
//! lockdown mode and the sysctls that gate BPF and perf events.
use std::{fs, path::Path};

use numatrace_core::check::{BpfSysctls, Lockdown};

/// Where the kernel lists its kprobe PMU: aya attaches kprobes through it
/// (its absence is a kernel without CONFIG_KPROBE_EVENTS).
pub const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe/type";

const LOCKDOWN: &str = "/sys/kernel/security/lockdown";

/// `uname -r`.
pub fn kernel_release() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|t| t.trim().to_string())
}

/// Whether the kernel can attach kprobes through perf events.
pub fn has_kprobe_pmu() -> bool {
    Path::new(KPROBE_PMU).is_file()
}

pub fn lockdown() -> Lockdown {
    fs::read_to_string(LOCKDOWN).map(|t| Lockdown::parse(&t)).unwrap_or(Lockdown::Unknown)
}

pub fn bpf_sysctls() -> BpfSysctls {
    let read = |name: &str| {
        fs::read_to_string(Path::new("/proc/sys/kernel").join(name)).ok().and_then(|t| t.trim().parse().ok())
    };
    BpfSysctls {
        unprivileged_bpf_disabled: read("unprivileged_bpf_disabled"),
        perf_event_paranoid: read("perf_event_paranoid"),
    }
}
