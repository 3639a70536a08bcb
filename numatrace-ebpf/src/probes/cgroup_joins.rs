//! Processes that join the traced cgroup (or one below it) during the
//! capture, two ways: moved there (`cgroup:cgroup_attach_task`, a write to
//! `cgroup.procs`), or created there by an untraced parent
//! (`clone3(CLONE_INTO_CGROUP)`, seen at `task:task_newtask`: systemd
//! starting a unit's process, crun starting `docker exec`). A process that
//! joins is added to the traced set: the same tgid filter as every other
//! program then lets its events through, so a cgroup target costs no more
//! per event than a pid. Both fire in the context of another task than the
//! one that joins, so the cgroup comes from the arguments, never from the
//! current task's. BTF-typed only: the walk reads kernel structs at BTF
//! offsets.
use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::btf_tracepoint, programs::BtfTracePointContext};
use numatrace_common::{CLONE_THREAD, COMM_LEN, EventHeader, EventRecord, JOINED_CGROUP, TaskNewEvent};

use crate::{
    config::{config, layout},
    emit::emit,
    maps::TRACKED_TIDS,
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

/// `clone3`'s flag that creates the child in another cgroup than its parent's.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

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
    join(task);
    0
}

/// `task_newtask(struct task_struct *task, unsigned long clone_flags)`,
/// after the child is in its cgroup: only `CLONE_INTO_CGROUP` children are
/// looked at (one test of the flags for every other fork). A traced
/// parent's children are followed by `task_newtask` itself.
#[btf_tracepoint(function = "task_newtask")]
pub fn cgroup_clone_into_btf(ctx: BtfTracePointContext) -> u32 {
    let target = config!(cgroup_id);
    let flags: u64 = ctx.arg(1);
    if target == 0 || flags & CLONE_INTO_CGROUP == 0 || flags & CLONE_THREAD != 0 {
        return 0;
    }
    let task: *const u8 = ctx.arg(0);
    if task.is_null() {
        return 0;
    }
    let css_set: *const u8 = unsafe { member(task, layout!(cgroup.task_cgroups)) };
    if css_set.is_null() {
        return 0;
    }
    let cgrp: *const u8 = unsafe { member(css_set, layout!(cgroup.css_set_dfl_cgrp)) };
    if cgrp.is_null() || !within_target(cgrp, target) {
        return 0;
    }
    join(task);
    0
}

/// Adds `task`'s process to the traced set and says so (a `TaskNew` with
/// no parent, [`JOINED_CGROUP`]); userspace names its other threads.
#[inline(always)]
fn join(task: *const u8) {
    let tgid: u32 = unsafe { member(task, layout!(task.tgid)) };
    let tid: u32 = unsafe { member(task, layout!(task.pid)) };
    let _ = TRACKED_TIDS.insert(&tid, &tgid, 0);
    if tracking::is_traced_tgid(tgid) {
        // Moved between two traced cgroups, or a child already followed.
        return;
    }
    tracking::track_tgid(tgid);
    let comm_at = task.wrapping_add(layout!(cgroup.task_comm));
    let comm = unsafe { bpf_probe_read_kernel(comm_at.cast::<[u8; COMM_LEN]>()) }.unwrap_or([0; COMM_LEN]);
    let event = TaskNewEvent {
        header: EventHeader {
            kind: TaskNewEvent::KIND as u32,
            // Where the joining task is, not the writer of cgroup.procs.
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
}
