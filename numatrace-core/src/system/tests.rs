//! The view on fixtures: a two-node machine, processes whose placement is known.
use std::collections::{BTreeMap, HashMap};

use super::{view::remote_share, *};
use crate::machine::{
    CgroupVersion, Cpuset, NodeCounters, ProcessSnapshot, ProcessStatus, Sysctls, SystemSnapshot, Topology,
    numa_maps::{self, PageSizes},
};

const MIB: u64 = 1 << 20;

fn two_nodes() -> Topology {
    Topology::synthetic_with_memory(&[vec![0, 1], vec![2, 3]], 8 << 30)
}

fn system(at_ms: u64, hits: u64) -> SystemSnapshot {
    let mut s = SystemSnapshot::synthetic(two_nodes(), Sysctls { numa_balancing: Some(0), zone_reclaim_mode: Some(0) });
    s.taken_at_unix_ms = at_ms;
    for id in [0, 1] {
        s.counters.insert(id, NodeCounters { numa_hit: hits, numa_miss: hits / 10, ..Default::default() });
    }
    s.vmstat.insert("numa_pages_migrated".into(), hits);
    s
}

/// A process snapshot whose only mapping holds `pages` (node -> 4 KiB pages) under `policy`.
fn placement(pid: u32, pages: &[(u32, u64)], policy: &str, threads_on: &[u32]) -> ProcessSnapshot {
    let nodes: String = pages.iter().map(|(n, p)| format!(" N{n}={p}")).collect();
    let text = format!("7f0000000000 {policy} anon=1{nodes} kernelpagesize_kB=4\n");
    let maps = numa_maps::parse(&text, PageSizes::default());
    let mut threads_by_node = BTreeMap::new();
    for n in threads_on {
        *threads_by_node.entry(*n).or_insert(0) += 1;
    }
    ProcessSnapshot {
        pid,
        taken_at_unix_ms: 1000,
        status: Some(ProcessStatus {
            name: "p".into(),
            cpus_allowed: vec![0, 1, 2, 3],
            mems_allowed: vec![0, 1],
            rss_bytes: 0,
        }),
        memory_by_node: maps.memory_by_node(),
        numa_maps: Some(maps),
        threads: Vec::new(),
        threads_by_node,
        cpuset: None,
        identity: None,
        unreadable: Vec::new(),
    }
}

/// A process whose threads ran `ticks` on `cpu` each, `ticks` after a start at 0.
fn sample(pid: u32, cgroup: &str, threads: &[(u32, u64)]) -> ProcessSample {
    ProcessSample {
        pid,
        start_ticks: 7,
        comm: format!("p{pid}"),
        cgroup: cgroup.into(),
        rss_bytes: 64 * MIB,
        threads: threads
            .iter()
            .enumerate()
            .map(|(i, &(cpu, run_ticks))| ThreadSample { tid: pid + i as u32, cpu, run_ticks })
            .collect(),
    }
}

#[test]
fn remote_share_weighs_threads_by_their_run_time() {
    let memory: BTreeMap<u32, u64> = [(1, 100 * MIB)].into();
    // 90 % of the run time on node 0, where none of the memory is.
    assert!((remote_share(&memory, &[(0, 90), (1, 10)]).unwrap() - 0.9).abs() < 1e-9);
    // Nobody ran: each thread counts the same.
    assert!((remote_share(&memory, &[(0, 0), (1, 0)]).unwrap() - 0.5).abs() < 1e-9);
    let split: BTreeMap<u32, u64> = [(0, 25 * MIB), (1, 75 * MIB)].into();
    assert!((remote_share(&split, &[(1, 5)]).unwrap() - 0.25).abs() < 1e-9);
    assert_eq!(remote_share(&BTreeMap::new(), &[(0, 1)]), None);
    assert_eq!(remote_share(&memory, &[]), None);
}

#[test]
fn tags_come_from_the_snapshot_rules() {
    let topo = two_nodes();
    let tag = |p: &ProcessSnapshot, share: Option<f64>, nodes: &[u32]| tag::likely_cause(&topo, p, share, nodes);
    let bound_away = placement(1, &[(1, 16384)], "bind:1", &[0]);
    assert_eq!(tag(&bound_away, Some(1.0), &[0]), Tag::Policy);
    assert_eq!(tag(&bound_away, Some(0.01), &[0]), Tag::Local);
    assert_eq!(tag(&bound_away, None, &[0]), Tag::Unknown);
    let default_away = placement(2, &[(1, 16384)], "default", &[0]);
    assert_eq!(tag(&default_away, Some(1.0), &[0]), Tag::Elsewhere);
    // inspect's init-thread pattern: 64 MiB on node 0, threads on both nodes.
    let init = placement(3, &[(0, 16384)], "default", &[0, 1]);
    assert_eq!(tag(&init, Some(0.5), &[0, 1]), Tag::Elsewhere);
    // inspect's interleave that fits one node.
    let interleaved = placement(4, &[(0, 8192), (1, 8192)], "interleave:0-1", &[0]);
    assert_eq!(tag(&interleaved, Some(0.5), &[0]), Tag::Policy);
    // inspect's cpuset finding: CPUs confined to node 1, memory from both.
    let mut confined = placement(5, &[(0, 16384)], "default", &[1]);
    confined.cpuset = Some(Cpuset {
        version: CgroupVersion::V2,
        cgroup: "/box".into(),
        dir: "/sys/fs/cgroup/box".into(),
        cpus: vec![2, 3],
        mems: vec![],
        effective_cpus: vec![2, 3],
        effective_mems: vec![0, 1],
        cpus_set_by: Some("/box".into()),
        mems_set_by: None,
    });
    assert_eq!(tag(&confined, Some(1.0), &[1]), Tag::Cpuset);
    // The threads' node is full: the allocator spilled.
    let mut full = two_nodes();
    full.nodes[0].mem_free_bytes = 10 * MIB;
    assert_eq!(tag::likely_cause(&full, &default_away, Some(1.0), &[0]), Tag::Spill);
}

#[test]
fn the_view_ranks_processes_by_remote_share_and_counts_moves() {
    let earlier = Sample {
        system: system(1000, 1000),
        processes: vec![
            sample(100, "/a", &[(0, 0), (0, 0)]),
            sample(200, "/a", &[(0, 0)]),
            sample(300, "/b", &[(2, 0)]),
            sample(400, "/b", &[(0, 0)]),
        ],
        kernel_counts: None,
        first_touches_counted: false,
        hinting_faults_counted: false,
    };
    let now = Sample {
        system: system(3000, 3000),
        processes: vec![
            // Both threads on node 0 (CPUs 0 and 1), half the memory on node 1.
            sample(100, "/a", &[(1, 10), (0, 10)]),
            // Bound to node 1, runs on node 0.
            sample(200, "/a", &[(0, 50)]),
            // Local on node 1 (CPU 2, then CPU 3).
            sample(300, "/b", &[(3, 20)]),
            // Moved from node 0 to node 1; its numa_maps not read.
            sample(400, "/b", &[(2, 20)]),
        ],
        kernel_counts: None,
        first_touches_counted: false,
        hinting_faults_counted: false,
    };
    let placements: HashMap<u32, ProcessSnapshot> = [
        (100, placement(100, &[(0, 8192), (1, 8192)], "default", &[0])),
        (200, placement(200, &[(1, 16384)], "bind:1", &[0])),
        (300, placement(300, &[(1, 16384)], "default", &[1])),
    ]
    .into();
    let view = SystemView::build(&earlier, &now, &placements, vec!["numa_maps of 1 process".into()]);
    assert_eq!(view.schema, "numatrace.top/1");
    assert_eq!(view.interval_seconds, 2.0);
    assert_eq!(view.nodes.len(), 2);
    assert_eq!(view.nodes[0].rates.numa_hit, 1000.0);
    assert_eq!(view.nodes[1].rates.numa_miss, 100.0);
    assert_eq!(view.numa_pages_migrated_per_s, 1000.0);
    let order: Vec<u32> = view.processes.iter().map(|p| p.pid).collect();
    assert_eq!(order, vec![200, 100, 300, 400]);
    let p = |pid| view.processes.iter().find(|p| p.pid == pid).unwrap();
    assert_eq!(p(200).remote_memory_share, Some(1.0));
    assert_eq!(p(200).tag, Tag::Policy);
    assert_eq!(p(200).remote_memory_bytes, Some(64 * MIB));
    assert_eq!(p(200).memory_by_node, Some([(1, 64 * MIB)].into()));
    assert_eq!(p(200).memory_age_seconds, Some(2.0));
    assert_eq!(p(100).remote_memory_share, Some(0.5));
    assert_eq!(p(100).threads_by_node, [(0, 2)].into());
    // Thread 100 went from CPU 0 (node 0) to CPU 1 (node 0): no move; 400 from node 0 to 1.
    assert_eq!(p(100).cross_node_migrations_per_s, 0.0);
    assert_eq!(p(400).cross_node_migrations_per_s, 0.5);
    assert_eq!(p(300).tag, Tag::Local);
    assert_eq!((p(400).remote_memory_share, p(400).tag), (None, Tag::Unknown));

    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["processes"][0]["memory_by_node"]["1"], 64 * MIB);
    assert_eq!(json["processes"][0]["threads_by_node"]["0"], 1);
    assert_eq!(json["processes"][0]["tag"], "policy");
    assert_eq!(json["cannot_see"][0], "numa_maps of 1 process");

    let groups = view.by_cgroup();
    assert_eq!(groups.iter().map(|g| g.cgroup.as_str()).collect::<Vec<_>>(), vec!["/a", "/b"]);
    // /a: 64 MiB all remote and 64 MiB half remote.
    assert!((groups[0].remote_memory_share.unwrap() - 0.75).abs() < 1e-9);
    assert_eq!(groups[0].tag, Tag::Policy);
    assert_eq!(groups[0].memory_by_node, [(0, 32 * MIB), (1, 96 * MIB)].into());
    assert_eq!(groups[1].tag, Tag::Local);
}

#[test]
fn a_reused_pid_starts_afresh() {
    let earlier = Sample {
        system: system(0, 0),
        processes: vec![sample(100, "/", &[(0, 500)])],
        kernel_counts: None,
        first_touches_counted: false,
        hinting_faults_counted: false,
    };
    let mut reborn = sample(100, "/", &[(2, 30)]);
    reborn.start_ticks = 99;
    let now = Sample {
        system: system(1000, 0),
        processes: vec![reborn],
        kernel_counts: None,
        first_touches_counted: false,
        hinting_faults_counted: false,
    };
    let view = SystemView::build(&earlier, &now, &HashMap::new(), Vec::new());
    // No move counted against the old process's thread of the same tid.
    assert_eq!(view.processes[0].cross_node_migrations_per_s, 0.0);
}

#[test]
fn the_kernels_counts_replace_the_proc_estimate_when_there() {
    // (pid, moves, remote first-touch pages, remote hinting faults)
    let counts = |counts: &[(u32, u64, u64, u64)]| {
        Some(
            counts
                .iter()
                .map(|&(pid, moves, pages, faults)| {
                    let counts = KernelCounts {
                        cross_node_migrations: moves,
                        remote_first_touch_pages: pages,
                        remote_hinting_faults: faults,
                    };
                    (pid, counts)
                })
                .collect(),
        )
    };
    let earlier = Sample {
        system: system(0, 0),
        processes: vec![sample(100, "/a", &[(0, 0)]), sample(200, "/a", &[(0, 0)]), sample(300, "/b", &[(0, 0)])],
        kernel_counts: counts(&[(100, 4, 1000, 30), (200, 10, 0, 0), (300, 50, 50, 7)]),
        first_touches_counted: true,
        hinting_faults_counted: true,
    };
    let mut reborn = sample(300, "/b", &[(0, 5)]);
    reborn.start_ticks = 99;
    let now = Sample {
        system: system(2000, 0),
        processes: vec![
            // Seen on CPU 2 (node 1) now: /proc alone would count one move.
            sample(100, "/a", &[(2, 10)]),
            // Counted afresh by the kernel (dropped from its full hash): 0, not negative.
            sample(200, "/a", &[(0, 10)]),
            // A new process under a reused pid: all its counts are in the interval.
            reborn,
            // Not counted by the kernel at all: nothing happened.
            sample(400, "/b", &[(0, 10)]),
        ],
        kernel_counts: counts(&[(100, 10, 1400, 90), (200, 3, 0, 0), (300, 2, 8, 2)]),
        first_touches_counted: true,
        hinting_faults_counted: true,
    };
    let view = SystemView::build(&earlier, &now, &HashMap::new(), Vec::new());
    assert!(view.counted_in_kernel);
    let p = |pid| view.processes.iter().find(|p| p.pid == pid).unwrap();
    assert_eq!((p(100).cross_node_migrations_per_s, p(100).remote_first_touch_pages_per_s), (3.0, Some(200.0)));
    assert_eq!((p(200).cross_node_migrations_per_s, p(200).remote_first_touch_pages_per_s), (0.0, Some(0.0)));
    assert_eq!((p(300).cross_node_migrations_per_s, p(300).remote_first_touch_pages_per_s), (1.0, Some(4.0)));
    assert_eq!((p(400).cross_node_migrations_per_s, p(400).remote_first_touch_pages_per_s), (0.0, Some(0.0)));
    let faults = |pid| p(pid).remote_hinting_faults_per_s;
    assert_eq!((faults(100), faults(200), faults(300), faults(400)), (Some(30.0), Some(0.0), Some(1.0), Some(0.0)));
    let groups = view.by_cgroup();
    assert_eq!(groups.iter().map(|g| g.remote_first_touch_pages_per_s).collect::<Vec<_>>(), [Some(200.0), Some(4.0)]);
    assert_eq!(groups.iter().map(|g| g.remote_hinting_faults_per_s).collect::<Vec<_>>(), [Some(30.0), Some(1.0)]);
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["counted_in_kernel"], true);
    assert_eq!(json["hinting_faults_counted_in_kernel"], true);

    // Migrations counted, first touches and hinting faults not (the
    // exporter's default on a kernel without fentry or kprobes): every
    // move, and null first touches and faults.
    let (mut earlier, mut now) = (earlier, now);
    now.first_touches_counted = false;
    now.hinting_faults_counted = false;
    let view = SystemView::build(&earlier, &now, &HashMap::new(), Vec::new());
    assert!(view.counted_in_kernel);
    assert!(!view.hinting_faults_counted_in_kernel);
    let p = |pid| view.processes.iter().find(|p| p.pid == pid).unwrap();
    assert_eq!((p(100).cross_node_migrations_per_s, p(100).remote_first_touch_pages_per_s), (3.0, None));
    assert_eq!(p(100).remote_hinting_faults_per_s, None);
    assert_eq!(view.by_cgroup()[0].remote_hinting_faults_per_s, None);

    // Without the kernel: the /proc estimate, and no first touches (null, not 0).
    earlier.kernel_counts = None;
    now.kernel_counts = None;
    let view = SystemView::build(&earlier, &now, &HashMap::new(), Vec::new());
    assert!(!view.counted_in_kernel);
    let p = |pid| view.processes.iter().find(|p| p.pid == pid).unwrap();
    assert_eq!((p(100).cross_node_migrations_per_s, p(100).remote_first_touch_pages_per_s), (0.5, None));
    let json = serde_json::to_value(&view).unwrap();
    assert!(json["processes"][0]["remote_first_touch_pages_per_s"].is_null());
    assert!(json["processes"][0]["remote_hinting_faults_per_s"].is_null());
}
