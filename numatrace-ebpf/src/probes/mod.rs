//! One kernel source per file. Each program filters to traced tasks first.
mod migrate_misplaced;
mod mm_migrate_pages;
mod mm_page_alloc;
mod numa_placement;
mod page_fault_user;
mod sched_migrate_task;
mod sched_process_exit;
mod sys_page_movers;
mod task_newtask;
mod task_numa_fault;

use aya_ebpf::{EbpfContext, programs::TracePointContext};

/// A direct load of a `T` at context offset `OFF`: one instruction with an
/// immediate offset, which is what the verifier accepts for tracepoint
/// context reads. Volatile, so that the compiler keeps one load per arm
/// below instead of merging them into a load at a computed address (the
/// verifier refuses variable context offsets).
#[inline(always)]
unsafe fn load<T, const OFF: usize>(ctx: *const u8) -> T {
    unsafe { core::ptr::read_volatile(ctx.add(OFF).cast::<T>()) }
}

/// Reads a tracepoint field at an offset userspace found in the format file.
///
/// The offset comes from `.rodata`, which is frozen before load, so the
/// verifier knows its value: it keeps exactly one arm of this match (the
/// others are dead code it removes) and the read is a direct context load,
/// instead of a `bpf_probe_read_kernel` helper call. Offsets outside the
/// table, and fields other than 8 bytes, use the helper.
#[inline(always)]
pub(crate) fn field<T>(ctx: &TracePointContext, offset: usize) -> Option<T> {
    let size = core::mem::size_of::<T>();
    // Only 8-byte fields: on 6.18 programs with 4-byte direct context loads
    // (dead arms included) were refused with EACCES after verification.
    if size != 8 || offset % 8 != 0 {
        return unsafe { ctx.read_at::<T>(offset) }.ok();
    }
    let p = ctx.as_ptr() as *const u8;
    macro_rules! direct {
        ($($off:literal)*) => {
            match offset {
                $($off => Some(unsafe { load::<T, $off>(p) }),)*
                _ => unsafe { ctx.read_at::<T>(offset) }.ok(),
            }
        };
    }
    direct!(8 16 24 32 40 48 56 64 72 80 88 96 104 112 120 128)
}
