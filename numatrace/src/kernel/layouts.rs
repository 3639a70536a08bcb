//! Fills [`Layouts`] from the running kernel's tracepoint format files (the
//! `task_struct` part comes from BTF, see `btf_fields`).
use numatrace_common::{FIELD_ABSENT, Layouts, PlacementFields};

use super::tracefs::{EventFormat, Tracefs};

/// Offsets for every tracepoint this kernel has; a missing tracepoint leaves
/// its fields at 0 and its program is not attached (see `sources`).
pub fn read(tracefs: &Tracefs) -> Layouts {
    let mut l = Layouts::default();
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
