//! Types shared by the kernel programs (`numatrace-ebpf`) and the userspace
//! aggregator (`numatrace`). Every type that crosses the kernel/user boundary
//! is defined here, once, as `#[repr(C)]`, so that neither side copies a
//! layout by hand.
//!
//! Event kinds carry stable numeric ids ([`EventKind`]): a capture file written
//! today must decode tomorrow, so ids are never reused or renumbered.
#![no_std]

pub mod event;
pub mod layout;
pub mod maps;

pub use event::*;
pub use layout::*;
pub use maps::*;
