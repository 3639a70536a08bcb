//! `sched:sched_process_exit`: a traced thread exits (runs in the thread).
//! It sends the thread's final run time, then the exit: userspace samples
//! run time about every 100 ms, and a thread that lives between two samples
//! would otherwise have none.
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_task, bpf_probe_read_kernel},
    macros::tracepoint,
    programs::TracePointContext,
};
use numatrace_common::{EventHeader, EventKind, FIELD_ABSENT, RunTimeSampleEvent, TaskExitEvent};

use super::field;
use crate::{config::layout, emit::emit, maps::TRACKED_TIDS, tracking};

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let Some((tgid, tid)) = tracking::traced_current() else { return 0 };
    let _ = TRACKED_TIDS.remove(&tid);
    let header = |kind: EventKind| EventHeader { kind: kind as u32, cpu: tracking::cpu(), ts_ns: tracking::now_ns(), tgid, tid };
    // `se.sum_exec_runtime` (offset from BTF; absent without it): as of the
    // scheduler's last update, at most a tick old.
    let run_time_at = layout!(task.sum_exec_runtime);
    if run_time_at != FIELD_ABSENT as usize {
        let task = unsafe { bpf_get_current_task() } as *const u8;
        if let Ok(run_ns) = unsafe { bpf_probe_read_kernel(task.wrapping_add(run_time_at).cast::<u64>()) } {
            emit(EventKind::RunTimeSample, &RunTimeSampleEvent { header: header(EventKind::RunTimeSample), run_ns }, 1);
        }
    }
    // `group_dead` exists only on newer kernels (not on 6.1).
    let offset = layout!(process_exit_group_dead);
    let group_dead = if offset == FIELD_ABSENT as usize { 0 } else { field::<u8>(&ctx, offset).unwrap_or(0) };
    let event = TaskExitEvent {
        header: header(EventKind::TaskExit),
        group_dead: u32::from(group_dead != 0),
        _pad: 0,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    emit(EventKind::TaskExit, &event, 1);
    0
}
