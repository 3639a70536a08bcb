//! The kernel's own accounting of BPF program run time: with run-time stats
//! on (`BPF_ENABLE_STATS`, the same switch as `kernel.bpf_stats_enabled=1`),
//! every program has a cumulative `run_time_ns` and `run_cnt`. Stats are on
//! only while a sampler lives, because they add two clock reads per run.
//!
//! Only the tracer's own programs count: those whose ids its open file
//! descriptors name (`prog_id:` in /proc/PID/fdinfo, for program and link
//! descriptors). On a shared machine other people's tracers load programs
//! while a run is sampled, and their run time must not be added in.
use std::{
    collections::{BTreeMap, BTreeSet},
    os::fd::OwnedFd,
};

use anyhow::{Context, Result};
use aya::{programs::loaded_programs, sys::Stats};

/// One program's totals over a run.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ProgramStats {
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

impl ProgramStats {
    /// Mean nanoseconds per run (the kernel keeps sums only).
    pub fn ns_per_run(&self) -> Option<f64> {
        (self.run_cnt > 0).then(|| self.run_time_ns as f64 / self.run_cnt as f64)
    }
}

/// Samples the programs loaded after it started (the traced run's), so the
/// last sample before they are unloaded holds their totals.
pub struct StatsSampler {
    _stats_on: OwnedFd,
    before: BTreeSet<u32>,
    latest: BTreeMap<u32, (String, ProgramStats)>,
    /// Program ids the tracer process held open at some sample.
    owned: BTreeSet<u32>,
}

impl StatsSampler {
    pub fn start() -> Result<StatsSampler> {
        let stats_on =
            aya::sys::enable_stats(Stats::RunTime).context("turning on BPF run-time stats (BPF_ENABLE_STATS)")?;
        let before = loaded_programs().filter_map(|p| p.ok()).map(|p| p.id()).collect();
        Ok(StatsSampler { _stats_on: stats_on, before, latest: BTreeMap::new(), owned: BTreeSet::new() })
    }

    /// Reads the current totals of every program that is new since start, and
    /// which programs the tracer (`owner`) holds.
    pub fn sample(&mut self, owner: i32) {
        self.owned.extend(held_program_ids(owner));
        for info in loaded_programs().filter_map(|p| p.ok()) {
            if self.before.contains(&info.id()) {
                continue;
            }
            let name = info.name_as_str().unwrap_or("?").to_string();
            let stats = ProgramStats { run_cnt: info.run_count(), run_time_ns: info.run_time().as_nanos() as u64 };
            self.latest.insert(info.id(), (name, stats));
        }
    }

    /// Totals per program name of the tracer's programs (programs loaded but
    /// never run are left out). When no sample saw the tracer hold a program
    /// (it ran too briefly), every program new since start is counted.
    pub fn finish(self) -> BTreeMap<String, ProgramStats> {
        self.totals()
    }

    /// The same totals as of the last sample, the sampler kept (a window's
    /// figures are the difference of two).
    pub fn totals(&self) -> BTreeMap<String, ProgramStats> {
        let mut by_name: BTreeMap<String, ProgramStats> = BTreeMap::new();
        for (id, (name, stats)) in &self.latest {
            if stats.run_cnt == 0 || !self.owned.is_empty() && !self.owned.contains(id) {
                continue;
            }
            let entry = by_name.entry(name.clone()).or_default();
            entry.run_cnt += stats.run_cnt;
            entry.run_time_ns += stats.run_time_ns;
        }
        by_name
    }
}

/// The BPF program ids a process holds through its file descriptors.
fn held_program_ids(pid: i32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|text| {
            text.lines().find_map(|l| l.strip_prefix("prog_id:").and_then(|v| v.trim().parse::<u32>().ok()))
        })
        .collect()
}
