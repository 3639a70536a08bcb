//! What the aggregator keeps: per-thread statistics, per-region first
//! touches and users, page migrations, and what it could not place on a node.

use numatrace_common::EventKind;

use super::{
    inline_vec::{InlineVec, Keyed},
    node_counts::NodeCounts,
};

/// Everything known about one thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadStats {
    pub tid: u32,
    pub tgid: u32,
    pub comm: String,
    /// When it was created, if during the capture (ns, monotonic).
    pub born_ns: Option<u64>,
    pub exited_ns: Option<u64>,
    /// Last CPU it was seen on (from migrations).
    pub last_cpu: Option<u32>,
    pub migrations: u64,
    pub cross_node_migrations: u64,
    /// Time of each cross-node migration and its (from, to) nodes.
    pub cross_node_moves: Vec<(u64, u32, u32)>,
    /// First-touch pages by the node they landed on.
    pub first_touch_pages: NodeCounts,
    /// First-touch pages by the node the thread ran on when touching.
    pub first_touch_pages_by_cpu_node: NodeCounts,
    /// First touches that landed on a node other than the thread's.
    pub remote_first_touch_pages: u64,
    /// First-touch pages whose node (of the page or of the CPU) is not known:
    /// counted here, never under a node (see [`UnknownNodes`]).
    pub first_touch_pages_unknown_node: u64,
    /// Run time per node, from schedstat samples split over its cross-node moves.
    pub runtime_ns_by_node: NodeCounts,
    pub hinting_faults_local: u64,
    pub hinting_faults_remote: u64,
    /// Hinting-fault pages by the node the memory was on.
    pub hinting_pages_by_mem_node: NodeCounts,
    pub hinting_pages_migrated: u64,
    pub numa_task_moves: u64,
    pub numa_task_swaps: u64,
    pub numa_task_sticks: u64,
    pub misplaced_migrations: u64,
    pub misplaced_migration_ns: u64,
    /// The node it was on when first seen (before any move).
    pub first_node: Option<u32>,
    /// The last run-time sample: (when, cumulative run ns).
    pub last_run_sample: Option<(u64, u64)>,
    /// Run-time samples over the capture, thinned to at most
    /// [`RUN_SAMPLES_KEPT`] (every other one dropped when full), so that
    /// attribution can ask how long a thread ran after a moment.
    pub run_samples: Vec<(u64, u64)>,
    /// The kernel's migration count of the thread: the first reading and the
    /// last (when, count); see [`ThreadStats::counted_migrations`].
    pub migration_count_first: Option<u64>,
    pub migration_count_last: Option<(u64, u64)>,
    /// Readings of the count (a thread that was there at the start needs two).
    pub migration_count_readings: u32,
}

impl ThreadStats {
    /// Every first-touch page, those of unknown node included.
    pub fn first_touch_total(&self) -> u64 {
        self.first_touch_pages.values().sum::<u64>() + self.first_touch_pages_unknown_node
    }

    /// Its migrations during the capture from the kernel's per-thread count:
    /// the last reading less the first (less 0 for a thread born during the
    /// capture). Unknown with too few readings (no /proc/<pid>/task/<tid>/sched,
    /// no BTF for the count at exit, or a spike capture's window).
    pub fn counted_migrations(&self) -> Option<u64> {
        let (_, last) = self.migration_count_last?;
        let base = if self.born_ns.is_some() {
            0
        } else if self.migration_count_readings >= 2 {
            self.migration_count_first?
        } else {
            return None;
        };
        Some(last.saturating_sub(base))
    }

    /// Adds another thread's first touches, run time, migrations and
    /// balancer moves to these (for summed exited threads).
    pub fn absorb(&mut self, other: &ThreadStats) {
        self.tgid = other.tgid;
        for (node, pages) in &other.first_touch_pages {
            self.first_touch_pages.add(*node, *pages);
        }
        for (node, pages) in &other.first_touch_pages_by_cpu_node {
            self.first_touch_pages_by_cpu_node.add(*node, *pages);
        }
        self.remote_first_touch_pages += other.remote_first_touch_pages;
        self.first_touch_pages_unknown_node += other.first_touch_pages_unknown_node;
        self.migrations += other.migrations;
        self.cross_node_migrations += other.cross_node_migrations;
        for (node, ns) in &other.runtime_ns_by_node {
            self.runtime_ns_by_node.add(*node, *ns);
        }
        self.numa_task_moves += other.numa_task_moves;
        self.numa_task_swaps += other.numa_task_swaps;
        self.numa_task_sticks += other.numa_task_sticks;
        self.misplaced_migrations += other.misplaced_migrations;
        self.misplaced_migration_ns += other.misplaced_migration_ns;
        self.exited_ns = self.exited_ns.max(other.exited_ns);
    }

    /// Run time after `ts`, from the samples (linear between two of them).
    /// A thread born during the capture started at 0; a thread there from
    /// the start counts from its first sample, as its per-node run time does.
    /// None without samples (run time added directly, as in tests).
    pub fn run_ns_after(&self, ts: u64) -> Option<u64> {
        let &(_, last) = self.run_samples.last()?;
        let mut prev: Option<(u64, u64)> = self.born_ns.map(|born| (born, 0));
        for &(at, run) in &self.run_samples {
            if at >= ts {
                let at_ts = match prev {
                    Some((p_at, p_run)) if p_at < ts => {
                        p_run
                            + (u128::from(run.saturating_sub(p_run)) * u128::from(ts - p_at) / u128::from(at - p_at))
                                as u64
                    }
                    Some((_, p_run)) => p_run,
                    None => run,
                };
                return Some(last.saturating_sub(at_ts));
            }
            prev = Some((at, run));
        }
        Some(0)
    }

    /// The node it spent most run time on, if it ran at all.
    pub fn main_node(&self) -> Option<u32> {
        self.runtime_ns_by_node.iter().max_by_key(|(_, ns)| **ns).map(|(n, _)| *n)
    }
}

/// Key of one region's first-touch record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionKey {
    pub tgid: u32,
    /// Address >> 21, or [`REGION_UNKNOWN`].
    pub region: u64,
}

/// Who first touched (part of) a region, from where, and where it landed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionTouch {
    pub tid: u32,
    pub cpu_node: u32,
    pub page_node: u32,
    pub pages: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// A thread's NUMA hinting faults in one region: where it ran and where the memory was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionUse {
    pub tid: u32,
    pub cpu_node: u32,
    pub mem_node: u32,
    pub local_faults: u64,
    pub remote_faults: u64,
    /// Pages covered by the remote faults (a huge page counts 512).
    pub remote_pages: u64,
    pub migrated_pages: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// Packs who touched from where onto where into one key (nodes come from the kernel's u16 fields).
pub(crate) fn touch_key(tid: u32, cpu_node: u32, page_node: u32) -> u64 {
    (u64::from(tid) << 32) | (u64::from(cpu_node & 0xffff) << 16) | u64::from(page_node & 0xffff)
}

impl Keyed for RegionTouch {
    fn key(&self) -> u64 {
        touch_key(self.tid, self.cpu_node, self.page_node)
    }
}

impl Keyed for RegionUse {
    fn key(&self) -> u64 {
        touch_key(self.tid, self.cpu_node, self.mem_node)
    }
}

/// A region's first touches, in the order first seen. Four inline: a thread's
/// (CPU node, page node) pairs on two nodes, so the common fold misses the cache once.
pub type RegionTouches = InlineVec<RegionTouch, 4>;

/// A region's hinting-fault users, in the order first seen (four inline, as above).
pub type RegionUses = InlineVec<RegionUse, 4>;

/// Pages migrated for one reason (a thread's own migration count is the
/// `MigrationCount` event; this is pages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageMigrations {
    pub succeeded: u64,
    pub failed: u64,
    pub on_behalf: u64,
    pub batches: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// A sched_setaffinity(2) on a traced thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AffinityChange {
    pub ts_ns: u64,
    pub tid: u32,
    /// The caller: its thread id and name.
    pub by_pid: u32,
    pub by_comm: String,
}

/// Observations whose node the kernel side could not name (it sends
/// `NODE_UNKNOWN`), by reason. They are counted, never shown as a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UnknownNodes {
    /// First-touch pages whose pfn lies outside the memory blocks read at
    /// start (memory hot-added since, or a pfn the kernel could not give).
    pub page_outside_known_memory: u64,
    /// First-touch pages made on a CPU that has no node (brought online
    /// after the start, or beyond the CPU table).
    pub cpu_without_node: u64,
    /// Hinting faults with either node unknown.
    pub hinting_faults: u64,
}

impl UnknownNodes {
    pub fn is_empty(&self) -> bool {
        *self == UnknownNodes::default()
    }
}

/// A NUMA balancer decision to move, swap or keep a task (a fix's
/// `fixes::Placement` is where a fix puts the process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalancerTaskMove {
    pub kind: EventKind,
    pub ts_ns: u64,
    pub tid: u32,
    pub src_node: i32,
    pub dst_node: i32,
}
