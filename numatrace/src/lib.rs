//! numatrace: finds out why a process's threads and memory sit on different
//! NUMA nodes, and says what to do about it.
//!
//! Layout: `kernel` loads and attaches the eBPF programs and reads their
//! maps; `event` decodes their records; `aggregate` owns all interpretation;
//! `session` runs a live capture; `report` is the output model and its
//! renderings. `topology`, `tracefs`, `cpulist` read the machine.
pub mod aggregate;
pub mod attribution;
pub mod capture;
pub mod cli;
pub mod cpulist;
pub mod diff;
pub mod event;
pub mod export;
pub mod facts;
pub mod fixes;
pub mod inline_vec;
pub mod inspect;
pub mod kernel;
pub mod launcher;
pub mod migration_count;
pub mod node_counts;
pub mod prefetch;
pub mod privileges;
pub mod region_table;
pub mod report;
pub mod run_time;
pub mod session;
pub mod sink;
pub mod spike;
pub mod sysinfo;
pub mod target;
pub mod thread_table;
pub mod topology;
pub mod tracefs;
