//! `sched:sched_process_exit`: a traced thread exits (runs in the thread).
//! It sends the thread's final run time and migration count, then the exit:
//! userspace reads them from /proc while the thread lives, and a thread
//! that exits between two reads would otherwise lose its last stretch.
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_task, bpf_probe_read_kernel},
    macros::tracepoint,
    programs::TracePointContext,
};
use numatrace_common::{
    EventHeader, EventKind, EventRecord, FIELD_ABSENT, MigrationCountEvent, RunTimeSampleEvent, TaskExitEvent,
};

use super::field;
use crate::{config::layout, emit::emit, maps::TRACKED_TIDS, tracking};

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let Some((tgid, tid)) = tracking::traced_current() else { return 0 };
    let _ = TRACKED_TIDS.remove(&tid);
    let header =
        |kind: EventKind| EventHeader { kind: kind as u32, cpu: tracking::cpu(), ts_ns: tracking::now_ns(), tgid, tid };
    // Offsets from BTF (absent without it). `se.sum_exec_runtime` is as of
    // the scheduler's last update, at most a tick old.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let run_time_at = layout!(task.sum_exec_runtime);
    if run_time_at != FIELD_ABSENT as usize
        && let Ok(run_ns) = unsafe { bpf_probe_read_kernel(task.wrapping_add(run_time_at).cast::<u64>()) }
    {
        emit(&RunTimeSampleEvent { header: header(RunTimeSampleEvent::KIND), run_ns }, 1);
    }
    let migrations_at = layout!(task.nr_migrations);
    if migrations_at != FIELD_ABSENT as usize
        && let Ok(migrations) = unsafe { bpf_probe_read_kernel(task.wrapping_add(migrations_at).cast::<u64>()) }
    {
        emit(&MigrationCountEvent { header: header(MigrationCountEvent::KIND), migrations }, 1);
    }
    // `group_dead` exists only on newer kernels (not on 6.1).
    let offset = layout!(process_exit_group_dead);
    let group_dead = if offset == FIELD_ABSENT as usize { 0 } else { field::<u8>(&ctx, offset).unwrap_or(0) };
    let event = TaskExitEvent {
        header: header(TaskExitEvent::KIND),
        group_dead: u32::from(group_dead != 0),
        _pad: 0,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    emit(&event, 1);
    0
}
