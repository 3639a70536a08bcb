//! Reads the whole machine for `numatrace top` (and the exporter): a
//! [`Sample`] of every process each refresh (cheap: stat files) and, bounded,
//! each process's numa_maps ([`placements`]); the core's
//! [`SystemView`] makes the rows.
pub mod placements;
pub mod processes;

use std::{collections::BTreeSet, time::Duration};

use anyhow::{Context, Result};
use numatrace_core::{
    machine::SystemSnapshot,
    system::{Sample, SystemView},
};

use self::{
    placements::{PlacementOptions, Placements},
    processes::ProcessReader,
};
use crate::kernel::machine_counters::ProcessCounters;

/// Rows (top) or series (the exporter) per process or per cgroup (`--by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Process,
    Cgroup,
}

/// Reads samples of the machine and keeps what outlives one refresh: each
/// process's cgroup and its latest numa_maps.
pub struct SystemReader {
    processes: ProcessReader,
    placements: Placements,
    /// The kernel's per-process counts, when attached.
    kernel: Option<ProcessCounters>,
}

impl SystemReader {
    pub fn new(options: PlacementOptions) -> SystemReader {
        SystemReader { processes: ProcessReader::default(), placements: Placements::new(options), kernel: None }
    }

    /// Reads the kernel's per-process counts with every sample from now on.
    pub fn count_in_kernel(&mut self, counters: ProcessCounters) {
        self.kernel = Some(counters);
    }

    /// One sample of the machine and its processes; reads the numa_maps the
    /// bound allows. A failed read of the kernel's counts leaves them out of
    /// this sample (its rows fall back to /proc), it does not fail it.
    pub fn sample(&mut self) -> Result<Sample> {
        let system = SystemSnapshot::read().context("reading the machine's NUMA state")?;
        let processes = self.processes.read().context("listing the processes in /proc")?;
        let kernel_counts = self.kernel.as_mut().and_then(|counters| {
            let listed: BTreeSet<u32> = processes.iter().map(|p| p.pid).collect();
            counters.read(&listed).ok()
        });
        self.placements.refresh(&processes, &system.topology);
        let counted = self.kernel.as_ref().map(|c| c.counted());
        Ok(Sample {
            system,
            processes,
            kernel_counts,
            first_touches_counted: counted.is_some_and(|c| c.first_touches),
            hinting_faults_counted: counted.is_some_and(|c| c.hinting_faults),
        })
    }

    /// The rows of the interval between two samples.
    pub fn view(&self, earlier: &Sample, now: &Sample) -> SystemView {
        SystemView::build(earlier, now, self.placements.snapshots(), self.placements.cannot_see())
    }

    /// What reading numa_maps cost at the last sample.
    pub fn placement_cost(&self) -> placements::ReadCost {
        self.placements.last_cost()
    }
}

/// Two samples `interval` apart, and their view (`top --once`): every
/// process's numa_maps is read once, at the second sample; with `kernel`,
/// the kernel's per-process counts too.
pub fn once(interval: Duration, kernel: Option<ProcessCounters>) -> Result<SystemView> {
    let mut reader = SystemReader::new(PlacementOptions::unbounded());
    reader.kernel = kernel;
    reader.placements.pause(true);
    let earlier = reader.sample()?;
    std::thread::sleep(interval);
    reader.placements.pause(false);
    let now = reader.sample()?;
    Ok(reader.view(&earlier, &now))
}
