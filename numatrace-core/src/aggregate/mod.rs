//! The aggregator: folds decoded kernel events into per-thread and per-region
//! facts. It owns all interpretation of events (node of a CPU, local or
//! remote, cross-node or not); it keeps sums, not event lists, so its memory
//! is bounded by threads x regions x nodes, not by the event count.
use std::collections::{BTreeMap, HashSet, VecDeque};

use rustc_hash::FxBuildHasher;

mod fold;
pub mod inline_vec;
pub mod migration_count;
pub mod model;
pub mod node_counts;
pub mod prefetch;
pub mod regions;
pub mod run_time;
pub mod stacks;
pub mod threads;

pub use self::model::*;

use numatrace_common::{EventKind, LOSS_SLOTS, REGION_UNKNOWN};

use self::{
    regions::{PrefetchStep, RegionTable},
    threads::ThreadTable,
};
use crate::{event::Event, kernel_status::KernelTotals, machine::Topology};

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
    /// Exited threads that touched no memory, summed per process once the
    /// table holds more than [`MAX_THREADS_LISTED`] (see [`SummedThreads`]).
    pub exited_summed: BTreeMap<u32, SummedThreads>,
    /// Exits not yet considered for summing: (exit time, tid), oldest first.
    pending_exits: VecDeque<(u64, u32)>,
    /// Threads summed whose first touches still carry their own tid (see
    /// [`Aggregator::rename_summed_touches`]).
    summed_unrenamed: HashSet<u32, FxBuildHasher>,
    /// Cross-node moves kept over all listed threads (at most [`MAX_MOVES_KEPT`]).
    moves_kept: usize,
    /// Processes created during the capture: child pid -> the pid that forked it
    /// (a child shares what its parent mapped shared before the fork).
    pub forked_from: BTreeMap<u32, u32>,
    /// Call stacks of first touches and remote hinting faults per region (`--stacks`).
    pub stacks: stacks::StackTouches,
}

/// Threads listed one by one; beyond this many, exited threads that touched
/// no memory and took no hinting fault are summed per process (a fork-heavy
/// target starts thousands a second). The bound on the thread table is
/// this plus the live threads plus those that touched memory.
pub const MAX_THREADS_LISTED: usize = 16_384;

/// A thread that first touched at most this many pages (its stack, its
/// thread-local storage: 1-7 pages for a stress-ng pthread) may be summed;
/// one that placed more (a loader thread) stays listed, for attribution.
pub const SUM_MAX_PAGES: u64 = 64;

/// The tid that first touches of summed threads are filed under: not a
/// thread (tids are below 2^22), never shown as one.
pub const SUMMED_TID: u32 = u32::MAX;

/// Summed threads whose touches are renamed to [`SUMMED_TID`] in one pass
/// over the regions.
const RENAME_BATCH: usize = 1024;

/// How long after its exit a thread is summed, in event time: the events the
/// kernel sends as it exits (its last run time and migration count) come
/// first. Event time, not wall time, so a replay of the capture sums the
/// same threads at the same points.
const SUM_AFTER_EXIT_NS: u64 = 1_000_000_000;

/// Exited threads of one process, summed: their run time by node, first
/// touches, migrations and balancer moves count as before in the totals and
/// as users of memory in attribution; they are no longer listed one by one,
/// and their (few) first touches are filed under [`SUMMED_TID`], which no
/// cause names as a thread. `stats.tid` is 0 (no thread has that id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SummedThreads {
    pub threads: u64,
    pub stats: ThreadStats,
}

/// Forks kept (child -> parent, for the shared memory a child inherits):
/// 2 MiB at most for a fork-heavy target; later children are not linked.
pub const MAX_FORKS_KEPT: usize = 65_536;

/// Balancer task moves kept for time windows; beyond this only counts grow.
const MAX_BALANCER_TASK_MOVES: usize = 100_000;
/// How many events ahead [`Aggregator::ingest_batch`] prefetches: enough to
/// cover a memory load with the folds in between, few enough to stay in cache.
pub const PREFETCH_AHEAD: usize = 8;
/// Run-time samples kept per thread (see [`ThreadStats::run_samples`]).
const RUN_SAMPLES_KEPT: usize = 64;
/// Cross-node moves kept per thread for attribution windows; beyond this only the count grows.
const MAX_MOVES_PER_THREAD: usize = 10_000;
/// Cross-node moves kept over all threads (24 MiB): the first ones, which
/// attribution needs most (a move after a first touch); beyond, only counts grow.
const MAX_MOVES_KEPT: usize = 1_000_000;

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
            exited_summed: BTreeMap::new(),
            pending_exits: VecDeque::new(),
            summed_unrenamed: HashSet::default(),
            moves_kept: 0,
            forked_from: BTreeMap::new(),
            stacks: stacks::StackTouches::default(),
        }
    }

    /// Every thread for attribution and totals: those listed, then each
    /// process's summed exited threads.
    pub fn all_threads(&self) -> impl Iterator<Item = &ThreadStats> {
        self.threads.values().chain(self.exited_summed.values().map(|s| &s.stats))
    }

    /// Sums exited threads that touched no memory into their process's
    /// [`SummedThreads`] while the table holds more than
    /// [`MAX_THREADS_LISTED`], oldest exit first, each at least
    /// [`SUM_AFTER_EXIT_NS`] before `now_ns` (event time).
    fn sum_exited_threads(&mut self, now_ns: u64) {
        if self.pending_exits.len() > 2 * MAX_THREADS_LISTED.max(self.threads.len()) {
            // Exits of tids since reused: keep the queue as small as the table.
            let threads = &self.threads;
            self.pending_exits.retain(|(at, tid)| threads.get(tid).is_some_and(|t| t.exited_ns == Some(*at)));
        }
        while self.threads.len() > MAX_THREADS_LISTED {
            let Some(&(exited_ns, tid)) = self.pending_exits.front() else { return };
            if exited_ns.saturating_add(SUM_AFTER_EXIT_NS) > now_ns {
                return;
            }
            self.pending_exits.pop_front();
            // A tid reused by a newer thread, one that placed memory, or one
            // the balancer saw use memory, stays listed.
            let summable = self.threads.get(&tid).is_some_and(|t| {
                t.exited_ns == Some(exited_ns)
                    && t.first_touch_total() <= SUM_MAX_PAGES
                    && t.hinting_faults_local + t.hinting_faults_remote == 0
                    && t.hinting_pages_migrated == 0
            });
            if !summable {
                continue;
            }
            if let Some(t) = self.threads.remove(tid) {
                self.moves_kept = self.moves_kept.saturating_sub(t.cross_node_moves.len());
                let summed = self.exited_summed.entry(t.tgid).or_default();
                summed.threads += 1;
                summed.stats.absorb(&t);
                if t.first_touch_total() > 0 {
                    self.summed_unrenamed.insert(tid);
                }
            }
        }
        if self.summed_unrenamed.len() >= RENAME_BATCH {
            self.rename_summed_touches();
        }
    }

    /// Files the first touches of summed threads under [`SUMMED_TID`], so
    /// that a region keeps one record per node pair for all of them, not one
    /// per thread (a reused thread stack is touched by every new thread).
    fn rename_summed_touches(&mut self) {
        let summed = std::mem::take(&mut self.summed_unrenamed);
        for touches in self.regions.values_mut() {
            if !touches.iter().any(|t| summed.contains(&t.tid)) {
                continue;
            }
            touches.remap(
                |t| if summed.contains(&t.tid) { RegionTouch { tid: SUMMED_TID, ..t } } else { t },
                |into, t| {
                    into.pages += t.pages;
                    into.first_ns = into.first_ns.min(t.first_ns);
                    into.last_ns = into.last_ns.max(t.last_ns);
                },
            );
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
            Event::TaskMigration(e) => self.fold_task_migration(&h, e),
            Event::FirstTouch(e) => self.fold_first_touch(&h, e),
            Event::HintingFault(e) => self.fold_hinting_fault(&h, e),
            Event::NumaPlacement(e) => self.fold_numa_placement(&h, e),
            Event::PageMigration(e) => self.fold_page_migration(&h, e),
            Event::TaskNew(e) => self.fold_task_new(&h, e),
            Event::TaskExit(e) => self.fold_task_exit(&h, e),
            Event::AffinityChange(e) => self.fold_affinity_change(&h, e),
            Event::MisplacedMigration(e) => self.fold_misplaced_migration(&h, e),
            Event::MigrationCount(e) => self.fold_migration_count(&h, e),
            Event::RunTimeSample(e) => self.fold_run_time_sample(&h, e),
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

    /// All first-touch pages the kernel counted over those of the regions it
    /// traced: 1 unless an overhead budget sampled regions
    /// (`Counter::UnsampledFirstTouchPages`). Page counts from first touches
    /// times this estimate the whole process's.
    pub fn first_touch_scale(&self) -> f64 {
        let counted = self.kernel.counter(numatrace_common::Counter::FirstTouchPages);
        let unsampled = self.kernel.counter(numatrace_common::Counter::UnsampledFirstTouchPages);
        if unsampled == 0 || counted <= unsampled { 1.0 } else { counted as f64 / (counted - unsampled) as f64 }
    }

    /// A copy whose regions are re-keyed by `alias` (regions of one shared
    /// mapping, seen at different keys in different processes, become one),
    /// first touches and uses of merged regions summed per thread and node
    /// pair. `None` when `alias` changes no key (nothing to copy).
    pub fn with_regions_aliased(&self, alias: impl Fn(&RegionKey) -> Option<RegionKey>) -> Option<Aggregator> {
        if !self.regions.keys().chain(self.region_uses.keys()).any(|k| alias(k).is_some_and(|a| a != *k)) {
            return None;
        }
        let mut out = self.clone();
        out.regions = RegionTable::default();
        for (key, touches) in &self.regions {
            let into = out.regions.entry_or_default(alias(key).unwrap_or(*key));
            for t in touches {
                match into.find_mut(touch_key(t.tid, t.cpu_node, t.page_node)) {
                    Some(r) => {
                        r.pages += t.pages;
                        r.first_ns = r.first_ns.min(t.first_ns);
                        r.last_ns = r.last_ns.max(t.last_ns);
                    }
                    None => _ = into.push(*t),
                }
            }
        }
        out.region_uses = RegionTable::default();
        for (key, uses) in &self.region_uses {
            let into = out.region_uses.entry_or_default(alias(key).unwrap_or(*key));
            for u in uses {
                match into.find_mut(touch_key(u.tid, u.cpu_node, u.mem_node)) {
                    Some(r) => {
                        r.local_faults += u.local_faults;
                        r.remote_faults += u.remote_faults;
                        r.remote_pages += u.remote_pages;
                        r.migrated_pages += u.migrated_pages;
                        r.first_ns = r.first_ns.min(u.first_ns);
                        r.last_ns = r.last_ns.max(u.last_ns);
                    }
                    None => _ = into.push(*u),
                }
            }
        }
        Some(out)
    }

    /// Whether a region key has a known address.
    pub fn region_known(key: &RegionKey) -> bool {
        key.region != REGION_UNKNOWN
    }
}

#[cfg(test)]
mod tests {
    use numatrace_common::{EventHeader, FirstTouchEvent, NODE_UNKNOWN, TaskMigrationEvent};

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
                stack: 0,
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
                stack: 0,
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
                stack: 0,
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
                        stack: 0,
                    }),
                    _ => Event::FirstTouch(FirstTouchEvent {
                        header: hdr(EventKind::FirstTouch, tid, ts),
                        region,
                        pages: 1 + i % 512,
                        last_ts_ns: ts + 1,
                        cpu_node: (i % 2) as u16,
                        page_node: (i / 3 % 2) as u16,
                        stack: 0,
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

    #[test]
    fn exited_threads_that_placed_little_are_summed_past_the_limit() {
        use numatrace_common::{RunTimeSampleEvent, TaskExitEvent, TaskNewEvent};
        let mut a = agg();
        const SECOND: u64 = 1_000_000_000;
        let short_lived = MAX_THREADS_LISTED as u32 + 3000;
        // Thread 1 first touches more than a stack and exits first: it stays listed.
        a.ingest(&Event::FirstTouch(FirstTouchEvent {
            header: hdr(EventKind::FirstTouch, 1, 1),
            region: 3,
            pages: 100,
            last_ts_ns: 1,
            cpu_node: 0,
            page_node: 1,
            ..Default::default()
        }));
        a.ingest(&Event::TaskExit(TaskExitEvent { header: hdr(EventKind::TaskExit, 1, 2), ..Default::default() }));
        // Then thousands of threads, one a millisecond, each touching 4 pages of a
        // reused stack region, running 1 ms on node 0 and exiting.
        for i in 0..short_lived {
            let (tid, ts) = (100 + i, SECOND + u64::from(i) * 1_000_000);
            a.ingest(&Event::TaskNew(TaskNewEvent { header: hdr(EventKind::TaskNew, tid, ts), ..Default::default() }));
            a.ingest(&Event::FirstTouch(FirstTouchEvent {
                header: hdr(EventKind::FirstTouch, tid, ts + 1),
                region: 9 + u64::from(i % 4),
                pages: 4,
                last_ts_ns: ts + 1,
                cpu_node: 0,
                page_node: 0,
                ..Default::default()
            }));
            a.ingest(&Event::RunTimeSample(RunTimeSampleEvent {
                header: hdr(EventKind::RunTimeSample, tid, ts + 500_000),
                run_ns: 1_000_000,
            }));
            a.ingest(&Event::TaskExit(TaskExitEvent {
                header: hdr(EventKind::TaskExit, tid, ts + 500_000),
                ..Default::default()
            }));
        }
        // Bounded: the limit, plus the threads that exited less than a second before the last exit.
        assert!(a.threads.len() <= MAX_THREADS_LISTED + 1001, "{} listed", a.threads.len());
        assert!(a.threads.len() > MAX_THREADS_LISTED - 1, "summed only past the limit: {}", a.threads.len());
        let summed = &a.exited_summed[&1];
        assert_eq!(summed.threads + a.threads.len() as u64, u64::from(short_lived) + 1);
        assert!(a.threads.get(&1).is_some_and(|t| t.first_touch_total() == 100), "the toucher stays listed");
        // Every first-touch page still counts; the stack regions hold a few
        // records (the listed threads', and one for all summed ones), not one per thread.
        let pages: u64 = a.all_threads().map(ThreadStats::first_touch_total).sum();
        assert_eq!(pages, 100 + 4 * u64::from(short_lived));
        let stack_records: usize = (9..13).map(|r| a.regions[&RegionKey { tgid: 1, region: r }].len()).sum();
        assert!(stack_records <= a.threads.len() + RENAME_BATCH + 4, "{stack_records} records");
        assert!(a.regions.values().flatten().any(|t| t.tid == SUMMED_TID));
        // Nothing of their run time is lost: 1 ms each, on node 0.
        let run_ns: u64 = a.all_threads().map(|t| t.runtime_ns_by_node.get(&0).copied().unwrap_or(0)).sum();
        assert_eq!(run_ns, u64::from(short_lived) * 1_000_000);
        // The report counts every thread, lists the limit's worth, and says so.
        let facts = crate::facts::SessionFacts {
            start: crate::capture::synthetic::start_facts(&a.topology, 0, 1, &[]),
            end: crate::facts::EndFacts::cut_short(20.0, crate::facts::StopReason::Duration),
        };
        let report = crate::report::Report::build(&a, &facts);
        assert_eq!(report.totals.threads, u64::from(short_lived) + 1);
        assert_eq!(report.threads.len() as u64 + report.exited_threads_summed[0].threads, report.totals.threads);
        assert_eq!(report.totals.first_touch_pages, pages);
        let text = crate::report::text::render(&report);
        assert!(text.contains("exited threads of pid 1 summed, not listed"), "{text}");
        assert!(!text.contains(&SUMMED_TID.to_string()), "{text}");
    }
}
