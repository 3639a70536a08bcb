//! `sched_setaffinity(2)` on a traced thread, by the thread itself or by
//! another process (`taskset -a -p`): the thread's next cross-node move is
//! an affinity change, not the load balancer's or the NUMA balancer's.
//!
//! Preferred: the raw `sys_enter` tracepoint, which fires for every system
//! call (a compare skips the others) and detaches in milliseconds; the
//! classic `syscalls:sys_enter_sched_setaffinity` (the fallback) waits for
//! an RCU grace period.
use aya_ebpf::{
    helpers::bpf_get_current_comm,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use numatrace_common::{AffinityChangeEvent, EventHeader, EventRecord};

use super::{field, syscall_arg0, syscall_id};
use crate::{config::layout, emit::emit, tracking};

/// The call names thread `pid` (0 = the caller).
#[inline(always)]
fn set_affinity(pid: u32) -> u32 {
    let (by_tgid, by_pid) = tracking::current();
    let (tgid, tid) = if pid == 0 {
        if !tracking::is_traced_tgid(by_tgid) {
            return 0;
        }
        (by_tgid, by_pid)
    } else {
        match tracking::traced_thread_tgid(pid) {
            Some(tgid) => (tgid, pid),
            None if tracking::is_traced_tgid(pid) => (pid, pid),
            None => return 0,
        }
    };
    let event = AffinityChangeEvent {
        header: EventHeader {
            kind: AffinityChangeEvent::KIND as u32,
            cpu: tracking::cpu(),
            ts_ns: tracking::now_ns(),
            tgid,
            tid,
        },
        by_pid,
        by_tgid,
        by_comm: bpf_get_current_comm().unwrap_or_default(),
    };
    emit(&event, 1);
    0
}

/// `sys_enter(struct pt_regs *regs, long id)`: sched_setaffinity(pid, len, mask).
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter_sched_setaffinity_raw(ctx: RawTracePointContext) -> u32 {
    if syscall_id(&ctx) != layout!(raw.sys_sched_setaffinity) as u64 {
        return 0;
    }
    set_affinity(syscall_arg0(&ctx).unwrap_or(0) as u32)
}

#[tracepoint(category = "syscalls", name = "sys_enter_sched_setaffinity")]
pub fn sys_enter_sched_setaffinity(ctx: TracePointContext) -> u32 {
    set_affinity(field::<u64>(&ctx, layout!(sys_sched_setaffinity_pid)).unwrap_or(0) as u32)
}
