//! `numatrace inspect`: a snapshot diagnosis without eBPF. Reads what an
//! expert reads (numactl --hardware, numastat -m/-p, numa_maps, node
//! counters, cgroup cpusets, sysctls) and judges it into findings with fixes.
pub mod findings;
pub mod model;
pub mod text;

use anyhow::{Context, Result};

pub use self::{
    findings::{Finding, Severity},
    model::InspectReport,
};
use crate::machine::{ProcessSnapshot, SystemSnapshot};

/// Takes the snapshots and assembles the report.
pub fn inspect(pid: Option<u32>, interval: Option<std::time::Duration>, mappings: usize) -> Result<InspectReport> {
    let earlier = match interval {
        Some(d) => {
            let first = SystemSnapshot::read().context("reading the machine's NUMA state")?;
            std::thread::sleep(d);
            Some(first)
        }
        None => None,
    };
    let system = SystemSnapshot::read().context("reading the machine's NUMA state")?;
    let process = match pid {
        Some(pid) => Some(ProcessSnapshot::read_with(pid, &system.topology)?),
        None => None,
    };
    Ok(InspectReport::build(&system, earlier.as_ref(), process.as_ref(), mappings))
}
