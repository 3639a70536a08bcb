//! What one refresh read: the machine's NUMA state, its largest processes,
//! and what reading them cost. A scrape encodes the last complete one, so it
//! is cheap and every series in it comes from the same refresh.
use std::time::{Duration, Instant};

use anyhow::Result;
use numatrace_core::{machine::SystemSnapshot, system::Sample};

use super::processes::{MigrationTotals, ProcessTable};
use crate::system::{
    By, SystemReader,
    placements::{PlacementOptions, ReadCost},
};

/// One complete refresh.
#[derive(Debug)]
pub struct Readings {
    /// Nodes (meminfo, numastat), /proc/vmstat and the NUMA sysctls.
    pub system: SystemSnapshot,
    /// The largest processes, and the rest summed.
    pub processes: ProcessTable,
    /// What this refresh spent on numa_maps.
    pub numa_maps: ReadCost,
    /// How long the whole refresh took.
    pub took: Duration,
    /// The share of the interval before this refresh the remote first-touch
    /// counter was attached (1 unless `--overhead-budget` paused it).
    pub first_touch_counted_ratio: f64,
}

/// Reads the machine every refresh, keeping what the next one needs: the
/// previous sample (where threads ran in between) and the counters.
pub struct Refresher {
    reader: SystemReader,
    previous: Option<Sample>,
    totals: MigrationTotals,
    top: usize,
    by: By,
}

/// numa_maps walks a process's page tables (about 1 ms per GiB resident):
/// a refresh stops reading them after this long, the largest processes
/// first, and the others wait for a later refresh.
const NUMA_MAPS_BUDGET: Duration = Duration::from_millis(50);

/// Each process's numa_maps is read at most once per this many refreshes.
/// Where memory sits changes slowly (new allocations, migrations); where
/// threads run is read every refresh. Four refreshes let the budget reach
/// four times as many processes.
const NUMA_MAPS_EVERY: u32 = 4;

impl Refresher {
    /// A refresher for `top` processes (or cgroups, `by`) of their own, refreshed every `interval`.
    pub fn new(interval: Duration, top: usize, by: By) -> Refresher {
        let options = PlacementOptions { period: interval * NUMA_MAPS_EVERY, budget: Some(NUMA_MAPS_BUDGET) };
        Refresher { reader: SystemReader::new(options), previous: None, totals: MigrationTotals::default(), top, by }
    }

    /// Reads the kernel's per-process counts with every refresh from now on.
    pub fn count_in_kernel(&mut self, counters: crate::kernel::machine_counters::ProcessCounters) {
        self.reader.count_in_kernel(counters);
    }

    /// Reads the machine and its processes. Fails only when the node
    /// topology or /proc cannot be listed; a process that exits meanwhile
    /// is left out.
    pub fn refresh(&mut self) -> Result<Readings> {
        let started = Instant::now();
        let now = self.reader.sample()?;
        // The first refresh has no interval: its rates are zero, its
        // threads weigh the same.
        let view = self.reader.view(self.previous.as_ref().unwrap_or(&now), &now);
        let processes = self.totals.table(&view, self.top, self.by);
        let readings = Readings {
            system: now.system.clone(),
            processes,
            numa_maps: self.reader.placement_cost(),
            took: started.elapsed(),
            first_touch_counted_ratio: 1.0,
        };
        self.previous = Some(now);
        Ok(readings)
    }
}
