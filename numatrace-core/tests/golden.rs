//! Golden snapshots: reports rendered from synthetic captures, as text and
//! as `--json`, compared with files under tests/golden/. A change to the
//! output shows up in review as a change to those files.
//!
//! After an intended change: `NUMATRACE_UPDATE_GOLDEN=1 cargo test -p
//! numatrace-core --test golden`, then read the diff before committing.
use std::path::PathBuf;

use numatrace_core::{
    capture::synthetic,
    event::Event,
    facts::{EndFacts, SessionFacts, StartFacts, StopReason},
    machine::Topology,
    report::{Report, text::render},
};

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("NUMATRACE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with NUMATRACE_UPDATE_GOLDEN=1", path.display()));
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(e, a)| e != a).unwrap_or(0);
        panic!(
            "{name} changed (first difference at line {}):\n  expected: {}\n  actual:   {}\n\
             If the change is intended: NUMATRACE_UPDATE_GOLDEN=1 cargo test -p numatrace-core --test golden",
            first + 1,
            expected.lines().nth(first).unwrap_or("<end>"),
            actual.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

/// The report, with the machine's nodes known (1 GiB each, the CPUs of the
/// capture's topology) so that the fixes are the ones a real run prints.
fn report_of(mut start: StartFacts, events: &[Event], end: EndFacts) -> Report {
    start.argv = vec!["/usr/bin/app".into(), "--serve".into()];
    SessionFacts { start, end }.replay(events).0
}

fn snapshot(name: &str, report: &Report) {
    golden(&format!("{name}.txt"), &render(report));
    let json = serde_json::to_string_pretty(report).unwrap_or_else(|e| panic!("serializing {name}: {e}"));
    golden(&format!("{name}.json"), &(json + "\n"));
}

#[test]
fn init_thread_on_two_nodes() {
    let (start, events, end) = synthetic::init_thread_capture();
    snapshot("init_thread", &report_of(start, &events, end));
}

/// One thread first-touches 64 MiB on node 0, then is moved to node 1 and
/// keeps using it from there: `thread_migrated`.
#[test]
fn thread_migrated_on_two_nodes() {
    const S: u64 = 1_000_000_000;
    let (t0, pid) = (500 * S, 7000);
    let topology = Topology::synthetic(&[vec![0, 1], vec![2, 3]]);
    let start = synthetic::start_facts(&topology, t0, pid, &[(pid, "app", 0), (pid + 1, "mover", 1)]);
    let mut events = Vec::new();
    for i in 0..32u64 {
        events.push(synthetic::first_touch(t0 + i * 1_000_000, pid, pid + 1, 100 + i, 512, 0, 0));
    }
    events.push(synthetic::migration(t0 + S, pid, pid + 1, 1, 2));
    for sec in 1..6u64 {
        for i in 0..32u64 {
            events.push(synthetic::hinting(t0 + sec * S + i, pid, pid + 1, 100 + i, 8, 1, 0));
        }
    }
    let end = EndFacts::cut_short(6.0, StopReason::Duration);
    snapshot("thread_migrated", &report_of(start, &events, end));
}

/// Nothing remote: everything first touched and used on node 1.
#[test]
fn all_local_on_two_nodes() {
    const S: u64 = 1_000_000_000;
    let (t0, pid) = (100 * S, 9000);
    let topology = Topology::synthetic(&[vec![0, 1], vec![2, 3]]);
    let start = synthetic::start_facts(&topology, t0, pid, &[(pid, "local", 2)]);
    let events: Vec<Event> =
        (0..16u64).map(|i| synthetic::first_touch(t0 + i * 1_000_000, pid, pid, 10 + i, 512, 1, 1)).collect();
    let end = EndFacts::cut_short(2.0, StopReason::TargetExit);
    snapshot("all_local", &report_of(start, &events, end));
}

/// PostgreSQL traced with `--tree`: the postmaster first-touches 128 MiB of
/// shared memory on node 0, three backends (other processes) use it from
/// node 1: `first_touch_by_other_thread`, naming the postmaster, and the
/// instance's fix (its unit's drop-in on node 1).
#[test]
fn postmaster_and_backends_on_two_nodes() {
    let (start, events, end) = synthetic::postgres_capture(&[4, 5, 6]);
    let report = SessionFacts { start, end }.replay(&events).0;
    snapshot("postgres_shared", &report);
}
