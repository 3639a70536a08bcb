//! The maps; their names and value types are defined in numatrace-common.
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use numatrace_common::{
    COUNTER_SLOTS, LOSS_SLOTS, Loss, MAX_COUNTED_PROCESSES, MAX_CPUS, MAX_PFN_BLOCKS, MAX_TRACKED_TGID_WORDS,
    MAX_TRACKED_TIDS, PageMap, PageMapCalibration, PendingRun, ProcessCounts, Sampling,
};

/// Userspace resizes it at load time (`--ring-size`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

#[map]
pub static LOSS: PerCpuArray<Loss> = PerCpuArray::with_max_entries(LOSS_SLOTS, 0);

#[map]
pub static SENT: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOSS_SLOTS, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[map]
pub static TRACKED_TIDS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TRACKED_TIDS, 0);

/// One bit per traced tgid (see numatrace-common); userspace mmaps it.
#[map]
pub static TRACKED_TGIDS: Array<u64> = Array::with_max_entries(MAX_TRACKED_TGID_WORDS, BPF_F_MMAPABLE);

#[map]
pub static CPU_NODE: Array<u32> = Array::with_max_entries(MAX_CPUS, 0);

#[map]
pub static PFN_BLOCK_NODE: Array<u32> = Array::with_max_entries(MAX_PFN_BLOCKS, 0);

#[map]
pub static FIRST_TOUCH_RUN: PerCpuArray<PendingRun> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static HINTING_RUN: PerCpuArray<PendingRun> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU: the traced thread whose page fault is being handled there, and its address.
#[map]
pub static FAULT_PENDING: PerCpuArray<PendingFault> = PerCpuArray::with_max_entries(1, 0);

/// Threads that are moving pages right now (misplaced-page migration,
/// migrate_pages/move_pages/mbind): tid -> whose pages and since when. Page
/// allocations they make are migration targets, not first touches.
#[map]
pub static PAGE_MOVERS: HashMap<u32, PageMover> = HashMap::with_max_entries(MAX_TRACKED_TIDS, 0);

#[map]
pub static PAGE_MAP: Array<PageMap> = Array::with_max_entries(1, 0);

#[map]
pub static PAGE_MAP_CALIBRATION: PerCpuArray<PageMapCalibration> = PerCpuArray::with_max_entries(1, 0);

/// How many entries `PAGE_MOVERS` holds (see `movers`): 0 lets a first
/// touch skip the hash lookup.
#[map]
pub static MOVERS_IN_FLIGHT: Array<i64> = Array::with_max_entries(1, 0);

/// Which first-touch regions are traced (set by userspace at run time).
#[map]
pub static SAMPLING: Array<Sampling> = Array::with_max_entries(1, 0);

/// Every process's cross-node migrations and remote first touches (see
/// numatrace-common); only the always-on counting programs write it.
#[map]
pub static PROCESS_COUNTS: LruPerCpuHashMap<u32, ProcessCounts> =
    LruPerCpuHashMap::with_max_entries(MAX_COUNTED_PROCESSES, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingFault {
    pub tid: u32,
    pub _pad: u32,
    pub address: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct PageMover {
    pub target_tgid: u32,
    pub _pad: u32,
    pub start_ns: u64,
}
