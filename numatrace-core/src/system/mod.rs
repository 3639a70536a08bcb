//! The whole machine at a glance, for `numatrace top` and the exporter:
//! per node (CPUs, memory, allocation counter rates) and per process (memory
//! per node, where its threads ran, the share of its memory remote to them,
//! cross-node moves, a one-word likely cause).
//!
//! Pure: the facts come in as [`Sample`]s (read by `numatrace/src/system/`
//! from /proc and /sys) and [`ProcessSnapshot`](crate::machine::ProcessSnapshot)s
//! (numa_maps, read less often than samples because it walks page tables);
//! [`SystemView::build`] turns two samples an interval apart into rows.
pub mod sample;
pub mod tag;
pub mod view;

pub use self::{
    sample::{KernelCounts, ProcessSample, Sample, ThreadSample},
    tag::Tag,
    view::{CgroupRow, HostFinding, NodeRow, ProcessRow, SCHEMA, SystemView},
};

#[cfg(test)]
mod tests;
