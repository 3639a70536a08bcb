//! The aggregator: folds decoded kernel events into per-thread and per-region
//! facts. It owns all interpretation of events (node of a CPU, local or
//! remote, cross-node or not); it keeps sums, not event lists, so its memory
//! is bounded by threads x regions x nodes, not by the event count.
use std::collections::BTreeMap;

pub mod inline_vec;
pub mod migration_count;
pub mod node_counts;
pub mod prefetch;
pub mod regions;
pub mod run_time;
pub mod threads;

use numatrace_common::{EventKind, LOSS_SLOTS, NODE_UNKNOWN, REGION_UNKNOWN};

use crate::{
    aggregate::inline_vec::{InlineVec, Keyed},
    aggregate::node_counts::NodeCounts,
    aggregate::regions::{PrefetchStep, RegionTable},
    aggregate::threads::ThreadTable,
    event::{Event, comm_str},
    kernel_status::KernelTotals,
    machine::topology::Topology,
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
fn touch_key(tid: u32, cpu_node: u32, page_node: u32) -> u64 {
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

/// The aggregator's whole state.
#[derive(Clone, Debug)]
pub struct Aggregator {
    pub topology: Topology,
    /// `enum migrate_reason` value -> name, from this kernel's format file.
    pub reason_names: BTreeMap<i64, String>,
    /// Every thread seen, by tid (listed in tid order).
    pub threads: ThreadTable,
    /// First touches per region, in the order regions were first seen.
    pub regions: RegionTable<RegionTouches>,
    /// Hinting faults per region: who used the region from where.
    pub region_uses: RegionTable<RegionUses>,
    pub page_migrations: BTreeMap<String, PageMigrations>,
    pub balancer_task_moves: Vec<BalancerTaskMove>,
    /// Affinity changes of traced threads (the first [`MAX_BALANCER_TASK_MOVES`]).
    pub affinity_changes: Vec<AffinityChange>,
    /// What was seen without a node to put it on.
    pub unknown_nodes: UnknownNodes,
    pub events: u64,
    /// Ring records read, by event kind id (see [`Aggregator::ring_received`]).
    ring_records: [u64; LOSS_SLOTS as usize],
    pub decode_errors: u64,
    pub kernel: KernelTotals,
    pub first_event_ns: Option<u64>,
    pub last_event_ns: Option<u64>,
    /// cpu -> node, indexed by CPU (u32::MAX: unknown); the topology's lists are slow to search per event.
    cpu_nodes: Vec<u32>,
}

/// Balancer task moves kept for time windows; beyond this only counts grow.
const MAX_BALANCER_TASK_MOVES: usize = 100_000;
/// How many events ahead [`Aggregator::ingest_batch`] prefetches: enough to
/// cover a memory load with the folds in between, few enough to stay in cache.
pub const PREFETCH_AHEAD: usize = 8;
/// Run-time samples kept per thread (see [`ThreadStats::run_samples`]).
const RUN_SAMPLES_KEPT: usize = 64;
/// Cross-node moves kept per thread for attribution windows; beyond this only the count grows.
const MAX_MOVES_PER_THREAD: usize = 10_000;

impl Aggregator {
    pub fn new(topology: Topology, reason_names: BTreeMap<i64, String>) -> Aggregator {
        let mut cpu_nodes = Vec::new();
        for node in &topology.nodes {
            for &cpu in &node.cpus {
                if cpu_nodes.len() <= cpu as usize {
                    cpu_nodes.resize(cpu as usize + 1, u32::MAX);
                }
                cpu_nodes[cpu as usize] = node.id;
            }
        }
        Aggregator {
            cpu_nodes,
            topology,
            reason_names,
            threads: ThreadTable::default(),
            regions: RegionTable::default(),
            region_uses: RegionTable::default(),
            page_migrations: BTreeMap::new(),
            balancer_task_moves: Vec::new(),
            affinity_changes: Vec::new(),
            unknown_nodes: UnknownNodes::default(),
            events: 0,
            ring_records: [0; LOSS_SLOTS as usize],
            decode_errors: 0,
            kernel: KernelTotals::default(),
            first_event_ns: None,
            last_event_ns: None,
        }
    }

    /// Registers a thread that existed before the capture started.
    pub fn add_thread(&mut self, tid: u32, tgid: u32, comm: &str, cpu: Option<u32>) {
        let node = cpu.and_then(|c| self.node_of_cpu(c as i32));
        let t = self.thread(tid, tgid);
        if t.comm.is_empty() {
            t.comm = comm.to_string();
        }
        if t.last_cpu.is_none() {
            t.last_cpu = cpu;
        }
        if t.first_node.is_none() {
            t.first_node = node;
        }
    }

    /// Adds run time of a thread on a node.
    pub fn add_run_time(&mut self, tid: u32, node: u32, ns: u64) {
        if let Some(t) = self.threads.get_mut(&tid) {
            t.runtime_ns_by_node.add(node, ns);
        }
    }

    /// Splits `ns` of run time in (from, to] over the nodes the thread was on,
    /// in proportion to the wall time it spent on each (from its cross-node moves).
    fn spread_run_time(&mut self, tid: u32, from: u64, to: u64, ns: u64) {
        let Some(t) = self.threads.get(&tid) else { return };
        let before = t.cross_node_moves.iter().rev().find(|m| m.0 <= from).map(|m| m.2);
        let mut node = before
            .or_else(|| t.cross_node_moves.iter().find(|m| m.0 > from).map(|m| m.1))
            .or(t.first_node)
            .or_else(|| t.last_cpu.and_then(|c| self.node_of_cpu(c as i32)));
        let mut segments: Vec<(u32, u64)> = Vec::new();
        let mut at = from;
        for &(ts, _, to_node) in t.cross_node_moves.iter().filter(|m| m.0 > from && m.0 <= to) {
            if let Some(n) = node {
                segments.push((n, ts - at));
            }
            at = ts;
            node = Some(to_node);
        }
        if let Some(n) = node {
            segments.push((n, to.saturating_sub(at)));
        }
        let wall: u64 = segments.iter().map(|s| s.1).sum();
        for (n, w) in segments {
            let share = if wall == 0 { ns } else { (ns as u128 * w as u128 / wall as u128) as u64 };
            if share > 0 || wall == 0 {
                self.add_run_time(tid, n, share);
                if wall == 0 {
                    break;
                }
            }
        }
    }

    fn thread(&mut self, tid: u32, tgid: u32) -> &mut ThreadStats {
        self.threads.get_or_insert_with(tid, || ThreadStats { tid, tgid, ..Default::default() })
    }

    fn node_of_cpu(&self, cpu: i32) -> Option<u32> {
        let node = *self.cpu_nodes.get(usize::try_from(cpu).ok()?)?;
        (node != u32::MAX).then_some(node)
    }

    /// Decodes and folds one ring record; a record that does not decode is counted.
    /// Many records at once fold faster through [`Aggregator::ingest_batch`].
    pub fn ingest_bytes(&mut self, bytes: &[u8]) -> Option<Event> {
        match Event::decode(bytes) {
            Ok(event) => {
                self.count_ring_record(&event);
                self.ingest(&event);
                Some(event)
            }
            Err(_) => {
                self.count_undecodable();
                None
            }
        }
    }

    /// Counts a decoded ring record by kind, for [`Aggregator::ring_received`]
    /// (events made in userspace are not ring records and are not counted).
    pub fn count_ring_record(&mut self, event: &Event) {
        if let Some(n) = self.ring_records.get_mut(event.header().kind as usize) {
            *n += 1;
        }
    }

    /// Counts a ring record that did not decode (reported as lost).
    pub fn count_undecodable(&mut self) {
        self.decode_errors += 1;
    }

    /// Folds events in order, exactly as [`Aggregator::ingest`] on each would.
    ///
    /// Why a batch: folding is bound by loading each event's region record
    /// from memory. Here, while one event is folded, the record of the event
    /// [`PREFETCH_AHEAD`] places later is requested (its index slot was
    /// requested twice as far ahead), so those loads overlap instead of each
    /// stalling its fold.
    pub fn ingest_batch(&mut self, events: &[Event]) {
        for (i, event) in events.iter().enumerate() {
            if let Some(ahead) = events.get(i + 2 * PREFETCH_AHEAD) {
                self.prefetch_region(ahead, PrefetchStep::IndexSlot);
            }
            if let Some(ahead) = events.get(i + PREFETCH_AHEAD) {
                self.prefetch_region(ahead, PrefetchStep::Record);
            }
            self.ingest(event);
        }
    }

    /// One prefetch step for the region record `event` will fold into, if it has one.
    #[inline]
    fn prefetch_region(&self, event: &Event, step: PrefetchStep) {
        match event {
            Event::FirstTouch(e) => {
                self.regions.prefetch_step(&RegionKey { tgid: e.header.tgid, region: e.region }, step)
            }
            Event::HintingFault(e) => {
                self.region_uses.prefetch_step(&RegionKey { tgid: e.header.tgid, region: e.region }, step)
            }
            _ => {}
        }
    }

    /// Folds one event.
    pub fn ingest(&mut self, event: &Event) {
        self.events += 1;
        let h = *event.header();
        self.first_event_ns = Some(self.first_event_ns.map_or(h.ts_ns, |t| t.min(h.ts_ns)));
        self.last_event_ns = Some(self.last_event_ns.map_or(h.ts_ns, |t| t.max(h.ts_ns)));
        match event {
            Event::TaskMigration(e) => {
                let from = self.node_of_cpu(e.orig_cpu);
                let to = self.node_of_cpu(e.dest_cpu);
                let t = self.thread(h.tid, h.tgid);
                if t.first_node.is_none() {
                    t.first_node = from;
                }
                t.migrations += 1;
                t.last_cpu = u32::try_from(e.dest_cpu).ok();
                if let (Some(from), Some(to)) = (from, to)
                    && from != to
                {
                    t.cross_node_migrations += 1;
                    if t.cross_node_moves.len() < MAX_MOVES_PER_THREAD {
                        t.cross_node_moves.push((h.ts_ns, from, to));
                    }
                }
            }
            Event::FirstTouch(e) => {
                let (cpu_node, page_node) = (u32::from(e.cpu_node), u32::from(e.page_node));
                if e.page_node == NODE_UNKNOWN || e.cpu_node == NODE_UNKNOWN {
                    if e.page_node == NODE_UNKNOWN {
                        self.unknown_nodes.page_outside_known_memory += e.pages;
                    } else {
                        self.unknown_nodes.cpu_without_node += e.pages;
                    }
                    self.thread(h.tid, h.tgid).first_touch_pages_unknown_node += e.pages;
                    return;
                }
                let t = self.thread(h.tid, h.tgid);
                t.first_touch_pages.add(page_node, e.pages);
                t.first_touch_pages_by_cpu_node.add(cpu_node, e.pages);
                if cpu_node != page_node {
                    t.remote_first_touch_pages += e.pages;
                }
                let key = RegionKey { tgid: h.tgid, region: e.region };
                let touches = self.regions.entry_or_default(key);
                match touches.find_mut(touch_key(h.tid, cpu_node, page_node)) {
                    Some(r) => {
                        r.pages += e.pages;
                        r.first_ns = r.first_ns.min(h.ts_ns);
                        r.last_ns = r.last_ns.max(e.last_ts_ns);
                    }
                    None => {
                        _ = touches.push(RegionTouch {
                            tid: h.tid,
                            cpu_node,
                            page_node,
                            pages: e.pages,
                            first_ns: h.ts_ns,
                            last_ns: e.last_ts_ns,
                        })
                    }
                }
            }
            Event::HintingFault(e) => {
                if e.cpu_node == NODE_UNKNOWN || e.mem_node == NODE_UNKNOWN {
                    self.unknown_nodes.hinting_faults += u64::from(e.faults);
                    return;
                }
                let t = self.thread(h.tid, h.tgid);
                if e.local != 0 {
                    t.hinting_faults_local += u64::from(e.faults);
                } else {
                    t.hinting_faults_remote += u64::from(e.faults);
                }
                t.hinting_pages_by_mem_node.add(u32::from(e.mem_node), u64::from(e.pages));
                t.hinting_pages_migrated += u64::from(e.migrated_pages);
                let (cpu_node, mem_node) = (u32::from(e.cpu_node), u32::from(e.mem_node));
                let uses = self.region_uses.entry_or_default(RegionKey { tgid: h.tgid, region: e.region });
                let u = match uses.find_mut(touch_key(h.tid, cpu_node, mem_node)) {
                    Some(u) => u,
                    None => uses.push(RegionUse {
                        tid: h.tid,
                        cpu_node,
                        mem_node,
                        local_faults: 0,
                        remote_faults: 0,
                        remote_pages: 0,
                        migrated_pages: 0,
                        first_ns: h.ts_ns,
                        last_ns: e.last_ts_ns,
                    }),
                };
                if e.local != 0 {
                    u.local_faults += u64::from(e.faults);
                } else {
                    u.remote_faults += u64::from(e.faults);
                    u.remote_pages += u64::from(e.pages);
                }
                u.migrated_pages += u64::from(e.migrated_pages);
                u.first_ns = u.first_ns.min(h.ts_ns);
                u.last_ns = u.last_ns.max(e.last_ts_ns);
            }
            Event::NumaPlacement(e) => {
                let kind = EventKind::from_id(h.kind).unwrap_or(EventKind::NumaTaskMove);
                for (tid, tgid) in [(e.src_tid, e.src_tgid), (e.dst_tid, e.dst_tgid)] {
                    if tid == 0 || (tgid != h.tgid && tid != h.tid) {
                        continue;
                    }
                    let t = self.thread(tid, tgid);
                    match kind {
                        EventKind::NumaTaskMove => t.numa_task_moves += 1,
                        EventKind::NumaTaskSwap => t.numa_task_swaps += 1,
                        _ => t.numa_task_sticks += 1,
                    }
                }
                if self.balancer_task_moves.len() < MAX_BALANCER_TASK_MOVES {
                    self.balancer_task_moves.push(BalancerTaskMove {
                        kind,
                        ts_ns: h.ts_ns,
                        tid: h.tid,
                        src_node: e.src_node,
                        dst_node: e.dst_node,
                    });
                }
            }
            Event::PageMigration(e) => {
                let name = self.reason_name(e.reason);
                let m = self.page_migrations.entry(name).or_default();
                m.succeeded += e.succeeded;
                m.failed += e.failed;
                m.batches += 1;
                if e.on_behalf != 0 {
                    m.on_behalf += e.succeeded;
                }
                m.first_ns = if m.first_ns == 0 { h.ts_ns } else { m.first_ns.min(h.ts_ns) };
                m.last_ns = m.last_ns.max(h.ts_ns);
            }
            Event::TaskNew(e) => {
                let node = self.node_of_cpu(h.cpu as i32);
                let t = self.thread(h.tid, h.tgid);
                t.comm = comm_str(&e.comm);
                t.born_ns = Some(h.ts_ns);
                t.last_cpu = Some(h.cpu);
                t.first_node = t.first_node.or(node);
            }
            Event::TaskExit(e) => {
                let t = self.thread(h.tid, h.tgid);
                t.exited_ns = Some(h.ts_ns);
                let comm = comm_str(&e.comm);
                if !comm.is_empty() {
                    t.comm = comm;
                }
            }
            Event::AffinityChange(e) => {
                self.thread(h.tid, h.tgid);
                if self.affinity_changes.len() < MAX_BALANCER_TASK_MOVES {
                    self.affinity_changes.push(AffinityChange {
                        ts_ns: h.ts_ns,
                        tid: h.tid,
                        by_pid: e.by_pid,
                        by_comm: comm_str(&e.by_comm),
                    });
                }
            }
            Event::MisplacedMigration(e) => {
                let t = self.thread(h.tid, h.tgid);
                t.misplaced_migrations += 1;
                t.misplaced_migration_ns += e.duration_ns;
            }
            Event::MigrationCount(e) => {
                let t = self.thread(h.tid, h.tgid);
                // Readings come from /proc and from the kernel at exit: an
                // older one arriving late changes nothing.
                if t.migration_count_last.is_some_and(|(at, _)| h.ts_ns < at) {
                    return;
                }
                t.migration_count_first = t.migration_count_first.or(Some(e.migrations));
                t.migration_count_last = Some((h.ts_ns, e.migrations));
                t.migration_count_readings += 1;
            }
            Event::RunTimeSample(e) => {
                let t = self.thread(h.tid, h.tgid);
                // Samples come from two places (userspace while the thread
                // runs, the kernel as it exits) and may arrive out of order:
                // an older one than the last adds nothing.
                if t.last_run_sample.is_some_and(|(at, _)| h.ts_ns < at) {
                    return;
                }
                // A thread's first sample is a baseline, unless it was born during the capture.
                let since = match t.last_run_sample {
                    Some(prev) => Some(prev),
                    None => t.born_ns.map(|born| (born, 0)),
                };
                t.last_run_sample = Some((h.ts_ns, e.run_ns));
                if t.run_samples.len() >= RUN_SAMPLES_KEPT {
                    // Keep the first, then every other one: the span stays, the resolution halves.
                    let mut i = 0;
                    t.run_samples.retain(|_| {
                        i += 1;
                        i % 2 == 1
                    });
                }
                t.run_samples.push((h.ts_ns, e.run_ns));
                if let Some((at, run_ns)) = since
                    && e.run_ns > run_ns
                    && h.ts_ns >= at
                {
                    self.spread_run_time(h.tid, at, h.ts_ns, e.run_ns - run_ns);
                }
            }
        }
    }

    /// The name of a migrate reason on this kernel.
    pub fn reason_name(&self, reason: i32) -> String {
        self.reason_names.get(&i64::from(reason)).cloned().unwrap_or_else(|| format!("reason_{reason}"))
    }

    /// Ring records read so far, per kind name (kinds with none left out).
    pub fn ring_received(&self) -> BTreeMap<String, u64> {
        EventKind::ALL
            .iter()
            .filter_map(|k| Some((k.name().to_string(), *self.ring_records.get(*k as usize).filter(|n| **n > 0)?)))
            .collect()
    }

    /// Takes the kernel's end-of-capture totals (loss, counters).
    pub fn finish(&mut self, kernel: KernelTotals) {
        self.kernel = kernel;
    }

    /// Total lost events over all kinds.
    pub fn lost_events(&self) -> u64 {
        self.kernel.loss.values().map(|l| l.events).sum::<u64>() + self.decode_errors
    }

    /// Whether a region key has a known address.
    pub fn region_known(key: &RegionKey) -> bool {
        key.region != REGION_UNKNOWN
    }
}

#[cfg(test)]
mod tests {
    use numatrace_common::{EventHeader, FirstTouchEvent, TaskMigrationEvent};

    use super::*;

    fn agg() -> Aggregator {
        Aggregator::new(
            Topology::synthetic(&[vec![0, 1], vec![2, 3]]),
            BTreeMap::from([(5, "numa_misplaced".to_string())]),
        )
    }

    fn hdr(kind: EventKind, tid: u32, ts: u64) -> EventHeader {
        EventHeader { kind: kind as u32, cpu: 0, ts_ns: ts, tgid: 1, tid }
    }

    #[test]
    fn counts_cross_node_migrations_only_across_nodes() {
        let mut a = agg();
        for (from, to) in [(0, 1), (1, 2), (2, 3), (3, 0)] {
            a.ingest(&Event::TaskMigration(TaskMigrationEvent {
                header: hdr(EventKind::TaskMigration, 7, 1),
                orig_cpu: from,
                dest_cpu: to,
            }));
        }
        let t = &a.threads[&7];
        assert_eq!(t.migrations, 4);
        assert_eq!(t.cross_node_migrations, 2);
        assert_eq!(t.last_cpu, Some(0));
    }

    #[test]
    fn sums_first_touch_runs_per_node_and_region() {
        let mut a = agg();
        let run = |tid, region, cpu_node, page_node, pages| {
            Event::FirstTouch(FirstTouchEvent {
                header: hdr(EventKind::FirstTouch, tid, 10),
                region,
                pages,
                last_ts_ns: 20,
                cpu_node,
                page_node,
                _pad: 0,
            })
        };
        a.ingest(&run(7, 1, 0, 0, 512));
        a.ingest(&run(7, 1, 0, 0, 100));
        a.ingest(&run(7, 2, 0, 1, 50));
        a.ingest(&run(8, 2, 1, 1, 10));
        let t = &a.threads[&7];
        assert_eq!(t.first_touch_pages, BTreeMap::from([(0, 612), (1, 50)]));
        assert_eq!(t.remote_first_touch_pages, 50);
        assert_eq!(a.regions[&RegionKey { tgid: 1, region: 1 }].len(), 1);
        assert_eq!(a.regions[&RegionKey { tgid: 1, region: 1 }][0].pages, 612);
        assert_eq!(a.regions[&RegionKey { tgid: 1, region: 2 }].len(), 2);
    }

    #[test]
    fn first_touches_of_unknown_node_are_counted_apart_never_as_a_node() {
        let mut a = agg();
        let run = |cpu_node, page_node, pages| {
            Event::FirstTouch(FirstTouchEvent {
                header: hdr(EventKind::FirstTouch, 7, 10),
                region: 1,
                pages,
                last_ts_ns: 20,
                cpu_node,
                page_node,
                _pad: 0,
            })
        };
        a.ingest(&run(0, 0, 100));
        a.ingest(&run(0, NODE_UNKNOWN, 512));
        a.ingest(&run(NODE_UNKNOWN, 1, 3));
        let t = &a.threads[&7];
        assert_eq!(t.first_touch_pages, BTreeMap::from([(0, 100)]));
        assert_eq!(t.first_touch_total(), 615, "every page counted");
        assert_eq!(t.remote_first_touch_pages, 0);
        assert_eq!(
            a.unknown_nodes,
            UnknownNodes { page_outside_known_memory: 512, cpu_without_node: 3, hinting_faults: 0 }
        );
        let touches = &a.regions[&RegionKey { tgid: 1, region: 1 }];
        assert!(
            touches.iter().all(|r| r.page_node != u32::from(NODE_UNKNOWN) && r.cpu_node != u32::from(NODE_UNKNOWN))
        );
    }

    #[test]
    fn folds_runs_past_the_inline_entries_in_first_seen_order() {
        let mut a = agg();
        let run = |tid, pages, ts| {
            Event::FirstTouch(FirstTouchEvent {
                header: hdr(EventKind::FirstTouch, tid, ts),
                region: 1,
                pages,
                last_ts_ns: ts + 1,
                cpu_node: 0,
                page_node: 0,
                _pad: 0,
            })
        };
        // Six threads in one region: two entries live past the inline four.
        for tid in [10, 11, 12, 13, 14, 15] {
            a.ingest(&run(tid, 1, 100 + u64::from(tid)));
        }
        a.ingest(&run(15, 5, 50));
        a.ingest(&run(12, 2, 300));
        let touches = &a.regions[&RegionKey { tgid: 1, region: 1 }];
        let got: Vec<_> = touches.iter().map(|t| (t.tid, t.pages, t.first_ns, t.last_ns)).collect();
        assert_eq!(
            got,
            [
                (10, 1, 110, 111),
                (11, 1, 111, 112),
                (12, 3, 112, 301),
                (13, 1, 113, 114),
                (14, 1, 114, 115),
                (15, 6, 50, 116)
            ]
        );
    }

    #[test]
    fn a_batch_folds_exactly_as_one_event_at_a_time() {
        use numatrace_common::HintingFaultEvent;
        // Enough events and regions that the prefetch steps run and the tables grow mid-batch.
        let events: Vec<Event> = (0..2000u64)
            .map(|i| {
                let (tid, region, ts) = (10 + (i % 7) as u32, i * 37 % 300, 100 + i);
                match i % 5 {
                    0 => Event::TaskMigration(TaskMigrationEvent {
                        header: hdr(EventKind::TaskMigration, tid, ts),
                        orig_cpu: (i % 4) as i32,
                        dest_cpu: ((i + 2) % 4) as i32,
                    }),
                    1 => Event::HintingFault(HintingFaultEvent {
                        header: hdr(EventKind::HintingFault, tid, ts),
                        region,
                        last_ts_ns: ts + 1,
                        faults: 2,
                        pages: 2,
                        migrated_pages: (i % 3) as u32,
                        cpu_node: (i % 2) as u16,
                        mem_node: (i / 2 % 2) as u16,
                        local: u32::from(i % 2 == i / 2 % 2),
                        _pad: 0,
                    }),
                    _ => Event::FirstTouch(FirstTouchEvent {
                        header: hdr(EventKind::FirstTouch, tid, ts),
                        region,
                        pages: 1 + i % 512,
                        last_ts_ns: ts + 1,
                        cpu_node: (i % 2) as u16,
                        page_node: (i / 3 % 2) as u16,
                        _pad: 0,
                    }),
                }
            })
            .collect();
        let (mut one, mut batched) = (agg(), agg());
        for e in &events {
            one.ingest(e);
        }
        for chunk in events.chunks(256) {
            batched.ingest_batch(chunk);
        }
        assert_eq!(format!("{one:?}"), format!("{batched:?}"));
        assert!(one.regions.values().any(|t| t.len() > 4), "some region has entries past the inline ones");
    }

    #[test]
    fn names_migration_reasons_from_the_kernel_table() {
        let a = agg();
        assert_eq!(a.reason_name(5), "numa_misplaced");
        assert_eq!(a.reason_name(42), "reason_42");
    }

    #[test]
    fn counts_undecodable_records_as_lost() {
        let mut a = agg();
        assert!(a.ingest_bytes(&[1, 2, 3]).is_none());
        assert_eq!(a.lost_events(), 1);
    }
}
