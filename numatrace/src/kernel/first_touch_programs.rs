//! What the overhead budget (`live::budget`) needs of the programs it
//! measures and pauses: a capture's first-touch programs ([`Probes`]) or the
//! exporter's per-process first-touch counter (`machine_counters`).
use anyhow::Result;
use aya::Ebpf;

use super::Probes;

/// The programs a budget measures and pauses: a capture's ([`Probes`]) or
/// the exporter's machine counters.
pub trait FirstTouchPrograms {
    /// Run time and run count of the first-touch programs so far (they grow
    /// only while BPF run-time stats are on).
    fn first_touch_run_time(&self) -> (u64, u64);
    /// Run time of every other program of numatrace's (never paused).
    fn other_run_time(&self) -> u64;
    /// Detaches the first-touch programs; they stay loaded.
    fn pause_first_touch(&mut self) -> Result<()>;
    /// Attaches again what the pause detached.
    fn resume_first_touch(&mut self) -> Result<()>;
    /// Traces 1 in 2^shift regions (only asked of programs that sample regions).
    fn set_sampling(&mut self, shift: u32) -> Result<()>;
}

impl FirstTouchPrograms for Probes {
    fn first_touch_run_time(&self) -> (u64, u64) {
        Probes::first_touch_run_time(self)
    }

    fn other_run_time(&self) -> u64 {
        Probes::other_run_time(self)
    }

    fn pause_first_touch(&mut self) -> Result<()> {
        Probes::pause_first_touch(self)
    }

    fn resume_first_touch(&mut self) -> Result<()> {
        Probes::resume_first_touch(self)
    }

    fn set_sampling(&mut self, shift: u32) -> Result<()> {
        Probes::set_sampling(self, shift)
    }
}

/// Run time and run count of `programs` of `ebpf` so far (they grow only
/// while BPF run-time stats are on).
pub(crate) fn run_time_of(ebpf: &Ebpf, programs: &[&str]) -> (u64, u64) {
    programs
        .iter()
        .filter_map(|name| ebpf.program(name).and_then(|p| p.info().ok()))
        .fold((0, 0), |(ns, runs), info| (ns + info.run_time().as_nanos() as u64, runs + info.run_count()))
}

/// Run time of every loaded program of `ebpf` but `programs`.
pub(crate) fn run_time_of_others(ebpf: &Ebpf, programs: &[&str]) -> u64 {
    ebpf.programs()
        .filter(|(name, _)| !programs.contains(name))
        .filter_map(|(_, p)| p.info().ok())
        .map(|info| info.run_time().as_nanos() as u64)
        .sum()
}
