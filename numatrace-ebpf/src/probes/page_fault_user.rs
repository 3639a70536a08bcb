//! `exceptions:page_fault_user` (x86 only): remembers, per CPU, which traced
//! thread is faulting at which address, so the allocation and hinting-fault
//! programs that run inside the fault know the region.
//!
//! Attached as a raw tracepoint where possible: it runs on every user page
//! fault of the machine, and the raw form skips building the classic event
//! record (most of the cost of a classic tracepoint here). Its first argument
//! is the address.
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use numatrace_common::Counter;

use super::field;
use crate::{config::layout, maps::FAULT_PENDING, movers, tracking};

#[inline(always)]
fn fault(tid: u32, address: u64) -> u32 {
    // A fault from user mode: the thread is in no system call, so no page
    // move it made is still running (the raw `sys_enter` has no exit hook).
    movers::end_if_marked(|| tid);
    if let Some(pending) = FAULT_PENDING.get_ptr_mut(0) {
        unsafe {
            (*pending).tid = tid;
            (*pending).address = address;
        }
    }
    tracking::count(Counter::PageFaults, 1);
    0
}

/// `page_fault_user(unsigned long address, struct pt_regs *regs, unsigned long error_code)`.
#[raw_tracepoint(tracepoint = "page_fault_user")]
pub fn page_fault_user_raw(ctx: RawTracePointContext) -> u32 {
    let Some((_, tid)) = tracking::traced_current() else { return 0 };
    fault(tid, ctx.arg::<u64>(0))
}

#[tracepoint(category = "exceptions", name = "page_fault_user")]
pub fn page_fault_user(ctx: TracePointContext) -> u32 {
    let Some((_, tid)) = tracking::traced_current() else { return 0 };
    let Some(address) = field::<u64>(&ctx, layout!(fault_address)) else { return 0 };
    fault(tid, address)
}
