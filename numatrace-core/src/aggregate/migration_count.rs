//! Per-thread migration counts without a ring event for every migration:
//! by default the kernel only counts migrations within a node (see
//! `sched_migrate_task`), so each thread's total comes from the kernel's own
//! per-task count (`se.nr_migrations`), read from /proc/<pid>/task/<tid>/sched
//! at the start and the end and sent by the kernel as a thread exits. The
//! readings travel as events (`MigrationCount`), so a capture replays exactly.
use numatrace_common::{EventHeader, EventKind, MigrationCountEvent};

use crate::{aggregate::Aggregator, event::Event, machine::per_thread};

/// One reading for every traced thread that has not exited.
pub fn sample(agg: &Aggregator, now_ns: u64) -> Vec<Event> {
    sample_threads(agg.threads.values().filter(|t| t.exited_ns.is_none()).map(|t| (t.tgid, t.tid)), now_ns)
}

/// One reading for each (tgid, tid); threads that are gone, or a kernel
/// without the sched file, give none. Read as near as possible to the
/// attach and the detach, so that the threads' counts and the kernel's
/// count of the capture's migrations cover about the same time.
pub fn sample_threads(threads: impl IntoIterator<Item = (u32, u32)>, now_ns: u64) -> Vec<Event> {
    let threads: Vec<(u32, u32)> = threads.into_iter().collect();
    per_thread::map(&threads, |&(tgid, tid)| {
        let migrations = read_migrations(tgid, tid)?;
        Some(Event::MigrationCount(MigrationCountEvent {
            header: EventHeader { kind: EventKind::MigrationCount as u32, cpu: 0, ts_ns: now_ns, tgid, tid },
            migrations,
        }))
    })
    .into_iter()
    .flatten()
    .collect()
}

fn read_migrations(tgid: u32, tid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/sched")).ok()?;
    parse_sched(&text)
}

/// The `se.nr_migrations` line of a sched file (`se.nr_migrations   :   12`).
fn parse_sched(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == "se.nr_migrations").then(|| value.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::machine::Topology;

    #[test]
    fn parses_the_sched_file() {
        let text = "numatrace (4242, #threads: 1)\n---------\nse.exec_start                                :      37054052.537028\nse.nr_migrations                             :                   17\nnr_switches                                  :                  3\n";
        assert_eq!(parse_sched(text), Some(17));
        assert_eq!(parse_sched("se.nr_migrations : x\n"), None);
        assert_eq!(parse_sched(""), None);
    }

    #[test]
    fn reads_this_thread() {
        let mut agg = Aggregator::new(Topology::synthetic(&[vec![0, 1]]), BTreeMap::new());
        let pid = std::process::id();
        agg.add_thread(pid, pid, "me", Some(0));
        if std::path::Path::new(&format!("/proc/{pid}/task/{pid}/sched")).exists() {
            assert_eq!(sample(&agg, 1).len(), 1);
        }
    }

    fn reading(tid: u32, ts_ns: u64, migrations: u64) -> Event {
        Event::MigrationCount(MigrationCountEvent {
            header: EventHeader { kind: EventKind::MigrationCount as u32, cpu: 0, ts_ns, tgid: 1, tid },
            migrations,
        })
    }

    #[test]
    fn counts_from_the_first_reading_or_from_birth() {
        let mut agg = Aggregator::new(Topology::synthetic(&[vec![0, 1]]), BTreeMap::new());
        agg.add_thread(7, 1, "there at the start", Some(0));
        agg.ingest(&reading(7, 1_000, 40));
        assert_eq!(agg.threads[&7].counted_migrations(), None, "one reading of a thread that was there is no count");
        agg.ingest(&reading(7, 3_000, 55)); // the kernel's, at exit
        agg.ingest(&reading(7, 2_000, 50)); // from /proc, read before it
        assert_eq!(agg.threads[&7].counted_migrations(), Some(15));
        agg.ingest(&Event::TaskNew(numatrace_common::TaskNewEvent {
            header: EventHeader { kind: EventKind::TaskNew as u32, cpu: 0, ts_ns: 1_500, tgid: 1, tid: 8 },
            ..Default::default()
        }));
        agg.ingest(&reading(8, 2_500, 6));
        assert_eq!(agg.threads[&8].counted_migrations(), Some(6), "born during the capture: from 0");
    }
}
