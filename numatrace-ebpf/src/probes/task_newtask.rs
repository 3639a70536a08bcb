//! `task:task_newtask`: a traced task created a thread (followed always) or a
//! process (followed when `follow_children` is on). Runs in the parent.
//!
//! BTF-typed where the kernel allows (it detaches in milliseconds, the
//! classic tracepoint waits for an RCU grace period): it gets the new
//! `task_struct` and reads its pid. The classic tracepoint is the fallback.
use aya_ebpf::{
    helpers::bpf_get_current_comm,
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use numatrace_common::{CLONE_THREAD, COMM_LEN, EventHeader, EventRecord, TaskNewEvent};

use super::{field, field_u32, member};
use crate::{
    config::{config, layout},
    emit::emit,
    maps::TRACKED_TIDS,
    tracking,
};

#[inline(always)]
fn new_task(parent_tgid: u32, parent_tid: u32, child: u32, flags: u64, comm: impl Fn() -> [u8; COMM_LEN]) -> u32 {
    let is_thread = flags & CLONE_THREAD != 0;
    let tgid = if is_thread { parent_tgid } else { child };
    if !is_thread {
        if config!(follow_children) == 0 {
            return 0;
        }
        tracking::track_tgid(tgid);
    }
    let _ = TRACKED_TIDS.insert(&child, &tgid, 0);
    let event = TaskNewEvent {
        header: EventHeader {
            kind: TaskNewEvent::KIND as u32,
            cpu: tracking::cpu(),
            ts_ns: tracking::now_ns(),
            tgid,
            tid: child,
        },
        parent_tid,
        is_thread: u32::from(is_thread),
        comm: comm(),
    };
    emit(&event, 1);
    0
}

/// `task_newtask(struct task_struct *task, unsigned long clone_flags)`.
#[btf_tracepoint(function = "task_newtask")]
pub fn task_newtask_btf(ctx: BtfTracePointContext) -> u32 {
    let Some((parent_tgid, parent_tid)) = tracking::traced_current() else { return 0 };
    let task: *const u8 = ctx.arg(0);
    if task.is_null() {
        return 0;
    }
    let child = unsafe { member::<u32>(task, layout!(task.pid)) };
    // The new task is a copy of its parent, comm included (what the classic
    // record holds): the parent's is read without touching the child.
    let comm = || bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    new_task(parent_tgid, parent_tid, child, ctx.arg::<u64>(1), comm)
}

#[tracepoint(category = "task", name = "task_newtask")]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    let Some((parent_tgid, parent_tid)) = tracking::traced_current() else { return 0 };
    let Some(child) = field_u32(&ctx, layout!(newtask_pid)) else { return 0 };
    let flags = field::<u64>(&ctx, layout!(newtask_clone_flags)).unwrap_or(0);
    let comm = || field::<[u8; COMM_LEN]>(&ctx, layout!(newtask_comm)).unwrap_or([0; COMM_LEN]);
    new_task(parent_tgid, parent_tid, child, flags, comm)
}
