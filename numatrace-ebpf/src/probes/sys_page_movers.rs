//! `migrate_pages(2)`, `move_pages(2)` and `mbind(2)`: while one of these runs
//! for a traced process (called by the process itself, or by another process
//! such as `migratepages` naming its pid), the caller is a page mover: its
//! allocations are migration targets and its `mm_migrate_pages` events belong
//! to the traced process.
//!
//! Preferred: the raw `sys_enter` and `sys_exit` tracepoints, which fire for
//! every system call: a compare skips the others (and at exit a read of the
//! movers in flight, while nobody moves). They detach in milliseconds; the
//! six classic `syscalls:` tracepoints (the fallback) wait for an RCU grace
//! period each.
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use super::{field, syscall_arg0, syscall_id};
use crate::{config::layout, maps::PageMover, movers, tracking};

/// Marks the caller as moving pages of `pid`'s process (0 = itself) if that is traced.
#[inline(always)]
fn enter(pid: Option<u64>) -> u32 {
    let (tgid, tid) = tracking::current();
    let target = match pid {
        Some(0) | None => tgid,
        Some(pid) => match tracking::traced_thread_tgid(pid as u32) {
            Some(target) => target,
            None if tracking::is_traced_tgid(pid as u32) => pid as u32,
            None => return 0,
        },
    };
    if !tracking::is_traced_tgid(target) {
        return 0;
    }
    let mover = PageMover { target_tgid: target, _pad: 0, start_ns: tracking::now_ns() };
    movers::mark(tid, &mover);
    0
}

#[inline(always)]
fn exit() -> u32 {
    let (_, tid) = tracking::current();
    let _ = movers::unmark(tid);
    0
}

/// `sys_enter(struct pt_regs *regs, long id)`: the three calls, by number.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter_page_movers(ctx: RawTracePointContext) -> u32 {
    let id = syscall_id(&ctx);
    if id == layout!(raw.sys_migrate_pages) as u64 || id == layout!(raw.sys_move_pages) as u64 {
        // Their first argument is the pid whose pages move.
        enter(syscall_arg0(&ctx))
    } else if id == layout!(raw.sys_mbind) as u64 {
        enter(None)
    } else {
        0
    }
}

/// `sys_exit(struct pt_regs *regs, long ret)`: a thread marked as a mover is
/// inside one of the three calls (a thread is in one system call at a time),
/// so any system call exit of a marked thread ends its move.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit_page_movers(_ctx: RawTracePointContext) -> u32 {
    if !movers::any_in_flight() {
        return 0;
    }
    exit()
}

#[tracepoint(category = "syscalls", name = "sys_enter_migrate_pages")]
pub fn sys_enter_migrate_pages(ctx: TracePointContext) -> u32 {
    enter(field::<u64>(&ctx, layout!(sys_migrate_pages_pid)))
}

#[tracepoint(category = "syscalls", name = "sys_exit_migrate_pages")]
pub fn sys_exit_migrate_pages(_ctx: TracePointContext) -> u32 {
    exit()
}

#[tracepoint(category = "syscalls", name = "sys_enter_move_pages")]
pub fn sys_enter_move_pages(ctx: TracePointContext) -> u32 {
    enter(field::<u64>(&ctx, layout!(sys_move_pages_pid)))
}

#[tracepoint(category = "syscalls", name = "sys_exit_move_pages")]
pub fn sys_exit_move_pages(_ctx: TracePointContext) -> u32 {
    exit()
}

#[tracepoint(category = "syscalls", name = "sys_enter_mbind")]
pub fn sys_enter_mbind(_ctx: TracePointContext) -> u32 {
    enter(None)
}

#[tracepoint(category = "syscalls", name = "sys_exit_mbind")]
pub fn sys_exit_mbind(_ctx: TracePointContext) -> u32 {
    exit()
}
