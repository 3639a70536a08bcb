//! numatrace: finds out why a process's threads and memory sit on different
//! NUMA nodes, and says what to do about it.
//!
//! This crate is the live side; the logic from a decoded event to a fix and
//! a report is in `numatrace-core`. The data flows:
//! - `kernel`: loads the eBPF programs (built by build.rs), attaches them
//!   source by source with fallbacks (checking privileges first), reads their
//!   maps and tracefs.
//! - `live`: a live capture: the target (a pid or a command started
//!   stopped), the session's event loop feeding the core's aggregator,
//!   spike rings.
//! - `symbolize`: `--stacks` addresses to functions and lines (blazesym),
//!   at the end of a capture or for `report --symbols`.
//! - `system`: the whole machine from /proc and /sys, every process
//!   (`numatrace top`, the exporter), numa_maps read in a bounded way.
//! - `top`: `numatrace top`'s terminal UI over `system`.
//! - `exporter`: `numatrace exporter`, an OpenMetrics endpoint that reads
//!   `system` in the background.
//! - `cli`: every clap definition and the dispatch to the above.
pub mod cli;
pub mod exporter;
pub mod kernel;
pub mod live;
pub mod symbolize;
pub mod system;
pub mod top;
