//! `sched:sched_migrate_task`: a thread moves to another CPU. It fires for
//! every task on the machine, and the moved task is usually not the current
//! one, so the filter must read the moved task itself.
//!
//! Two ways in. The BTF-typed tracepoint (preferred) gets the `task_struct`
//! and reads its tgid directly: one compare filters out other processes, and
//! the kernel skips building the classic event record. The classic
//! tracepoint (fallback, kernels without BTF) only has the tid, so it looks
//! the thread up in `TRACKED_TIDS`.
use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use numatrace_common::{Counter, EventHeader, EventRecord, NODE_UNKNOWN, TaskMigrationEvent};

use super::{field_u32, member};
use crate::{
    config::{config, layout},
    emit::emit,
    tracking,
};

#[inline(always)]
fn migration(tgid: u32, tid: u32, orig_cpu: i32, dest_cpu: i32) -> u32 {
    tracking::count(Counter::TaskMigrations, 1);
    // A move within a node keeps the thread as near its memory as before:
    // counted, not sent (a ring write is most of this program's cost).
    // Unknown nodes (NODE_UNKNOWN) are never equal to a known one, so such
    // moves are sent.
    if config!(ship_within_node_migrations) == 0 {
        let from = tracking::cpu_node(orig_cpu as u32);
        if from != NODE_UNKNOWN && from == tracking::cpu_node(dest_cpu as u32) {
            tracking::count(Counter::WithinNodeMigrations, 1);
            return 0;
        }
    }
    let event = TaskMigrationEvent {
        header: EventHeader {
            kind: TaskMigrationEvent::KIND as u32,
            cpu: tracking::cpu(),
            ts_ns: tracking::now_ns(),
            tgid,
            tid,
        },
        orig_cpu,
        dest_cpu,
    };
    emit(&event, 1);
    0
}

/// `sched_migrate_task(struct task_struct *p, int dest_cpu)`, called before
/// the task's CPU changes, so its `cpu` is still the origin.
#[btf_tracepoint(function = "sched_migrate_task")]
pub fn sched_migrate_task_btf(ctx: BtfTracePointContext) -> u32 {
    let task: *const u8 = ctx.arg(0);
    if task.is_null() {
        return 0;
    }
    let (tgid_at, pid_at, cpu_at) = (layout!(task.tgid), layout!(task.pid), layout!(task.cpu));
    let tgid = unsafe { member::<u32>(task, tgid_at) };
    if !tracking::is_traced_tgid(tgid) {
        return 0;
    }
    let tid = unsafe { member::<u32>(task, pid_at) };
    let orig_cpu = unsafe { member::<u32>(task, cpu_at) } as i32;
    migration(tgid, tid, orig_cpu, ctx.arg::<i32>(1))
}

#[tracepoint(category = "sched", name = "sched_migrate_task")]
pub fn sched_migrate_task(ctx: TracePointContext) -> u32 {
    let Some(tid) = field_u32(&ctx, layout!(migrate_task_pid)) else { return 0 };
    let Some(tgid) = tracking::traced_thread_tgid(tid) else { return 0 };
    let orig_cpu = field_u32(&ctx, layout!(migrate_task_orig_cpu)).map_or(-1, |v| v as i32);
    let dest_cpu = field_u32(&ctx, layout!(migrate_task_dest_cpu)).map_or(-1, |v| v as i32);
    migration(tgid, tid, orig_cpu, dest_cpu)
}
