//! numatrace's logic, apart from the kernel: everything from a decoded event
//! to a fix and a report. No aya, tokio or clap here, and no root needed to
//! test it.
//!
//! The data flows through the modules in this order:
//! - `event`: the kernel's records, decoded (layouts in `numatrace-common`).
//! - `aggregate`: the fold of events into per-thread and per-region tables.
//! - `attribution`: the causes of remote memory, their magnitude and evidence;
//!   `fixes`: the exact commands for each cause (launcher-aware).
//! - `report`: the output model and its text rendering; `facts` are what a
//!   session knew at its start and end, replayed into a report.
//! - `stacks`: the call stacks of first touches (`--stacks`), as a capture
//!   stores them; their sites per cause are in `attribution`.
//! - `capture`: capture files (format, writer, reader) and the event sink
//!   trait; `export`: timelines and other formats; `diff`: before/after.
//!
//! Beside the flow: `machine` (topology, cpu lists, /proc and /sys
//! snapshots), `inspect` (the numastat walk, automated), `system` (the
//! whole machine per node and per process, for `top`), `check` (what
//! this machine lets numatrace trace, and the verdict), and
//! `kernel_status` (what the kernel side counted and attached).
pub mod aggregate;
pub mod attribution;
pub mod capture;
pub mod check;
pub mod diff;
pub mod event;
pub mod export;
pub mod facts;
pub mod fixes;
pub mod inspect;
pub mod kernel_status;
pub mod machine;
pub mod report;
pub mod sampling;
pub mod stacks;
pub mod system;
