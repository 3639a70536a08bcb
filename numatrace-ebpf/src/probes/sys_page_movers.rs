//! `migrate_pages(2)`, `move_pages(2)` and `mbind(2)`: while one of these runs
//! for a traced process (called by the process itself, or by another process
//! such as `migratepages` naming its pid), the caller is a page mover: its
//! allocations are migration targets and its `mm_migrate_pages` events belong
//! to the traced process.
//!
//! Preferred: the raw `sys_enter` tracepoint (see `sys_enter`), which
//! detaches in milliseconds; the six classic `syscalls:` tracepoints (the
//! fallback) wait for an RCU grace period each.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use super::field;
use crate::{config::layout, maps::PageMover, movers, tracking};

/// Marks the caller as moving pages of `pid`'s process (0 = itself) if that is traced.
#[inline(always)]
pub(super) fn enter(pid: Option<u64>) -> u32 {
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
