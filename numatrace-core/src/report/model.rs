//! The report's data model; its serde form is the `--json` output
//! (schema `numatrace.report/1`).
use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    aggregate::Aggregator,
    facts::{SessionFacts, StopReason, Target},
    kernel_status::SourceStatus,
    machine::Topology,
};

pub const SCHEMA: &str = "numatrace.report/1";

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub tool: Tool,
    pub target: Target,
    pub duration_s: f64,
    pub topology: Topology,
    /// False on a one-node machine: drift cannot happen there.
    pub multi_node: bool,
    /// The top cause in one sentence (or why there is none).
    pub headline: String,
    /// How much of the process's memory and sampled accesses is remote, what
    /// it cost, and whether it is of consequence (at or above the floor).
    pub magnitude: crate::attribution::Magnitude,
    /// Causes of remote memory, largest share first (details, below the
    /// floor: see `magnitude.of_consequence`).
    pub causes: Vec<crate::attribution::Cause>,
    /// Host-wide settings that matter for any process here (zone_reclaim_mode,
    /// a one-node VM, sockets hidden behind fewer nodes, high numa_miss).
    pub host_findings: Vec<crate::inspect::Finding>,
    pub sources: Vec<SourceStatus>,
    /// The traced processes, by pid: their threads, memory and the causes
    /// that involve them.
    pub processes: Vec<ProcessReport>,
    pub threads: Vec<ThreadReport>,
    /// Exited threads that placed little memory (their stacks), summed per
    /// process instead of listed, once a capture has seen more than
    /// `MAX_THREADS_LISTED` threads (absent when none were). Their first
    /// touches, run time and migrations are in `totals`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exited_threads_summed: Vec<SummedThreadsReport>,
    pub totals: Totals,
    /// Events the kernel could not deliver (ring full), records that did not
    /// decode, and in a spike capture the events its memory cap pushed out.
    pub lost_events: u64,
    /// Lost events per kind, with the pages (first_touch) or faults (hinting_fault) they carried.
    pub lost: BTreeMap<String, crate::kernel_status::LostCount>,
    /// A spike capture (`--ring`): events of its window that the ring's
    /// memory cap pushed out, per kind.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub dropped_by_memory_cap: BTreeMap<String, crate::kernel_status::LostCount>,
    /// Per kind: events the kernel wrote to the ring, read back, and lost
    /// to a full ring. `sent` and `received` differ only if something failed
    /// between the ring and the aggregator (see `unread_events`).
    pub ring_events: BTreeMap<String, RingAccount>,
    /// Events the kernel wrote that were never read (should be 0).
    pub unread_events: u64,
    /// Raw hit counters of the kernel programs.
    pub kernel_counters: BTreeMap<String, u64>,
    /// Why the capture ended.
    pub stopped_by: StopReason,
    /// First touches sampled under an overhead budget: the rate over time,
    /// the share traced, estimates for the whole process (absent without a budget).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampling: Option<SamplingReport>,
    /// The call stacks taken with `--stacks` (absent without it); the sites
    /// are under each cause (`causes[].sites`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stacks: Option<StacksReport>,
}

/// How complete the call stacks of `--stacks` are.
#[derive(Clone, Debug, Serialize)]
pub struct StacksReport {
    /// Stacks the kernel took (one per run started) and those it could not keep.
    pub taken: u64,
    pub lost: u64,
    /// Distinct stacks (per process).
    pub distinct: usize,
    /// Distinct stacks whose walk stopped before a thread's entry (no frame pointers).
    pub truncated: usize,
    /// Pages first touched under any stack, and under truncated ones.
    pub pages: u64,
    pub truncated_pages: u64,
    /// How to get whole stacks, when truncated stacks placed a real share of the pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// What an overhead budget left out, and the precision that remains.
#[derive(Clone, Debug, Serialize)]
pub struct SamplingReport {
    /// The budget, in percent of one core.
    pub budget_percent: f64,
    /// numatrace's CPU as the budget measured it (its first-touch programs,
    /// estimated, and its own process), in percent of one core.
    pub measured_cpu_percent: f64,
    /// One 2 MiB region in this many traced at the end, and at most.
    pub final_one_in: u64,
    pub max_one_in: u64,
    /// Every change of the rate (and of the hooks' attachment), from the start.
    pub rate_over_time: Vec<SamplingStep>,
    /// First-touch pages the kernel counted (all, traced or not) and those in
    /// traced regions; every page count elsewhere in the report (causes,
    /// threads, totals) is of the traced regions only.
    pub first_touch_pages_counted: u64,
    pub first_touch_pages_traced: u64,
    /// `first_touch_pages_traced / first_touch_pages_counted` (1 when none).
    /// `magnitude` is scaled by its inverse (the whole process); causes,
    /// threads and totals are not.
    pub traced_share: f64,
    /// Seconds the first-touch hooks were detached (the budget's pauses): pages
    /// first touched then are in no count.
    pub paused_s: f64,
    /// Remote first-touch pages of the whole process, scaled from the traced regions.
    pub remote_first_touch_pages: crate::sampling::Estimate,
    /// Node id (string) -> first-touch pages that landed there, scaled.
    pub first_touch_pages_by_node: BTreeMap<String, crate::sampling::Estimate>,
}

/// The sampling from `at_s` seconds after the start.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SamplingStep {
    pub at_s: f64,
    pub one_in: u64,
    pub attached: bool,
}

/// What became of one kind of event on its way from the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RingAccount {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Tool {
    pub name: &'static str,
    pub version: String,
    pub kernel: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ThreadReport {
    pub tid: u32,
    pub tgid: u32,
    pub comm: String,
    /// Every migration of the thread: from the events with
    /// `--all-migrations`, else from the kernel's per-thread count (read at
    /// the start, the end and as it exits); null where that count is not
    /// known (a kernel without /proc/<pid>/task/<tid>/sched, a spike window).
    pub migrations: Option<u64>,
    pub cross_node_migrations: u64,
    /// Node id (string) -> pages first touched that landed there.
    pub first_touch_pages: BTreeMap<String, u64>,
    /// First-touch pages whose node is not known (see `totals.unknown_nodes`).
    #[serde(skip_serializing_if = "crate::attribution::is_zero")]
    pub first_touch_pages_unknown_node: u64,
    pub remote_first_touch_pages: u64,
    /// Node id (string) -> milliseconds the thread ran there.
    pub runtime_ms_by_node: BTreeMap<String, f64>,
    pub hinting_faults_local: u64,
    pub hinting_faults_remote: u64,
    pub numa_task_moves: u64,
    pub numa_task_swaps: u64,
    pub numa_task_sticks: u64,
    pub born_during_capture: bool,
    pub exited_during_capture: bool,
}

/// One traced process.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    /// Its main thread's name (else its snapshot's, else any thread's).
    pub comm: String,
    /// Its command line: the command numatrace started, else
    /// /proc/PID/cmdline from its snapshot (a process title for a program
    /// that rewrites it, as PostgreSQL's backends do); empty when not known.
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    /// Its container's id, when it runs in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Its threads listed in `threads[]`.
    pub threads: Vec<u32>,
    /// Its exited threads summed, not listed (see `exited_threads_summed`).
    #[serde(skip_serializing_if = "crate::attribution::is_zero")]
    pub exited_threads_summed: u64,
    /// Node id (string) -> bytes of its memory there; `memory_source` says from what.
    pub memory_by_node: BTreeMap<String, u64>,
    pub memory_source: MemorySource,
    /// Pages its threads first touched during the capture, and those remote to the toucher.
    pub first_touch_pages: u64,
    pub remote_first_touch_pages: u64,
    pub hinting_faults_remote: u64,
    /// Remote pages of the causes that involve it (placed or used by its
    /// threads; shared memory counts for its placer and each user).
    pub remote_pages: u64,
    /// Those causes, most pages first.
    pub causes: Vec<ProcessCause>,
}

/// Where a process's `memory_by_node` comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemorySource {
    /// Its latest snapshot (numa_maps, as `numastat -p` counts it: shared
    /// memory in every process that maps it).
    Snapshot,
    /// No snapshot: the pages its threads first touched during the capture.
    FirstTouch,
}

/// One cause's pages that involve a process.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessCause {
    pub kind: crate::attribution::CauseKind,
    pub pages: u64,
    /// Of all attributed remote pages (the base of the causes' shares).
    pub share: f64,
}

/// One process's exited threads that were summed, not listed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SummedThreadsReport {
    pub tgid: u32,
    pub threads: u64,
    /// Migrations the kernel sent for them (within-node ones are only counted, in `totals`).
    pub migrations: u64,
    pub cross_node_migrations: u64,
    /// Node id (string) -> pages they first touched (each at most `SUM_MAX_PAGES`).
    pub first_touch_pages: BTreeMap<String, u64>,
    pub remote_first_touch_pages: u64,
    pub runtime_ms_by_node: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub threads: u64,
    /// Every migration of a traced thread: the events received plus those
    /// the kernel only counted (`migrations_within_node_counted`).
    pub migrations: u64,
    /// Migrations between two CPUs of one node that the kernel counted
    /// instead of sending (all of them unless `--all-migrations`).
    pub migrations_within_node_counted: u64,
    pub cross_node_migrations: u64,
    /// Every first-touch page, those of unknown node included.
    pub first_touch_pages: u64,
    /// Node id (string) -> first-touch pages that landed there.
    pub first_touch_pages_by_node: BTreeMap<String, u64>,
    /// What the kernel saw without a node to name, by reason (absent when nothing).
    #[serde(skip_serializing_if = "crate::aggregate::UnknownNodes::is_empty")]
    pub unknown_nodes: crate::aggregate::UnknownNodes,
    pub remote_first_touch_pages: u64,
    pub numa_task_moves: u64,
    pub numa_task_swaps: u64,
    pub numa_task_sticks: u64,
    /// Reason -> pages migrated (succeeded).
    pub page_migrations: BTreeMap<String, u64>,
    pub hinting_faults_local: u64,
    pub hinting_faults_remote: u64,
    pub misplaced_migration_calls: u64,
    pub misplaced_migration_ms: f64,
}

impl Totals {
    /// Adds a thread's counts, or summed threads' (`threads` of them), to the totals.
    fn add(&mut self, t: &crate::aggregate::ThreadStats, threads: u64) {
        self.threads += threads;
        self.migrations += t.migrations;
        self.cross_node_migrations += t.cross_node_migrations;
        self.first_touch_pages += t.first_touch_total();
        for (node, pages) in &t.first_touch_pages {
            *self.first_touch_pages_by_node.entry(node.to_string()).or_default() += pages;
        }
        self.remote_first_touch_pages += t.remote_first_touch_pages;
        self.numa_task_moves += t.numa_task_moves;
        self.numa_task_swaps += t.numa_task_swaps;
        self.numa_task_sticks += t.numa_task_sticks;
        self.hinting_faults_local += t.hinting_faults_local;
        self.hinting_faults_remote += t.hinting_faults_remote;
        self.misplaced_migration_calls += t.misplaced_migrations;
        self.misplaced_migration_ms += t.misplaced_migration_ns as f64 / 1e6;
    }
}

/// Run time per node in milliseconds, keyed by node id (string).
fn ms_by_node(ns: &crate::aggregate::node_counts::NodeCounts) -> BTreeMap<String, f64> {
    ns.iter().map(|(n, ns)| (n.to_string(), *ns as f64 / 1e6)).collect()
}

fn by_node<'a, T: Copy + 'a>(map: impl IntoIterator<Item = (&'a u32, &'a T)>) -> BTreeMap<String, T> {
    map.into_iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

const COUNTER_NAMES: [&str; numatrace_common::COUNTER_SLOTS as usize] = [
    "page_faults",
    "first_touch_pages",
    "hinting_faults",
    "task_migrations",
    "unused",
    "migration_target_pages",
    "generated_events",
    "within_node_migrations",
    "failed_allocation_pages",
    "first_touch_pages_unsampled",
    "stacks",
    "lost_stacks",
    "machine_balancer_task_moves",
    "machine_balancer_task_swaps",
    "machine_balancer_task_sticks",
];

/// Sent, received and lost per kind, from the kernel's totals.
fn ring_events(kernel: &crate::kernel_status::KernelTotals) -> BTreeMap<String, RingAccount> {
    let mut out: BTreeMap<String, RingAccount> = BTreeMap::new();
    for (kind, n) in &kernel.sent {
        out.entry(kind.clone()).or_default().sent = *n;
    }
    for (kind, n) in &kernel.received {
        out.entry(kind.clone()).or_default().received = *n;
    }
    for (kind, l) in &kernel.loss {
        out.entry(kind.clone()).or_default().lost = l.events;
    }
    out
}

impl Report {
    /// Builds the report from a finished aggregator.
    pub fn build(agg: &Aggregator, facts: &SessionFacts) -> Report {
        let mut totals = Totals::default();
        let mut threads = Vec::new();
        for t in agg.threads.values() {
            totals.add(t, 1);
            threads.push(ThreadReport {
                tid: t.tid,
                tgid: t.tgid,
                comm: t.comm.clone(),
                migrations: if facts.start.within_node_migrations_counted_only {
                    t.counted_migrations()
                } else {
                    Some(t.migrations)
                },
                cross_node_migrations: t.cross_node_migrations,
                first_touch_pages: by_node(&t.first_touch_pages),
                first_touch_pages_unknown_node: t.first_touch_pages_unknown_node,
                remote_first_touch_pages: t.remote_first_touch_pages,
                runtime_ms_by_node: ms_by_node(&t.runtime_ns_by_node),
                hinting_faults_local: t.hinting_faults_local,
                hinting_faults_remote: t.hinting_faults_remote,
                numa_task_moves: t.numa_task_moves,
                numa_task_swaps: t.numa_task_swaps,
                numa_task_sticks: t.numa_task_sticks,
                born_during_capture: t.born_ns.is_some(),
                exited_during_capture: t.exited_ns.is_some(),
            });
        }
        let mut exited_threads_summed = Vec::new();
        for summed in agg.exited_summed.values() {
            let t = &summed.stats;
            totals.add(t, summed.threads);
            exited_threads_summed.push(SummedThreadsReport {
                tgid: t.tgid,
                threads: summed.threads,
                migrations: t.migrations,
                cross_node_migrations: t.cross_node_migrations,
                first_touch_pages: by_node(&t.first_touch_pages),
                remote_first_touch_pages: t.remote_first_touch_pages,
                runtime_ms_by_node: ms_by_node(&t.runtime_ns_by_node),
            });
        }
        totals.unknown_nodes = agg.unknown_nodes;
        totals.migrations_within_node_counted = agg.kernel.counter(numatrace_common::Counter::WithinNodeMigrations);
        totals.migrations += totals.migrations_within_node_counted;
        totals.page_migrations = agg.page_migrations.iter().map(|(r, m)| (r.clone(), m.succeeded)).collect();
        let lost = agg.kernel.loss.clone();
        let kernel_counters = agg
            .kernel
            .counters
            .iter()
            .enumerate()
            // The sampling's counter only when something was sampled: a report
            // without a budget reads as before.
            .filter(|(i, v)| **v > 0 || *i != numatrace_common::Counter::UnsampledFirstTouchPages as usize)
            .filter_map(|(i, v)| COUNTER_NAMES.get(i).filter(|n| **n != "unused").map(|n| (n.to_string(), *v)))
            .collect();
        let sampling = facts.end.sampling.as_ref().map(|f| sampling_report(agg, facts, f));
        let (causes, magnitude) = crate::attribution::from_facts(agg, facts);
        let headline = crate::attribution::headline(&causes, &magnitude, agg.topology.is_multi_node());
        const HOST_WIDE: [&str; 5] =
            ["zone_reclaim_on", "one_node_vm", "sockets_exceed_nodes", "high_numa_miss", "memoryless_node"];
        let host_findings = facts
            .start
            .system_before
            .as_ref()
            .map(|system| crate::inspect::findings::judge(system, None, None))
            .unwrap_or_default()
            .into_iter()
            .filter(|f| HOST_WIDE.contains(&f.kind.as_str()))
            .collect();
        let processes = processes(agg, facts, &causes);
        let mut target = facts.start.target.clone();
        target.exit_code = facts.end.exit_code;
        Report {
            schema: SCHEMA,
            tool: Tool {
                name: "numatrace",
                version: facts.start.tool_version.clone(),
                kernel: facts.start.kernel_release.clone(),
            },
            target,
            duration_s: facts.end.duration_s,
            multi_node: agg.topology.is_multi_node(),
            headline,
            magnitude,
            causes,
            host_findings,
            topology: agg.topology.clone(),
            sources: facts.start.sources.clone(),
            processes,
            threads,
            exited_threads_summed,
            totals,
            lost_events: agg.lost_events() + facts.end.dropped_by_memory_cap.values().map(|l| l.events).sum::<u64>(),
            lost,
            dropped_by_memory_cap: facts.end.dropped_by_memory_cap.clone(),
            ring_events: ring_events(&agg.kernel),
            unread_events: agg.kernel.unread(),
            kernel_counters,
            stopped_by: facts.end.stopped_by.clone(),
            sampling,
            stacks: facts.end.stacks.as_ref().map(|table| stacks_report(agg, table)),
        }
    }
}

/// Every traced process: those with threads seen, those named at the start,
/// and those with a snapshot.
fn processes(agg: &Aggregator, facts: &SessionFacts, causes: &[crate::attribution::Cause]) -> Vec<ProcessReport> {
    let start = &facts.start;
    let snapshots = crate::attribution::latest_snapshots(facts);
    let mut pids: std::collections::BTreeSet<u32> = agg.all_threads().map(|t| t.tgid).collect();
    pids.insert(start.target.pid);
    pids.extend(&start.target.pids);
    pids.extend(snapshots.iter().map(|s| s.pid));
    pids.remove(&0);
    let total: u64 = causes.iter().map(|c| c.pages).sum();
    pids.into_iter()
        .map(|pid| {
            let snap = snapshots.iter().find(|s| s.pid == pid);
            let identity = snap.and_then(|s| s.identity.as_ref());
            let threads: Vec<&crate::aggregate::ThreadStats> = agg.threads.values().filter(|t| t.tgid == pid).collect();
            let summed = agg.exited_summed.get(&pid);
            let own_threads = threads.iter().copied().chain(summed.map(|s| &s.stats));
            let comm = agg
                .threads
                .get(&pid)
                .filter(|t| t.tgid == pid && !t.comm.is_empty())
                .map(|t| t.comm.clone())
                .or_else(|| snap.map(|s| s.name().to_string()).filter(|n| n != "?"))
                .or_else(|| threads.iter().find(|t| !t.comm.is_empty()).map(|t| t.comm.clone()))
                .unwrap_or_else(|| if pid == start.target.pid { start.target.comm.clone() } else { String::new() });
            let command = match (&start.target.command, identity) {
                (Some(cmd), _) if pid == start.target.pid => cmd.clone(),
                (_, Some(id)) if !id.cmdline.is_empty() => id.cmdline.clone(),
                _ if pid == start.target.pid => start.argv.clone(),
                _ => Vec::new(),
            };
            let (memory_by_node, memory_source) = match snap {
                Some(s) if !s.memory_by_node.is_empty() || s.numa_maps.is_some() => {
                    (s.memory_by_node.iter().map(|(n, c)| (n.to_string(), c.total)).collect(), MemorySource::Snapshot)
                }
                _ => {
                    let mut by_node: BTreeMap<String, u64> = BTreeMap::new();
                    for t in own_threads.clone() {
                        for (node, pages) in &t.first_touch_pages {
                            *by_node.entry(node.to_string()).or_default() += pages * 4096;
                        }
                    }
                    (by_node, MemorySource::FirstTouch)
                }
            };
            let mut process_causes: Vec<ProcessCause> = causes
                .iter()
                .filter_map(|c| {
                    // One process traced: every cause is its own.
                    let pages =
                        if c.processes.is_empty() { c.pages } else { c.processes.iter().find(|p| p.pid == pid)?.pages };
                    (pages > 0).then(|| ProcessCause {
                        kind: c.kind,
                        pages,
                        share: if total > 0 { pages as f64 / total as f64 } else { 0.0 },
                    })
                })
                .collect();
            process_causes.sort_by(|a, b| b.pages.cmp(&a.pages).then(a.kind.cmp(&b.kind)));
            ProcessReport {
                pid,
                comm,
                command,
                exe: identity.and_then(|i| i.exe.clone()),
                systemd_unit: identity.and_then(|i| i.systemd_unit.clone()),
                container: identity.and_then(|i| i.container.as_ref().map(|c| c.id.clone())),
                threads: threads.iter().map(|t| t.tid).collect(),
                exited_threads_summed: summed.map_or(0, |s| s.threads),
                memory_by_node,
                memory_source,
                first_touch_pages: own_threads.clone().map(|t| t.first_touch_total()).sum(),
                remote_first_touch_pages: own_threads.clone().map(|t| t.remote_first_touch_pages).sum(),
                hinting_faults_remote: own_threads.map(|t| t.hinting_faults_remote).sum(),
                remote_pages: process_causes.iter().map(|c| c.pages).sum(),
                causes: process_causes,
            }
        })
        .collect()
}

/// The sampling section: the rate over time, the traced share of the
/// kernel's exact page count, and the traced regions' counts scaled by it.
fn sampling_report(agg: &Aggregator, facts: &SessionFacts, f: &crate::sampling::SamplingFacts) -> SamplingReport {
    use numatrace_common::Counter;
    let counted = agg.kernel.counter(Counter::FirstTouchPages);
    let traced = counted.saturating_sub(agg.kernel.counter(Counter::UnsampledFirstTouchPages));
    let traced_share = 1.0 / agg.first_touch_scale();
    let remote = crate::sampling::estimate(
        agg.regions.values().map(|r| r.iter().filter(|t| t.cpu_node != t.page_node).map(|t| t.pages).sum()),
        traced_share,
    );
    let nodes: std::collections::BTreeSet<u32> =
        agg.regions.values().flat_map(|r| r.iter().map(|t| t.page_node)).collect();
    let first_touch_pages_by_node = nodes
        .into_iter()
        .map(|node| {
            let per_region =
                agg.regions.values().map(|r| r.iter().filter(|t| t.page_node == node).map(|t| t.pages).sum());
            (node.to_string(), crate::sampling::estimate(per_region, traced_share))
        })
        .collect();
    let start_ns = facts.start.start_ns;
    SamplingReport {
        budget_percent: f.budget_percent,
        measured_cpu_percent: if f.measured_wall_ns == 0 {
            0.0
        } else {
            100.0 * f.measured_cpu_ns as f64 / f.measured_wall_ns as f64
        },
        final_one_in: f.final_one_in(),
        max_one_in: f.max_one_in(),
        rate_over_time: f
            .changes
            .iter()
            .map(|c| SamplingStep {
                at_s: c.at_ns.saturating_sub(start_ns) as f64 / 1e9,
                one_in: c.one_in,
                attached: c.attached,
            })
            .collect(),
        first_touch_pages_counted: counted,
        first_touch_pages_traced: traced,
        traced_share,
        paused_s: f.paused_ns as f64 / 1e9,
        remote_first_touch_pages: remote,
        first_touch_pages_by_node,
    }
}

/// `uname -r`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// How complete the stacks are, weighed by the pages first touched under
/// each: the hint only when truncated stacks placed a real share of them.
fn stacks_report(agg: &Aggregator, table: &crate::stacks::StackTable) -> StacksReport {
    let mut pages_by_stack: BTreeMap<crate::stacks::StackKey, u64> = BTreeMap::new();
    for (_, stack, touch) in agg.stacks.iter() {
        *pages_by_stack.entry(stack).or_default() += touch.pages;
    }
    let truncated: Vec<&crate::stacks::Stack> = table.stacks.iter().filter(|s| s.truncated()).collect();
    let pages: u64 = pages_by_stack.values().sum();
    let truncated_pages: u64 = truncated.iter().filter_map(|s| pages_by_stack.get(&s.key)).sum();
    let hint_due = !truncated.is_empty()
        && (pages == 0 || truncated_pages as f64 >= pages as f64 * crate::stacks::TRUNCATED_HINT_SHARE);
    StacksReport {
        taken: agg.kernel.counter(numatrace_common::Counter::Stacks),
        lost: agg.kernel.counter(numatrace_common::Counter::LostStacks),
        distinct: table.stacks.len(),
        truncated: truncated.len(),
        pages,
        truncated_pages,
        hint: hint_due.then(|| crate::stacks::FRAME_POINTER_HINT.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        aggregate::RegionKey,
        stacks::{Frame, Stack, StackKey, StackTable},
    };

    fn stack(id: u32, functions: &[&str]) -> Stack {
        let frames = functions.iter().map(|f| Frame { function: Some(f.to_string()), ..Frame::default() }).collect();
        Stack { key: StackKey { tgid: 100, id }, addrs: Vec::new(), frames }
    }

    #[test]
    fn the_frame_pointer_hint_needs_truncated_stacks_to_hold_a_real_share() {
        let mut agg = Aggregator::new(Topology::synthetic(&[vec![0], vec![1]]), BTreeMap::new());
        let key = RegionKey { tgid: 100, region: 1 };
        // The program's own stack placed 8000 pages; the loader's, walked two frames deep, 150.
        agg.stacks.first_touch(key, 1, 101, 8000, false);
        agg.stacks.first_touch(key, 2, 101, 150, false);
        let mut table = StackTable {
            stacks: vec![stack(1, &["touch", "init", "main"]), stack(2, &["_dl_relocate_object", "_dl_start"])],
            processes: Vec::new(),
        };
        let r = stacks_report(&agg, &table);
        assert_eq!((r.distinct, r.truncated, r.pages, r.truncated_pages), (2, 1, 8150, 150));
        assert!(r.hint.is_none(), "{r:?}");
        // The program's own stack truncated too: most pages, the hint.
        table.stacks[0] = stack(1, &["touch", "init"]);
        let r = stacks_report(&agg, &table);
        assert_eq!((r.truncated, r.truncated_pages), (2, 8150));
        assert!(r.hint.is_some(), "{r:?}");
    }
}
