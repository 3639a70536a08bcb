//! Synthetic captures built in code: multi-node event streams for tests of
//! the reader, the exporters and the spike ring on any machine, and the
//! example timeline in docs/.
use numatrace_common::{
    EventHeader, EventKind, FirstTouchEvent, HintingFaultEvent, NumaPlacementEvent, PageMigrationEvent,
    TaskMigrationEvent, TaskNewEvent,
};

use crate::{
    event::Event,
    facts::{EndFacts, InitialThread, StartFacts, StopReason, Target, TargetScope},
    machine::Topology,
};

/// Start facts for `topology`. `threads`: (tid, comm, cpu); the first is
/// the target.
pub fn start_facts(topology: &Topology, start_ns: u64, tgid: u32, threads: &[(u32, &str, u32)]) -> StartFacts {
    StartFacts {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel_release: "synthetic".to_string(),
        topology: topology.clone(),
        reason_names: [(5, "numa_misplaced"), (0, "compaction"), (4, "syscall_or_cpuset")]
            .into_iter()
            .map(|(value, name)| (value, name.to_string()))
            .collect(),
        target: Target {
            pid: tgid,
            comm: threads.first().map_or("app", |t| t.1).to_string(),
            command: None,
            exit_code: None,
            scope: TargetScope::Process,
            pids: vec![tgid],
        },
        sources: Vec::new(),
        initial_threads: threads
            .iter()
            .map(|&(tid, comm, cpu)| InitialThread { tid, tgid, comm: comm.to_string(), cpu: Some(cpu) })
            .collect(),
        start_ns,
        argv: Vec::new(),
        process_before: None,
        other_processes_before: Vec::new(),
        system_before: None,
        within_node_migrations_counted_only: false,
    }
}

fn header(kind: EventKind, ts_ns: u64, tgid: u32, tid: u32, cpu: u32) -> EventHeader {
    EventHeader { kind: kind as u32, cpu, ts_ns, tgid, tid }
}

/// A thread moved from `from` to `to` (CPUs).
pub fn migration(ts_ns: u64, tgid: u32, tid: u32, from: i32, to: i32) -> Event {
    Event::TaskMigration(TaskMigrationEvent {
        header: header(EventKind::TaskMigration, ts_ns, tgid, tid, to as u32),
        orig_cpu: from,
        dest_cpu: to,
    })
}

/// A run of `pages` first touched by `tid` running on `cpu_node`, landing on `page_node`.
pub fn first_touch(ts_ns: u64, tgid: u32, tid: u32, region: u64, pages: u64, cpu_node: u16, page_node: u16) -> Event {
    Event::FirstTouch(FirstTouchEvent {
        header: header(EventKind::FirstTouch, ts_ns, tgid, tid, 0),
        region,
        pages,
        last_ts_ns: ts_ns,
        cpu_node,
        page_node,
        stack: 0,
    })
}

/// A run of `faults` hinting faults of `tid` on `cpu_node` against memory on `mem_node`.
pub fn hinting(ts_ns: u64, tgid: u32, tid: u32, region: u64, faults: u32, cpu_node: u16, mem_node: u16) -> Event {
    Event::HintingFault(HintingFaultEvent {
        header: header(EventKind::HintingFault, ts_ns, tgid, tid, 0),
        region,
        last_ts_ns: ts_ns,
        faults,
        pages: faults,
        migrated_pages: 0,
        cpu_node,
        mem_node,
        local: u32::from(cpu_node == mem_node),
        stack: 0,
    })
}

/// A balancer move (`dst_tid` 0) or swap of `tid` from `src_node` to `dst_node`.
pub fn placement(
    kind: EventKind,
    ts_ns: u64,
    tgid: u32,
    tid: u32,
    dst_tid: u32,
    src_node: i32,
    dst_node: i32,
) -> Event {
    Event::NumaPlacement(NumaPlacementEvent {
        header: header(kind, ts_ns, tgid, tid, 0),
        src_tid: tid,
        src_tgid: tgid,
        src_cpu: -1,
        src_node,
        dst_tid,
        dst_tgid: if dst_tid == 0 { 0 } else { tgid },
        dst_cpu: -1,
        dst_node,
    })
}

/// A batch of `pages` migrated for `reason`.
pub fn page_migration(ts_ns: u64, tgid: u32, tid: u32, pages: u64, reason: i32) -> Event {
    Event::PageMigration(PageMigrationEvent {
        header: header(EventKind::PageMigration, ts_ns, tgid, tid, 0),
        succeeded: pages,
        failed: 0,
        thp_succeeded: 0,
        reason,
        on_behalf: 0,
    })
}

/// `tid` had run `run_ns` in all at `ts_ns` (its schedstat).
pub fn run_time_sample(ts_ns: u64, tgid: u32, tid: u32, run_ns: u64) -> Event {
    Event::RunTimeSample(numatrace_common::RunTimeSampleEvent {
        header: header(EventKind::RunTimeSample, ts_ns, tgid, tid, 0),
        run_ns,
    })
}

/// `parent` created thread `tid` named `comm` on `cpu`.
pub fn thread_new(ts_ns: u64, tgid: u32, tid: u32, parent: u32, comm: &str, cpu: u32) -> Event {
    let mut name = [0u8; 16];
    for (slot, b) in name.iter_mut().zip(comm.bytes().take(15)) {
        *slot = b;
    }
    Event::TaskNew(TaskNewEvent {
        header: header(EventKind::TaskNew, ts_ns, tgid, tid, cpu),
        parent_tid: parent,
        is_thread: 1,
        comm: name,
    })
}

/// Thread `parent` forked process `pid` (its main thread) named `comm` on `cpu`.
pub fn process_new(ts_ns: u64, pid: u32, parent: u32, comm: &str, cpu: u32) -> Event {
    match thread_new(ts_ns, pid, pid, parent, comm, cpu) {
        Event::TaskNew(mut e) => {
            e.is_thread = 0;
            Event::TaskNew(e)
        }
        other => other,
    }
}

/// A 10 s capture of the init-thread pathology on two nodes (CPUs 0-3 and
/// 4-7): `main` first-touches 256 MiB on node 0, two workers start, one on
/// each node; the one on node 1 faults remotely, the balancer swaps it and
/// migrates pages, and a third worker hops between nodes.
pub fn init_thread_capture() -> (StartFacts, Vec<Event>, EndFacts) {
    const S: u64 = 1_000_000_000;
    let t0 = 1_000 * S;
    let pid = 4242;
    let topology = Topology::synthetic(&[vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
    let start = start_facts(&topology, t0, pid, &[(pid, "app", 0)]);
    let mut ev = Vec::new();
    for i in 0..128u64 {
        ev.push(first_touch(t0 + S / 10 + i * 5_000_000, pid, pid, 1000 + i, 512, 0, 0));
    }
    ev.push(thread_new(t0 + S, pid, pid + 1, pid, "worker-a", 1));
    ev.push(thread_new(t0 + S, pid, pid + 2, pid, "worker-b", 5));
    ev.push(thread_new(t0 + S + S / 2, pid, pid + 3, pid, "hopper", 2));
    for sec in 1..10u64 {
        for k in 0..4u64 {
            let ts = t0 + sec * S + k * S / 4;
            ev.push(hinting(ts, pid, pid + 2, 1000 + k, 40 + (sec as u32) * 10, 1, 0));
            ev.push(hinting(ts, pid, pid + 1, 1000 + k, 30, 0, 0));
        }
    }
    ev.push(placement(EventKind::NumaTaskSwap, t0 + 4 * S, pid, pid + 2, pid + 1, 1, 0));
    ev.push(migration(t0 + 4 * S, pid, pid + 2, 5, 3));
    ev.push(migration(t0 + 4 * S, pid, pid + 1, 1, 6));
    ev.push(placement(EventKind::NumaTaskMove, t0 + 7 * S, pid, pid + 1, 0, 1, 0));
    ev.push(migration(t0 + 7 * S, pid, pid + 1, 6, 2));
    for b in 0..6u64 {
        ev.push(page_migration(t0 + 2 * S + b * S / 2, pid, pid + 2, 2048, 5));
    }
    let mut cpu = 2i32;
    for hop in 0..12u64 {
        let to = if cpu < 4 { 4 + (hop as i32 % 4) } else { hop as i32 % 4 };
        ev.push(migration(t0 + 2 * S + hop * 600_000_000, pid, pid + 3, cpu, to));
        cpu = to;
    }
    for i in 0..20u64 {
        ev.push(first_touch(
            t0 + 3 * S + i * 200_000_000,
            pid,
            pid + 3,
            3000 + i,
            64,
            if i % 2 == 0 { 1 } else { 0 },
            0,
        ));
    }
    ev.sort_by_key(|e| e.header().ts_ns);
    let end = EndFacts::cut_short(10.0, StopReason::Duration);
    (start, ev, end)
}

/// A process snapshot built in code: its name, identity and numa_maps
/// (memory per node follows from them, as numastat -p counts it).
pub fn process_snapshot(
    pid: u32,
    name: &str,
    identity: crate::machine::ProcessIdentity,
    mappings: Vec<crate::machine::Mapping>,
) -> crate::machine::ProcessSnapshot {
    let numa_maps = crate::machine::NumaMaps { mappings, skipped_lines: 0 };
    crate::machine::ProcessSnapshot {
        pid,
        taken_at_unix_ms: 0,
        status: Some(crate::machine::ProcessStatus {
            name: name.to_string(),
            cpus_allowed: Vec::new(),
            mems_allowed: Vec::new(),
            rss_bytes: 0,
        }),
        memory_by_node: numa_maps.memory_by_node(),
        numa_maps: Some(numa_maps),
        threads: Vec::new(),
        threads_by_node: std::collections::BTreeMap::new(),
        cpuset: None,
        identity: Some(identity),
        unreadable: Vec::new(),
    }
}

/// One numa_maps line: `pages` 4 KiB pages per node, of `file` (shared
/// memory or a file, no anonymous pages) or anonymous.
pub fn mapping(start: u64, file: Option<&str>, pages: &[(u32, u64)]) -> crate::machine::Mapping {
    let anon: u64 = if file.is_some() { 0 } else { pages.iter().map(|p| p.1).sum() };
    crate::machine::Mapping {
        start,
        policy: "default".into(),
        kind: if file.is_some() { crate::machine::MappingKind::File } else { crate::machine::MappingKind::Anon },
        file: file.map(str::to_string),
        pages_by_node: pages.iter().copied().collect(),
        page_size_bytes: 4096,
        anon_pages: anon,
        dirty_pages: anon,
    }
}

/// Where PostgreSQL's main shared memory sits: the postmaster maps it before
/// it forks, so every backend sees it at the same address.
pub const POSTGRES_SHARED_MEMORY: u64 = 0x7f3a_0000_0000;

/// Where each process of [`postgres_capture`] keeps memory of its own.
pub const POSTGRES_PRIVATE_MEMORY: u64 = 0x55d0_0000_0000;

/// A 6 s capture of a PostgreSQL instance (`--tree`, attached) on two
/// nodes (CPUs 0-3 and 4-7): the postmaster (pid 2000, on CPU 0) first
/// touches 128 MiB of shared memory on node 0; one single-threaded backend
/// per CPU of `backend_cpus` (pids 2101...) uses it, with NUMA hinting
/// faults, and touches 4 MiB of its own memory locally. Snapshots of every
/// process name them (the postmaster's command, the backends' titles) and
/// its systemd unit.
pub fn postgres_capture(backend_cpus: &[u32]) -> (StartFacts, Vec<Event>, EndFacts) {
    const S: u64 = 1_000_000_000;
    let t0 = 2_000 * S;
    let postmaster = 2000;
    let topology = Topology::synthetic(&[vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
    let node_of = |cpu: u32| u16::from(cpu >= 4);
    let mut start = start_facts(&topology, t0, postmaster, &[(postmaster, "postgres", 0)]);
    let backends: Vec<(u32, u32)> = backend_cpus.iter().enumerate().map(|(i, &cpu)| (2101 + i as u32, cpu)).collect();
    for &(pid, cpu) in &backends {
        start.initial_threads.push(InitialThread { tid: pid, tgid: pid, comm: "postgres".into(), cpu: Some(cpu) });
    }
    start.target.scope = TargetScope::Tree;
    start.target.pids = std::iter::once(postmaster).chain(backends.iter().map(|b| b.0)).collect();
    let shm_region = POSTGRES_SHARED_MEMORY >> numatrace_common::REGION_SHIFT;
    let mut ev = Vec::new();
    for i in 0..64u64 {
        ev.push(first_touch(t0 + S / 10 + i * 1_000_000, postmaster, postmaster, shm_region + i, 512, 0, 0));
    }
    let private = POSTGRES_PRIVATE_MEMORY >> numatrace_common::REGION_SHIFT;
    for &(pid, cpu) in &backends {
        ev.push(first_touch(t0 + S / 2, pid, pid, private + u64::from(pid), 1024, node_of(cpu), node_of(cpu)));
        for sec in 1..6u64 {
            for i in 0..64u64 {
                ev.push(hinting(
                    t0 + sec * S + i * 1000 + u64::from(pid),
                    pid,
                    pid,
                    shm_region + i,
                    8,
                    node_of(cpu),
                    0,
                ));
            }
        }
    }
    ev.sort_by_key(|e| e.header().ts_ns);
    let unit = "postgresql@15-main.service";
    let identity = |cmdline: &[&str], title_rewritten| crate::machine::ProcessIdentity {
        exe: Some("/usr/lib/postgresql/15/bin/postgres".into()),
        cmdline: cmdline.iter().map(|w| w.to_string()).collect(),
        title_rewritten,
        systemd_unit: Some(unit.into()),
        container: None,
    };
    let shm = Some("/dev/zero\\040(deleted)");
    let mut end = EndFacts::cut_short(6.0, StopReason::Duration);
    end.process_last = Some(process_snapshot(
        postmaster,
        "postgres",
        identity(
            &[
                "/usr/lib/postgresql/15/bin/postgres",
                "-D",
                "/var/lib/postgresql/15/main",
                "-c",
                "config_file=/etc/postgresql/15/main/postgresql.conf",
            ],
            false,
        ),
        vec![mapping(POSTGRES_PRIVATE_MEMORY, None, &[(0, 512)]), mapping(POSTGRES_SHARED_MEMORY, shm, &[(0, 32768)])],
    ));
    end.other_processes_last = backends
        .iter()
        .map(|&(pid, cpu)| {
            process_snapshot(
                pid,
                "postgres",
                identity(&[&format!("postgres: 15/main: postgres bench [local] SELECT {pid}")], true),
                vec![
                    mapping(POSTGRES_PRIVATE_MEMORY, None, &[(u32::from(node_of(cpu)), 1024)]),
                    mapping(POSTGRES_SHARED_MEMORY, shm, &[(0, 32768)]),
                ],
            )
        })
        .collect();
    // At the start the shared memory was mapped but not yet touched, nor
    // the backends' own memory (their first touches are in the capture).
    let untouched = |snap: &crate::machine::ProcessSnapshot| {
        let mut before = snap.clone();
        if let Some(maps) = before.numa_maps.as_mut() {
            for m in &mut maps.mappings {
                if m.file.is_some() || snap.pid != postmaster {
                    m.pages_by_node.clear();
                }
            }
            before.memory_by_node = maps.memory_by_node();
        }
        before
    };
    start.process_before = end.process_last.as_ref().map(untouched);
    start.other_processes_before = end.other_processes_last.iter().map(untouched).collect();
    (start, ev, end)
}
