//! Calibration of `PAGE_MAP` (where the kernel's `struct page` array
//! starts), so that the raw `mm_page_alloc` program can turn the page
//! pointer it gets into a pfn. Both programs run, for a moment at start-up
//! only, on every page allocation of the machine: the raw one sees the
//! pointer, the classic one the pfn of the same allocation. Whichever of the
//! two runs second pairs them up. See `numatrace::kernel::page_map`.
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use numatrace_common::PageMapCalibration;

use super::field;
use crate::{
    config::layout,
    maps::{PAGE_MAP, PAGE_MAP_CALIBRATION},
};

#[inline(always)]
fn pair(slot: &mut PageMapCalibration) {
    slot.has_ptr = 0;
    slot.has_pfn = 0;
    let Some(map) = PAGE_MAP.get(0) else { return };
    let base = slot.ptr.wrapping_sub(slot.pfn.wrapping_mul(map.struct_size));
    if slot.agree == 0 {
        slot.base = base;
        slot.agree = 1;
    } else if slot.base == base {
        slot.agree += 1;
    } else {
        slot.disagree += 1;
    }
}

#[raw_tracepoint(tracepoint = "mm_page_alloc")]
pub fn page_map_calibration_raw(ctx: RawTracePointContext) -> u32 {
    let Some(slot) = PAGE_MAP_CALIBRATION.get_ptr_mut(0) else { return 0 };
    let slot = unsafe { &mut *slot };
    slot.ptr = ctx.arg::<u64>(0);
    slot.has_ptr = 1;
    if slot.has_pfn != 0 {
        pair(slot);
    }
    0
}

#[tracepoint(category = "kmem", name = "mm_page_alloc")]
pub fn page_map_calibration_tp(ctx: TracePointContext) -> u32 {
    let Some(slot) = PAGE_MAP_CALIBRATION.get_ptr_mut(0) else { return 0 };
    let slot = unsafe { &mut *slot };
    let Some(pfn) = field::<u64>(&ctx, layout!(page_alloc_pfn)) else { return 0 };
    slot.pfn = pfn;
    slot.has_pfn = 1;
    if slot.has_ptr != 0 {
        pair(slot);
    }
    0
}
