//! `migrate:mm_migrate_pages`: a batch of page migrations, counted for the
//! traced process when it runs in a page mover's context (see
//! `sys_page_movers`, `migrate_misplaced`) or in a traced thread.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use numatrace_common::{EventHeader, EventRecord, PageMigrationEvent};

use super::{field, field_u32};
use crate::{config::layout, emit::emit, maps::PAGE_MOVERS, tracking};

#[tracepoint(category = "migrate", name = "mm_migrate_pages")]
pub fn mm_migrate_pages(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = tracking::current();
    let (target, on_behalf) = match unsafe { PAGE_MOVERS.get(&tid) } {
        Some(mover) => (mover.target_tgid, u32::from(mover.target_tgid != tgid)),
        None if tracking::is_traced_tgid(tgid) => (tgid, 0),
        None => return 0,
    };
    let event = PageMigrationEvent {
        header: EventHeader {
            kind: PageMigrationEvent::KIND as u32,
            cpu: tracking::cpu(),
            ts_ns: tracking::now_ns(),
            tgid: target,
            tid,
        },
        succeeded: field::<u64>(&ctx, layout!(migrate_pages_succeeded)).unwrap_or(0),
        failed: field::<u64>(&ctx, layout!(migrate_pages_failed)).unwrap_or(0),
        thp_succeeded: field::<u64>(&ctx, layout!(migrate_pages_thp_succeeded)).unwrap_or(0),
        reason: field_u32(&ctx, layout!(migrate_pages_reason)).map_or(-1, |v| v as i32),
        on_behalf,
    };
    emit(&event, event.succeeded);
    0
}
