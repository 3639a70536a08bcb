//! Which tasks are traced, and where things are (cpu -> node, pfn -> node).
use core::intrinsics::{AtomicOrdering, atomic_or};

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id};
use numatrace_common::{Counter, NODE_UNKNOWN};

use crate::{
    config::config,
    maps::{COUNTERS, CPU_NODE, PAGE_MAP, PFN_BLOCK_NODE, SAMPLING, TRACKED_TGIDS, TRACKED_TIDS},
};

/// The current task as (tgid, tid).
#[inline(always)]
pub fn current() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    ((pid_tgid >> 32) as u32, pid_tgid as u32)
}

/// The current task as (tgid, tid), if it belongs to a traced process:
/// the first thing every program about the current task asks.
#[inline(always)]
pub fn traced_current() -> Option<(u32, u32)> {
    let (tgid, tid) = current();
    is_traced_tgid(tgid).then_some((tgid, tid))
}

/// Whether a process is traced. The target itself is one compare; other
/// processes (followed children, several pids, a tree, a cgroup) a bit
/// test in `TRACKED_TGIDS` (an inlined array access, no helper call), and
/// only when there can be any.
#[inline(always)]
pub fn is_traced_tgid(tgid: u32) -> bool {
    if tgid == config!(target_tgid) {
        return true;
    }
    if config!(follow_children) == 0 && config!(tgid_set) == 0 {
        return false;
    }
    match TRACKED_TGIDS.get(tgid / 64) {
        Some(word) => *word & (1u64 << (tgid % 64)) != 0,
        None => false,
    }
}

/// Adds a process to the traced set. An atomic OR: processes forking on
/// two CPUs (and userspace adding one) may set bits of the same word.
#[inline(always)]
pub fn track_tgid(tgid: u32) {
    if let Some(word) = TRACKED_TGIDS.get_ptr_mut(tgid / 64) {
        // SAFETY: an 8-aligned u64 map value that lives as long as the program.
        unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(word, 1u64 << (tgid % 64)) };
    }
}

/// The tgid of a traced thread, for events about a task other than the current one.
#[inline(always)]
pub fn traced_thread_tgid(tid: u32) -> Option<u32> {
    unsafe { TRACKED_TIDS.get(&tid) }.copied()
}

#[inline(always)]
pub fn cpu() -> u32 {
    unsafe { bpf_get_smp_processor_id() }
}

#[inline(always)]
pub fn cpu_node(cpu: u32) -> u16 {
    if cpu >= config!(cpu_node_entries) {
        return NODE_UNKNOWN;
    }
    match CPU_NODE.get(cpu) {
        Some(node) => *node as u16,
        None => NODE_UNKNOWN,
    }
}

#[inline(always)]
pub fn pfn_node(pfn: u64) -> u16 {
    let block = pfn >> config!(pfn_block_shift);
    if block >= config!(pfn_blocks) as u64 {
        return NODE_UNKNOWN;
    }
    match PFN_BLOCK_NODE.get(block as u32) {
        Some(node) => *node as u16,
        None => NODE_UNKNOWN,
    }
}

/// The pfn of a `struct page *`, once userspace has calibrated `PAGE_MAP`.
#[inline(always)]
pub fn page_pfn(page: u64) -> Option<u64> {
    let map = PAGE_MAP.get(0)?;
    if map.base == 0 || map.struct_size == 0 || page < map.base {
        return None;
    }
    Some((page - map.base) / map.struct_size)
}

#[inline(always)]
pub fn now_ns() -> u64 {
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}

/// Whether first touches in this region are traced (sampling off: all are).
#[inline(always)]
pub fn region_traced(region: u64) -> bool {
    match SAMPLING.get(0) {
        Some(s) if s.shift != 0 => numatrace_common::region_sampled(region, s.shift),
        _ => true,
    }
}

/// Adds to a per-CPU counter slot.
#[inline(always)]
pub fn count(counter: Counter, n: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        unsafe { *slot += n };
    }
}
