//! `sched:sched_process_exit`: a traced thread exits (runs in the thread).
use aya_ebpf::{helpers::bpf_get_current_comm, macros::tracepoint, programs::TracePointContext};
use numatrace_common::{EventHeader, EventKind, FIELD_ABSENT, TaskExitEvent};

use super::field;
use crate::{config::layout, emit::emit, maps::TRACKED_TIDS, tracking};

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let Some((tgid, tid)) = tracking::traced_current() else { return 0 };
    let _ = TRACKED_TIDS.remove(&tid);
    // `group_dead` exists only on newer kernels (not on 6.1).
    let offset = layout!(process_exit_group_dead);
    let group_dead = if offset == FIELD_ABSENT as usize { 0 } else { field::<u8>(&ctx, offset).unwrap_or(0) };
    let event = TaskExitEvent {
        header: EventHeader {
            kind: EventKind::TaskExit as u32,
            cpu: tracking::cpu(),
            ts_ns: tracking::now_ns(),
            tgid,
            tid,
        },
        group_dead: u32::from(group_dead != 0),
        _pad: 0,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    emit(EventKind::TaskExit, &event, 1);
    0
}
