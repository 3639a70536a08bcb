//! The parts of xtask that other crates use: the NUMA lab (a multi-node
//! kernel under QEMU), for the lab scenario tests of `numatrace-tests`, and
//! `dist` (the static binary and the .deb), for the test that installs it.
pub mod dist;
pub mod lab;
pub mod static_build;
