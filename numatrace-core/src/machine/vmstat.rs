//! The NUMA balancer's and page migration's counters from /proc/vmstat.
use std::collections::BTreeMap;

use anyhow::{Context, Result};

/// True for the /proc/vmstat counters that tell about NUMA placement:
/// `numa_*` (hinting faults, PTE updates, pages migrated by the balancer,
/// and the system-wide hit/miss sums), `pgmigrate_*`, `thp_migration_*`,
/// `pgpromote_*`/`pgdemote_*` (memory tiering).
pub fn is_numa_counter(name: &str) -> bool {
    ["numa_", "pgmigrate_", "thp_migration_", "pgpromote_", "pgdemote_", "compact_"].iter().any(|p| name.starts_with(p))
}

/// Reads the NUMA-related /proc/vmstat counters.
pub fn read() -> Result<BTreeMap<String, u64>> {
    let all = procfs::vmstat().context("reading /proc/vmstat")?;
    Ok(all.into_iter().filter(|(k, _)| is_numa_counter(k)).map(|(k, v)| (k, v.max(0) as u64)).collect())
}

/// Per-second rates between two readings.
pub fn rates(now: &BTreeMap<String, u64>, earlier: &BTreeMap<String, u64>, seconds: f64) -> BTreeMap<String, f64> {
    now.iter()
        .map(|(k, &v)| {
            let then = earlier.get(k).copied().unwrap_or(v);
            (k.clone(), if seconds > 0.0 { v.saturating_sub(then) as f64 / seconds } else { 0.0 })
        })
        .collect()
}
