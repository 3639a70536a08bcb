//! Fills [`Layouts`] from the running kernel's tracepoint format files (the
//! `task_struct` part comes from BTF, see `btf_fields`), and the raw
//! programs' argument positions from both.
use numatrace_common::{FIELD_ABSENT, Layouts, PlacementFields, RawArgs};

use super::{
    btf_fields::KernelStructs,
    tracefs::{EventFormat, Tracefs},
};

/// Offsets for every tracepoint this kernel has; a missing tracepoint leaves
/// its fields at 0 and its program is not attached (see `sources`).
pub fn read(tracefs: &Tracefs, structs: &KernelStructs) -> Layouts {
    let mut l =
        Layouts { task: structs.task, cgroup: structs.cgroup, raw: raw_args(tracefs, structs), ..Layouts::default() };
    let fmt = |group: &str, name: &str| tracefs.format(group, name).ok();
    let off = |f: &EventFormat, name: &str| f.field(name).map(|f| f.offset).unwrap_or(FIELD_ABSENT);

    if let Some(f) = fmt("sched", "sched_migrate_task") {
        l.migrate_task_pid = off(&f, "pid");
        l.migrate_task_orig_cpu = off(&f, "orig_cpu");
        l.migrate_task_dest_cpu = off(&f, "dest_cpu");
    }
    if let Some(f) = fmt("exceptions", "page_fault_user") {
        l.fault_address = off(&f, "address");
    }
    if let Some(f) = fmt("kmem", "mm_page_alloc") {
        l.page_alloc_pfn = off(&f, "pfn");
        l.page_alloc_order = off(&f, "order");
        l.page_alloc_gfp_flags = off(&f, "gfp_flags");
    }
    if let Some(f) = fmt("sched", "sched_move_numa") {
        l.move_numa = PlacementFields {
            src_pid: off(&f, "pid"),
            src_tgid: off(&f, "tgid"),
            src_cpu: off(&f, "src_cpu"),
            src_nid: off(&f, "src_nid"),
            dst_pid: FIELD_ABSENT,
            dst_tgid: FIELD_ABSENT,
            dst_cpu: off(&f, "dst_cpu"),
            dst_nid: off(&f, "dst_nid"),
        };
    }
    for (name, slot) in [("sched_swap_numa", &mut l.swap_numa), ("sched_stick_numa", &mut l.stick_numa)] {
        if let Some(f) = fmt("sched", name) {
            *slot = PlacementFields {
                src_pid: off(&f, "src_pid"),
                src_tgid: off(&f, "src_tgid"),
                src_cpu: off(&f, "src_cpu"),
                src_nid: off(&f, "src_nid"),
                dst_pid: off(&f, "dst_pid"),
                dst_tgid: off(&f, "dst_tgid"),
                dst_cpu: off(&f, "dst_cpu"),
                dst_nid: off(&f, "dst_nid"),
            };
        }
    }
    if let Some(f) = fmt("migrate", "mm_migrate_pages") {
        l.migrate_pages_succeeded = off(&f, "succeeded");
        l.migrate_pages_failed = off(&f, "failed");
        l.migrate_pages_thp_succeeded = off(&f, "thp_succeeded");
        l.migrate_pages_reason = off(&f, "reason");
    }
    if let Some(f) = fmt("task", "task_newtask") {
        l.newtask_pid = off(&f, "pid");
        l.newtask_comm = off(&f, "comm");
        l.newtask_clone_flags = off(&f, "clone_flags");
    }
    if let Some(f) = fmt("sched", "sched_process_exit") {
        l.process_exit_pid = off(&f, "pid");
        l.process_exit_group_dead = off(&f, "group_dead");
    }
    if let Some(f) = fmt("syscalls", "sys_enter_migrate_pages") {
        l.sys_migrate_pages_pid = off(&f, "pid");
    }
    if let Some(f) = fmt("syscalls", "sys_enter_move_pages") {
        l.sys_move_pages_pid = off(&f, "pid");
    }
    if let Some(f) = fmt("syscalls", "sys_enter_sched_setaffinity") {
        l.sys_sched_setaffinity_pid = off(&f, "pid");
    }
    l
}

/// Where the raw programs find their values on this kernel.
fn raw_args(tracefs: &Tracefs, structs: &KernelStructs) -> RawArgs {
    let arg_count = |event: &str| structs.tracepoint_args.get(event).copied();
    let mut raw = RawArgs {
        migrate_pages_succeeded: FIELD_ABSENT,
        migrate_pages_failed: FIELD_ABSENT,
        migrate_pages_thp_succeeded: FIELD_ABSENT,
        migrate_pages_reason: FIELD_ABSENT,
        process_exit_group_dead: FIELD_ABSENT,
        syscall_arg0: structs.syscall_arg0.unwrap_or(FIELD_ABSENT),
        sys_migrate_pages: libc::SYS_migrate_pages as u32,
        sys_move_pages: libc::SYS_move_pages as u32,
        sys_mbind: libc::SYS_mbind as u32,
        sys_sched_setaffinity: libc::SYS_sched_setaffinity as u32,
    };
    // mm_migrate_pages records its arguments as they come, one field each
    // (7 on 6.1, 8 since large_folio_split): trusted only when the counts agree.
    if let (Ok(f), Some(count)) = (tracefs.format("migrate", "mm_migrate_pages"), arg_count("mm_migrate_pages")) {
        let position = |name: &str| argument_position(&f, count, name).unwrap_or(FIELD_ABSENT);
        raw.migrate_pages_succeeded = position("succeeded");
        raw.migrate_pages_failed = position("failed");
        raw.migrate_pages_thp_succeeded = position("thp_succeeded");
        raw.migrate_pages_reason = position("reason");
    }
    // sched_process_exit(p) on 6.1; (p, group_dead) where the record has it.
    if let Ok(f) = tracefs.format("sched", "sched_process_exit")
        && f.field("group_dead").is_some()
        && arg_count("sched_process_exit") == Some(2)
    {
        raw.process_exit_group_dead = 1;
    }
    raw
}

/// The argument position of a field of a tracepoint whose record holds its
/// `count` arguments in order, one field each: that is, only when the
/// record has exactly `count` fields of its own.
fn argument_position(format: &EventFormat, count: usize, name: &str) -> Option<u32> {
    let own: Vec<&str> = format.fields.iter().map(|f| f.name.as_str()).filter(|n| !n.starts_with("common_")).collect();
    if own.len() != count {
        return None;
    }
    own.iter().position(|n| *n == name).map(|p| p as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATE_6_1: &str = "name: mm_migrate_pages
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long succeeded;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned long failed;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned long thp_succeeded;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned long thp_failed;\toffset:32;\tsize:8;\tsigned:0;
\tfield:unsigned long thp_split;\toffset:40;\tsize:8;\tsigned:0;
\tfield:enum migrate_mode mode;\toffset:48;\tsize:4;\tsigned:0;
\tfield:int reason;\toffset:52;\tsize:4;\tsigned:1;
";

    #[test]
    fn arguments_follow_the_record_when_the_counts_agree() {
        let f = EventFormat::parse("migrate:mm_migrate_pages", MIGRATE_6_1);
        assert_eq!(argument_position(&f, 7, "succeeded"), Some(0));
        assert_eq!(argument_position(&f, 7, "thp_succeeded"), Some(2));
        assert_eq!(argument_position(&f, 7, "reason"), Some(6));
        // A prototype of another length: the record says nothing about it.
        assert_eq!(argument_position(&f, 8, "reason"), None);
        assert_eq!(argument_position(&f, 7, "large_folio_split"), None);
    }
}
