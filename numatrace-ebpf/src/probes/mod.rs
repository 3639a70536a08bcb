//! One kernel source per file. Each program filters to traced tasks first.
mod migrate_misplaced;
mod mm_migrate_pages;
mod mm_page_alloc;
mod numa_placement;
mod page_fault_user;
mod sched_migrate_task;
mod sched_process_exit;
mod sched_switch;
mod sys_page_movers;
mod task_newtask;
mod task_numa_fault;

use aya_ebpf::programs::TracePointContext;

/// Reads a tracepoint field at an offset userspace found in the format file.
#[inline(always)]
pub(crate) fn field<T>(ctx: &TracePointContext, offset: usize) -> Option<T> {
    unsafe { ctx.read_at::<T>(offset) }.ok()
}
