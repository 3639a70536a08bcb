//! `sched:sched_migrate_task`: a thread moves to another CPU. The moved task
//! is usually not the current one, so it is matched by tid.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use numatrace_common::{Counter, EventHeader, EventKind, TaskMigrationEvent};

use super::field;
use crate::{config::layout, emit::emit, tracking};

#[tracepoint(category = "sched", name = "sched_migrate_task")]
pub fn sched_migrate_task(ctx: TracePointContext) -> u32 {
    let Some(tid) = field::<i32>(&ctx, layout!(migrate_task_pid)) else { return 0 };
    let Some(tgid) = tracking::traced_thread_tgid(tid as u32) else { return 0 };
    let orig_cpu = field::<i32>(&ctx, layout!(migrate_task_orig_cpu)).unwrap_or(-1);
    let dest_cpu = field::<i32>(&ctx, layout!(migrate_task_dest_cpu)).unwrap_or(-1);
    tracking::count(Counter::TaskMigrations, 1);
    let event = TaskMigrationEvent {
        header: EventHeader {
            kind: EventKind::TaskMigration as u32,
            cpu: tracking::cpu(),
            ts_ns: tracking::now_ns(),
            tgid,
            tid: tid as u32,
        },
        orig_cpu,
        dest_cpu,
    };
    emit(EventKind::TaskMigration, &event, 1);
    0
}
