//! `migrate:mm_migrate_pages`: a batch of page migrations, counted for the
//! traced process when it runs in a page mover's context (see
//! `sys_page_movers`, `migrate_misplaced`) or in a traced thread.
//!
//! A raw tracepoint where userspace found the arguments (they changed
//! between kernels: 6.1 has 7, 6.18 has 8): it detaches in milliseconds,
//! the classic tracepoint waits for an RCU grace period. The classic
//! tracepoint is the fallback.
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use numatrace_common::{EventHeader, EventRecord, PageMigrationEvent};

use super::{field, field_u32, raw_arg};
use crate::{config::layout, emit::emit, maps::PAGE_MOVERS, tracking};

/// The counts of one batch.
struct Batch {
    succeeded: u64,
    failed: u64,
    thp_succeeded: u64,
    reason: i32,
}

/// Whose batch this is: (traced process, 1 if moved on its behalf by
/// another process), or `None` when it is no traced process's.
#[inline(always)]
fn owner(tgid: u32, tid: u32) -> Option<(u32, u32)> {
    match unsafe { PAGE_MOVERS.get(&tid) } {
        Some(mover) => Some((mover.target_tgid, u32::from(mover.target_tgid != tgid))),
        None if tracking::is_traced_tgid(tgid) => Some((tgid, 0)),
        None => None,
    }
}

#[inline(always)]
fn send(target: u32, tid: u32, on_behalf: u32, batch: Batch) -> u32 {
    let event = PageMigrationEvent {
        header: EventHeader {
            kind: PageMigrationEvent::KIND as u32,
            cpu: tracking::cpu(),
            ts_ns: tracking::now_ns(),
            tgid: target,
            tid,
        },
        succeeded: batch.succeeded,
        failed: batch.failed,
        thp_succeeded: batch.thp_succeeded,
        reason: batch.reason,
        on_behalf,
    };
    emit(&event, event.succeeded);
    0
}

/// `mm_migrate_pages(unsigned long succeeded, unsigned long failed,
/// unsigned long thp_succeeded, ..., enum migrate_mode mode, int reason)`.
#[raw_tracepoint(tracepoint = "mm_migrate_pages")]
pub fn mm_migrate_pages_raw(ctx: RawTracePointContext) -> u32 {
    let (tgid, tid) = tracking::current();
    let Some((target, on_behalf)) = owner(tgid, tid) else { return 0 };
    let arg = |n: usize| raw_arg(&ctx, n).unwrap_or(0);
    let batch = Batch {
        succeeded: arg(layout!(raw.migrate_pages_succeeded)),
        failed: arg(layout!(raw.migrate_pages_failed)),
        thp_succeeded: arg(layout!(raw.migrate_pages_thp_succeeded)),
        reason: raw_arg(&ctx, layout!(raw.migrate_pages_reason)).map_or(-1, |v| v as i32),
    };
    send(target, tid, on_behalf, batch)
}

#[tracepoint(category = "migrate", name = "mm_migrate_pages")]
pub fn mm_migrate_pages(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = tracking::current();
    let Some((target, on_behalf)) = owner(tgid, tid) else { return 0 };
    let batch = Batch {
        succeeded: field::<u64>(&ctx, layout!(migrate_pages_succeeded)).unwrap_or(0),
        failed: field::<u64>(&ctx, layout!(migrate_pages_failed)).unwrap_or(0),
        thp_succeeded: field::<u64>(&ctx, layout!(migrate_pages_thp_succeeded)).unwrap_or(0),
        reason: field_u32(&ctx, layout!(migrate_pages_reason)).map_or(-1, |v| v as i32),
    };
    send(target, tid, on_behalf, batch)
}
