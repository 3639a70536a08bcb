//! `sched:sched_switch`: accounts each traced thread's run time per node
//! (in the `RUNTIME` map), so the report can say where a thread really ran.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use numatrace_common::{Counter, RuntimeKey};

use super::field;
use crate::{
    config::layout,
    maps::{ON_CPU, RUNTIME},
    tracking,
};

#[tracepoint(category = "sched", name = "sched_switch")]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    let Some(slot) = ON_CPU.get_ptr_mut(0) else { return 0 };
    let slot = unsafe { &mut *slot };
    let now = tracking::now_ns();
    let prev = field::<i32>(&ctx, layout!(switch_prev_pid)).unwrap_or(-1) as u32;
    if slot.tid != 0 && slot.tid == prev {
        let key = RuntimeKey { tid: prev, node: slot.node };
        let ran = now.saturating_sub(slot.since_ns);
        match RUNTIME.get_ptr_mut(&key) {
            Some(total) => unsafe { *total += ran },
            None => {
                let _ = RUNTIME.insert(&key, &ran, 0);
            }
        }
    }
    slot.tid = 0;
    let next = field::<i32>(&ctx, layout!(switch_next_pid)).unwrap_or(-1) as u32;
    if next != 0 && tracking::traced_thread_tgid(next).is_some() {
        let cpu = tracking::cpu();
        slot.tid = next;
        slot.node = tracking::cpu_node(cpu) as u32;
        slot.since_ns = now;
        tracking::count(Counter::SwitchesIn, 1);
    }
    0
}
