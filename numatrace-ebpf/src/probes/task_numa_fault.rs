//! `task_numa_fault(last_cpupid, mem_node, pages, flags)`: a NUMA hinting
//! fault of the current thread; says on which node the memory it actually
//! touches lives. Works without a PMU. Attached with fentry where the kernel
//! has BTF and trampolines (cheapest), else with a kprobe.
use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext, tracing::StackIdContext},
};
use numatrace_common::{Counter, TNF_FAULT_LOCAL, TNF_MIGRATED};

use crate::{runs, tracking};

#[inline(always)]
fn hinting_fault<C: StackIdContext>(ctx: &C, mem_node: i32, pages: i32, flags: i32) -> u32 {
    let Some((tgid, tid)) = tracking::traced_current() else { return 0 };
    let pages = if pages > 0 { pages as u64 } else { 0 };
    let flags = flags as u32;
    let cpu = tracking::cpu();
    tracking::count(Counter::HintingFaults, 1);
    runs::add_hinting_fault(
        ctx,
        &runs::Sample {
            tgid,
            tid,
            cpu,
            region: runs::current_fault_region(tid),
            cpu_node: tracking::cpu_node(cpu),
            other_node: mem_node as u16,
            local: u32::from(flags & TNF_FAULT_LOCAL != 0),
            pages,
            migrated_pages: if flags & TNF_MIGRATED != 0 { pages as u32 } else { 0 },
        },
    );
    0
}

#[fentry(function = "task_numa_fault")]
pub fn task_numa_fault_fentry(ctx: FEntryContext) -> u32 {
    hinting_fault(&ctx, ctx.arg::<i32>(1), ctx.arg::<i32>(2), ctx.arg::<i32>(3))
}

#[kprobe]
pub fn task_numa_fault(ctx: ProbeContext) -> u32 {
    hinting_fault(&ctx, ctx.arg(1).unwrap_or(-1), ctx.arg(2).unwrap_or(0), ctx.arg(3).unwrap_or(0))
}
