//! Whether this machine is a virtual machine, and which hypervisor.
//!
//! In a VM the NUMA nodes are what the hypervisor chose to show: a one-node
//! VM may still have its vCPUs and memory spread over several host nodes, and
//! pinning inside the guest cannot change that.
use std::fs;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Virtualization {
    /// The CPU reports the `hypervisor` flag (we run under a hypervisor).
    pub is_vm: bool,
    /// Hypervisor or cloud, when the DMI/sysfs strings tell (`KVM`, `QEMU`, `VMware`, `Microsoft Hyper-V`, `Xen`, `Amazon EC2`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<String>,
    /// The DMI vendor and product strings it was judged from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmi: Option<String>,
}

impl Virtualization {
    pub fn detect() -> Virtualization {
        let flag = <procfs::CpuInfo as procfs::Current>::current()
            .ok()
            .and_then(|c| c.flags(0).map(|f| f.contains(&"hypervisor")))
            .unwrap_or(false);
        let read = |p: &str| fs::read_to_string(p).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        let dmi: Vec<String> =
            ["/sys/class/dmi/id/sys_vendor", "/sys/class/dmi/id/product_name", "/sys/class/dmi/id/bios_vendor"]
                .iter()
                .filter_map(|p| read(p))
                .collect();
        let dmi = (!dmi.is_empty()).then(|| dmi.join(" / "));
        let xen = read("/sys/hypervisor/type");
        Virtualization::judge(flag, dmi, xen)
    }

    /// Decides from the CPU flag, the DMI strings and /sys/hypervisor/type.
    pub fn judge(hypervisor_flag: bool, dmi: Option<String>, sys_hypervisor: Option<String>) -> Virtualization {
        const KNOWN: [(&str, &str); 10] = [
            ("amazon ec2", "Amazon EC2"),
            ("google", "Google Compute Engine"),
            ("microsoft corporation", "Microsoft Hyper-V"),
            ("vmware", "VMware"),
            ("virtualbox", "VirtualBox"),
            ("innotek", "VirtualBox"),
            ("xen", "Xen"),
            ("qemu", "QEMU"),
            ("kvm", "KVM"),
            ("openstack", "OpenStack"),
        ];
        let lower = dmi.as_deref().unwrap_or("").to_lowercase();
        let named = KNOWN.iter().find(|(needle, _)| lower.contains(needle)).map(|(_, name)| name.to_string());
        let hypervisor = named.or_else(|| sys_hypervisor.map(|h| h.to_uppercase()));
        Virtualization { is_vm: hypervisor_flag || hypervisor.is_some(), hypervisor, dmi }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_hypervisor() {
        let v = Virtualization::judge(true, Some("QEMU / Standard PC (Q35 + ICH9, 2009)".into()), None);
        assert!(v.is_vm);
        assert_eq!(v.hypervisor.as_deref(), Some("QEMU"));
        let bare = Virtualization::judge(false, Some("Dell Inc. / PowerEdge R750".into()), None);
        assert!(!bare.is_vm);
        assert_eq!(Virtualization::judge(false, None, Some("xen".into())).hypervisor.as_deref(), Some("XEN"));
    }
}
