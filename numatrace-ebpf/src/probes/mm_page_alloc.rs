//! `kmem:mm_page_alloc`: a movable (user) page allocated in a traced thread's
//! context is a first touch; the pfn says which node it landed on. Pages
//! allocated as targets of a page migration are not first touches.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use numatrace_common::{Counter, GFP_MOVABLE};

use super::field;
use crate::{config::layout, maps::PAGE_MOVERS, runs, tracking};

#[tracepoint(category = "kmem", name = "mm_page_alloc")]
pub fn mm_page_alloc(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = tracking::current();
    if !tracking::is_traced_tgid(tgid) {
        return 0;
    }
    let Some(gfp) = field::<u64>(&ctx, layout!(page_alloc_gfp_flags)) else { return 0 };
    if gfp & GFP_MOVABLE == 0 {
        return 0;
    }
    let Some(pfn) = field::<u64>(&ctx, layout!(page_alloc_pfn)) else { return 0 };
    let order = field::<u32>(&ctx, layout!(page_alloc_order)).unwrap_or(0) & 31;
    let pages = 1u64 << order;
    if unsafe { PAGE_MOVERS.get(&tid) }.is_some() {
        tracking::count(Counter::MigrationTargetPages, pages);
        return 0;
    }
    let cpu = tracking::cpu();
    tracking::count(Counter::FirstTouchPages, pages);
    runs::add_first_touch(&runs::Sample {
        tgid,
        tid,
        cpu,
        region: runs::current_fault_region(tid),
        cpu_node: tracking::cpu_node(cpu),
        other_node: tracking::pfn_node(pfn),
        local: 0,
        ts_ns: tracking::now_ns(),
        pages,
        migrated_pages: 0,
    });
    0
}
