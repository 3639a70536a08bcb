//! Workloads with ground truth. Each prints one JSON line on stdout saying
//! what it did (pages first-touched per thread, CPU hops, nodes), so that a
//! test can compare numatrace's report with it.
pub mod drift;
pub mod memory;
pub mod numa;
pub mod placement;
pub mod resident;
pub mod scenarios;

use std::ffi::OsString;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "numatrace-workload",
    about = "Workloads with known NUMA behaviour, for numatrace's demo, tests and lab. Each prints one JSON line saying what it did (pages first-touched per thread, CPU hops, nodes).",
    after_help = "Example: sudo numatrace -- numatrace example init-thread --mib 64 --workers 2 --seconds 2"
)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Each of THREADS threads first-touches PAGES fresh 4 KiB pages (huge pages off).
    Touch {
        #[arg(long, default_value_t = 1024)]
        pages: u64,
        #[arg(long, default_value_t = 1)]
        threads: u32,
        /// Repeat the whole thing this many times with fresh memory.
        #[arg(long, default_value_t = 1)]
        rounds: u32,
        /// After each page touch, hop to the next allowed CPU every HOP_EVERY pages (0: never).
        #[arg(long, default_value_t = 0)]
        hop_every: u64,
        /// Touch every STRIDE-th page of a larger buffer (a stride of 513 puts each
        /// touch in a new 2 MiB region, so no two faults aggregate in the kernel).
        #[arg(long, default_value_t = 1)]
        stride: u64,
        /// Wait this many milliseconds before touching (time to attach with --pid).
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Then wait (at most a minute) until this file exists: a tracer
        /// attaching with --pid says when it is ready by creating it.
        #[arg(long, value_name = "PATH")]
        go_file: Option<std::path::PathBuf>,
    },
    /// Under `numatrace --load-generator`: make the kernel write EVENTS_PER_SECOND
    /// synthetic events for SECONDS (THREADS threads calling getppid(2), 64 events a call).
    Flood {
        #[arg(long, default_value_t = 1_000_000)]
        events_per_second: u64,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1)]
        threads: u32,
        /// First wait (at most a minute) until this file exists.
        #[arg(long, value_name = "PATH")]
        go_file: Option<std::path::PathBuf>,
    },
    /// THREADS short-lived threads, one after another, each running MS
    /// milliseconds of CPU before it exits (shorter than the run-time sampling).
    Spin {
        #[arg(long, default_value_t = 4)]
        threads: u32,
        #[arg(long, default_value_t = 30)]
        ms: u64,
    },
    /// One thread hops between CPUs TIMES times by changing its own affinity.
    Hop {
        #[arg(long, default_value_t = 10)]
        times: u32,
        #[arg(long, default_value_t = 1)]
        threads: u32,
        /// Then stay alive this many seconds, asleep (for a scraper to see the process).
        #[arg(long, default_value_t = 0.0)]
        hold: f64,
    },
    /// Init-thread first touch: a thread named `init`, on the first node,
    /// touches MIB of memory; WORKERS threads (`worker-1`, ...) pinned to the
    /// last node then use it (what `numatrace demo` traces).
    InitThread {
        #[arg(long, default_value_t = 64)]
        mib: u64,
        #[arg(long, default_value_t = 2)]
        workers: u32,
        /// How long the workers keep using the memory.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Lab scenario 2: first-touch MIB on the first node, then move this thread to the last node and keep using it.
    Migrated {
        #[arg(long, default_value_t = 64)]
        mib: u64,
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// Lab scenario 3: on the first node, first-touch that node's free memory plus EXTRA_MIB (the rest spills).
    Spill {
        #[arg(long, default_value_t = 64)]
        extra_mib: u64,
    },
    /// Lab scenario 4: first-touch MIB wherever the inherited CPU affinity and memory policy put it (run under numactl).
    Place {
        #[arg(long, default_value_t = 64)]
        mib: u64,
    },
    /// Lab scenario 5: memory on the last node, thread started on the first and then unpinned, for the NUMA balancer.
    Balance {
        #[arg(long, default_value_t = 64)]
        mib: u64,
        #[arg(long, default_value_t = 6.0)]
        seconds: f64,
        /// Wait for this file to exist after the setup, before unpinning (for a tracer attaching by pid).
        #[arg(long)]
        go_file: Option<std::path::PathBuf>,
    },
    /// Lab scenario 6 with an outside mover: first-touch MIB on the first node and keep using it for SECONDS (run `migratepages` on it meanwhile).
    Hold {
        #[arg(long, default_value_t = 64)]
        mib: u64,
        #[arg(long, default_value_t = 4.0)]
        seconds: f64,
        /// Keep going until this file exists instead (at most a minute).
        #[arg(long)]
        stop_file: Option<std::path::PathBuf>,
    },
    /// Lab scenario 6: first-touch MIB on the first node, then move half with move_pages(2) and half with mbind(2).
    Explicit {
        #[arg(long, default_value_t = 64)]
        mib: u64,
    },
    /// Shared data: the main thread first-touches MIB on the first node; a worker on the first node and one on the last use all of it for SECONDS.
    Shared {
        #[arg(long, default_value_t = 32)]
        mib: u64,
        #[arg(long, default_value_t = 4.0)]
        seconds: f64,
    },
    /// First-touch MIB (plus HEAP_KIB of heap, STACK_KIB of stack and HUGE_MIB of hugetlb pages) wherever the inherited policy puts it, print where, then sleep SECONDS without allocating (run under numactl; for numastat -p comparisons).
    Resident {
        #[arg(long, default_value_t = 16)]
        mib: u64,
        #[arg(long, default_value_t = 512)]
        heap_kib: u64,
        #[arg(long, default_value_t = 256)]
        stack_kib: u64,
        /// Huge pages from the reserved hugetlb pool (a multiple of the huge page size).
        #[arg(long, default_value_t = 0)]
        huge_mib: u64,
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
    },
}

/// Runs the workload named by `args` (args[0] is the program name).
pub fn main_from_args<I: IntoIterator<Item = OsString>>(args: I) -> Result<()> {
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| e.exit());
    match cli.scenario {
        Scenario::Touch { pages, threads, rounds, hop_every, stride, delay_ms, go_file } => {
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
            if let Some(go) = go_file {
                drift::wait_for_file(&go, std::time::Duration::from_secs(60))?;
            }
            scenarios::touch(pages, threads, rounds, hop_every, stride.max(1))
        }
        Scenario::Hop { times, threads, hold } => {
            scenarios::hop(times, threads)?;
            std::thread::sleep(std::time::Duration::from_secs_f64(hold.max(0.0)));
            Ok(())
        }
        Scenario::Spin { threads, ms } => scenarios::spin(threads, ms),
        Scenario::Flood { events_per_second, seconds, threads, go_file } => {
            if let Some(go) = go_file {
                drift::wait_for_file(&go, std::time::Duration::from_secs(60))?;
            }
            scenarios::flood(
                events_per_second,
                seconds,
                threads,
                u64::from(numatrace_common::LOAD_GENERATOR_EVENTS_PER_CALL),
            )
        }
        Scenario::InitThread { mib, workers, seconds } => scenarios::init_thread(mib, workers, seconds),
        Scenario::Migrated { mib, seconds } => drift::migrated(mib, seconds),
        Scenario::Spill { extra_mib } => drift::spill(extra_mib),
        Scenario::Place { mib } => drift::place(mib),
        Scenario::Balance { mib, seconds, go_file } => drift::balance(mib, seconds, go_file.as_deref()),
        Scenario::Explicit { mib } => drift::explicit(mib),
        Scenario::Hold { mib, seconds, stop_file } => drift::hold(mib, seconds, stop_file.as_deref()),
        Scenario::Shared { mib, seconds } => drift::shared(mib, seconds),
        Scenario::Resident { mib, heap_kib, stack_kib, huge_mib, seconds } => {
            resident::resident(mib, heap_kib, stack_kib, huge_mib, seconds)
        }
    }
}
