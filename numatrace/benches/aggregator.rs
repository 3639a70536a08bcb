//! The aggregator alone: how many ring records per second one core folds
//! through `Aggregator::ingest_bytes`, with a realistic mix (first-touch and
//! hinting-fault runs over 16 threads x 8192 regions, task migrations): each
//! region has an owner thread that makes 7 of 8 of its events (threads
//! mostly touch their own memory), the rest come from any thread.
//! Run by `cargo xtask bench` (or `cargo bench -p numatrace --bench aggregator`);
//! prints one JSON line. It reports a rate and asserts nothing.
use std::{
    collections::BTreeMap,
    hint::black_box,
    time::{Duration, Instant},
};

use numatrace::{aggregate::Aggregator, event::Event, topology::Topology};
use numatrace_common::{EventHeader, EventKind, FirstTouchEvent, HintingFaultEvent, TaskMigrationEvent};

const THREADS: u32 = 16;
const REGIONS: u64 = 8192;
const DISTINCT_EVENTS: u64 = 1 << 20;
const MIN_TIME: Duration = Duration::from_secs(2);

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
            let tid = if r % 8 == 0 { ((r >> 3) % u64::from(THREADS)) as u32 } else { (region_index % u64::from(THREADS)) as u32 };
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
                    _pad: 0,
                }),
                _ => Event::FirstTouch(FirstTouchEvent {
                    header: header(EventKind::FirstTouch, tid, ts, cpu),
                    region,
                    pages: 1 + (r >> 52) % 512,
                    last_ts_ns: ts + 500,
                    cpu_node,
                    page_node: ((r >> 61) % 2) as u16,
                    _pad: 0,
                }),
            };
            event.encode().to_vec()
        })
        .collect()
}

fn main() {
    let records = records();
    let topology = Topology::synthetic(&[vec![0, 1], vec![2, 3]]);
    let mut agg = Aggregator::new(topology, BTreeMap::new());
    // Warm up: every thread and region exists before timing, as in a long capture.
    for r in &records {
        black_box(agg.ingest_bytes(r));
    }
    let started = Instant::now();
    let mut events = 0u64;
    while started.elapsed() < MIN_TIME {
        for r in &records {
            black_box(agg.ingest_bytes(r));
        }
        events += records.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "bench": "aggregator",
            "events": events,
            "seconds": seconds,
            "events_per_s": events as f64 / seconds,
            "threads": THREADS,
            "regions": REGIONS,
            "decode_errors": agg.decode_errors,
        })
    );
}
