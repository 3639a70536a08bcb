//! Events the kernel programs send to userspace through the `EVENTS` ring buffer.
//!
//! Every event starts with an [`EventHeader`]; its `kind` says which struct
//! follows. Hot sources (page allocations, hinting faults) are aggregated in
//! the kernel into runs (one event per thread, 2 MiB region and node pair), so
//! the ring only carries summaries and rare events.

/// Stable numeric id of an event kind. Never renumber: capture files keep them.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// A thread moved from one CPU to another (`sched:sched_migrate_task`).
    TaskMigration = 1,
    /// A run of pages first touched (allocated in a page fault) by one thread.
    FirstTouch = 2,
    /// A run of NUMA hinting faults of one thread on one memory node.
    HintingFault = 3,
    /// The NUMA balancer moved a task to another node (`sched:sched_move_numa`).
    NumaTaskMove = 4,
    /// The NUMA balancer swapped two tasks between nodes (`sched:sched_swap_numa`).
    NumaTaskSwap = 5,
    /// The NUMA balancer wanted to move a task but kept it (`sched:sched_stick_numa`).
    NumaTaskStick = 6,
    /// A batch of page migrations (`migrate:mm_migrate_pages`).
    PageMigration = 7,
    /// A traced task created a thread or a process (`task:task_newtask`).
    TaskNew = 8,
    /// A traced thread exited (`sched:sched_process_exit`).
    TaskExit = 9,
    /// One call of the balancer's misplaced-page migration, with its duration.
    MisplacedMigration = 10,
    /// A thread's total run time: sampled by userspace from schedstat while
    /// it runs (it travels with the kernel's events so that a capture
    /// replays exactly), and sent by the kernel as the thread exits (a
    /// thread that lives between two samples would otherwise have none).
    RunTimeSample = 11,
    /// A thread's migrations so far (the kernel's per-task count): read by
    /// userspace from /proc at the start and the end, and sent by the kernel
    /// as the thread exits. Per-thread migration counts come from these when
    /// the kernel only counts migrations within a node instead of sending them.
    MigrationCount = 12,
    /// A `sched_setaffinity(2)` on a traced thread (`taskset -p`, or the
    /// thread itself): the next cross-node move of that thread is its doing.
    AffinityChange = 13,
}

impl EventKind {
    /// Every kind, in id order; also the size of the per-kind loss table.
    pub const ALL: [EventKind; 13] = [
        EventKind::TaskMigration,
        EventKind::FirstTouch,
        EventKind::HintingFault,
        EventKind::NumaTaskMove,
        EventKind::NumaTaskSwap,
        EventKind::NumaTaskStick,
        EventKind::PageMigration,
        EventKind::TaskNew,
        EventKind::TaskExit,
        EventKind::MisplacedMigration,
        EventKind::RunTimeSample,
        EventKind::MigrationCount,
        EventKind::AffinityChange,
    ];

    /// The kind with this numeric id, if there is one.
    pub fn from_id(id: u32) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| *k as u32 == id)
    }

    /// A short snake_case name, used in reports and capture files.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::TaskMigration => "task_migration",
            EventKind::FirstTouch => "first_touch",
            EventKind::HintingFault => "hinting_fault",
            EventKind::NumaTaskMove => "numa_task_move",
            EventKind::NumaTaskSwap => "numa_task_swap",
            EventKind::NumaTaskStick => "numa_task_stick",
            EventKind::PageMigration => "page_migration",
            EventKind::TaskNew => "task_new",
            EventKind::TaskExit => "task_exit",
            EventKind::MisplacedMigration => "misplaced_migration",
            EventKind::RunTimeSample => "run_time_sample",
            EventKind::MigrationCount => "migration_count",
            EventKind::AffinityChange => "affinity_change",
        }
    }
}

impl EventKind {
    /// Bytes of one record of this kind: the size of the struct it is sent as.
    pub const fn record_size(self) -> usize {
        match self {
            EventKind::TaskMigration => size_of::<TaskMigrationEvent>(),
            EventKind::FirstTouch => size_of::<FirstTouchEvent>(),
            EventKind::HintingFault => size_of::<HintingFaultEvent>(),
            EventKind::NumaTaskMove | EventKind::NumaTaskSwap | EventKind::NumaTaskStick => {
                size_of::<NumaPlacementEvent>()
            }
            EventKind::PageMigration => size_of::<PageMigrationEvent>(),
            EventKind::TaskNew => size_of::<TaskNewEvent>(),
            EventKind::TaskExit => size_of::<TaskExitEvent>(),
            EventKind::MisplacedMigration => size_of::<MisplacedMigrationEvent>(),
            EventKind::RunTimeSample => size_of::<RunTimeSampleEvent>(),
            EventKind::MigrationCount => size_of::<MigrationCountEvent>(),
            EventKind::AffinityChange => size_of::<AffinityChangeEvent>(),
        }
    }
}

/// A struct sent as the ring records of one [`EventKind`]. `KIND` pairs the
/// struct with its id in one place: the kernel programs write it into
/// `header.kind` and count sent and lost events under it, and userspace
/// decodes that id back into this struct. ([`NumaPlacementEvent`] is sent
/// as three kinds, [`NumaPlacementEvent::KINDS`], and has no single one.)
pub trait EventRecord: Copy + 'static {
    /// The kind this struct is sent as.
    const KIND: EventKind;
}

/// Number of slots in the loss table: one per kind id (slot 0 unused).
pub const LOSS_SLOTS: u32 = EventKind::ALL.len() as u32 + 1;

/// Region size used to aggregate first touches and hinting faults: 2 MiB,
/// the size of a transparent huge page. Attribution knows which thread first
/// touched each region, not each 4 KiB page.
pub const REGION_SHIFT: u32 = 21;

/// Region value used when the faulting address is unknown (no fault tracepoint).
pub const REGION_UNKNOWN: u64 = u64::MAX;

/// Header of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] id.
    pub kind: u32,
    /// CPU the kernel program ran on.
    pub cpu: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the event happened; for runs, the first one.
    pub ts_ns: u64,
    /// Thread group (process) the event belongs to.
    pub tgid: u32,
    /// Thread the event is about.
    pub tid: u32,
}

/// `sched:sched_migrate_task` for a traced thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskMigrationEvent {
    pub header: EventHeader,
    pub orig_cpu: i32,
    pub dest_cpu: i32,
}

/// A run of first-touch page allocations by one thread, in one region, with
/// one (CPU node, page node) pair. `header.ts_ns` is the first, `last_ts_ns`
/// the last allocation of the run.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FirstTouchEvent {
    pub header: EventHeader,
    /// Faulting address >> [`REGION_SHIFT`], or [`REGION_UNKNOWN`].
    pub region: u64,
    /// Base (4 KiB) pages allocated; a huge page counts 512.
    pub pages: u64,
    pub last_ts_ns: u64,
    /// Node of the CPU the thread ran on when it faulted.
    pub cpu_node: u16,
    /// Node the pages were allocated on.
    pub page_node: u16,
    /// The user stack that started the run (`--stacks`): its id in the
    /// `STACKS` map plus one; 0 when none was taken (see [`stack_id`]).
    pub stack: u32,
}

/// A run of NUMA hinting faults (`task_numa_fault`) of one thread, in one
/// region, with one (CPU node, memory node, local) triple.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HintingFaultEvent {
    pub header: EventHeader,
    pub region: u64,
    pub last_ts_ns: u64,
    /// Number of hinting faults in the run.
    pub faults: u32,
    /// Pages those faults covered.
    pub pages: u32,
    /// Pages the balancer migrated while handling those faults.
    pub migrated_pages: u32,
    /// Node of the CPU the thread ran on.
    pub cpu_node: u16,
    /// Node the memory was on (after migration, if it was migrated).
    pub mem_node: u16,
    /// 1 when the kernel counted the faults as local (TNF_FAULT_LOCAL).
    pub local: u32,
    /// The user stack that started the run, as in [`FirstTouchEvent::stack`].
    pub stack: u32,
}

/// `sched:sched_move_numa`, `sched_swap_numa` or `sched_stick_numa`
/// (`header.kind` says which). A move has no destination task (`dst_tid` 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NumaPlacementEvent {
    pub header: EventHeader,
    pub src_tid: u32,
    pub src_tgid: u32,
    pub src_cpu: i32,
    pub src_node: i32,
    pub dst_tid: u32,
    pub dst_tgid: u32,
    pub dst_cpu: i32,
    pub dst_node: i32,
}

/// `migrate:mm_migrate_pages` that moved pages of a traced process, either in
/// its own context or in a `migrate_pages(2)` / `move_pages(2)` call another
/// process made for it (`on_behalf` 1; `header.tid` is then the caller).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageMigrationEvent {
    pub header: EventHeader,
    pub succeeded: u64,
    pub failed: u64,
    pub thp_succeeded: u64,
    /// The kernel's `enum migrate_reason`; names come from the tracepoint's format.
    pub reason: i32,
    pub on_behalf: u32,
}

/// Length of a kernel task name.
pub const COMM_LEN: usize = 16;

/// `task:task_newtask` in a traced process: a new thread (`header.tgid` is
/// the parent's) or, when children are followed, a new process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskNewEvent {
    pub header: EventHeader,
    /// The creating thread; [`JOINED_CGROUP`] for a process that moved into
    /// the traced cgroup (`cgroup:cgroup_attach_task`), created by nobody traced.
    pub parent_tid: u32,
    pub is_thread: u32,
    pub comm: [u8; COMM_LEN],
}

/// [`TaskNewEvent::parent_tid`] of a process that joined the traced cgroup.
pub const JOINED_CGROUP: u32 = 0;

/// `sched:sched_process_exit` of a traced thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskExitEvent {
    pub header: EventHeader,
    /// 1 when this was the last thread of its process.
    pub group_dead: u32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
}

/// One call of the balancer's misplaced-page migration
/// (`migrate_misplaced_folio`, `migrate_misplaced_page` before 6.7).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MisplacedMigrationEvent {
    pub header: EventHeader,
    pub duration_ns: u64,
}

/// A thread's cumulative run time (first field of /proc/<pid>/task/<tid>/schedstat,
/// or the task's `se.sum_exec_runtime` as it exits) at `header.ts_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunTimeSampleEvent {
    pub header: EventHeader,
    pub run_ns: u64,
}

/// A thread's migrations so far (`se.nr_migrations`, the `se.nr_migrations`
/// line of /proc/<pid>/task/<tid>/sched) at `header.ts_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MigrationCountEvent {
    pub header: EventHeader,
    pub migrations: u64,
}

/// `syscalls:sys_enter_sched_setaffinity` naming a traced thread
/// (`header.tid`, `header.tgid`), by the caller (`by_pid`, its thread; `by_tgid`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityChangeEvent {
    pub header: EventHeader,
    pub by_pid: u32,
    pub by_tgid: u32,
    /// The caller's name; empty when the caller is the thread itself
    /// (`by_pid == header.tid`), whose name userspace already has.
    pub by_comm: [u8; COMM_LEN],
}

/// A run's stack field as the kernel wrote it (a `STACKS` id plus one, 0
/// for none) to the id it names, if any.
pub const fn stack_id(field: u32) -> Option<u32> {
    field.checked_sub(1)
}

/// A `STACKS` id as a run event carries it (see [`stack_id`]).
pub const fn stack_field(id: Option<u32>) -> u32 {
    match id {
        Some(id) => id.wrapping_add(1),
        None => 0,
    }
}

impl FirstTouchEvent {
    /// The id of the user stack that started the run, when `--stacks` took one.
    pub const fn stack_id(&self) -> Option<u32> {
        stack_id(self.stack)
    }
}

impl HintingFaultEvent {
    /// The id of the user stack that started the run, when `--stacks` took one.
    pub const fn stack_id(&self) -> Option<u32> {
        stack_id(self.stack)
    }
}

impl EventRecord for TaskMigrationEvent {
    const KIND: EventKind = EventKind::TaskMigration;
}
impl EventRecord for FirstTouchEvent {
    const KIND: EventKind = EventKind::FirstTouch;
}
impl EventRecord for HintingFaultEvent {
    const KIND: EventKind = EventKind::HintingFault;
}
impl NumaPlacementEvent {
    /// The kinds this struct is sent as: the balancer's move, swap and stick.
    pub const KINDS: [EventKind; 3] = [EventKind::NumaTaskMove, EventKind::NumaTaskSwap, EventKind::NumaTaskStick];
}
impl EventRecord for PageMigrationEvent {
    const KIND: EventKind = EventKind::PageMigration;
}
impl EventRecord for TaskNewEvent {
    const KIND: EventKind = EventKind::TaskNew;
}
impl EventRecord for TaskExitEvent {
    const KIND: EventKind = EventKind::TaskExit;
}
impl EventRecord for MisplacedMigrationEvent {
    const KIND: EventKind = EventKind::MisplacedMigration;
}
impl EventRecord for RunTimeSampleEvent {
    const KIND: EventKind = EventKind::RunTimeSample;
}
impl EventRecord for MigrationCountEvent {
    const KIND: EventKind = EventKind::MigrationCount;
}
impl EventRecord for AffinityChangeEvent {
    const KIND: EventKind = EventKind::AffinityChange;
}

// Record sizes are part of the contract: the kernel programs and userspace
// both compile these lines, so a layout change fails the build on both sides,
// and capture files keep their records' lengths. Change a size only together
// with the capture format.
const _: () = assert!(size_of::<EventHeader>() == 24);
const _: () = assert!(size_of::<TaskMigrationEvent>() == 32);
const _: () = assert!(size_of::<FirstTouchEvent>() == 56);
const _: () = assert!(size_of::<HintingFaultEvent>() == 64);
const _: () = assert!(size_of::<NumaPlacementEvent>() == 56);
const _: () = assert!(size_of::<PageMigrationEvent>() == 56);
const _: () = assert!(size_of::<TaskNewEvent>() == 48);
const _: () = assert!(size_of::<TaskExitEvent>() == 48);
const _: () = assert!(size_of::<MisplacedMigrationEvent>() == 32);
const _: () = assert!(size_of::<RunTimeSampleEvent>() == 32);
const _: () = assert!(size_of::<MigrationCountEvent>() == 32);
const _: () = assert!(size_of::<AffinityChangeEvent>() == 48);
// The ring hands out 8-byte aligned records: every record is a whole number of words.
const _: () = {
    let mut i = 0;
    while i < EventKind::ALL.len() {
        assert!(EventKind::ALL[i].record_size().is_multiple_of(8));
        i += 1;
    }
};
// Ids are stable and dense: `ALL[i]` has id `i + 1`, and the loss and sent
// tables are indexed by id.
const _: () = {
    let mut i = 0;
    while i < EventKind::ALL.len() {
        assert!(EventKind::ALL[i] as u32 == i as u32 + 1);
        i += 1;
    }
};
