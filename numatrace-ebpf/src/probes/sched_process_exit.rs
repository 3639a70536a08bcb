//! `sched:sched_process_exit`: a traced thread exits (runs in the thread).
//! It sends the thread's final run time and migration count, then the exit:
//! userspace reads them from /proc while the thread lives, and a thread
//! that exits between two reads would otherwise lose its last stretch.
//!
//! BTF-typed where the kernel allows (it detaches in milliseconds, the
//! classic tracepoint waits for an RCU grace period), reading the exiting
//! `task_struct` directly; the classic tracepoint is the fallback.
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_task, bpf_probe_read_kernel},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use numatrace_common::{
    EventHeader, EventKind, EventRecord, FIELD_ABSENT, MigrationCountEvent, RunTimeSampleEvent, TaskExitEvent,
};

use super::{field, member};
use crate::{config::layout, emit::emit, maps::TRACKED_TIDS, tracking};

/// What the thread leaves: its run time and migration count (`None` when
/// this kernel's BTF does not have them) and whether its process ends too.
struct Exit {
    run_ns: Option<u64>,
    migrations: Option<u64>,
    group_dead: bool,
}

#[inline(always)]
fn exit(tgid: u32, tid: u32, exit: Exit) -> u32 {
    let _ = TRACKED_TIDS.remove(&tid);
    let header =
        |kind: EventKind| EventHeader { kind: kind as u32, cpu: tracking::cpu(), ts_ns: tracking::now_ns(), tgid, tid };
    if let Some(run_ns) = exit.run_ns {
        emit(&RunTimeSampleEvent { header: header(RunTimeSampleEvent::KIND), run_ns }, 1);
    }
    if let Some(migrations) = exit.migrations {
        emit(&MigrationCountEvent { header: header(MigrationCountEvent::KIND), migrations }, 1);
    }
    let event = TaskExitEvent {
        header: header(TaskExitEvent::KIND),
        group_dead: u32::from(exit.group_dead),
        _pad: 0,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    emit(&event, 1);
    0
}

/// The offset of a `task_struct` member from BTF, if this kernel has it.
#[inline(always)]
fn present(offset: usize) -> Option<usize> {
    (offset != FIELD_ABSENT as usize).then_some(offset)
}

/// `sched_process_exit(struct task_struct *p)`, and `(p, bool group_dead)`
/// on newer kernels; `p` is the current task.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit_btf(ctx: BtfTracePointContext) -> u32 {
    let Some((tgid, tid)) = tracking::traced_current() else { return 0 };
    let task: *const u8 = ctx.arg(0);
    if task.is_null() {
        return 0;
    }
    // `se.sum_exec_runtime` is as of the scheduler's last update, at most a tick old.
    let run_ns = present(layout!(task.sum_exec_runtime)).map(|at| unsafe { member::<u64>(task, at) });
    let migrations = present(layout!(task.nr_migrations)).map(|at| unsafe { member::<u64>(task, at) });
    // The argument exists only where userspace found it (not on 6.1); a
    // constant to the verifier, which never sees the read where it is absent.
    let group_dead = match layout!(raw.process_exit_group_dead) {
        1 => ctx.arg::<u64>(1) & 0xff != 0,
        _ => false,
    };
    exit(tgid, tid, Exit { run_ns, migrations, group_dead })
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let Some((tgid, tid)) = tracking::traced_current() else { return 0 };
    // Offsets from BTF (absent without it).
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let read = |at: usize| unsafe { bpf_probe_read_kernel(task.wrapping_add(at).cast::<u64>()) }.ok();
    let run_ns = present(layout!(task.sum_exec_runtime)).and_then(read);
    let migrations = present(layout!(task.nr_migrations)).and_then(read);
    // `group_dead` exists only on newer kernels (not on 6.1).
    let group_dead =
        present(layout!(process_exit_group_dead)).is_some_and(|at| field::<u8>(&ctx, at).unwrap_or(0) != 0);
    exit(tgid, tid, Exit { run_ns, migrations, group_dead })
}
