//! The aggregator alone: how many ring records per second one core folds
//! through `Aggregator::ingest_bytes`, with a realistic mix (first-touch and
//! hinting-fault runs over 16 threads x 8192 regions, task migrations): each
//! region has an owner thread that makes 7 of 8 of its events (threads
//! mostly touch their own memory), the rest come from any thread.
//! Run by `cargo xtask bench` (or `cargo bench -p numatrace-core --bench aggregator`);
//! prints one JSON line per variant: record by record through `ingest_bytes`,
//! then in batches through `ingest_batch` as the live drain does. It reports
//! rates and asserts nothing.
use std::{
    collections::BTreeMap,
    hint::black_box,
    time::{Duration, Instant},
};

use numatrace_common::{EventHeader, EventKind, FirstTouchEvent, HintingFaultEvent, TaskMigrationEvent};
use numatrace_core::{aggregate::Aggregator, event::Event, machine::Topology};

const THREADS: u32 = 16;
const REGIONS: u64 = 8192;
const DISTINCT_EVENTS: u64 = 1 << 20;
const MIN_TIME: Duration = Duration::from_secs(2);
/// Records per batch in the batch variant, as `session::drain` folds them.
const BATCH: usize = 256;

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn header(kind: EventKind, tid: u32, ts_ns: u64, cpu: u32) -> EventHeader {
    EventHeader { kind: kind as u32, cpu, ts_ns, tgid: 1000, tid: 1000 + tid }
}

/// The records, encoded exactly as the kernel writes them, back to back with their lengths.
fn records() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..DISTINCT_EVENTS)
        .map(|i| {
            let r = rng.next();
            let region_index = (r >> 16) % REGIONS;
            let region = 0x7f00_0000 + region_index;
            let tid = if r.is_multiple_of(8) {
                ((r >> 3) % u64::from(THREADS)) as u32
            } else {
                (region_index % u64::from(THREADS)) as u32
            };
            let cpu = ((r >> 8) % 4) as u32;
            let cpu_node = (cpu / 2) as u16;
            let ts = i * 1000;
            let event = match (r >> 40) % 20 {
                0 => Event::TaskMigration(TaskMigrationEvent {
                    header: header(EventKind::TaskMigration, tid, ts, cpu),
                    orig_cpu: cpu as i32,
                    dest_cpu: (cpu ^ 1) as i32,
                }),
                1..=3 => Event::HintingFault(HintingFaultEvent {
                    header: header(EventKind::HintingFault, tid, ts, cpu),
                    region,
                    last_ts_ns: ts + 500,
                    faults: 4,
                    pages: 4,
                    migrated_pages: 0,
                    cpu_node,
                    mem_node: ((r >> 50) % 2) as u16,
                    local: u32::from(((r >> 50) % 2) as u16 == cpu_node),
                    stack: 0,
                }),
                _ => Event::FirstTouch(FirstTouchEvent {
                    header: header(EventKind::FirstTouch, tid, ts, cpu),
                    region,
                    pages: 1 + (r >> 52) % 512,
                    last_ts_ns: ts + 500,
                    cpu_node,
                    page_node: ((r >> 61) % 2) as u16,
                    stack: 0,
                }),
            };
            event.encode().to_vec()
        })
        .collect()
}

/// Folds `records` repeatedly for at least [`MIN_TIME`] with `fold` (one pass
/// per call) after one warm-up pass: every thread and region exists before
/// timing, as in a long capture. Returns (events, seconds).
fn time_passes(records: &[Vec<u8>], mut fold: impl FnMut(&[Vec<u8>])) -> Timing {
    fold(records);
    let cpu_started = thread_cpu_seconds();
    let started = Instant::now();
    let mut events = 0u64;
    while started.elapsed() < MIN_TIME {
        fold(records);
        events += records.len() as u64;
    }
    Timing { events, seconds: started.elapsed().as_secs_f64(), cpu_seconds: thread_cpu_seconds() - cpu_started }
}

/// What one variant did and how long it took.
struct Timing {
    events: u64,
    /// Wall time.
    seconds: f64,
    /// This thread's CPU time: on a shared machine, the time it was not descheduled.
    cpu_seconds: f64,
}

fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    if ok { ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9 } else { f64::NAN }
}

fn line(bench: &str, t: &Timing, agg: &Aggregator) -> serde_json::Value {
    let Timing { events, seconds, cpu_seconds } = *t;
    serde_json::json!({
        "bench": bench,
        "events": events,
        "seconds": seconds,
        "events_per_s": events as f64 / seconds,
        "ns_per_event": seconds * 1e9 / events as f64,
        "cpu_seconds": cpu_seconds,
        "events_per_cpu_s": events as f64 / cpu_seconds,
        "threads": THREADS,
        "regions": REGIONS,
        "decode_errors": agg.decode_errors,
    })
}

fn main() {
    // `-- record` or `-- batch` runs one variant alone (for a profiler).
    let only: Option<String> = std::env::args().skip(1).find(|a| a == "record" || a == "batch");
    let records = records();
    let topology = Topology::synthetic(&[vec![0, 1], vec![2, 3]]);

    // One record at a time (the first line; `cargo xtask bench` reads it).
    if only.as_deref() != Some("batch") {
        let mut agg = Aggregator::new(topology.clone(), BTreeMap::new());
        let timing = time_passes(&records, |records| {
            for r in records {
                black_box(agg.ingest_bytes(r));
            }
        });
        println!("{}", line("aggregator", &timing, &agg));
    }
    if only.as_deref() == Some("record") {
        return;
    }

    // As the live drain does it: decode a batch of records, then fold it with prefetching.
    let mut agg = Aggregator::new(topology, BTreeMap::new());
    let mut batch: Vec<Event> = Vec::with_capacity(BATCH);
    let timing = time_passes(&records, |records| {
        for chunk in records.chunks(BATCH) {
            batch.clear();
            for r in chunk {
                match Event::decode(r) {
                    Ok(event) => batch.push(event),
                    Err(_) => agg.count_undecodable(),
                }
            }
            agg.ingest_batch(black_box(&batch));
        }
    });
    println!("{}", line("aggregator_batch", &timing, &agg));
}
