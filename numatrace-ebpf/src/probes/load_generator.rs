//! Load generator, for benchmarks only (`--load-generator`, never attached
//! otherwise): on a chosen system call of a traced thread it writes
//! [`LOAD_GENERATOR_EVENTS_PER_CALL`] synthetic first-touch events through
//! the same ring, wakeup policy and loss accounting as the real sources.
//! No real source reaches a million events a second on a small machine; this
//! one does, at a rate the calling workload sets by how often it calls.
//!
//! The events hit 8192 regions (16 GiB) in a scattered order and both nodes
//! of a made-up pair, so that the aggregator does the work of a large
//! process with cold lookups, not of one hot key or a predictable sweep.
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use numatrace_common::{
    Counter, EventHeader, EventRecord, FirstTouchEvent, LOAD_GENERATOR_EVENTS_PER_CALL, REGION_SHIFT,
};

use crate::{config::config, emit::emit, maps::COUNTERS, tracking};

/// log2 of the regions the synthetic events hit (8192 regions of 2 MiB: 16 GiB).
const REGION_BITS: u32 = 13;
/// Fibonacci hashing: consecutive numbers land far apart.
const SCATTER: u64 = 0x9e37_79b9_7f4a_7c15;
/// Where they start: far from anything a real process maps.
const FIRST_REGION: u64 = 0x7e00_0000_0000 >> REGION_SHIFT;

/// `sys_enter(struct pt_regs *regs, long id)`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn load_generator(ctx: RawTracePointContext) -> u32 {
    let Some((tgid, tid)) = tracking::traced_current() else { return 0 };
    if ctx.arg::<u64>(1) != config!(load_generator_syscall) {
        return 0;
    }
    // This CPU's count so far numbers the events, so regions differ across calls.
    let Some(generated) = COUNTERS.get_ptr_mut(Counter::GeneratedEvents as u32) else { return 0 };
    let first = unsafe { *generated };
    unsafe { *generated += u64::from(LOAD_GENERATOR_EVENTS_PER_CALL) };
    let cpu = tracking::cpu();
    let ts_ns = tracking::now_ns();
    for i in 0..u64::from(LOAD_GENERATOR_EVENTS_PER_CALL) {
        let n = first + i;
        let event = FirstTouchEvent {
            header: EventHeader { kind: FirstTouchEvent::KIND as u32, cpu, ts_ns, tgid, tid },
            region: FIRST_REGION + (n.wrapping_mul(SCATTER) >> (64 - REGION_BITS)),
            pages: 1,
            last_ts_ns: ts_ns,
            cpu_node: 0,
            page_node: (n & 1) as u16,
            stack: 0,
        };
        emit(&event, 1);
    }
    0
}
