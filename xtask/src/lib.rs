//! The parts of xtask that other crates use: the NUMA lab (a multi-node
//! kernel under QEMU), for the lab scenario tests of `numatrace-tests`.
pub mod lab;
