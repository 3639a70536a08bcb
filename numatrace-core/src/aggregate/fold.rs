//! The fold of each kind of event into the aggregator's tables: one method
//! per kind, called by [`Aggregator::ingest`].
use numatrace_common::{
    AffinityChangeEvent, EventHeader, EventKind, FirstTouchEvent, HintingFaultEvent, MigrationCountEvent,
    MisplacedMigrationEvent, NODE_UNKNOWN, NumaPlacementEvent, PageMigrationEvent, RunTimeSampleEvent, TaskExitEvent,
    TaskMigrationEvent, TaskNewEvent,
};

use super::{
    AffinityChange, Aggregator, BalancerTaskMove, MAX_BALANCER_TASK_MOVES, MAX_MOVES_KEPT, MAX_MOVES_PER_THREAD,
    RUN_SAMPLES_KEPT, RegionKey, RegionTouch, RegionUse, model::touch_key,
};
use crate::event::comm_str;

impl Aggregator {
    pub(super) fn fold_task_migration(&mut self, h: &EventHeader, e: &TaskMigrationEvent) {
        let from = self.node_of_cpu(e.orig_cpu);
        let to = self.node_of_cpu(e.dest_cpu);
        let room = self.moves_kept < MAX_MOVES_KEPT;
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
            if room && t.cross_node_moves.len() < MAX_MOVES_PER_THREAD {
                t.cross_node_moves.push((h.ts_ns, from, to));
                self.moves_kept += 1;
            }
        }
    }

    pub(super) fn fold_first_touch(&mut self, h: &EventHeader, e: &FirstTouchEvent) {
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
        if let Some(stack) = e.stack_id() {
            self.stacks.first_touch(key, stack, h.tid, e.pages, cpu_node != page_node);
        }
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

    pub(super) fn fold_hinting_fault(&mut self, h: &EventHeader, e: &HintingFaultEvent) {
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
        if let Some(stack) = e.stack_id()
            && e.local == 0
        {
            let key = RegionKey { tgid: h.tgid, region: e.region };
            self.stacks.remote_hinting_faults(key, stack, h.tid, u64::from(e.faults));
        }
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

    pub(super) fn fold_numa_placement(&mut self, h: &EventHeader, e: &NumaPlacementEvent) {
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

    pub(super) fn fold_page_migration(&mut self, h: &EventHeader, e: &PageMigrationEvent) {
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

    pub(super) fn fold_task_new(&mut self, h: &EventHeader, e: &TaskNewEvent) {
        if e.is_thread == 0 && self.forked_from.len() < super::MAX_FORKS_KEPT {
            let parent = self.threads.get(&e.parent_tid).map_or(e.parent_tid, |t| t.tgid);
            self.forked_from.insert(h.tgid, parent);
        }
        let node = self.node_of_cpu(h.cpu as i32);
        let t = self.thread(h.tid, h.tgid);
        t.comm = comm_str(&e.comm);
        t.born_ns = Some(h.ts_ns);
        t.last_cpu = Some(h.cpu);
        t.first_node = t.first_node.or(node);
    }

    pub(super) fn fold_task_exit(&mut self, h: &EventHeader, e: &TaskExitEvent) {
        let t = self.thread(h.tid, h.tgid);
        t.exited_ns = Some(h.ts_ns);
        let comm = comm_str(&e.comm);
        if !comm.is_empty() {
            t.comm = comm;
        }
        self.pending_exits.push_back((h.ts_ns, h.tid));
        self.sum_exited_threads(self.last_event_ns.unwrap_or(h.ts_ns));
    }

    pub(super) fn fold_affinity_change(&mut self, h: &EventHeader, e: &AffinityChangeEvent) {
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

    pub(super) fn fold_misplaced_migration(&mut self, h: &EventHeader, e: &MisplacedMigrationEvent) {
        let t = self.thread(h.tid, h.tgid);
        t.misplaced_migrations += 1;
        t.misplaced_migration_ns += e.duration_ns;
    }

    pub(super) fn fold_migration_count(&mut self, h: &EventHeader, e: &MigrationCountEvent) {
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

    pub(super) fn fold_run_time_sample(&mut self, h: &EventHeader, e: &RunTimeSampleEvent) {
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
