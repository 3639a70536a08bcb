//! Member offsets of kernel structs, from the running kernel's BTF. The
//! BTF-typed programs read `struct task_struct` members directly; their
//! offsets differ between kernels and configs (and with struct layout
//! randomisation), so they are looked up here at load time, never assumed.
//! The same BTF says how many arguments a tracepoint passes to raw programs.
use std::{collections::BTreeMap, path::Path};

use btf_rs::{Backend, Btf, Struct, Type};
use numatrace_common::{FIELD_ABSENT, TaskFields};

/// Where the kernel publishes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What the BTF-typed and raw programs need to know about kernel structs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelStructs {
    pub task: TaskFields,
    /// `sizeof(struct page)`, to turn a page pointer into a pfn.
    pub page_size: Option<u64>,
    /// Where a system call's first argument is in `struct pt_regs` (bytes).
    pub syscall_arg0: Option<u32>,
    /// How many arguments these tracepoints pass ([`COUNTED_TRACEPOINTS`]):
    /// their prototypes changed between kernels.
    pub tracepoint_args: BTreeMap<&'static str, usize>,
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
    let btf = match Btf::from_file_with_backend(btf_path, Backend::Mmap) {
        Ok(btf) => btf,
        Err(_) => match Btf::from_file(btf_path) {
            Ok(btf) => btf,
            Err(_) => {
                return KernelStructs {
                    task: absent,
                    page_size: None,
                    syscall_arg0: None,
                    tracepoint_args: BTreeMap::new(),
                };
            }
        },
    };
    KernelStructs {
        task: task_fields(&btf).unwrap_or(absent),
        page_size: find_struct(&btf, "page").map(|s| s.size() as u64).filter(|size| *size > 0),
        syscall_arg0: SYSCALL_ARG0.and_then(|member| member_offset(&btf, &find_struct(&btf, "pt_regs")?, &[member], 8)),
        tracepoint_args: COUNTED_TRACEPOINTS
            .into_iter()
            .filter_map(|event| Some((event, tracepoint_arg_count(&btf, event)?)))
            .collect(),
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
    let offset = |path: &[&str]| member_offset(btf, &task, path, 4).unwrap_or(FIELD_ABSENT);
    // Architectures with THREAD_INFO_IN_TASK keep the CPU in thread_info
    // (x86, arm64 since 5.16); the others in task_struct itself.
    let cpu = match offset(&["thread_info", "cpu"]) {
        FIELD_ABSENT => offset(&["cpu"]),
        found => found,
    };
    let u64_at = |path: &[&str]| member_offset(btf, &task, path, 8).unwrap_or(FIELD_ABSENT);
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

/// Byte offset of the member at `path` (descending through anonymous
/// structs and unions, which hold e.g. the randomised part of
/// `task_struct`), if it is a whole-byte scalar of `size` bytes.
fn member_offset(btf: &Btf, st: &Struct, path: &[&str], size: usize) -> Option<u32> {
    walk(btf, st, path, size, 0).map(|bits| bits / 8)
}

fn walk(btf: &Btf, st: &Struct, path: &[&str], size: usize, base_bits: u32) -> Option<u32> {
    let (first, rest) = path.split_first()?;
    for member in &st.members {
        let bits = base_bits + member.bit_offset();
        let name = btf.resolve_name(member).unwrap_or_default();
        let ty = strip(btf, btf.resolve_chained_type(member).ok()?)?;
        if name.is_empty() {
            if let Type::Struct(inner) | Type::Union(inner) = &ty
                && let Some(found) = walk(btf, inner, path, size, bits)
            {
                return Some(found);
            }
            continue;
        }
        if name != *first {
            continue;
        }
        return match (&ty, rest.is_empty()) {
            (Type::Struct(inner) | Type::Union(inner), false) => walk(btf, inner, rest, size, bits),
            (Type::Int(int), true)
                if int.size() == size && member.bitfield_size().unwrap_or(0) == 0 && bits.is_multiple_of(8) =>
            {
                Some(bits)
            }
            _ => None,
        };
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
    }

    #[test]
    fn no_btf_means_every_member_absent() {
        let structs = read(Path::new("/nonexistent/btf"));
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
    }
}
