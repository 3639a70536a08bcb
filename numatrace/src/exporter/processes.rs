//! The per-process (or per-cgroup) series, with bounded cardinality: the
//! `top` processes (or cgroups) by resident memory get series of their own,
//! every other one is summed into one `other` series, so a host with 10 000
//! processes still sends a few hundred series.
//!
//! Cross-node migrations and remote first touches are counters per series,
//! so they are added up here interval by interval (each process's count in
//! the interval, from the system view: the kernel's exact count when it
//! counts, else the /proc estimate of moves): a process that leaves the top
//! N keeps its total, and the `other` series grows by the counts of whoever
//! was in it, never backwards.
use std::collections::{BTreeMap, HashMap};

use numatrace_core::system::{ProcessRow, SystemView};

use crate::system::By;

/// The label values of the series that sums the processes outside the top N.
pub const OTHER: &str = "other";

/// One series' worth of processes: one process, one cgroup, or `other`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessSeries {
    /// The pid, or `other`; empty in per-cgroup series (the label is left out).
    pub pid: String,
    /// Empty in per-cgroup series, as `pid`.
    pub comm: String,
    pub cgroup: String,
    /// Resident bytes per node (numa_maps); empty while not read yet or not readable.
    pub memory_by_node: BTreeMap<u32, u64>,
    /// Its own memory on nodes its threads did not run on, weighted by their run time; `None`: not known.
    pub remote_memory_bytes: Option<u64>,
    /// Its threads' moves between nodes since the exporter started (every
    /// one when the kernel counts them, else those seen from refresh to refresh).
    pub cross_node_migrations: u64,
    /// Movable pages allocated on another node than the allocating CPU's
    /// since the exporter started; `None` when the kernel does not count them.
    pub remote_first_touch_pages: Option<u64>,
    /// Hinting faults that found the page on another node than the
    /// faulting CPU's since the exporter started; `None` when the kernel
    /// does not count them.
    pub remote_hinting_faults: Option<u64>,
}

/// The per-process part of one refresh.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessTable {
    /// The largest processes (or cgroups) by resident memory, largest first.
    pub top: Vec<ProcessSeries>,
    /// Every other one, summed.
    pub other: ProcessSeries,
    /// Processes in the view, and how many are in `other`.
    pub processes: u64,
    pub in_other: u64,
    /// Processes whose numa_maps is not known (not read yet, or not readable: no root).
    pub memory_unknown: u64,
    /// Whether the kernel counted the moves and remote first touches.
    pub counted_in_kernel: bool,
}

/// One series' counts in an interval, or since the exporter started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    moves: u64,
    remote_pages: u64,
    remote_hinting_faults: u64,
}

impl Counts {
    fn add(self, other: Counts) -> Counts {
        Counts {
            moves: self.moves.saturating_add(other.moves),
            remote_pages: self.remote_pages.saturating_add(other.remote_pages),
            remote_hinting_faults: self.remote_hinting_faults.saturating_add(other.remote_hinting_faults),
        }
    }
}

/// Cross-node moves and remote first touches since the exporter started,
/// per series (pid or cgroup) and for `other`.
#[derive(Debug, Default)]
pub struct MigrationTotals {
    by_key: HashMap<String, Counts>,
    other: Counts,
}

/// What a series sums before it is ranked: one process, or the processes of one cgroup.
struct Member {
    key: String,
    series: ProcessSeries,
    processes: u64,
    rss_bytes: u64,
    counts: Counts,
}

impl Member {
    fn of_process(row: &ProcessRow, seconds: f64) -> Member {
        Member {
            key: row.pid.to_string(),
            series: ProcessSeries {
                pid: row.pid.to_string(),
                comm: row.comm.clone(),
                cgroup: row.cgroup.clone(),
                memory_by_node: row.memory_by_node.clone().unwrap_or_default(),
                remote_memory_bytes: row.remote_memory_bytes,
                cross_node_migrations: 0,
                remote_first_touch_pages: None,
                remote_hinting_faults: None,
            },
            processes: 1,
            rss_bytes: row.rss_bytes,
            counts: counts_in(row, seconds),
        }
    }

    /// Adds `row` (in this member's cgroup): what is known of its memory, its moves.
    fn add(&mut self, row: &ProcessRow, seconds: f64) {
        self.processes += 1;
        self.rss_bytes += row.rss_bytes;
        self.counts = self.counts.add(counts_in(row, seconds));
        self.series.add_memory(row);
    }
}

/// A process's counts in the view's interval: its rates times the interval
/// the view divided by, so the kernel's integer counts come back exactly.
fn counts_in(row: &ProcessRow, seconds: f64) -> Counts {
    Counts {
        moves: (row.cross_node_migrations_per_s * seconds).round() as u64,
        remote_pages: (row.remote_first_touch_pages_per_s.unwrap_or(0.0) * seconds).round() as u64,
        remote_hinting_faults: (row.remote_hinting_faults_per_s.unwrap_or(0.0) * seconds).round() as u64,
    }
}

impl ProcessSeries {
    /// Adds what is known of `row`'s memory: processes not read yet add nothing.
    fn add_memory(&mut self, row: &ProcessRow) {
        for (node, bytes) in row.memory_by_node.iter().flatten() {
            *self.memory_by_node.entry(*node).or_insert(0) += bytes;
        }
        if let Some(remote) = row.remote_memory_bytes {
            self.remote_memory_bytes = Some(self.remote_memory_bytes.unwrap_or(0).saturating_add(remote));
        }
    }
}

/// The view's processes as series to rank: one each, or one per cgroup.
fn members(view: &SystemView, by: By) -> Vec<Member> {
    let seconds = view.interval_seconds;
    match by {
        By::Process => view.processes.iter().map(|row| Member::of_process(row, seconds)).collect(),
        By::Cgroup => {
            let mut groups: BTreeMap<&str, Member> = BTreeMap::new();
            for row in &view.processes {
                groups
                    .entry(row.cgroup.as_str())
                    .or_insert_with(|| Member {
                        key: row.cgroup.clone(),
                        series: ProcessSeries { cgroup: row.cgroup.clone(), ..ProcessSeries::default() },
                        processes: 0,
                        rss_bytes: 0,
                        counts: Counts::default(),
                    })
                    .add(row, seconds);
            }
            groups.into_values().collect()
        }
    }
}

impl MigrationTotals {
    /// Adds the moves of one interval and returns the table of the `top`
    /// largest processes (or cgroups, `by`).
    pub fn table(&mut self, view: &SystemView, top: usize, by: By) -> ProcessTable {
        let mut ranked = members(view, by);
        ranked.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then_with(|| a.key.cmp(&b.key)));
        // Exited processes (and emptied cgroups) take their totals with them.
        self.by_key.retain(|key, _| ranked.iter().any(|m| &m.key == key));
        let (name, cgroup) = match by {
            By::Process => (OTHER.to_string(), OTHER.to_string()),
            By::Cgroup => (String::new(), OTHER.to_string()),
        };
        let mut table = ProcessTable {
            processes: view.processes.len() as u64,
            in_other: ranked.iter().skip(top).map(|m| m.processes).sum(),
            memory_unknown: view.processes.iter().filter(|p| p.memory_by_node.is_none()).count() as u64,
            counted_in_kernel: view.counted_in_kernel,
            other: ProcessSeries {
                pid: name.clone(),
                comm: name,
                cgroup,
                remote_memory_bytes: Some(0),
                ..ProcessSeries::default()
            },
            top: Vec::with_capacity(top.min(ranked.len())),
        };
        let pages = |counts: Counts| view.first_touches_counted_in_kernel.then_some(counts.remote_pages);
        let faults = |counts: Counts| view.hinting_faults_counted_in_kernel.then_some(counts.remote_hinting_faults);
        for (rank, member) in ranked.into_iter().enumerate() {
            let total = self.by_key.entry(member.key).or_default();
            *total = total.add(member.counts);
            if rank < top {
                table.top.push(ProcessSeries {
                    cross_node_migrations: total.moves,
                    remote_first_touch_pages: pages(*total),
                    remote_hinting_faults: faults(*total),
                    ..member.series
                });
                continue;
            }
            self.other = self.other.add(member.counts);
            let other = &mut table.other;
            for (node, bytes) in &member.series.memory_by_node {
                *other.memory_by_node.entry(*node).or_insert(0) += bytes;
            }
            // The sum of what is known.
            other.remote_memory_bytes = Some(
                other.remote_memory_bytes.unwrap_or(0).saturating_add(member.series.remote_memory_bytes.unwrap_or(0)),
            );
        }
        table.other.cross_node_migrations = self.other.moves;
        table.other.remote_first_touch_pages = pages(self.other);
        table.other.remote_hinting_faults = faults(self.other);
        table
    }
}

#[cfg(test)]
mod tests {
    use numatrace_core::system::Tag;

    use super::*;

    fn row(pid: u32, rss_mib: u64, by_node_mib: &[(u32, u64)], remote_mib: u64, moves_per_s: f64) -> ProcessRow {
        let mib = 1 << 20;
        ProcessRow {
            pid,
            comm: format!("p{pid}"),
            cgroup: format!("/c{pid}"),
            rss_bytes: rss_mib * mib,
            memory_by_node: (!by_node_mib.is_empty()).then(|| by_node_mib.iter().map(|&(n, m)| (n, m * mib)).collect()),
            memory_age_seconds: None,
            threads_by_node: BTreeMap::new(),
            remote_memory_share: None,
            own_memory_bytes: None,
            remote_memory_bytes: (!by_node_mib.is_empty()).then_some(remote_mib * mib),
            cross_node_migrations_per_s: moves_per_s,
            remote_first_touch_pages_per_s: None,
            remote_hinting_faults_per_s: None,
            tag: Tag::Unknown,
        }
    }

    fn view(processes: Vec<ProcessRow>) -> SystemView {
        SystemView::of_rows(processes, 10.0)
    }

    #[test]
    fn keeps_the_largest_and_sums_the_rest_into_other() {
        let mut totals = MigrationTotals::default();
        let rows = vec![
            row(10, 100, &[(0, 60), (1, 40)], 40, 0.5),
            row(11, 300, &[(0, 300)], 0, 0.0),
            row(12, 50, &[(1, 50)], 50, 1.0),
            row(13, 20, &[], 0, 0.2),
            row(14, 70, &[(0, 10), (1, 60)], 10, 0.0),
        ];
        let table = totals.table(&view(rows), 2, By::Process);
        assert_eq!(table.top.iter().map(|s| s.pid.as_str()).collect::<Vec<_>>(), ["11", "10"]);
        assert_eq!(table.top[1].memory_by_node, BTreeMap::from([(0, 60 << 20), (1, 40 << 20)]));
        assert_eq!(table.top[1].cross_node_migrations, 5);
        assert_eq!((table.processes, table.in_other, table.memory_unknown), (5, 3, 1));
        let other = &table.other;
        assert_eq!(other.pid, OTHER);
        assert_eq!(other.memory_by_node, BTreeMap::from([(0, 10 << 20), (1, 110 << 20)]));
        assert_eq!(other.remote_memory_bytes, Some(60 << 20));
        assert_eq!(other.cross_node_migrations, 10 + 2);
    }

    #[test]
    fn by_cgroup_sums_each_cgroups_processes_into_one_series() {
        let mut totals = MigrationTotals::default();
        let in_cgroup = |mut r: ProcessRow, cgroup: &str| {
            r.cgroup = cgroup.into();
            r
        };
        let rows = vec![
            in_cgroup(row(10, 100, &[(0, 60), (1, 40)], 40, 0.5), "/db"),
            in_cgroup(row(11, 300, &[(0, 300)], 0, 0.0), "/db"),
            in_cgroup(row(12, 50, &[(1, 50)], 50, 1.0), "/web"),
            in_cgroup(row(13, 20, &[], 0, 0.2), "/web"),
            in_cgroup(row(14, 70, &[(0, 10), (1, 60)], 10, 0.0), "/batch"),
        ];
        let table = totals.table(&view(rows), 2, By::Cgroup);
        // /db (400 MiB), /batch (70 MiB); /web (70 MiB) loses the tie by name.
        assert_eq!(table.top.iter().map(|s| s.cgroup.as_str()).collect::<Vec<_>>(), ["/db", "/batch"]);
        let db = &table.top[0];
        assert_eq!((db.pid.as_str(), db.comm.as_str()), ("", ""), "no pid or comm label on a cgroup's series");
        assert_eq!(db.memory_by_node, BTreeMap::from([(0, 360 << 20), (1, 40 << 20)]));
        assert_eq!(db.remote_memory_bytes, Some(40 << 20));
        assert_eq!(db.cross_node_migrations, 5);
        // The two processes of /web are in `other`; 13's memory is not known.
        assert_eq!((table.processes, table.in_other, table.memory_unknown), (5, 2, 1));
        let other = &table.other;
        assert_eq!((other.pid.as_str(), other.cgroup.as_str()), ("", OTHER));
        assert_eq!(other.memory_by_node, BTreeMap::from([(1, 50 << 20)]));
        assert_eq!(other.cross_node_migrations, 10 + 2);
    }

    #[test]
    fn counters_never_go_back_when_processes_change_places_or_exit() {
        let mut totals = MigrationTotals::default();
        let first = totals.table(&view(vec![row(1, 100, &[], 0, 1.0), row(2, 50, &[], 0, 1.0)]), 1, By::Process);
        assert_eq!((first.top[0].cross_node_migrations, first.other.cross_node_migrations), (10, 10));
        // 2 overtakes 1: each keeps its own total, `other` only grows.
        let second = totals.table(&view(vec![row(1, 10, &[], 0, 1.0), row(2, 500, &[], 0, 0.0)]), 1, By::Process);
        assert_eq!(second.top[0].pid, "2");
        assert_eq!((second.top[0].cross_node_migrations, second.other.cross_node_migrations), (10, 20));
        // 1 exits: `other` keeps what it counted.
        let third = totals.table(&view(vec![row(2, 500, &[], 0, 0.0)]), 1, By::Process);
        assert_eq!((third.other.cross_node_migrations, third.in_other), (20, 0));
        assert_eq!(totals.by_key.len(), 1);
    }

    #[test]
    fn the_kernels_counts_add_up_exactly_and_only_when_counted() {
        let mut totals = MigrationTotals::default();
        let counted = |pid, rss, moves: u64, pages: u64, seconds: f64| {
            let mut r = row(pid, rss, &[], 0, moves as f64 / seconds);
            r.remote_first_touch_pages_per_s = Some(pages as f64 / seconds);
            r
        };
        // An interval that is no round number: the counts still come back whole.
        let seconds = 1.0037;
        let mut v =
            SystemView::of_rows(vec![counted(1, 100, 7, 12_345, seconds), counted(2, 50, 3, 1, seconds)], seconds);
        v.counted_in_kernel = true;
        v.first_touches_counted_in_kernel = true;
        let first = totals.table(&v, 1, By::Process);
        assert_eq!((first.top[0].cross_node_migrations, first.top[0].remote_first_touch_pages), (7, Some(12_345)));
        assert_eq!((first.other.cross_node_migrations, first.other.remote_first_touch_pages), (3, Some(1)));
        let second = totals.table(&v, 1, By::Process);
        assert_eq!(second.top[0].remote_first_touch_pages, Some(24_690));
        // Without the kernel: no first-touch series at all, not zeros.
        let third = totals.table(&view(vec![row(1, 100, &[], 0, 0.0)]), 1, By::Process);
        assert_eq!((third.top[0].remote_first_touch_pages, third.other.remote_first_touch_pages), (None, None));
    }
}
