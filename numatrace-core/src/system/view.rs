//! Two samples an interval apart, and the processes' numa_maps snapshots,
//! turned into rows: one per node, one per process (or per cgroup).
//! Serialized as `numatrace.top/1`.
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{
    sample::{KernelCounts, ProcessSample, Sample},
    tag::{Tag, likely_cause},
};
use crate::{
    inspect::{Severity, findings::judge},
    machine::{CounterRates, ProcessSnapshot, Topology},
};

pub const SCHEMA: &str = "numatrace.top/1";

/// The machine and its processes over one interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemView {
    pub schema: String,
    /// When the later sample was taken, in milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    /// The length of the interval the rates are over.
    pub interval_seconds: f64,
    /// `kernel.numa_balancing` (0 off, 1 on, 2 tiering, 3 both); `None`: not readable.
    pub numa_balancing: Option<u32>,
    pub nodes: Vec<NodeRow>,
    /// Pages the NUMA balancer migrated per second (`numa_pages_migrated` in /proc/vmstat).
    pub numa_pages_migrated_per_s: f64,
    /// NUMA hinting faults per second, and those that found the page local.
    pub numa_hint_faults_per_s: f64,
    pub numa_hint_faults_local_per_s: f64,
    /// What `numatrace inspect` finds about the host (zone_reclaim_mode, a one-node VM, hidden sockets...).
    pub findings: Vec<HostFinding>,
    /// Sorted by `remote_memory_share`, largest first (unknown last), then by resident memory.
    pub processes: Vec<ProcessRow>,
    /// What could not be seen, and why (other users' numa_maps without root...).
    pub cannot_see: Vec<String>,
    /// Whether the kernel counted every process's cross-node migrations
    /// (numatrace's always-on programs, with root): then
    /// `cross_node_migrations_per_s` is every move, else the /proc estimate.
    /// `remote_first_touch_pages_per_s` is null where first touches were not
    /// counted (without the kernel, and in the exporter unless asked for).
    #[serde(default)]
    pub counted_in_kernel: bool,
    /// Whether the kernel counted remote first touches too
    /// (`remote_first_touch_pages_per_s` is a number for every process then).
    #[serde(default)]
    pub first_touches_counted_in_kernel: bool,
    /// Whether the kernel counted remote hinting faults too
    /// (`remote_hinting_faults_per_s` is a number for every process then).
    #[serde(default)]
    pub hinting_faults_counted_in_kernel: bool,
}

/// One NUMA node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRow {
    pub id: u32,
    pub cpus: Vec<u32>,
    pub mem_total_bytes: u64,
    pub mem_used_bytes: u64,
    pub mem_free_bytes: u64,
    /// Its allocation counters (/sys/devices/system/node/nodeN/numastat) in pages per second.
    pub rates: CounterRates,
}

/// A host-wide finding of `numatrace inspect`, in short.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFinding {
    pub kind: String,
    pub severity: Severity,
    pub evidence: String,
}

/// One process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessRow {
    pub pid: u32,
    pub comm: String,
    pub cgroup: String,
    pub rss_bytes: u64,
    /// Resident bytes per node from numa_maps (as `numastat -p`); `None`: not read (yet, or not allowed).
    pub memory_by_node: Option<BTreeMap<u32, u64>>,
    /// How old `memory_by_node` is, in seconds (numa_maps is read less often than the rest).
    pub memory_age_seconds: Option<f64>,
    /// Threads per node they last ran on.
    pub threads_by_node: BTreeMap<u32, u32>,
    /// The share of its own memory (anonymous, heap, stack, huge pages,
    /// shared memory; not the page cache of its files) on nodes its threads
    /// did not run on, each thread weighted by its run time over the
    /// interval (equally when none ran).
    pub remote_memory_share: Option<f64>,
    /// Its own memory, and the remote share of it, in bytes.
    pub own_memory_bytes: Option<u64>,
    pub remote_memory_bytes: Option<u64>,
    /// Its threads' moves between nodes per second: every move, as the
    /// kernel counted them (`SystemView::counted_in_kernel`); else threads
    /// seen on another node than at the previous sample (a lower bound: a
    /// thread that left and came back in between is not seen).
    pub cross_node_migrations_per_s: f64,
    /// Movable pages it allocated on another node than its CPU's, per
    /// second; `None` when the kernel does not count them.
    #[serde(default)]
    pub remote_first_touch_pages_per_s: Option<f64>,
    /// Its NUMA hinting faults per second that found the page on another
    /// node than the faulting CPU's (the balancer's sampled accesses, so
    /// only where balancing is on); `None` when the kernel does not count them.
    #[serde(default)]
    pub remote_hinting_faults_per_s: Option<f64>,
    pub tag: Tag,
}

impl ProcessRow {
    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory_by_node.as_ref().map(|m| m.values().sum())
    }
}

/// The processes of one cgroup together (`--by cgroup`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CgroupRow {
    pub cgroup: String,
    pub processes: u32,
    pub rss_bytes: u64,
    /// Summed over the processes whose numa_maps was read.
    pub memory_by_node: BTreeMap<u32, u64>,
    pub threads_by_node: BTreeMap<u32, u32>,
    /// Remote bytes over all bytes of the processes whose memory is known.
    pub remote_memory_share: Option<f64>,
    pub cross_node_migrations_per_s: f64,
    /// Summed over its processes; `None` when the kernel does not count them.
    pub remote_first_touch_pages_per_s: Option<f64>,
    /// Summed over its processes; `None` when the kernel does not count them.
    #[serde(default)]
    pub remote_hinting_faults_per_s: Option<f64>,
    /// The tag holding the most remote bytes.
    pub tag: Tag,
}

impl SystemView {
    /// A view of these rows alone over an interval of `interval_seconds`:
    /// no nodes, rates or findings (for code that works on the rows, and its tests).
    pub fn of_rows(processes: Vec<ProcessRow>, interval_seconds: f64) -> SystemView {
        SystemView {
            schema: SCHEMA.into(),
            taken_at_unix_ms: 0,
            interval_seconds,
            numa_balancing: None,
            nodes: Vec::new(),
            numa_pages_migrated_per_s: 0.0,
            numa_hint_faults_per_s: 0.0,
            numa_hint_faults_local_per_s: 0.0,
            findings: Vec::new(),
            processes,
            cannot_see: Vec::new(),
            counted_in_kernel: false,
            first_touches_counted_in_kernel: false,
            hinting_faults_counted_in_kernel: false,
        }
    }

    /// The view of the interval from `earlier` to `now`; `placements` holds
    /// each process's latest numa_maps snapshot (matched by pid; the reader
    /// drops those of exited processes), `cannot_see` what the reader could not read.
    pub fn build(
        earlier: &Sample,
        now: &Sample,
        placements: &HashMap<u32, ProcessSnapshot>,
        cannot_see: Vec<String>,
    ) -> SystemView {
        let system = &now.system;
        let topo = &system.topology;
        let seconds = system.seconds_since(&earlier.system);
        let rates = system.counter_rates_since(&earlier.system);
        let vmstat = system.vmstat_rates_since(&earlier.system);
        let nodes = topo
            .nodes
            .iter()
            .map(|n| NodeRow {
                id: n.id,
                cpus: n.cpus.clone(),
                mem_total_bytes: n.mem_total_bytes,
                mem_used_bytes: n.mem_used_bytes,
                mem_free_bytes: n.mem_free_bytes,
                rates: rates.get(&n.id).copied().unwrap_or_default(),
            })
            .collect();
        let findings = judge(system, Some(&rates), None)
            .into_iter()
            .map(|f| HostFinding { kind: f.kind, severity: f.severity, evidence: f.evidence })
            .collect();
        let before: HashMap<u32, &ProcessSample> = earlier.processes.iter().map(|p| (p.pid, p)).collect();
        let counts = KernelRates::between(earlier, now, seconds);
        let mut processes: Vec<ProcessRow> = now
            .processes
            .iter()
            .map(|p| {
                let prev = before.get(&p.pid).copied().filter(|b| b.start_ticks == p.start_ticks);
                let mut row = process_row(topo, prev, p, placements.get(&p.pid), system.taken_at_unix_ms, seconds);
                if let Some(counts) = &counts {
                    let rates = counts.of(p.pid, prev.is_some());
                    row.cross_node_migrations_per_s = rates.cross_node_migrations;
                    row.remote_first_touch_pages_per_s =
                        now.first_touches_counted.then_some(rates.remote_first_touch_pages);
                    row.remote_hinting_faults_per_s = now.hinting_faults_counted.then_some(rates.remote_hinting_faults);
                }
                row
            })
            .collect();
        sort_by_remote_share(&mut processes);
        SystemView {
            schema: SCHEMA.to_string(),
            taken_at_unix_ms: system.taken_at_unix_ms,
            interval_seconds: seconds,
            numa_balancing: system.sysctl.numa_balancing,
            nodes,
            numa_pages_migrated_per_s: vmstat.get("numa_pages_migrated").copied().unwrap_or(0.0),
            numa_hint_faults_per_s: vmstat.get("numa_hint_faults").copied().unwrap_or(0.0),
            numa_hint_faults_local_per_s: vmstat.get("numa_hint_faults_local").copied().unwrap_or(0.0),
            findings,
            processes,
            cannot_see,
            counted_in_kernel: counts.is_some(),
            first_touches_counted_in_kernel: counts.is_some() && now.first_touches_counted,
            hinting_faults_counted_in_kernel: counts.is_some() && now.hinting_faults_counted,
        }
    }

    /// The processes grouped by cgroup, sorted like the processes.
    pub fn by_cgroup(&self) -> Vec<CgroupRow> {
        let mut groups: BTreeMap<&str, Vec<&ProcessRow>> = BTreeMap::new();
        for p in &self.processes {
            groups.entry(p.cgroup.as_str()).or_default().push(p);
        }
        let mut rows: Vec<CgroupRow> =
            groups.into_iter().map(|(cgroup, members)| cgroup_row(cgroup, &members)).collect();
        rows.sort_by(|a, b| {
            share_key(b.remote_memory_share)
                .total_cmp(&share_key(a.remote_memory_share))
                .then(b.rss_bytes.cmp(&a.rss_bytes))
        });
        rows
    }
}

/// Unknown shares sort below every known one.
fn share_key(share: Option<f64>) -> f64 {
    share.unwrap_or(-1.0)
}

/// Largest remote share first, unknown last; ties by resident memory, then pid.
pub fn sort_by_remote_share(rows: &mut [ProcessRow]) {
    rows.sort_by(|a, b| {
        share_key(b.remote_memory_share)
            .total_cmp(&share_key(a.remote_memory_share))
            .then(b.rss_bytes.cmp(&a.rss_bytes))
            .then(a.pid.cmp(&b.pid))
    });
}

fn process_row(
    topo: &Topology,
    earlier: Option<&ProcessSample>,
    now: &ProcessSample,
    placement: Option<&ProcessSnapshot>,
    now_unix_ms: u64,
    seconds: f64,
) -> ProcessRow {
    let prev: HashMap<u32, (u32, u64)> =
        earlier.map(|e| e.threads.iter().map(|t| (t.tid, (t.cpu, t.run_ticks))).collect()).unwrap_or_default();
    // (node, run ticks in the interval) per thread whose CPU has a node.
    let mut runs: Vec<(u32, u64)> = Vec::new();
    let mut threads_by_node = BTreeMap::new();
    let mut moves = 0u32;
    for t in &now.threads {
        let Some(node) = topo.node_of_cpu(t.cpu) else { continue };
        *threads_by_node.entry(node).or_insert(0) += 1;
        // A thread born in the interval ran all of its time in it.
        let ran = match prev.get(&t.tid) {
            Some(&(cpu, ticks)) => {
                if topo.node_of_cpu(cpu).is_some_and(|n| n != node) {
                    moves += 1;
                }
                t.run_ticks.saturating_sub(ticks)
            }
            None => t.run_ticks,
        };
        runs.push((node, ran));
    }
    let memory_by_node: Option<BTreeMap<u32, u64>> =
        placement.map(|p| p.memory_by_node.iter().map(|(n, c)| (*n, c.total)).collect());
    let own = placement.map(own_memory_by_node);
    let remote_memory_share = own.as_ref().and_then(|m| remote_share(m, &runs));
    let own_memory_bytes = own.as_ref().map(|m| m.values().sum::<u64>());
    let remote_memory_bytes = own_memory_bytes.zip(remote_memory_share).map(|(b, s)| (s * b as f64).round() as u64);
    let thread_nodes: Vec<u32> = threads_by_node.keys().copied().collect();
    let tag = match placement {
        Some(p) => likely_cause(topo, p, remote_memory_share, &thread_nodes),
        None => Tag::Unknown,
    };
    ProcessRow {
        pid: now.pid,
        comm: now.comm.clone(),
        cgroup: now.cgroup.clone(),
        rss_bytes: now.rss_bytes,
        memory_age_seconds: placement.map(|p| now_unix_ms.saturating_sub(p.taken_at_unix_ms) as f64 / 1000.0),
        memory_by_node,
        threads_by_node,
        remote_memory_share,
        own_memory_bytes,
        remote_memory_bytes,
        cross_node_migrations_per_s: if seconds > 0.0 && earlier.is_some() { f64::from(moves) / seconds } else { 0.0 },
        remote_first_touch_pages_per_s: None,
        remote_hinting_faults_per_s: None,
        tag,
    }
}

/// The kernel's counts at two samples, turned into per-process rates.
struct KernelRates<'a> {
    earlier: Option<&'a BTreeMap<u32, KernelCounts>>,
    now: &'a BTreeMap<u32, KernelCounts>,
    seconds: f64,
}

impl<'a> KernelRates<'a> {
    /// `None` unless the later sample has the kernel's counts.
    fn between(earlier: &'a Sample, now: &'a Sample, seconds: f64) -> Option<KernelRates<'a>> {
        Some(KernelRates { earlier: earlier.kernel_counts.as_ref(), now: now.kernel_counts.as_ref()?, seconds })
    }

    /// Each count per second of a process over the interval. One that was
    /// not in the earlier sample (`seen_before` false) was born in it: all
    /// its counts are. A count that went back (the bounded hash dropped the
    /// process and counted it afresh) gives 0 for this interval.
    fn of(&self, pid: u32, seen_before: bool) -> CountRates {
        if self.seconds <= 0.0 {
            return CountRates::default();
        }
        let now = self.now.get(&pid).copied().unwrap_or_default();
        let before = match self.earlier {
            Some(earlier) if seen_before => earlier.get(&pid).copied().unwrap_or_default(),
            // The earlier sample was taken without the kernel's counts: no interval to count over.
            None if seen_before => now,
            _ => KernelCounts::default(),
        };
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / self.seconds;
        CountRates {
            cross_node_migrations: rate(now.cross_node_migrations, before.cross_node_migrations),
            remote_first_touch_pages: rate(now.remote_first_touch_pages, before.remote_first_touch_pages),
            remote_hinting_faults: rate(now.remote_hinting_faults, before.remote_hinting_faults),
        }
    }
}

/// [`KernelCounts`] per second.
#[derive(Clone, Copy, Debug, Default)]
struct CountRates {
    cross_node_migrations: f64,
    remote_first_touch_pages: f64,
    remote_hinting_faults: f64,
}

/// The process's own memory per node: what its placement decides, without
/// the page cache of the files it maps (libraries sit where their first
/// reader put them).
fn own_memory_by_node(p: &ProcessSnapshot) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    // Summed from the page counts: a map per mapping (`bytes_by_node`) for
    // every process at every refresh of top was allocation churn.
    for m in p.numa_maps.iter().flat_map(|m| m.mappings.iter()).filter(|m| m.is_own_memory()) {
        for (&n, &pages) in &m.pages_by_node {
            let b: &mut u64 = out.entry(n).or_insert(0);
            *b = b.saturating_add(pages.saturating_mul(m.page_size_bytes));
        }
    }
    out
}

/// The share of the memory not on the node each thread ran on, weighted by
/// the threads' run time (equally when none ran). `None`: no memory or no thread seen.
pub fn remote_share(memory_by_node: &BTreeMap<u32, u64>, runs: &[(u32, u64)]) -> Option<f64> {
    let total: u64 = memory_by_node.values().sum();
    if total == 0 || runs.is_empty() {
        return None;
    }
    let ran: u64 = runs.iter().map(|(_, r)| r).sum();
    let weight = |r: u64| if ran > 0 { r as f64 / ran as f64 } else { 1.0 / runs.len() as f64 };
    let share = runs
        .iter()
        .map(|&(node, r)| {
            let local = memory_by_node.get(&node).copied().unwrap_or(0);
            weight(r) * (1.0 - local as f64 / total as f64)
        })
        .sum::<f64>();
    Some(share.clamp(0.0, 1.0))
}

fn cgroup_row(cgroup: &str, members: &[&ProcessRow]) -> CgroupRow {
    let mut memory_by_node = BTreeMap::new();
    let mut threads_by_node = BTreeMap::new();
    let (mut known, mut remote) = (0f64, 0f64);
    let mut remote_by_tag: BTreeMap<Tag, f64> = BTreeMap::new();
    for p in members {
        for (n, b) in p.memory_by_node.iter().flatten() {
            *memory_by_node.entry(*n).or_insert(0) += b;
        }
        for (n, c) in &p.threads_by_node {
            *threads_by_node.entry(*n).or_insert(0) += c;
        }
        if let (Some(own), Some(bytes)) = (p.own_memory_bytes, p.remote_memory_bytes) {
            known += own as f64;
            remote += bytes as f64;
            *remote_by_tag.entry(p.tag).or_insert(0.0) += bytes as f64;
        }
    }
    let remote_memory_share = (known > 0.0).then(|| remote / known);
    let tag = match remote_memory_share {
        None => Tag::Unknown,
        Some(s) if s < super::tag::LOCAL_BELOW => Tag::Local,
        Some(_) => remote_by_tag.into_iter().max_by(|a, b| a.1.total_cmp(&b.1)).map_or(Tag::Unknown, |(t, _)| t),
    };
    CgroupRow {
        cgroup: cgroup.to_string(),
        processes: members.len() as u32,
        rss_bytes: members.iter().map(|p| p.rss_bytes).sum(),
        memory_by_node,
        threads_by_node,
        remote_memory_share,
        cross_node_migrations_per_s: members.iter().map(|p| p.cross_node_migrations_per_s).sum(),
        remote_first_touch_pages_per_s: members
            .iter()
            .map(|p| p.remote_first_touch_pages_per_s)
            .try_fold(0.0, |sum, rate| rate.map(|r| sum + r)),
        remote_hinting_faults_per_s: members
            .iter()
            .map(|p| p.remote_hinting_faults_per_s)
            .try_fold(0.0, |sum, rate| rate.map(|r| sum + r)),
        tag,
    }
}
