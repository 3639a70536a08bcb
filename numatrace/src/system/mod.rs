//! Reads the whole machine for `numatrace top` (and the exporter): a
//! [`Sample`] of every process each refresh (cheap: stat files) and, bounded,
//! each process's numa_maps ([`placements`]); the core's
//! [`SystemView`] makes the rows.
pub mod placements;
pub mod processes;

use std::time::Duration;

use anyhow::{Context, Result};
use numatrace_core::{
    machine::SystemSnapshot,
    system::{Sample, SystemView},
};

use self::{
    placements::{PlacementOptions, Placements},
    processes::ProcessReader,
};

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
}

impl SystemReader {
    pub fn new(options: PlacementOptions) -> SystemReader {
        SystemReader { processes: ProcessReader::default(), placements: Placements::new(options) }
    }

    /// One sample of the machine and its processes; reads the numa_maps the bound allows.
    pub fn sample(&mut self) -> Result<Sample> {
        let system = SystemSnapshot::read().context("reading the machine's NUMA state")?;
        let processes = self.processes.read().context("listing the processes in /proc")?;
        self.placements.refresh(&processes, &system.topology);
        Ok(Sample { system, processes })
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
/// process's numa_maps is read once, at the second sample.
pub fn once(interval: Duration) -> Result<SystemView> {
    let mut reader = SystemReader::new(PlacementOptions::unbounded());
    reader.placements.pause(true);
    let earlier = reader.sample()?;
    std::thread::sleep(interval);
    reader.placements.pause(false);
    let now = reader.sample()?;
    Ok(reader.view(&earlier, &now))
}
