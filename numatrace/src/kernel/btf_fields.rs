//! Member offsets of kernel structs, from the running kernel's BTF. The
//! BTF-typed programs read `struct task_struct` members directly; their
//! offsets differ between kernels and configs (and with struct layout
//! randomisation), so they are looked up here at load time, never assumed.
//! The same BTF says how many arguments a tracepoint passes to raw programs.
use std::{collections::BTreeMap, path::Path};

use btf_rs::{Backend, Btf, Struct, Type};
use numatrace_common::{CgroupFields, FIELD_ABSENT, TaskFields};
use numatrace_core::check::BtfAccess;

/// Where the kernel publishes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What the BTF-typed and raw programs need to know about kernel structs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelStructs {
    /// How the BTF was read (mapped, read whole, or not at all).
    pub access: BtfAccess,
    /// Why it was not mapped (read whole instead) or not read at all.
    pub access_note: Option<String>,
    pub task: TaskFields,
    /// `sizeof(struct page)`, to turn a page pointer into a pfn.
    pub page_size: Option<u64>,
    /// Where a system call's first argument is in `struct pt_regs` (bytes).
    pub syscall_arg0: Option<u32>,
    /// How many arguments these tracepoints pass ([`COUNTED_TRACEPOINTS`]):
    /// their prototypes changed between kernels.
    pub tracepoint_args: BTreeMap<&'static str, usize>,
    /// What `cgroup_attach_task` walks to tell a move into the traced cgroup.
    pub cgroup: CgroupFields,
}

/// The tracepoints whose raw arguments are read by position.
pub const COUNTED_TRACEPOINTS: [&str; 2] = ["mm_migrate_pages", "sched_process_exit"];

/// The `struct pt_regs` member that holds a system call's first argument
/// on the raw `sys_enter` (the kernel's `syscall_get_arguments`).
#[cfg(target_arch = "x86_64")]
const SYSCALL_ARG0: Option<&str> = Some("di");
#[cfg(target_arch = "aarch64")]
const SYSCALL_ARG0: Option<&str> = Some("orig_x0");
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SYSCALL_ARG0: Option<&str> = None;

/// Reads them from the BTF at `btf_path`; without BTF everything is absent.
pub fn read(btf_path: &Path) -> KernelStructs {
    let absent = TaskFields {
        pid: FIELD_ABSENT,
        tgid: FIELD_ABSENT,
        cpu: FIELD_ABSENT,
        sum_exec_runtime: FIELD_ABSENT,
        nr_migrations: FIELD_ABSENT,
        _pad: 0,
    };
    // Mmap, not the cached parse: two lookups do not pay for parsing ~100k
    // types into memory (15 MiB more peak RSS and 0.2 s of CPU). Kernels
    // before 6.x refuse to mmap /sys/kernel/btf/vmlinux (ENODEV: Debian 12,
    // RHEL 9, Ubuntu 22.04); there the file is read and parsed instead.
    let (btf, access, access_note) = match Btf::from_file_with_backend(btf_path, Backend::Mmap) {
        Ok(btf) => (btf, BtfAccess::Mmap, None),
        Err(mapped) => match Btf::from_file(btf_path) {
            Ok(btf) => (btf, BtfAccess::File, Some(format!("mmap refused ({mapped}); read whole instead"))),
            Err(read) => {
                let access = if btf_path.exists() { BtfAccess::Unreadable } else { BtfAccess::Absent };
                let note = match access {
                    BtfAccess::Absent => {
                        format!("no {} (kernel built without CONFIG_DEBUG_INFO_BTF)", btf_path.display())
                    }
                    _ => format!("{}: {read}", btf_path.display()),
                };
                return KernelStructs {
                    access,
                    access_note: Some(note),
                    task: absent,
                    page_size: None,
                    syscall_arg0: None,
                    tracepoint_args: BTreeMap::new(),
                    cgroup: CGROUP_ABSENT,
                };
            }
        },
    };
    KernelStructs {
        access,
        access_note,
        task: task_fields(&btf).unwrap_or(absent),
        page_size: find_struct(&btf, "page").map(|s| s.size() as u64).filter(|size| *size > 0),
        syscall_arg0: SYSCALL_ARG0
            .and_then(|member| member_offset(&btf, &find_struct(&btf, "pt_regs")?, &[member], Want::Int(8))),
        tracepoint_args: COUNTED_TRACEPOINTS
            .into_iter()
            .filter_map(|event| Some((event, tracepoint_arg_count(&btf, event)?)))
            .collect(),
        cgroup: cgroup_fields(&btf),
    }
}

const CGROUP_ABSENT: CgroupFields = CgroupFields {
    task_comm: FIELD_ABSENT,
    cgroup_self: FIELD_ABSENT,
    cgroup_kn: FIELD_ABSENT,
    cgroup_root: FIELD_ABSENT,
    root_hierarchy_id: FIELD_ABSENT,
    css_cgroup: FIELD_ABSENT,
    css_parent: FIELD_ABSENT,
    kn_id: FIELD_ABSENT,
    task_cgroups: FIELD_ABSENT,
    css_set_dfl_cgrp: FIELD_ABSENT,
};

/// The members the cgroup join programs read; [`FIELD_ABSENT`] for any this
/// kernel's BTF lacks (`kernfs_node.id` is a u64 since 5.5).
fn cgroup_fields(btf: &Btf) -> CgroupFields {
    let at = |st: &str, path: &[&str], want: Want| {
        find_struct(btf, st).and_then(|s| walk(btf, &s, path, want, 0)).map_or(FIELD_ABSENT, |bits| bits / 8)
    };
    CgroupFields {
        task_comm: at("task_struct", &["comm"], Want::Array),
        cgroup_self: at("cgroup", &["self"], Want::Struct),
        cgroup_kn: at("cgroup", &["kn"], Want::Pointer),
        cgroup_root: at("cgroup", &["root"], Want::Pointer),
        root_hierarchy_id: at("cgroup_root", &["hierarchy_id"], Want::Int(4)),
        css_cgroup: at("cgroup_subsys_state", &["cgroup"], Want::Pointer),
        css_parent: at("cgroup_subsys_state", &["parent"], Want::Pointer),
        kn_id: at("kernfs_node", &["id"], Want::Int(8)),
        task_cgroups: at("task_struct", &["cgroups"], Want::Pointer),
        css_set_dfl_cgrp: at("css_set", &["dfl_cgrp"], Want::Pointer),
    }
}

/// How many arguments tracepoint `event` passes to a raw program: its
/// `btf_trace_<event>` typedef is a pointer to `void (*)(void *__data, <TP_PROTO>)`.
fn tracepoint_arg_count(btf: &Btf, event: &str) -> Option<usize> {
    let typedef = btf.resolve_types_by_name(&format!("btf_trace_{event}")).ok()?.into_iter().find_map(|t| match t {
        Type::Typedef(t) => Some(t),
        _ => None,
    })?;
    let Type::Ptr(ptr) = btf.resolve_chained_type(&typedef).ok()? else { return None };
    let Type::FuncProto(proto) = btf.resolve_chained_type(&ptr).ok()? else { return None };
    proto.parameters.len().checked_sub(1)
}

/// `task_struct`'s pid, tgid, current CPU, run time and migration count;
/// [`FIELD_ABSENT`] for any member this kernel's BTF lacks.
fn task_fields(btf: &Btf) -> Option<TaskFields> {
    let task = find_struct(btf, "task_struct")?;
    let offset = |path: &[&str]| member_offset(btf, &task, path, Want::Int(4)).unwrap_or(FIELD_ABSENT);
    // Architectures with THREAD_INFO_IN_TASK keep the CPU in thread_info
    // (x86, arm64 since 5.16); the others in task_struct itself.
    let cpu = match offset(&["thread_info", "cpu"]) {
        FIELD_ABSENT => offset(&["cpu"]),
        found => found,
    };
    let u64_at = |path: &[&str]| member_offset(btf, &task, path, Want::Int(8)).unwrap_or(FIELD_ABSENT);
    Some(TaskFields {
        pid: offset(&["pid"]),
        tgid: offset(&["tgid"]),
        cpu,
        sum_exec_runtime: u64_at(&["se", "sum_exec_runtime"]),
        nr_migrations: u64_at(&["se", "nr_migrations"]),
        _pad: 0,
    })
}

fn find_struct(btf: &Btf, name: &str) -> Option<Struct> {
    btf.resolve_types_by_name(name).ok()?.into_iter().find_map(|t| match t {
        Type::Struct(s) if !s.members.is_empty() => Some(s),
        _ => None,
    })
}

/// Follows typedefs and qualifiers to the type underneath.
fn strip(btf: &Btf, mut ty: Type) -> Option<Type> {
    for _ in 0..16 {
        match ty {
            Type::Typedef(_) | Type::Volatile(_) | Type::Const(_) | Type::Restrict(_) | Type::TypeTag(_) => {
                ty = btf.resolve_chained_type(ty.as_btf_type()?).ok()?;
            }
            _ => return Some(ty),
        }
    }
    None
}

/// What a member must be for its offset to be used.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// A whole-byte scalar of this many bytes.
    Int(usize),
    Pointer,
    Array,
    Struct,
}

/// Byte offset of the member at `path` (descending through anonymous
/// structs and unions, which hold e.g. the randomised part of
/// `task_struct`), if it is what `want` says.
fn member_offset(btf: &Btf, st: &Struct, path: &[&str], want: Want) -> Option<u32> {
    walk(btf, st, path, want, 0).map(|bits| bits / 8)
}

fn walk(btf: &Btf, st: &Struct, path: &[&str], want: Want, base_bits: u32) -> Option<u32> {
    let (first, rest) = path.split_first()?;
    for member in &st.members {
        let bits = base_bits + member.bit_offset();
        let name = btf.resolve_name(member).unwrap_or_default();
        let ty = strip(btf, btf.resolve_chained_type(member).ok()?)?;
        if name.is_empty() {
            if let Type::Struct(inner) | Type::Union(inner) = &ty
                && let Some(found) = walk(btf, inner, path, want, bits)
            {
                return Some(found);
            }
            continue;
        }
        if name != *first {
            continue;
        }
        if !rest.is_empty() {
            return match &ty {
                Type::Struct(inner) | Type::Union(inner) => walk(btf, inner, rest, want, bits),
                _ => None,
            };
        }
        let whole = member.bitfield_size().unwrap_or(0) == 0 && bits.is_multiple_of(8);
        let fits = match (want, &ty) {
            (Want::Int(size), Type::Int(int)) => int.size() == size,
            (Want::Pointer, Type::Ptr(_)) | (Want::Array, Type::Array(_)) | (Want::Struct, Type::Struct(_)) => true,
            _ => false,
        };
        return (fits && whole).then_some(bits);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's own BTF (every kernel this is tested on has it).
    #[test]
    fn finds_task_struct_members_in_the_running_kernels_btf() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: no {VMLINUX_BTF}");
            return;
        }
        let structs = read(Path::new(VMLINUX_BTF));
        let f = structs.task;
        assert!(f.complete(), "{f:?}");
        // 64 bytes on every 64-bit configuration shipped today; at least a pointer or two.
        assert!(matches!(structs.page_size, Some(16..=256)), "{structs:?}");
        // pid and tgid are adjacent pid_t members in every kernel since 2.6.
        assert_eq!(f.tgid, f.pid + 4, "{f:?}");
        assert_ne!(f.cpu, f.pid);
        assert_ne!(f.sum_exec_runtime, FIELD_ABSENT, "{f:?}");
        assert_eq!(f.sum_exec_runtime % 8, 0, "a u64: {f:?}");
        assert_ne!(f.nr_migrations, FIELD_ABSENT, "{f:?}");
        assert_eq!(f.nr_migrations % 8, 0, "a u64: {f:?}");
        assert!(matches!(structs.syscall_arg0, Some(at) if at % 8 == 0), "{structs:?}");
        // 7 arguments on 6.1, 8 since large_folio_split; the task (and group_dead since 6.x).
        assert!(matches!(structs.tracepoint_args.get("mm_migrate_pages"), Some(7..=8)), "{structs:?}");
        assert!(matches!(structs.tracepoint_args.get("sched_process_exit"), Some(1..=2)), "{structs:?}");
        let c = structs.cgroup;
        assert!(c.complete(), "{c:?}");
        // `self` opens struct cgroup in every kernel since 3.16.
        assert_eq!(c.cgroup_self, 0, "{c:?}");
        assert_eq!(c.kn_id % 8, 0, "a u64: {c:?}");
        assert_ne!(c.css_cgroup, c.css_parent, "{c:?}");
    }

    #[test]
    fn no_btf_means_every_member_absent() {
        let structs = read(Path::new("/nonexistent/btf"));
        assert_eq!(structs.access, BtfAccess::Absent);
        let f = structs.task;
        assert!(!f.complete());
        assert_eq!(structs.page_size, None);
        assert_eq!(structs.syscall_arg0, None);
        assert!(structs.tracepoint_args.is_empty());
        assert_eq!(
            (f.pid, f.tgid, f.cpu, f.sum_exec_runtime),
            (FIELD_ABSENT, FIELD_ABSENT, FIELD_ABSENT, FIELD_ABSENT)
        );
        assert_eq!(f.nr_migrations, FIELD_ABSENT);
        assert!(!structs.cgroup.complete());
    }
}
