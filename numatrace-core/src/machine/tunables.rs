//! Host-wide settings that decide NUMA placement: sysctls and transparent huge pages.
use std::{fs, path::Path};

use serde::{Deserialize, Serialize};

/// The NUMA sysctls. `None`: the file is missing (kernel without the feature) or unreadable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysctls {
    /// `kernel.numa_balancing`: 0 off, 1 on (NUMA_BALANCING_NORMAL), 2 memory tiering, 3 both.
    pub numa_balancing: Option<u32>,
    /// `vm.zone_reclaim_mode`: bit 1 reclaim locally before going remote, 2 write dirty pages, 4 swap.
    pub zone_reclaim_mode: Option<u32>,
}

impl Sysctls {
    pub fn read() -> Sysctls {
        Sysctls::read_from(Path::new("/proc/sys"))
    }

    /// Reads below a `/proc/sys` folder (tests use a copy).
    pub fn read_from(proc_sys: &Path) -> Sysctls {
        let read = |rel: &str| fs::read_to_string(proc_sys.join(rel)).ok().and_then(|t| t.trim().parse().ok());
        Sysctls { numa_balancing: read("kernel/numa_balancing"), zone_reclaim_mode: read("vm/zone_reclaim_mode") }
    }
}

/// Transparent huge pages: the selected value of each setting (`always`, `madvise`, `never`...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransparentHugePages {
    pub enabled: Option<String>,
    pub defrag: Option<String>,
    /// khugepaged/defrag: 1 when khugepaged collapses pages into huge pages.
    pub khugepaged_defrag: Option<u32>,
}

impl TransparentHugePages {
    pub fn read() -> TransparentHugePages {
        let dir = Path::new("/sys/kernel/mm/transparent_hugepage");
        let selected = |f: &str| fs::read_to_string(dir.join(f)).ok().and_then(|t| selected_choice(&t));
        TransparentHugePages {
            enabled: selected("enabled"),
            defrag: selected("defrag"),
            khugepaged_defrag: fs::read_to_string(dir.join("khugepaged/defrag"))
                .ok()
                .and_then(|t| t.trim().parse().ok()),
        }
    }
}

/// The bracketed choice in a sysfs list such as `always [madvise] never`.
pub fn selected_choice(text: &str) -> Option<String> {
    let start = text.find('[')?;
    let end = start + text[start..].find(']')?;
    Some(text[start + 1..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_bracketed_choice() {
        assert_eq!(selected_choice("always [madvise] never\n").as_deref(), Some("madvise"));
        assert_eq!(selected_choice("always madvise never"), None);
        assert_eq!(selected_choice("]["), None);
    }

    #[test]
    fn reads_this_host() {
        let s = Sysctls::read();
        // Every kernel this tool runs on has both files when CONFIG_NUMA is set.
        if Path::new("/proc/sys/kernel/numa_balancing").exists() {
            assert!(s.numa_balancing.is_some());
        }
        assert!(s.zone_reclaim_mode.is_some(), "vm.zone_reclaim_mode readable");
    }
}
