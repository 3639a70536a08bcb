//! The always-on per-process counters of `numatrace top` and the exporter:
//! for every process of the machine, thread migrations between CPUs of
//! different nodes, movable pages allocated on another node than the
//! allocating CPU's, and NUMA hinting faults that found the page on another
//! node, added to `PROCESS_COUNTS` by tgid. Nothing is traced
//! and nothing goes to the ring. A capture never attaches these programs,
//! so its own filter-first programs cost what they did.
//!
//! Only what is remote reaches the hash map: a move within a node or a local
//! page costs two array reads and a compare.
use aya_ebpf::{
    macros::{btf_tracepoint, fentry, kprobe, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, FEntryContext, ProbeContext, RawTracePointContext, TracePointContext},
};
use numatrace_common::{GFP_MOVABLE, NODE_UNKNOWN, ProcessCounts, TNF_FAULT_LOCAL};

use super::{field, field_u32, member};
use crate::{config::layout, maps::PROCESS_COUNTS, tracking};

/// What to add to a process's counts.
#[derive(Clone, Copy)]
enum Count {
    CrossNodeMigration,
    RemotePages(u64),
    RemoteHintingFault,
}

impl Count {
    /// Adds this count to a process's value on this CPU.
    #[inline(always)]
    fn add_to(self, counts: &mut ProcessCounts) {
        match self {
            Count::CrossNodeMigration => counts.cross_node_migrations += 1,
            Count::RemotePages(n) => counts.remote_first_touch_pages += n,
            Count::RemoteHintingFault => counts.remote_hinting_faults += 1,
        }
    }
}

/// Adds to this CPU's counts of `tgid`; the entry is made on its first count.
#[inline(always)]
fn add(tgid: u32, count: Count) {
    if let Some(counts) = PROCESS_COUNTS.get_ptr_mut(tgid) {
        // SAFETY: this CPU's value of a live entry; no other CPU writes it.
        count.add_to(unsafe { &mut *counts });
        return;
    }
    let mut first = ProcessCounts::default();
    count.add_to(&mut first);
    // BPF_NOEXIST: another CPU may have made the entry since the lookup;
    // then this count goes to this CPU's value of that entry instead.
    if PROCESS_COUNTS.insert(tgid, first, u64::from(aya_ebpf::bindings::BPF_NOEXIST)).is_err()
        && let Some(counts) = PROCESS_COUNTS.get_ptr_mut(tgid)
    {
        // SAFETY: as above.
        count.add_to(unsafe { &mut *counts });
    }
}

/// Whether two nodes are known and differ.
#[inline(always)]
fn remote(a: u16, b: u16) -> bool {
    a != NODE_UNKNOWN && b != NODE_UNKNOWN && a != b
}

/// `sched_migrate_task(struct task_struct *p, int dest_cpu)`, before the
/// task's CPU changes. The classic record has no tgid, so there is no
/// classic form of this counter.
#[btf_tracepoint(function = "sched_migrate_task")]
pub fn sched_migrate_task_count_btf(ctx: BtfTracePointContext) -> u32 {
    let task: *const u8 = ctx.arg(0);
    if task.is_null() {
        return 0;
    }
    let orig_cpu = unsafe { member::<u32>(task, layout!(task.cpu)) };
    let dest_cpu: i32 = ctx.arg(1);
    if dest_cpu < 0 || !remote(tracking::cpu_node(orig_cpu), tracking::cpu_node(dest_cpu as u32)) {
        return 0;
    }
    add(unsafe { member::<u32>(task, layout!(task.tgid)) }, Count::CrossNodeMigration);
    0
}

/// A movable allocation in the current process's context: remote when its
/// page is on another node than this CPU. Pages of failed allocations do
/// not exist; unknown nodes are not counted.
#[inline(always)]
fn page_alloc(pfn: u64, order: u32) {
    if !remote(tracking::pfn_node(pfn), tracking::cpu_node(tracking::cpu())) {
        return;
    }
    let (tgid, _) = tracking::current();
    add(tgid, Count::RemotePages(1u64 << (order & 31)));
}

/// `mm_page_alloc(struct page *page, unsigned int order, gfp_t gfp_flags, int migratetype)`:
/// the pointer becomes a pfn through the calibrated `PAGE_MAP`.
#[raw_tracepoint(tracepoint = "mm_page_alloc")]
pub fn mm_page_alloc_count_raw(ctx: RawTracePointContext) -> u32 {
    let page = ctx.arg::<u64>(0);
    if page == 0 || ctx.arg::<u64>(2) & GFP_MOVABLE == 0 {
        return 0;
    }
    if let Some(pfn) = tracking::page_pfn(page) {
        page_alloc(pfn, ctx.arg::<u64>(1) as u32);
    }
    0
}

#[tracepoint(category = "kmem", name = "mm_page_alloc")]
pub fn mm_page_alloc_count(ctx: TracePointContext) -> u32 {
    let Some(gfp) = field::<u64>(&ctx, layout!(page_alloc_gfp_flags)) else { return 0 };
    if gfp & GFP_MOVABLE == 0 {
        return 0;
    }
    let Some(pfn) = field::<u64>(&ctx, layout!(page_alloc_pfn)) else { return 0 };
    if pfn == u64::MAX {
        return 0;
    }
    page_alloc(pfn, field_u32(&ctx, layout!(page_alloc_order)).unwrap_or(0));
    0
}

/// `task_numa_fault(last_cpupid, mem_node, pages, flags)`: a NUMA hinting
/// fault of the current thread. Counted per fault (as /proc/vmstat's
/// `numa_hint_faults` are, a huge page once) when the kernel did not find
/// the page on the faulting CPU's node; runs only on the balancer's hinting
/// faults, which it paces itself.
#[inline(always)]
fn hinting_fault(flags: i32) {
    if flags as u32 & TNF_FAULT_LOCAL != 0 {
        return;
    }
    let (tgid, _) = tracking::current();
    add(tgid, Count::RemoteHintingFault);
}

#[fentry(function = "task_numa_fault")]
pub fn task_numa_fault_count_fentry(ctx: FEntryContext) -> u32 {
    hinting_fault(ctx.arg::<i32>(3));
    0
}

#[kprobe]
pub fn task_numa_fault_count(ctx: ProbeContext) -> u32 {
    if let Some(flags) = ctx.arg::<i32>(3) {
        hinting_fault(flags);
    }
    0
}
