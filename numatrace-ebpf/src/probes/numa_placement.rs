//! `sched:sched_move_numa`, `sched_swap_numa`, `sched_stick_numa`: the NUMA
//! balancer's task placement decisions. They carry tgids, so no map lookup is
//! needed to filter. Every decision of the machine is counted first, per
//! CPU (what `numatrace exporter` serves); only traced ones are sent.
//!
//! BTF-typed where the kernel allows (they detach in milliseconds, the
//! classic tracepoints wait for an RCU grace period each): they get the
//! tasks and CPUs and read pid and tgid from the tasks, the node from the
//! CPU (as the classic record does). The classic tracepoints are the fallback.
use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use numatrace_common::{
    Counter, EventHeader, EventKind, FIELD_ABSENT, NODE_UNKNOWN, NumaPlacementEvent, PlacementFields,
};

use super::{field_u32, member};
use crate::{config::layout, emit::emit_as, tracking};

/// One side of a placement: a task (0s for none) and a CPU (-1 for none) with its node.
#[derive(Clone, Copy)]
struct Side {
    tid: u32,
    tgid: u32,
    cpu: i32,
    node: i32,
}

#[inline(always)]
fn send(kind: EventKind, src: Side, dst: Side) -> u32 {
    // Every decision of the machine, before the filter: one per-CPU add on
    // a rare event (the balancer decides per task per scan period).
    tracking::count(
        match kind {
            EventKind::NumaTaskSwap => Counter::MachineBalancerSwaps,
            EventKind::NumaTaskStick => Counter::MachineBalancerSticks,
            _ => Counter::MachineBalancerMoves,
        },
        1,
    );
    let src_traced = tracking::is_traced_tgid(src.tgid);
    if !src_traced && !(dst.tgid != 0 && tracking::is_traced_tgid(dst.tgid)) {
        return 0;
    }
    let event = NumaPlacementEvent {
        header: EventHeader {
            kind: kind as u32,
            cpu: tracking::cpu(),
            ts_ns: tracking::now_ns(),
            tgid: if src_traced { src.tgid } else { dst.tgid },
            tid: if src_traced { src.tid } else { dst.tid },
        },
        src_tid: src.tid,
        src_tgid: src.tgid,
        src_cpu: src.cpu,
        src_node: src.node,
        dst_tid: dst.tid,
        dst_tgid: dst.tgid,
        dst_cpu: dst.cpu,
        dst_node: dst.node,
    };
    emit_as(kind, &event, 1);
    0
}

// ---- BTF-typed ----

/// A task (may be NULL: `sched_stick_numa` without a partner) on a CPU.
#[inline(always)]
fn side(task: *const u8, cpu: i32) -> Side {
    let (tid, tgid) = if task.is_null() {
        (0, 0)
    } else {
        unsafe { (member::<u32>(task, layout!(task.pid)), member::<u32>(task, layout!(task.tgid))) }
    };
    // The classic record's `cpu < 0 ? NUMA_NO_NODE : cpu_to_node(cpu)`.
    let node = match tracking::cpu_node(cpu as u32) {
        _ if cpu < 0 => -1,
        NODE_UNKNOWN => -1,
        node => i32::from(node),
    };
    Side { tid, tgid, cpu, node }
}

/// `sched_move_numa(struct task_struct *tsk, int src_cpu, int dst_cpu)`.
#[btf_tracepoint(function = "sched_move_numa")]
pub fn sched_move_numa_btf(ctx: BtfTracePointContext) -> u32 {
    let src = side(ctx.arg(0), ctx.arg(1));
    let dst = side(core::ptr::null(), ctx.arg(2));
    send(EventKind::NumaTaskMove, src, dst)
}

/// `sched_swap_numa(struct task_struct *src_tsk, int src_cpu, struct task_struct *dst_tsk, int dst_cpu)`.
#[btf_tracepoint(function = "sched_swap_numa")]
pub fn sched_swap_numa_btf(ctx: BtfTracePointContext) -> u32 {
    send(EventKind::NumaTaskSwap, side(ctx.arg(0), ctx.arg(1)), side(ctx.arg(2), ctx.arg(3)))
}

/// `sched_stick_numa`: as `sched_swap_numa`, the partner task may be NULL.
#[btf_tracepoint(function = "sched_stick_numa")]
pub fn sched_stick_numa_btf(ctx: BtfTracePointContext) -> u32 {
    send(EventKind::NumaTaskStick, side(ctx.arg(0), ctx.arg(1)), side(ctx.arg(2), ctx.arg(3)))
}

// ---- classic ----

#[inline(always)]
fn read_i32(ctx: &TracePointContext, offset: u32) -> i32 {
    if offset == FIELD_ABSENT {
        return -1;
    }
    field_u32(ctx, offset as usize).map_or(-1, |v| v as i32)
}

#[inline(always)]
fn placement(ctx: &TracePointContext, kind: EventKind, f: &PlacementFields) -> u32 {
    // Fields a tracepoint lacks (the partner of `sched_move_numa`) are 0.
    let or_zero = |offset: u32| if offset == FIELD_ABSENT { 0 } else { read_i32(ctx, offset) as u32 };
    let src = Side {
        tid: read_i32(ctx, f.src_pid) as u32,
        tgid: read_i32(ctx, f.src_tgid) as u32,
        cpu: read_i32(ctx, f.src_cpu),
        node: read_i32(ctx, f.src_nid),
    };
    let dst = Side {
        tid: or_zero(f.dst_pid),
        tgid: or_zero(f.dst_tgid),
        cpu: read_i32(ctx, f.dst_cpu),
        node: read_i32(ctx, f.dst_nid),
    };
    send(kind, src, dst)
}
/// Reads a `PlacementFields` from `LAYOUTS` field by field (volatile).
macro_rules! fields {
    ($which:ident) => {
        PlacementFields {
            src_pid: crate::config::layout!($which.src_pid) as u32,
            src_tgid: crate::config::layout!($which.src_tgid) as u32,
            src_cpu: crate::config::layout!($which.src_cpu) as u32,
            src_nid: crate::config::layout!($which.src_nid) as u32,
            dst_pid: crate::config::layout!($which.dst_pid) as u32,
            dst_tgid: crate::config::layout!($which.dst_tgid) as u32,
            dst_cpu: crate::config::layout!($which.dst_cpu) as u32,
            dst_nid: crate::config::layout!($which.dst_nid) as u32,
        }
    };
}

#[tracepoint(category = "sched", name = "sched_move_numa")]
pub fn sched_move_numa(ctx: TracePointContext) -> u32 {
    placement(&ctx, EventKind::NumaTaskMove, &fields!(move_numa))
}

#[tracepoint(category = "sched", name = "sched_swap_numa")]
pub fn sched_swap_numa(ctx: TracePointContext) -> u32 {
    placement(&ctx, EventKind::NumaTaskSwap, &fields!(swap_numa))
}

#[tracepoint(category = "sched", name = "sched_stick_numa")]
pub fn sched_stick_numa(ctx: TracePointContext) -> u32 {
    placement(&ctx, EventKind::NumaTaskStick, &fields!(stick_numa))
}
