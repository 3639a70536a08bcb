//! `kmem:mm_page_alloc`: a movable (user) page allocated in a traced thread's
//! context is a first touch; the pfn says which node it landed on. Pages
//! allocated as targets of a page migration are not first touches.
//!
//! It runs on every page allocation of the machine. The raw tracepoint
//! (preferred) skips building the classic event record, which cost more than
//! the program itself; it gets the `struct page *` and turns it into a pfn
//! with the calibrated `PAGE_MAP`. The classic tracepoint is the fallback.
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext, tracing::StackIdContext},
};
use numatrace_common::{Counter, GFP_MOVABLE};

use super::{field, field_u32};
use crate::{config::layout, movers, runs, tracking};

/// `page` is `None` for an allocation that failed: the tracepoint fires for
/// the attempt too (a huge page tried first under memory pressure, then
/// small pages that do land), and such pages exist nowhere. Otherwise
/// `to_pfn` turns it into a pfn, only for a page of a traced region (the
/// others need no node, and skip its cost).
#[inline(always)]
fn first_touch<C: StackIdContext>(
    ctx: &C,
    tgid: u32,
    tid: u32,
    page: Option<u64>,
    order: u32,
    to_pfn: impl Fn(u64) -> u64,
) -> u32 {
    let pages = 1u64 << (order & 31);
    let Some(page) = page else {
        tracking::count(Counter::FailedAllocationPages, pages);
        return 0;
    };
    if movers::is_moving(tid) {
        tracking::count(Counter::MigrationTargetPages, pages);
        return 0;
    }
    tracking::count(Counter::FirstTouchPages, pages);
    let region = runs::current_fault_region(tid);
    // Every page is counted above; only traced regions go on to a run (an
    // overhead budget's sampling: the run and the ring are the cost it saves).
    if !tracking::region_traced(region) {
        tracking::count(Counter::UnsampledFirstTouchPages, pages);
        return 0;
    }
    let cpu = tracking::cpu();
    runs::add_first_touch(
        ctx,
        &runs::Sample {
            tgid,
            tid,
            cpu,
            region,
            cpu_node: tracking::cpu_node(cpu),
            other_node: tracking::pfn_node(to_pfn(page)),
            local: 0,
            pages,
            migrated_pages: 0,
        },
    );
    0
}

/// `mm_page_alloc(struct page *page, unsigned int order, gfp_t gfp_flags, int migratetype)`.
#[raw_tracepoint(tracepoint = "mm_page_alloc")]
pub fn mm_page_alloc_raw(ctx: RawTracePointContext) -> u32 {
    let Some((tgid, tid)) = tracking::traced_current() else { return 0 };
    if ctx.arg::<u64>(2) & GFP_MOVABLE == 0 {
        return 0;
    }
    // A failed allocation has a NULL page (the classic record says pfn -1).
    let page = ctx.arg::<u64>(0);
    let to_pfn = |page| tracking::page_pfn(page).unwrap_or(u64::MAX);
    first_touch(&ctx, tgid, tid, (page != 0).then_some(page), ctx.arg::<u64>(1) as u32, to_pfn)
}

#[tracepoint(category = "kmem", name = "mm_page_alloc")]
pub fn mm_page_alloc(ctx: TracePointContext) -> u32 {
    let Some((tgid, tid)) = tracking::traced_current() else { return 0 };
    let Some(gfp) = field::<u64>(&ctx, layout!(page_alloc_gfp_flags)) else { return 0 };
    if gfp & GFP_MOVABLE == 0 {
        return 0;
    }
    let Some(pfn) = field::<u64>(&ctx, layout!(page_alloc_pfn)) else { return 0 };
    let order = field_u32(&ctx, layout!(page_alloc_order)).unwrap_or(0);
    first_touch(&ctx, tgid, tid, (pfn != u64::MAX).then_some(pfn), order, |pfn| pfn)
}
