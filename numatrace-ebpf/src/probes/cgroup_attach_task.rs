//! `cgroup:cgroup_attach_task`: a process (or one thread) was moved into a
//! cgroup. When the destination is the traced cgroup or below it, the
//! process joins the traced set: the same tgid filter as every other program
//! then lets its events through, so a cgroup target costs no more per event
//! than a pid. It fires once per move (after the move succeeded), in the
//! context of the task that wrote `cgroup.procs`, not of the moved one, so
//! the destination comes from the arguments, never from the current task's
//! cgroup. BTF-typed only: the walk reads kernel structs at BTF offsets.
use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::btf_tracepoint, programs::BtfTracePointContext};
use numatrace_common::{COMM_LEN, EventHeader, EventRecord, JOINED_CGROUP, TaskNewEvent};

use crate::{
    config::{config, layout},
    emit::emit,
    maps::{TRACKED_TGIDS, TRACKED_TIDS},
    tracking,
};

/// Cgroup levels walked up from the destination: deeper than any
/// hierarchy systemd, docker or kubernetes make below a traced cgroup.
const MAX_LEVELS: usize = 32;

/// A member at a BTF offset, as a direct load the verifier checks against
/// the kernel's BTF (the offset is a `.rodata` constant).
#[inline(always)]
unsafe fn member<T>(base: *const u8, offset: usize) -> T {
    unsafe { core::ptr::read_volatile(base.add(offset).cast::<T>()) }
}

/// Whether `cgrp` is the cgroup `target` (a kernfs id) or below it, on the
/// v2 hierarchy (v1 hierarchies number their cgroups on their own).
#[inline(always)]
fn within_target(cgrp: *const u8, target: u64) -> bool {
    let root: *const u8 = unsafe { member(cgrp, layout!(cgroup.cgroup_root)) };
    if root.is_null() || unsafe { member::<i32>(root, layout!(cgroup.root_hierarchy_id)) } != 0 {
        return false;
    }
    let mut cgrp = cgrp;
    for _ in 0..MAX_LEVELS {
        let kn: *const u8 = unsafe { member(cgrp, layout!(cgroup.cgroup_kn)) };
        if !kn.is_null() && unsafe { member::<u64>(kn, layout!(cgroup.kn_id)) } == target {
            return true;
        }
        let css = cgrp.wrapping_add(layout!(cgroup.cgroup_self));
        let parent: *const u8 = unsafe { member(css, layout!(cgroup.css_parent)) };
        if parent.is_null() {
            return false;
        }
        cgrp = unsafe { member(parent, layout!(cgroup.css_cgroup)) };
        if cgrp.is_null() {
            return false;
        }
    }
    false
}

/// `cgroup_attach_task(struct cgroup *dst_cgrp, const char *path, struct
/// task_struct *task, bool threadgroup)`: `task` is the process's leader
/// when the whole process moved. A thread moved alone (`cgroup.threads`)
/// brings its whole process in: the filter is per process.
#[btf_tracepoint(function = "cgroup_attach_task")]
pub fn cgroup_attach_task_btf(ctx: BtfTracePointContext) -> u32 {
    let target = config!(cgroup_id);
    if target == 0 {
        return 0;
    }
    let dst: *const u8 = ctx.arg(0);
    let task: *const u8 = ctx.arg(2);
    if dst.is_null() || task.is_null() || !within_target(dst, target) {
        return 0;
    }
    let tgid: u32 = unsafe { member(task, layout!(task.tgid)) };
    let tid: u32 = unsafe { member(task, layout!(task.pid)) };
    let _ = TRACKED_TIDS.insert(&tid, &tgid, 0);
    if tracking::is_traced_tgid(tgid) {
        // Moved between two traced cgroups, or a child already followed.
        return 0;
    }
    let _ = TRACKED_TGIDS.insert(&tgid, &1, 0);
    let comm_at = task.wrapping_add(layout!(cgroup.task_comm));
    let comm = unsafe { bpf_probe_read_kernel(comm_at.cast::<[u8; COMM_LEN]>()) }.unwrap_or([0; COMM_LEN]);
    let event = TaskNewEvent {
        header: EventHeader {
            kind: TaskNewEvent::KIND as u32,
            // Where the moved task is, not the writer of cgroup.procs.
            cpu: unsafe { member(task, layout!(task.cpu)) },
            ts_ns: tracking::now_ns(),
            tgid,
            tid,
        },
        parent_tid: JOINED_CGROUP,
        is_thread: 0,
        comm,
    };
    emit(&event, 1);
    0
}
