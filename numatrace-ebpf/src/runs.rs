//! Run-length aggregation of hot sources in per-CPU slots: consecutive first
//! touches (or hinting faults) by one thread in one 2 MiB region with the same
//! nodes add up in place; a change of key sends the finished run as one event.
//! A sequential first touch of 2 MiB is one event instead of 512. Userspace
//! reads the slots once programs are detached, so no run is lost at the end.
//!
//! A run's end time is refreshed every [`LAST_TS_EVERY`] faults, not on every
//! one: reading the clock was a fifth of the per-page cost. So `last_ts_ns`
//! is the time of a fault at most `LAST_TS_EVERY - 1` faults before the
//! run's last (microseconds at first-touch rates); the start is exact.
use aya_ebpf::programs::tracing::StackIdContext;
use numatrace_common::{PendingRun, REGION_SHIFT, REGION_UNKNOWN};

use crate::{
    emit::emit,
    maps::{FAULT_PENDING, FIRST_TOUCH_RUN, HINTING_RUN},
    stacks, tracking,
};

/// The run's end time is read from the clock on every this many faults (a power of two).
pub const LAST_TS_EVERY: u32 = 16;

/// The 2 MiB region of the page fault `tid` is handling on this CPU, if any.
#[inline(always)]
pub fn current_fault_region(tid: u32) -> u64 {
    match FAULT_PENDING.get(0) {
        Some(fault) if fault.tid == tid => fault.address >> REGION_SHIFT,
        _ => REGION_UNKNOWN,
    }
}

/// One observation to fold into a run.
pub struct Sample {
    pub tgid: u32,
    pub tid: u32,
    pub cpu: u32,
    pub region: u64,
    pub cpu_node: u16,
    pub other_node: u16,
    pub local: u32,
    pub pages: u64,
    pub migrated_pages: u32,
}

#[inline(always)]
fn same_key(run: &PendingRun, s: &Sample) -> bool {
    run.pages != 0
        && run.tid == s.tid
        && run.region == s.region
        && run.cpu_node == s.cpu_node
        && run.other_node == s.other_node
        && run.local == s.local
}

/// Starts a run; `stack` is its user stack field (taken only here, so once per run).
#[inline(always)]
fn start(run: &mut PendingRun, s: &Sample, stack: u32) {
    let now = tracking::now_ns();
    run.stack = stack;
    run.tid = s.tid;
    run.tgid = s.tgid;
    run.region = s.region;
    run.first_ts_ns = now;
    run.last_ts_ns = now;
    run.pages = s.pages;
    run.faults = 1;
    run.migrated_pages = s.migrated_pages;
    run.cpu_node = s.cpu_node;
    run.other_node = s.other_node;
    run.local = s.local;
}

#[inline(always)]
fn extend(run: &mut PendingRun, s: &Sample) {
    run.pages += s.pages;
    run.faults += 1;
    if run.faults & (LAST_TS_EVERY - 1) == 0 {
        run.last_ts_ns = tracking::now_ns();
    }
    run.migrated_pages += s.migrated_pages;
}

/// Folds a first-touch sample into this CPU's run.
#[inline(always)]
pub fn add_first_touch<C: StackIdContext>(ctx: &C, s: &Sample) {
    let Some(run) = FIRST_TOUCH_RUN.get_ptr_mut(0) else { return };
    let run = unsafe { &mut *run };
    if same_key(run, s) {
        extend(run, s);
        return;
    }
    if run.pages != 0 {
        let event = run.first_touch_event(s.cpu);
        emit(&event, run.pages);
    }
    start(run, s, stacks::user_stack(ctx));
}

/// Folds a hinting-fault sample into this CPU's run.
#[inline(always)]
pub fn add_hinting_fault<C: StackIdContext>(ctx: &C, s: &Sample) {
    let Some(run) = HINTING_RUN.get_ptr_mut(0) else { return };
    let run = unsafe { &mut *run };
    if same_key(run, s) {
        extend(run, s);
        return;
    }
    if run.pages != 0 {
        let event = run.hinting_fault_event(s.cpu);
        emit(&event, run.faults as u64);
    }
    start(run, s, stacks::user_stack(ctx));
}
