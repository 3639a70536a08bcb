//! A live capture: the target, the session that drains the kernel's ring
//! into the aggregator, and spike rings.
pub mod budget;
pub mod cgroup;
pub mod processes;
pub mod progress;
pub mod record;
pub mod session;
pub mod snapshots;
pub mod spike;
pub mod stacks;
pub mod target;
pub mod tree;
