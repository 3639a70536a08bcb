//! One kernel source per file. Each program filters to traced tasks first.
mod cgroup_joins;
#[cfg(feature = "load-generator")]
mod load_generator;
mod migrate_misplaced;
mod mm_migrate_pages;
mod mm_page_alloc;
mod numa_placement;
mod page_fault_user;
mod page_map_calibration;
mod process_counts;
mod sched_migrate_task;
mod sched_process_exit;
mod sched_setaffinity;
mod sys_enter;
mod sys_page_movers;
mod task_newtask;
mod task_numa_fault;

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_probe_read_kernel,
    programs::{RawTracePointContext, TracePointContext},
};

use crate::config::layout;

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
/// verifier knows its value: it keeps exactly one arm of the match in
/// [`direct`] (the others are dead code it removes) and the read is a direct
/// context load, instead of a `bpf_probe_read_kernel` helper call. Other
/// sizes and offsets use the helper.
#[inline(always)]
pub(crate) fn field<T>(ctx: &TracePointContext, offset: usize) -> Option<T> {
    if core::mem::size_of::<T>() != 8 || offset % 8 != 0 {
        return unsafe { ctx.read_at::<T>(offset) }.ok();
    }
    direct(ctx, offset)
}

/// Reads a 4-byte tracepoint field with a direct context load. A field at
/// offset%8 == 4 is read as the upper half of the aligned 8-byte word that
/// ends where it ends (the verifier wants 8-byte loads 8-aligned, and the
/// kernel refuses to attach a program that reads past the record's end).
#[inline(always)]
pub(crate) fn field_u32(ctx: &TracePointContext, offset: usize) -> Option<u32> {
    match offset % 8 {
        // Little-endian, the byte order of every BPF target built here.
        4 => direct::<u64>(ctx, offset - 4).map(|word| (word >> 32) as u32),
        0 => direct::<u32>(ctx, offset),
        _ => unsafe { ctx.read_at::<u32>(offset) }.ok(),
    }
}

/// A direct load of a `T` at a `.rodata` offset that is a multiple of 8 (see [`field`]).
#[inline(always)]
fn direct<T>(ctx: &TracePointContext, offset: usize) -> Option<T> {
    let p = ctx.as_ptr() as *const u8;
    macro_rules! table {
        ($($off:literal)*) => {
            match offset {
                $($off => Some(unsafe { load::<T, $off>(p) }),)*
                _ => unsafe { ctx.read_at::<T>(offset) }.ok(),
            }
        };
    }
    table!(8 16 24 32 40 48 56 64 72 80 88 96 104 112 120 128)
}

/// Raw tracepoint argument `n`, an index userspace found for this kernel
/// (`.rodata`, so known to the verifier): like [`direct`], one constant
/// context load, the only kind the verifier accepts on a raw tracepoint's
/// context. An index past the table is `None`.
#[inline(always)]
pub(crate) fn raw_arg(ctx: &RawTracePointContext, n: usize) -> Option<u64> {
    let p = ctx.as_ptr() as *const u8;
    macro_rules! table {
        ($($n:literal)*) => {
            match n {
                $($n => Some(unsafe { load::<u64, { $n * 8 }>(p) }),)*
                _ => None,
            }
        };
    }
    table!(0 1 2 3 4 5 6 7 8 9 10 11)
}

/// A member of a kernel struct at a BTF-derived offset (`.rodata`), read
/// directly: in a BTF-typed program the verifier checks the load against the
/// kernel's BTF, so a wrong offset is refused at load, never read.
#[inline(always)]
pub(crate) unsafe fn member<T>(base: *const u8, offset: usize) -> T {
    unsafe { core::ptr::read_volatile(base.add(offset).cast::<T>()) }
}

/// On the raw `sys_enter(struct pt_regs *regs, long id)`: the system call's number.
#[inline(always)]
pub(crate) fn syscall_id(ctx: &RawTracePointContext) -> u64 {
    ctx.arg::<u64>(1)
}

/// On the raw `sys_enter`: the system call's first argument, read from the
/// saved user registers (where in `pt_regs` comes from the kernel's BTF).
#[inline(always)]
pub(crate) fn syscall_arg0(ctx: &RawTracePointContext) -> Option<u64> {
    let regs: *const u8 = ctx.arg(0);
    unsafe { bpf_probe_read_kernel(regs.wrapping_add(layout!(raw.syscall_arg0)).cast::<u64>()) }.ok()
}
