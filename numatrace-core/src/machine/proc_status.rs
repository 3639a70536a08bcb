//! `/proc/<pid>/status` (name, Cpus_allowed, Mems_allowed) and
//! `/proc/<pid>/task/*/stat` (each thread's current CPU), through procfs.
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What /proc/<pid>/status says about placement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub name: String,
    /// `Cpus_allowed_list`: CPUs the process may run on (affinity ∩ cpuset).
    pub cpus_allowed: Vec<u32>,
    /// `Mems_allowed_list`: nodes the process may allocate from (cpuset).
    pub mems_allowed: Vec<u32>,
    /// Resident set size in bytes (`VmRSS`).
    pub rss_bytes: u64,
}

/// One thread and where it runs now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadPlacement {
    pub tid: u32,
    pub name: String,
    /// The CPU it last ran on (`processor` in its stat).
    pub cpu: u32,
    /// That CPU's node, when the CPU is known to the topology.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
}

fn ranges_to_list(ranges: &[(u32, u32)]) -> Vec<u32> {
    let mut out: Vec<u32> = ranges.iter().flat_map(|&(a, b)| a..=b.max(a)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl ProcessStatus {
    pub fn read(pid: u32) -> Result<ProcessStatus> {
        let status = procfs::process::Process::new(pid as i32)
            .and_then(|p| p.status())
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        Ok(ProcessStatus {
            name: status.name,
            cpus_allowed: status.cpus_allowed_list.as_deref().map(ranges_to_list).unwrap_or_default(),
            mems_allowed: status.mems_allowed_list.as_deref().map(ranges_to_list).unwrap_or_default(),
            rss_bytes: status.vmrss.unwrap_or(0).saturating_mul(1024),
        })
    }
}

/// The threads of a process and the CPU each last ran on. Threads that exit
/// while we read are left out; `node` is filled by `node_of_cpu`.
pub fn read_threads(pid: u32, node_of_cpu: impl Fn(u32) -> Option<u32> + Sync) -> Result<Vec<ThreadPlacement>> {
    let process = procfs::process::Process::new(pid as i32).with_context(|| format!("opening /proc/{pid}"))?;
    let tasks: Vec<_> = process.tasks().with_context(|| format!("listing /proc/{pid}/task"))?.flatten().collect();
    // One stat file per thread: read in parallel for processes with thousands.
    let mut out: Vec<ThreadPlacement> = super::per_thread::map(&tasks, |task| {
        let stat = task.stat().ok()?;
        let cpu = stat.processor.and_then(|c| u32::try_from(c).ok())?;
        Some(ThreadPlacement { tid: task.tid as u32, name: stat.comm, cpu, node: node_of_cpu(cpu) })
    })
    .into_iter()
    .flatten()
    .collect();
    out.sort_by_key(|t| t.tid);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let status = ProcessStatus::read(me).unwrap();
        assert!(!status.cpus_allowed.is_empty());
        assert!(!status.mems_allowed.is_empty());
        assert!(status.rss_bytes > 0);
        let threads = read_threads(me, |_| Some(0)).unwrap();
        assert!(threads.iter().any(|t| t.tid == me));
        assert!(threads.iter().all(|t| status.cpus_allowed.contains(&t.cpu)));
        assert_eq!(ranges_to_list(&[(0, 1), (4, 4), (1, 2)]), vec![0, 1, 2, 4]);
    }
}
