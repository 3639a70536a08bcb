//! `exceptions:page_fault_user` (x86 only): remembers, per CPU, which traced
//! thread is faulting at which address, so the allocation and hinting-fault
//! programs that run inside the fault know the region.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use numatrace_common::Counter;

use super::field;
use crate::{config::layout, maps::FAULT_PENDING, tracking};

#[tracepoint(category = "exceptions", name = "page_fault_user")]
pub fn page_fault_user(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = tracking::current();
    if !tracking::is_traced_tgid(tgid) {
        return 0;
    }
    let Some(address) = field::<u64>(&ctx, layout!(fault_address)) else { return 0 };
    if let Some(pending) = FAULT_PENDING.get_ptr_mut(0) {
        unsafe {
            (*pending).tid = tid;
            (*pending).address = address;
        }
    }
    tracking::count(Counter::PageFaults, 1);
    0
}
