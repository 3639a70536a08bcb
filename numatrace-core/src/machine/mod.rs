//! Snapshots of the machine's and a process's NUMA state, read from /proc and
//! /sys without eBPF: what `numactl --hardware`, `numastat -m`, `numastat -p`,
//! `/proc/<pid>/numa_maps`, the node counters and the cgroup files show.
//!
//! `inspect` judges them; the live tracer takes one before and one after a
//! capture. Both snapshots serialize, so they can be stored and compared.
//! Each module reads one source; anything that could not be read is listed in
//! `unreadable` with the reason, never silently left as zero.
pub mod cpulist;
pub mod cpuset;
pub mod identity;
pub mod node_counters;
pub mod node_meminfo;
pub mod numa_maps;
pub mod per_thread;
pub mod proc_status;
pub mod topology;
pub mod tunables;
pub mod virt;
pub mod vmstat;

use std::{
    collections::BTreeMap,
    fs, io,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub use self::{
    cpuset::{CgroupVersion, Cpuset, CpusetMemo},
    identity::{Container, ContainerRuntime, ProcessIdentity},
    node_counters::{CounterRates, NodeCounters},
    node_meminfo::NodeMeminfo,
    numa_maps::{CategoryBytes, Mapping, MappingKind, NumaMaps, PageSizes},
    proc_status::{ProcessStatus, ThreadPlacement},
    topology::{HugePages, Node, Topology},
    tunables::{Sysctls, TransparentHugePages},
    virt::Virtualization,
};

/// A source that could not be read, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreadable {
    /// The file or folder.
    pub path: String,
    /// Why, in words a user can act on.
    pub reason: String,
}

impl Unreadable {
    fn new(path: impl Into<String>, err: &anyhow::Error) -> Unreadable {
        let denied = err.chain().any(|e| {
            e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::PermissionDenied)
                || matches!(e.downcast_ref::<procfs::ProcError>(), Some(procfs::ProcError::PermissionDenied(_)))
        });
        let reason = if denied {
            "permission denied: run as root, or as the user that owns the process".to_string()
        } else {
            err.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ")
        };
        Unreadable { path: path.into(), reason }
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The page sizes of this machine, read once: they do not change while it
/// runs, and `numatrace top` parses numa_maps of many processes a second.
pub fn page_sizes() -> PageSizes {
    static SIZES: std::sync::OnceLock<PageSizes> = std::sync::OnceLock::new();
    *SIZES.get_or_init(read_page_sizes)
}

fn read_page_sizes() -> PageSizes {
    let default_huge = <procfs::Meminfo as procfs::Current>::current()
        .ok()
        .and_then(|m| m.hugepagesize)
        .filter(|&h| h > 0)
        .unwrap_or(2 << 20);
    PageSizes { base: procfs::page_size(), default_huge }
}

/// The machine-wide NUMA state at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemSnapshot {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    pub topology: Topology,
    /// Per-node meminfo in bytes, as `numastat -m` shows it (node id -> field -> bytes).
    pub meminfo: BTreeMap<u32, NodeMeminfo>,
    /// Per-node allocation counters in pages since boot (node id -> counters).
    pub counters: BTreeMap<u32, NodeCounters>,
    /// The NUMA balancer's and page migration's /proc/vmstat counters since boot.
    pub vmstat: BTreeMap<String, u64>,
    pub sysctl: Sysctls,
    pub transparent_hugepages: TransparentHugePages,
    pub virtualization: Virtualization,
    pub base_page_bytes: u64,
    pub default_huge_page_bytes: u64,
    /// Lines of node files that did not parse.
    pub skipped_lines: u64,
    pub unreadable: Vec<Unreadable>,
}

impl SystemSnapshot {
    /// Reads everything. Fails only when the node topology itself cannot be read.
    pub fn read() -> Result<SystemSnapshot> {
        let taken_at_unix_ms = now_unix_ms();
        let topology = Topology::read()?;
        let sizes = page_sizes();
        let mut unreadable = Vec::new();
        let mut meminfo = BTreeMap::new();
        let mut counters = BTreeMap::new();
        let mut skipped_lines = 0;
        for id in topology.node_ids() {
            let dir = format!("/sys/devices/system/node/node{id}");
            match fs::read_to_string(format!("{dir}/meminfo")).with_context(|| format!("reading {dir}/meminfo")) {
                Ok(text) => {
                    let (m, skipped) = NodeMeminfo::parse(&text, sizes.default_huge);
                    skipped_lines += skipped;
                    meminfo.insert(id, m);
                }
                Err(e) => unreadable.push(Unreadable::new(format!("{dir}/meminfo"), &e)),
            }
            match fs::read_to_string(format!("{dir}/numastat")).with_context(|| format!("reading {dir}/numastat")) {
                Ok(text) => {
                    let (c, skipped) = NodeCounters::parse(&text);
                    skipped_lines += skipped;
                    counters.insert(id, c);
                }
                Err(e) => unreadable.push(Unreadable::new(format!("{dir}/numastat"), &e)),
            }
        }
        let vmstat = vmstat::read().unwrap_or_else(|e| {
            unreadable.push(Unreadable::new("/proc/vmstat", &e));
            BTreeMap::new()
        });
        let sysctl = Sysctls::read();
        if sysctl.zone_reclaim_mode.is_none() {
            unreadable.push(Unreadable {
                path: "/proc/sys/vm/zone_reclaim_mode".into(),
                reason: "missing (kernel without CONFIG_NUMA?)".into(),
            });
        }
        Ok(SystemSnapshot {
            taken_at_unix_ms,
            topology,
            meminfo,
            counters,
            vmstat,
            sysctl,
            transparent_hugepages: TransparentHugePages::read(),
            virtualization: Virtualization::detect(),
            base_page_bytes: sizes.base,
            default_huge_page_bytes: sizes.default_huge,
            skipped_lines,
            unreadable,
        })
    }

    /// A snapshot built in code (tests): this topology and these sysctls,
    /// no counters, 4 KiB base and 2 MiB huge pages.
    #[cfg(test)]
    pub(crate) fn synthetic(topology: Topology, sysctl: Sysctls) -> SystemSnapshot {
        SystemSnapshot {
            taken_at_unix_ms: 0,
            topology,
            meminfo: BTreeMap::new(),
            counters: BTreeMap::new(),
            vmstat: BTreeMap::new(),
            sysctl,
            transparent_hugepages: TransparentHugePages::default(),
            virtualization: Virtualization::default(),
            base_page_bytes: 4096,
            default_huge_page_bytes: 2 << 20,
            skipped_lines: 0,
            unreadable: Vec::new(),
        }
    }

    /// Seconds between two snapshots (0 when `earlier` is not earlier).
    pub fn seconds_since(&self, earlier: &SystemSnapshot) -> f64 {
        self.taken_at_unix_ms.saturating_sub(earlier.taken_at_unix_ms) as f64 / 1000.0
    }

    /// Per-node counter rates (pages per second) since an earlier snapshot.
    pub fn counter_rates_since(&self, earlier: &SystemSnapshot) -> BTreeMap<u32, CounterRates> {
        let secs = self.seconds_since(earlier);
        self.counters
            .iter()
            .map(|(id, now)| (*id, now.rate_since(earlier.counters.get(id).unwrap_or(now), secs)))
            .collect()
    }

    /// /proc/vmstat NUMA counter rates (per second) since an earlier snapshot.
    pub fn vmstat_rates_since(&self, earlier: &SystemSnapshot) -> BTreeMap<String, f64> {
        vmstat::rates(&self.vmstat, &earlier.vmstat, self.seconds_since(earlier))
    }
}

/// The CPUs and nodes a process may use: its affinity and Mems_allowed, cut
/// down by its cgroup's effective cpuset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowed {
    pub cpus: Vec<u32>,
    pub mems: Vec<u32>,
}

/// One process's NUMA state at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessSnapshot {
    pub pid: u32,
    pub taken_at_unix_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ProcessStatus>,
    /// Every mapping with its per-node pages and policy (`None`: numa_maps unreadable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_maps: Option<NumaMaps>,
    /// Memory per node as `numastat -p` shows it, in bytes (node id -> category -> bytes).
    pub memory_by_node: BTreeMap<u32, CategoryBytes>,
    /// Threads and the CPU each last ran on.
    pub threads: Vec<ThreadPlacement>,
    /// Number of threads per node they are running on now.
    pub threads_by_node: BTreeMap<u32, u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<Cpuset>,
    /// Its executable, command line, systemd unit and container (captures
    /// written before these were recorded have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ProcessIdentity>,
    pub unreadable: Vec<Unreadable>,
}

impl ProcessSnapshot {
    /// Reads a process, taking the node of each CPU from this machine's topology.
    pub fn read(pid: u32) -> Result<ProcessSnapshot> {
        let topology = Topology::read()?;
        ProcessSnapshot::read_with(pid, &topology)
    }

    /// Reads a process against an already-read topology. Fails only when the
    /// process does not exist; anything else unreadable is listed in `unreadable`.
    pub fn read_with(pid: u32, topology: &Topology) -> Result<ProcessSnapshot> {
        if !std::path::Path::new(&format!("/proc/{pid}")).is_dir() {
            bail!("no process with PID {pid}");
        }
        let taken_at_unix_ms = now_unix_ms();
        let mut unreadable = Vec::new();
        let status = ProcessStatus::read(pid)
            .map_err(|e| unreadable.push(Unreadable::new(format!("/proc/{pid}/status"), &e)))
            .ok();
        let path = format!("/proc/{pid}/numa_maps");
        let numa_maps = match fs::read_to_string(&path).with_context(|| format!("reading {path}")) {
            Ok(text) => Some(numa_maps::parse(&text, page_sizes())),
            Err(e) => {
                unreadable.push(Unreadable::new(path, &e));
                None
            }
        };
        let threads = proc_status::read_threads(pid, |cpu| topology.node_of_cpu(cpu))
            .map_err(|e| unreadable.push(Unreadable::new(format!("/proc/{pid}/task"), &e)))
            .unwrap_or_default();
        let cpuset = Cpuset::read(pid);
        Ok(ProcessSnapshot::of_parts(pid, taken_at_unix_ms, status, numa_maps, threads, cpuset, unreadable))
    }

    /// Reads a process whose threads the caller has just read (`numatrace
    /// top` reads every thread's stat each refresh: a second reading of them
    /// here was a tenth of its CPU). numa_maps comes first: when it is not
    /// readable (another user's process) nothing else is read, as memory per
    /// node is what a snapshot is taken for, and the snapshot has only
    /// `numa_maps: None` and the reason. The threads' names may be empty
    /// (top keeps none). Fails only when the process is gone.
    pub fn read_with_threads(
        pid: u32,
        threads: Vec<ThreadPlacement>,
        cpusets: &mut CpusetMemo,
    ) -> Result<ProcessSnapshot> {
        let taken_at_unix_ms = now_unix_ms();
        let mut unreadable = Vec::new();
        let path = format!("/proc/{pid}/numa_maps");
        let numa_maps = match fs::read_to_string(&path) {
            Ok(text) => numa_maps::parse(&text, page_sizes()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => bail!("no process with PID {pid}"),
            Err(e) => {
                unreadable
                    .push(Unreadable::new(path.clone(), &anyhow::Error::new(e).context(format!("reading {path}"))));
                return Ok(ProcessSnapshot {
                    pid,
                    taken_at_unix_ms,
                    status: None,
                    numa_maps: None,
                    memory_by_node: BTreeMap::new(),
                    threads: Vec::new(),
                    threads_by_node: BTreeMap::new(),
                    cpuset: None,
                    identity: None,
                    unreadable,
                });
            }
        };
        let status = ProcessStatus::read(pid)
            .map_err(|e| unreadable.push(Unreadable::new(format!("/proc/{pid}/status"), &e)))
            .ok();
        let cpuset = cpusets.read(pid);
        Ok(ProcessSnapshot::of_parts(pid, taken_at_unix_ms, status, Some(numa_maps), threads, cpuset, unreadable))
    }

    /// The rest of a snapshot around what was read: memory and threads per
    /// node from those, the identity read now.
    fn of_parts(
        pid: u32,
        taken_at_unix_ms: u64,
        status: Option<ProcessStatus>,
        numa_maps: Option<NumaMaps>,
        threads: Vec<ThreadPlacement>,
        cpuset: Result<Option<Cpuset>>,
        mut unreadable: Vec<Unreadable>,
    ) -> ProcessSnapshot {
        let memory_by_node = numa_maps.as_ref().map(NumaMaps::memory_by_node).unwrap_or_default();
        let mut threads_by_node = BTreeMap::new();
        for t in &threads {
            if let Some(node) = t.node {
                *threads_by_node.entry(node).or_insert(0) += 1;
            }
        }
        let cpuset =
            cpuset.map_err(|e| unreadable.push(Unreadable::new(format!("/proc/{pid}/cgroup"), &e))).ok().flatten();
        let identity = Some(ProcessIdentity::read(pid));
        ProcessSnapshot {
            pid,
            taken_at_unix_ms,
            status,
            numa_maps,
            memory_by_node,
            threads,
            threads_by_node,
            cpuset,
            identity,
            unreadable,
        }
    }

    /// Resident bytes on all nodes (numastat -p's grand total).
    pub fn total_bytes(&self) -> u64 {
        self.memory_by_node.values().map(|c| c.total).fold(0, u64::saturating_add)
    }

    /// What the process may use: Cpus_allowed/Mems_allowed ∩ the cgroup's effective cpuset.
    pub fn allowed(&self) -> Allowed {
        let intersect = |a: Vec<u32>, b: Option<&Vec<u32>>| match b {
            Some(b) if !b.is_empty() => a.into_iter().filter(|x| b.contains(x)).collect(),
            _ => a,
        };
        let (cpus, mems) =
            self.status.as_ref().map(|s| (s.cpus_allowed.clone(), s.mems_allowed.clone())).unwrap_or_default();
        let cs = self.cpuset.as_ref();
        let cpus = if cpus.is_empty() {
            cs.map(|c| c.effective_cpus.clone()).unwrap_or_default()
        } else {
            intersect(cpus, cs.map(|c| &c.effective_cpus))
        };
        let mems = if mems.is_empty() {
            cs.map(|c| c.effective_mems.clone()).unwrap_or_default()
        } else {
            intersect(mems, cs.map(|c| &c.effective_mems))
        };
        Allowed { cpus, mems }
    }

    /// The process's name (`Name:` in status), or `?`.
    pub fn name(&self) -> &str {
        self.status.as_ref().map(|s| s.name.as_str()).unwrap_or("?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_this_machine_and_round_trip_through_json() {
        let sys = SystemSnapshot::read().unwrap();
        assert_eq!(sys.meminfo.len(), sys.topology.nodes.len());
        assert!(sys.meminfo.values().all(|m| m.get("MemTotal").is_some_and(|t| t > 0)));
        let json = serde_json::to_string(&sys).unwrap();
        let back: SystemSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sys);

        let me = ProcessSnapshot::read_with(std::process::id(), &sys.topology).unwrap();
        assert!(me.unreadable.is_empty(), "{:?}", me.unreadable);
        assert!(me.total_bytes() > 0);
        assert!(!me.threads.is_empty());
        assert!(!me.allowed().cpus.is_empty());
        let json = serde_json::to_string(&me).unwrap();
        let back: ProcessSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, me);
    }

    #[test]
    fn a_missing_process_is_one_clear_error() {
        let err = ProcessSnapshot::read(u32::MAX - 1).unwrap_err();
        assert!(err.to_string().contains("no process with PID"));
        let err = ProcessSnapshot::read_with_threads(u32::MAX - 1, Vec::new(), &mut CpusetMemo::default()).unwrap_err();
        assert!(err.to_string().contains("no process with PID"));
    }

    #[test]
    fn a_snapshot_with_the_callers_threads_reads_the_rest_as_read_with_does() {
        let topology = Topology::read().unwrap();
        let me = std::process::id();
        let full = ProcessSnapshot::read_with(me, &topology).unwrap();
        // Two threads the caller says it saw, one on a CPU with no node.
        let given = vec![
            ThreadPlacement { tid: me, name: String::new(), cpu: 0, node: topology.node_of_cpu(0) },
            ThreadPlacement { tid: me + 1, name: String::new(), cpu: 9999, node: None },
        ];
        let node0 = topology.node_of_cpu(0).expect("CPU 0 has a node");
        let snap = ProcessSnapshot::read_with_threads(me, given.clone(), &mut CpusetMemo::default()).unwrap();
        assert_eq!(snap.threads, given, "the caller's threads, not read again");
        assert_eq!(snap.threads_by_node, BTreeMap::from([(node0, 1)]));
        assert!(snap.unreadable.is_empty(), "{:?}", snap.unreadable);
        assert!(snap.total_bytes() > 0);
        assert_eq!(snap.status.as_ref().map(|s| &s.cpus_allowed), full.status.as_ref().map(|s| &s.cpus_allowed));
        assert_eq!(snap.cpuset, full.cpuset);
        assert_eq!(snap.identity, full.identity);
        assert_eq!(snap.allowed(), full.allowed());
    }
}
