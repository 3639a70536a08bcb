//! `sched:sched_move_numa`, `sched_swap_numa`, `sched_stick_numa`: the NUMA
//! balancer's task placement decisions. They carry tgids, so no map lookup is
//! needed to filter.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use numatrace_common::{EventHeader, EventKind, FIELD_ABSENT, NumaPlacementEvent, PlacementFields};

use super::field_u32;
use crate::{emit::emit_as, tracking};

#[inline(always)]
fn read_i32(ctx: &TracePointContext, offset: u32) -> i32 {
    if offset == FIELD_ABSENT {
        return -1;
    }
    field_u32(ctx, offset as usize).map_or(-1, |v| v as i32)
}

#[inline(always)]
fn placement(ctx: &TracePointContext, kind: EventKind, f: &PlacementFields) -> u32 {
    let src_tgid = read_i32(ctx, f.src_tgid) as u32;
    let dst_tgid = read_i32(ctx, f.dst_tgid) as u32;
    let src_traced = tracking::is_traced_tgid(src_tgid);
    if !src_traced && !(f.dst_tgid != FIELD_ABSENT && tracking::is_traced_tgid(dst_tgid)) {
        return 0;
    }
    let src_tid = read_i32(ctx, f.src_pid) as u32;
    let dst_tid = read_i32(ctx, f.dst_pid) as u32;
    let event = NumaPlacementEvent {
        header: EventHeader {
            kind: kind as u32,
            cpu: tracking::cpu(),
            ts_ns: tracking::now_ns(),
            tgid: if src_traced { src_tgid } else { dst_tgid },
            tid: if src_traced { src_tid } else { dst_tid },
        },
        src_tid,
        src_tgid,
        src_cpu: read_i32(ctx, f.src_cpu),
        src_node: read_i32(ctx, f.src_nid),
        dst_tid: if f.dst_pid == FIELD_ABSENT { 0 } else { dst_tid },
        dst_tgid: if f.dst_tgid == FIELD_ABSENT { 0 } else { dst_tgid },
        dst_cpu: read_i32(ctx, f.dst_cpu),
        dst_node: read_i32(ctx, f.dst_nid),
    };
    emit_as(kind, &event, 1);
    0
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
