//! The raw `sys_enter` tracepoint: the system calls numatrace watches
//! (`sys_page_movers`: migrate_pages, move_pages, mbind; `sched_setaffinity`),
//! picked by number in one program.
//!
//! It fires for every system call of the machine, so it is one program (one
//! more on the tracepoint would cost every system call another run) and
//! has no `sys_exit` partner: a page mover's mark ends at the thread's next
//! system call here, or at its next user page fault (`page_fault_user`),
//! before it can allocate anything that is not part of the move. Classic
//! `syscalls:` tracepoints (the fallback) detach one RCU grace period at a
//! time; this detaches in milliseconds.
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use super::{sched_setaffinity, sys_page_movers, syscall_arg0, syscall_id};
use crate::{config::layout, movers, tracking};

/// `sys_enter(struct pt_regs *regs, long id)`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter_watch(ctx: RawTracePointContext) -> u32 {
    let id = syscall_id(&ctx);
    // A thread entering a system call is not inside one that moves pages.
    movers::end_if_marked(|| tracking::current().1);
    if id == layout!(raw.sys_migrate_pages) as u64 || id == layout!(raw.sys_move_pages) as u64 {
        // Their first argument is the pid whose pages move.
        sys_page_movers::enter(syscall_arg0(&ctx))
    } else if id == layout!(raw.sys_mbind) as u64 {
        sys_page_movers::enter(None)
    } else if id == layout!(raw.sys_sched_setaffinity) as u64 {
        sched_setaffinity::set_affinity(syscall_arg0(&ctx).unwrap_or(0) as u32)
    } else {
        0
    }
}
