//! `task:task_newtask`: a traced task created a thread (followed always) or a
//! process (followed when `follow_children` is on). Runs in the parent.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use numatrace_common::{CLONE_THREAD, COMM_LEN, EventHeader, EventRecord, TaskNewEvent};

use super::{field, field_u32};
use crate::{
    config::{config, layout},
    emit::emit,
    maps::TRACKED_TIDS,
    tracking,
};

#[tracepoint(category = "task", name = "task_newtask")]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    let Some((parent_tgid, parent_tid)) = tracking::traced_current() else { return 0 };
    let Some(child) = field_u32(&ctx, layout!(newtask_pid)) else { return 0 };
    let flags = field::<u64>(&ctx, layout!(newtask_clone_flags)).unwrap_or(0);
    let is_thread = flags & CLONE_THREAD != 0;
    let tgid = if is_thread { parent_tgid } else { child };
    if !is_thread {
        if config!(follow_children) == 0 {
            return 0;
        }
        tracking::track_tgid(tgid);
    }
    let _ = TRACKED_TIDS.insert(&child, &tgid, 0);
    let comm = field::<[u8; COMM_LEN]>(&ctx, layout!(newtask_comm)).unwrap_or([0; COMM_LEN]);
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
        comm,
    };
    emit(&event, 1);
    0
}
