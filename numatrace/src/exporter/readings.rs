//! What one refresh read: the machine's NUMA state, and how long reading it
//! took. A scrape encodes the last complete one, so it is cheap and every
//! series in it comes from the same moment.
use std::time::{Duration, Instant};

use anyhow::Result;
use numatrace_core::machine::SystemSnapshot;

/// One complete refresh.
#[derive(Debug)]
pub struct Readings {
    /// Nodes (meminfo, numastat), /proc/vmstat and the NUMA sysctls.
    pub system: SystemSnapshot,
    /// How long reading all of it took.
    pub took: Duration,
}

impl Readings {
    /// Reads the machine. Fails only when the node topology cannot be read.
    pub fn read() -> Result<Readings> {
        let started = Instant::now();
        let system = SystemSnapshot::read()?;
        Ok(Readings { system, took: started.elapsed() })
    }
}
