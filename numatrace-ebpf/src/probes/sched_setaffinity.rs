//! `sched_setaffinity(2)` on a traced thread, by the thread itself or by
//! another process (`taskset -a -p`): the thread's next cross-node move is
//! an affinity change, not the load balancer's or the NUMA balancer's.
//!
//! Preferred: the raw `sys_enter` tracepoint (see `sys_enter`), which
//! detaches in milliseconds; the classic
//! `syscalls:sys_enter_sched_setaffinity` (the fallback) waits for an RCU
//! grace period.
use aya_ebpf::{helpers::bpf_get_current_comm, macros::tracepoint, programs::TracePointContext};
use numatrace_common::{AffinityChangeEvent, EventHeader, EventRecord};

use super::field;
use crate::{config::layout, emit::emit, tracking};

/// The call names thread `pid` (0 = the caller).
#[inline(always)]
pub(super) fn set_affinity(pid: u32) -> u32 {
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
        // A thread pinning itself (the common case: thread pools, runtimes)
        // needs no name here: userspace has its own. Reading the name was
        // a third of this program's run time on such a call.
        by_comm: if by_pid == tid { [0; 16] } else { bpf_get_current_comm().unwrap_or_default() },
    };
    emit(&event, 1);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_sched_setaffinity")]
pub fn sys_enter_sched_setaffinity(ctx: TracePointContext) -> u32 {
    set_affinity(field::<u64>(&ctx, layout!(sys_sched_setaffinity_pid)).unwrap_or(0) as u32)
}
