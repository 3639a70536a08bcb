//! A live capture: the target, the session that drains the kernel's ring
//! into the aggregator, spike rings, and the privileges it needs.
pub mod privileges;
pub mod session;
pub mod spike;
pub mod target;
