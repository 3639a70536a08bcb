//! Names and value types of the maps shared by both sides.
use crate::EventRecord;

/// Ring buffer of events to userspace.
pub const EVENTS_MAP: &str = "EVENTS";
/// Per-CPU array, indexed by event kind id: events the ring had no room for.
pub const LOSS_MAP: &str = "LOSS";
/// Per-CPU array, indexed by event kind id: events written to the ring. With
/// `LOSS` and what userspace read, every event is accounted for.
pub const SENT_MAP: &str = "SENT";
/// Hash tid -> tgid of every traced thread (seeded by userspace, grown on clone).
pub const TRACKED_TIDS_MAP: &str = "TRACKED_TIDS";
/// Array of u64 words, one bit per tgid (bit `tgid % 64` of word `tgid /
/// 64`): the traced processes besides the target (children, several pids,
/// a tree, a cgroup's). A bit test on an inlined array access is the
/// filter of every event of every other process on the machine, where a
/// hash lookup cost several times more. Mmapped by userspace, which sets
/// bits with the same atomic OR as the kernel.
pub const TRACKED_TGIDS_MAP: &str = "TRACKED_TGIDS";
/// Array cpu -> node.
pub const CPU_NODE_MAP: &str = "CPU_NODE";
/// Array memory block (pfn >> `Config::pfn_block_shift`) -> node.
pub const PFN_BLOCK_NODE_MAP: &str = "PFN_BLOCK_NODE";
/// Per-CPU array: the run of first touches being accumulated on each CPU.
pub const FIRST_TOUCH_RUN_MAP: &str = "FIRST_TOUCH_RUN";
/// Per-CPU array: the run of hinting faults being accumulated on each CPU.
pub const HINTING_RUN_MAP: &str = "HINTING_RUN";
/// Per-CPU array, indexed by [`Counter`]: how often each program saw a
/// traced task (and the balancer's decisions of every task).
pub const COUNTERS_MAP: &str = "COUNTERS";

/// Per-CPU array of one [`PageMapCalibration`]: finding where the kernel's
/// `struct page` array starts (see `PAGE_MAP`).
pub const PAGE_MAP_CALIBRATION_MAP: &str = "PAGE_MAP_CALIBRATION";
/// Array of one [`PageMap`]: how to turn a `struct page *` into a pfn. Zero
/// until calibrated; the raw `mm_page_alloc` program is attached only after.
pub const PAGE_MAP_MAP: &str = "PAGE_MAP";

/// LRU per-CPU hash tgid -> [`ProcessCounts`]: what every process of the
/// machine did, counted in the kernel by the always-on programs of `numatrace
/// top` and the exporter (nothing traced, no ring). A capture never attaches
/// those programs and loads this map with one entry.
pub const PROCESS_COUNTS_MAP: &str = "PROCESS_COUNTS";
/// Capacity of `PROCESS_COUNTS` (userspace may load it smaller on machines
/// with many CPUs: each entry holds one value per possible CPU). When full,
/// the least recently counted process is dropped and starts again from 0.
pub const MAX_COUNTED_PROCESSES: u32 = 8_192;

/// Capacity of `TRACKED_TIDS`.
pub const MAX_TRACKED_TIDS: u32 = 65_536;
/// Words of `TRACKED_TGIDS` for every tgid up to the kernel's limit
/// (PID_MAX_LIMIT, 4 194 304 on 64-bit): 512 KiB. Userspace sizes it to
/// /proc/sys/kernel/pid_max, and to one word when no other process can be traced.
pub const MAX_TRACKED_TGID_WORDS: u32 = 4_194_304 / 64;
/// Capacity of `CPU_NODE` (CPUs beyond it map to node 0 and are reported).
pub const MAX_CPUS: u32 = 8_192;
/// Capacity of `PFN_BLOCK_NODE`: 65536 blocks of 128 MiB cover 8 TiB.
pub const MAX_PFN_BLOCKS: u32 = 65_536;
/// Node value for "not known".
pub const NODE_UNKNOWN: u16 = u16::MAX;

/// One process's counts in `PROCESS_COUNTS` (on one CPU; userspace sums them).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessCounts {
    /// Its threads moved between CPUs of different nodes (`sched_migrate_task`).
    pub cross_node_migrations: u64,
    /// Movable pages allocated in its context on another node than its CPU's
    /// (`mm_page_alloc`): first touches that landed remote.
    pub remote_first_touch_pages: u64,
    /// NUMA hinting faults of its threads on pages of another node than the
    /// faulting CPU's (`task_numa_fault` without `TNF_FAULT_LOCAL`): the
    /// balancer's sampled accesses that found the memory remote.
    pub remote_hinting_faults: u64,
}

/// Events (or, for runs, pages) the ring buffer had no room for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loss {
    pub events: u64,
    /// For run events: the pages (first touches) or faults (hinting) they carried.
    pub units: u64,
}

/// Slots of the `COUNTERS` per-CPU array: raw hit counts per program, for
/// tests and for the report's "what the kernel saw" section.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Page faults of traced threads (`exceptions:page_fault_user`).
    PageFaults = 0,
    /// First-touch pages (sum of orders) of traced threads.
    FirstTouchPages = 1,
    /// Hinting faults of traced threads.
    HintingFaults = 2,
    /// Migrations of traced threads (within a node or across nodes).
    TaskMigrations = 3,
    /// Unused since run time is sampled from schedstat (slot kept: ids are stable).
    Unused4 = 4,
    /// Movable allocations skipped because the thread was migrating pages.
    MigrationTargetPages = 5,
    /// Synthetic events written by the load generator (benchmarks only,
    /// `--load-generator`), sent or lost.
    GeneratedEvents = 6,
    /// Migrations of traced threads between two CPUs of one node, counted
    /// here and not sent as events (unless `Config::ship_within_node_migrations`).
    WithinNodeMigrations = 7,
    /// Pages of movable allocations by traced threads that failed (no page):
    /// the kernel traces the attempt, e.g. a huge page tried before falling
    /// back to small ones under memory pressure. Not first touches.
    FailedAllocationPages = 8,
    /// First-touch pages (of `FirstTouchPages`) in regions the overhead
    /// budget's sampling skipped: counted, not sent (see [`SAMPLING_MAP`]).
    UnsampledFirstTouchPages = 9,
    /// User stacks taken at the start of a run (`--stacks`).
    Stacks = 10,
    /// User stacks `--stacks` asked for and did not get (the `STACKS` map
    /// full or a hash bucket taken by another stack, no user context): the
    /// run is sent without one.
    LostStacks = 11,
    /// The NUMA balancer's task decisions on the whole machine
    /// (`sched_move_numa`: a task moved to a CPU of its preferred node),
    /// counted before the traced-process filter: the exporter serves them,
    /// and the kernel counts them nowhere else.
    MachineBalancerMoves = 12,
    /// `sched_swap_numa`: two tasks swapped CPUs across nodes, machine-wide.
    MachineBalancerSwaps = 13,
    /// `sched_stick_numa`: the balancer found no better CPU and left the task, machine-wide.
    MachineBalancerSticks = 14,
}

/// Number of `COUNTERS` slots.
pub const COUNTER_SLOTS: u32 = 15;

/// Stack-trace map: the user call stacks that started first-touch and
/// hinting-fault runs (`--stacks`), by id. One entry unless `--stacks`,
/// [`MAX_STACKS`] with it (userspace sizes it at load).
pub const STACKS_MAP: &str = "STACKS";
/// Entries of `STACKS` under `--stacks`: distinct call sites; each holds
/// [`MAX_STACK_FRAMES`] addresses.
pub const MAX_STACKS: u32 = 8_192;
/// Frames the kernel keeps of one stack (PERF_MAX_STACK_DEPTH).
pub const MAX_STACK_FRAMES: usize = 127;

/// Array of one [`Sampling`]: which first-touch regions are traced. Written
/// by userspace while the programs run (an overhead budget adapts it), so a
/// map, not `.rodata`. All zero: every region is traced.
pub const SAMPLING_MAP: &str = "SAMPLING";

/// Region sampling of first touches: a 2 MiB region is traced when
/// [`region_sampled`] says so, wholly or not at all, so its history stays
/// consistent; the pages of the others are only counted.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sampling {
    /// log2 of N: one region in 2^shift is traced (0: all).
    pub shift: u32,
    pub _pad: u32,
}

/// Largest [`Sampling::shift`] userspace sets (1 region in 1024).
pub const MAX_SAMPLING_SHIFT: u32 = 10;

/// Whether a region (address >> `REGION_SHIFT`) is traced at 1 in 2^`shift`.
/// A multiplicative hash, so that neighbouring regions (one array) spread
/// evenly; the low bits of the product's high half decide. The regions traced
/// at 2N are a subset of those traced at N: raising N never starts a region
/// half way.
#[inline(always)]
pub const fn region_sampled(region: u64, shift: u32) -> bool {
    let mask = (1u64 << (shift & 63)) - 1;
    (region.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) & mask == 0
}

/// Synthetic first-touch events the load generator writes per system call
/// of a traced thread (see `Config::load_generator_syscall`).
pub const LOAD_GENERATOR_EVENTS_PER_CALL: u32 = 64;

/// The kernel's `struct page` array (SPARSEMEM_VMEMMAP): page `pfn` is at
/// `base + pfn * struct_size`. Its base is randomised at boot and not
/// exported, so userspace measures it (see [`PageMapCalibration`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageMap {
    pub base: u64,
    /// `sizeof(struct page)`, from BTF.
    pub struct_size: u64,
}

/// One CPU's calibration of [`PageMap::base`]: the raw `mm_page_alloc`
/// program sees the `struct page *`, the classic one the pfn, of the same
/// allocation; whichever runs second computes `ptr - pfn * struct_size`.
/// Userspace accepts the base only if every pair on every CPU agreed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageMapCalibration {
    pub ptr: u64,
    pub pfn: u64,
    /// 1 when `ptr` (resp. `pfn`) waits for its other half.
    pub has_ptr: u32,
    pub has_pfn: u32,
    pub base: u64,
    /// Pairs that gave `base`.
    pub agree: u64,
    /// Pairs that gave anything else.
    pub disagree: u64,
}

/// A run being accumulated in a per-CPU slot (first touches or hinting faults).
/// `pages` 0 means the slot is empty.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingRun {
    pub tid: u32,
    pub tgid: u32,
    pub region: u64,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    pub pages: u64,
    pub faults: u32,
    pub migrated_pages: u32,
    pub cpu_node: u16,
    pub other_node: u16,
    pub local: u32,
    /// The run's user stack: a `STACKS` id plus one, 0 for none.
    pub stack: u32,
    pub _pad: u32,
}

impl PendingRun {
    fn header(&self, kind: crate::EventKind, cpu: u32) -> crate::EventHeader {
        crate::EventHeader { kind: kind as u32, cpu, ts_ns: self.first_ts_ns, tgid: self.tgid, tid: self.tid }
    }

    /// The run as a first-touch event (`other_node` is the page node).
    #[inline(always)]
    pub fn first_touch_event(&self, cpu: u32) -> crate::FirstTouchEvent {
        crate::FirstTouchEvent {
            header: self.header(crate::FirstTouchEvent::KIND, cpu),
            region: self.region,
            pages: self.pages,
            last_ts_ns: self.last_ts_ns,
            cpu_node: self.cpu_node,
            page_node: self.other_node,
            stack: self.stack,
        }
    }

    /// The run as a hinting-fault event (`other_node` is the memory node).
    #[inline(always)]
    pub fn hinting_fault_event(&self, cpu: u32) -> crate::HintingFaultEvent {
        crate::HintingFaultEvent {
            header: self.header(crate::HintingFaultEvent::KIND, cpu),
            region: self.region,
            last_ts_ns: self.last_ts_ns,
            faults: self.faults,
            pages: self.pages as u32,
            migrated_pages: self.migrated_pages,
            cpu_node: self.cpu_node,
            mem_node: self.other_node,
            local: self.local,
            stack: self.stack,
        }
    }
}

// Map values both sides read and write: sizes fixed, so that a layout change
// fails the build on both sides.
const _: () = assert!(size_of::<Loss>() == 16);
const _: () = assert!(size_of::<PageMap>() == 16);
const _: () = assert!(size_of::<PageMapCalibration>() == 48);
const _: () = assert!(size_of::<PendingRun>() == 64);
const _: () = assert!(size_of::<Sampling>() == 8);
const _: () = assert!(size_of::<ProcessCounts>() == 24);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integer structs.
    unsafe impl aya::Pod for super::Loss {}
    unsafe impl aya::Pod for super::PendingRun {}
    unsafe impl aya::Pod for super::PageMap {}
    unsafe impl aya::Pod for super::PageMapCalibration {}
    unsafe impl aya::Pod for super::Sampling {}
    unsafe impl aya::Pod for super::ProcessCounts {}
}
