//! Services of several processes, from synthetic captures: shared memory
//! across processes, each one's cpuset, the per-process report, and fixes
//! for the unit they are deployed as.
use numatrace_core::{
    attribution::CauseKind,
    capture::synthetic,
    event::Event,
    facts::{CgroupScope, ContainerRuntime, SessionFacts, TargetScope},
    fixes::FixKind,
    machine::{CgroupVersion, Cpuset, Topology},
};

const S: u64 = 1_000_000_000;
const START: u64 = 100 * S;

fn replay(
    start: numatrace_core::facts::StartFacts,
    events: &[Event],
    end: numatrace_core::facts::EndFacts,
) -> numatrace_core::report::Report {
    SessionFacts { start, end }.replay(events).0
}

#[test]
fn a_postmasters_first_touch_of_shared_memory_is_named_in_its_backends_faults() {
    let (start, events, end) = synthetic::postgres_capture(&[4, 5, 6]);
    let r = replay(start.clone(), &events, end.clone());
    let top = &r.causes[0];
    assert_eq!(top.kind, CauseKind::FirstTouchByOtherThread, "{:#?}", r.causes);
    assert_eq!(top.pages, 3 * 64 * 40);
    assert!(top.summary.contains("because process 2000 (postgres) touched it first"), "{}", top.summary);
    assert!(top.evidence.iter().any(|e| e
        == "process 2101 (postgres) running on node 1 uses shared memory /dev/zero (deleted) that process 2000 (postgres) first touched on node 0"));
    let by_pid: Vec<(u32, u64)> = top.processes.iter().map(|p| (p.pid, p.pages)).collect();
    assert_eq!(by_pid, vec![(2000, 7680), (2101, 2560), (2102, 2560), (2103, 2560)]);
    // Live: the backends join their memory first (nothing copied), then the instance's own fix.
    assert_eq!(top.fixes[0].commands, vec!["for pid in 2000 2101 2102 2103; do taskset -a -p -c 0-3 $pid; done"]);
    assert_eq!(top.fixes[1].kind, FixKind::PostgresBind);
    // Without the snapshots nothing says the regions are one memory:
    // the backends' faults meet no first touch, and no cause names the postmaster.
    let (mut start, mut blind) = (start, end);
    blind.process_last = None;
    blind.other_processes_last.clear();
    start.process_before = None;
    start.other_processes_before.clear();
    let r = replay(start, &events, blind);
    assert!(r.causes.iter().all(|c| c.kind != CauseKind::FirstTouchByOtherThread), "{:#?}", r.causes);
}

/// Run time of [`synthetic::postgres_capture`]'s processes from `t0`: the
/// postmaster 50 ms, each backend 4 s.
fn push_run_times(events: &mut Vec<Event>, t0: u64) {
    for pid in [2000, 2101, 2102, 2103] {
        let run = if pid == 2000 { S / 20 } else { 4 * S };
        events.push(synthetic::run_time_sample(t0 + S / 100, pid, pid, 0));
        events.push(synthetic::run_time_sample(t0 + 5 * S, pid, pid, run));
    }
}

/// Huge pages for shared_buffers, or balancing off: no hinting faults.
/// Where the backends ran says who used the postmaster's memory.
#[test]
fn without_hinting_faults_the_backends_run_time_makes_them_users() {
    let (start, events, end) = synthetic::postgres_capture(&[4, 5, 6]);
    let t0 = start.start_ns;
    let mut events: Vec<Event> = events.into_iter().filter(|e| !matches!(e, Event::HintingFault(_))).collect();
    push_run_times(&mut events, t0);
    events.sort_by_key(|e| e.header().ts_ns);
    let r = replay(start.clone(), &events, end.clone());
    let top = &r.causes[0];
    assert_eq!(top.kind, CauseKind::FirstTouchByOtherThread, "{:#?}", r.causes);
    assert_eq!(top.threads, vec![2000, 2101, 2102, 2103]);
    assert!(top.pages > 32768 * 9 / 10 && top.pages <= 32768, "{}", top.pages);
    assert!(
        top.evidence[0].starts_with("process 2000 (postgres) first touched 32768 pages of shared memory /dev/zero (deleted) on node 0 and ran 0% of the time its 4 processes ran; 3 threads of theirs ran 100% of their time on node(s) 1"),
        "{:?}",
        top.evidence
    );
    // The same without the snapshots: the postmaster alone in its process, no user.
    let (mut start, mut blind) = (start, end);
    blind.process_last = None;
    blind.other_processes_last.clear();
    start.process_before = None;
    start.other_processes_before.clear();
    let r = replay(start, &events, blind);
    assert!(r.causes.iter().all(|c| c.kind != CauseKind::FirstTouchByOtherThread), "{:#?}", r.causes);
}

/// Balancing on, but the balancer sampled the shared memory only in the
/// process that first touched it (lab: postgres-prewarm-on, where the
/// prewarming backend's scanner was the only one to reach the buffers).
/// Each process's page tables are scanned apart: its faults say nothing of
/// the backends' use, and where the backends ran stands in, as with
/// balancing off. Faults while it was still placing the memory are not use
/// either.
#[test]
fn the_touchers_own_hinting_faults_do_not_measure_other_processes_use() {
    let (start, events, end) = synthetic::postgres_capture(&[4, 5, 6]);
    let t0 = start.start_ns;
    let shm_region = synthetic::POSTGRES_SHARED_MEMORY >> numatrace_common::REGION_SHIFT;
    let private = synthetic::POSTGRES_PRIVATE_MEMORY >> numatrace_common::REGION_SHIFT;
    for toucher_faults_at in [S / 10, 3 * S] {
        let mut events: Vec<Event> = events.iter().filter(|e| !matches!(e, Event::HintingFault(_))).copied().collect();
        for i in 0..64u64 {
            events.push(synthetic::hinting(t0 + toucher_faults_at + i * 1000, 2000, 2000, shm_region + i, 4, 0, 0));
        }
        push_run_times(&mut events, t0);
        for pid in [2101, 2102, 2103] {
            // The backends' scanners sampled their own memory only.
            events.push(synthetic::hinting(t0 + 2 * S, pid, pid, private + u64::from(pid), 8, 1, 1));
        }
        events.sort_by_key(|e| e.header().ts_ns);
        let r = replay(start.clone(), &events, end.clone());
        let top = &r.causes[0];
        assert_eq!(top.kind, CauseKind::FirstTouchByOtherThread, "faults at {toucher_faults_at} ns: {:#?}", r.causes);
        assert!(top.pages > 32768 * 9 / 10 && top.pages <= 32768, "faults at {toucher_faults_at} ns: {}", top.pages);
    }
}

/// Backends that connect during the capture: forked by the postmaster, no
/// snapshot of their own. They map its shared memory where it does.
#[test]
fn backends_forked_during_the_capture_share_the_postmasters_memory() {
    let (mut start, events, mut end) = synthetic::postgres_capture(&[4, 5, 6]);
    start.initial_threads.retain(|t| t.tid == 2000);
    start.target.pids = vec![2000];
    start.other_processes_before.clear();
    end.other_processes_last.clear();
    let mut events: Vec<Event> = events;
    for (i, pid) in [2101u32, 2102, 2103].into_iter().enumerate() {
        events.push(synthetic::process_new(start.start_ns + S / 4, pid, 2000, "postgres", 4 + i as u32));
    }
    events.sort_by_key(|e| e.header().ts_ns);
    let r = replay(start, &events, end);
    let top = &r.causes[0];
    assert_eq!(top.kind, CauseKind::FirstTouchByOtherThread, "{:#?}", r.causes);
    assert_eq!(top.pages, 3 * 64 * 40);
    assert!(top.summary.contains("because process 2000 (postgres) touched it first"), "{}", top.summary);
    let backend = r.processes.iter().find(|p| p.pid == 2102).expect("the forked backend is a process");
    assert_eq!(backend.memory_source, numatrace_core::report::MemorySource::FirstTouch);
}

#[test]
fn backends_on_both_nodes_share_the_memory_across_nodes() {
    let (start, events, end) = synthetic::postgres_capture(&[4, 5, 1]);
    let r = replay(start, &events, end);
    assert_eq!(r.causes[0].kind, CauseKind::SharedAcrossNodes, "{:#?}", r.causes);
    assert!(r.causes[0].evidence.iter().any(|e| e.starts_with("threads on nodes 0-1 all use the same memory")));
    // The instance fits on a node: all of it there, backends included.
    assert_eq!(r.causes[0].fixes[0].kind, FixKind::PostgresBind);
}

#[test]
fn threads_are_grouped_by_process() {
    let (start, events, end) = synthetic::postgres_capture(&[4, 5, 6]);
    let r = replay(start, &events, end);
    let pids: Vec<u32> = r.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids, vec![2000, 2101, 2102, 2103]);
    let post = &r.processes[0];
    assert_eq!((post.comm.as_str(), post.threads.as_slice()), ("postgres", &[2000][..]));
    assert_eq!(post.command[0], "/usr/lib/postgresql/15/bin/postgres");
    assert_eq!(post.memory_source, numatrace_core::report::MemorySource::Snapshot);
    assert_eq!(post.memory_by_node.get("0"), Some(&((512 + 32768) * 4096)));
    assert_eq!(post.first_touch_pages, 32768);
    let backend = &r.processes[1];
    assert_eq!(backend.command, vec!["postgres: 15/main: postgres bench [local] SELECT 2101"]);
    assert_eq!(backend.hinting_faults_remote, 64 * 40);
    assert_eq!(backend.remote_pages, 2560);
    assert_eq!(backend.causes[0].kind, CauseKind::FirstTouchByOtherThread);
    assert!(r.threads.iter().all(|t| t.tgid == t.tid));
    // Without snapshots: memory from the first touches, and said so.
    let (mut start, events, mut end) = synthetic::postgres_capture(&[4]);
    end.other_processes_last.clear();
    start.other_processes_before.clear();
    let r = replay(start, &events, end);
    let backend = &r.processes[1];
    assert_eq!(backend.memory_source, numatrace_core::report::MemorySource::FirstTouch);
    assert_eq!(backend.memory_by_node.get("1"), Some(&(1024 * 4096)));
    let text = numatrace_core::report::text::render(&r);
    assert!(text.contains("Processes: 2, all by remote pages"), "{text}");
    assert!(text.contains("(ft): no snapshot"), "{text}");
}

#[test]
fn five_hundred_processes_make_a_short_section_and_a_full_json() {
    let cpus: Vec<u32> = (0..500).map(|i| 4 + i % 4).collect();
    let (start, events, end) = synthetic::postgres_capture(&cpus);
    let r = replay(start, &events, end);
    assert_eq!(r.processes.len(), 501);
    let text = numatrace_core::report::text::render(&r);
    let section: Vec<&str> =
        text.lines().skip_while(|l| !l.starts_with("Processes:")).take_while(|l| !l.is_empty()).collect();
    assert_eq!(section.len(), 2 + numatrace_core::report::text::TOP_PROCESSES + 1, "{section:#?}");
    assert!(section[0].starts_with("Processes: 501, the top 10 by remote pages"), "{}", section[0]);
    assert!(section.last().is_some_and(|l| l.starts_with("  ... and 491 more processes (491 threads)")));
    // The cause's line names a few of its 501 threads.
    assert!(
        text.contains("threads 2000,2101,2102,2103,2104,2105,2106,2107,2108,2109,2110,2111,... (489 more)"),
        "{text}"
    );
    assert!(text.lines().all(|l| l.len() < 400), "a line of the text report is too long");
}

/// Process 300 of the target's cgroup: cpuset.cpus on node 1, cpuset.mems on node 0
/// (`docker run --cpuset-cpus=2-3 --cpuset-mems=0`); its threads run on
/// node 1 and every page they touch lands on node 0.
fn cpuset_capture(
    scope: TargetScope,
) -> (numatrace_core::facts::StartFacts, Vec<Event>, numatrace_core::facts::EndFacts) {
    let topology = Topology::synthetic(&[vec![0, 1], vec![2, 3]]);
    let mut start = synthetic::start_facts(&topology, START, 200, &[(200, "shell", 2)]);
    start.initial_threads.push(numatrace_core::facts::InitialThread {
        tid: 300,
        tgid: 300,
        comm: "db".into(),
        cpu: Some(2),
    });
    start.target.pids = vec![200, 300];
    start.target.scope = scope;
    let events: Vec<Event> =
        (0..8u64).map(|i| synthetic::first_touch(START + i * 1000, 300, 300, 50 + i, 512, 1, 0)).collect();
    let cpuset = Cpuset {
        version: CgroupVersion::V2,
        cgroup: "/lab.slice/db".into(),
        dir: "/sys/fs/cgroup/lab.slice/db".into(),
        cpus: vec![2, 3],
        mems: vec![0],
        effective_cpus: vec![2, 3],
        effective_mems: vec![0],
        cpus_set_by: Some("/lab.slice/db".into()),
        mems_set_by: Some("/lab.slice/db".into()),
    };
    let identity = numatrace_core::machine::ProcessIdentity::default();
    let mut end = numatrace_core::facts::EndFacts::cut_short(2.0, numatrace_core::facts::StopReason::Duration);
    let snap = |pid, name| {
        let mut s = synthetic::process_snapshot(pid, name, identity.clone(), Vec::new());
        s.cpuset = Some(cpuset.clone());
        s
    };
    end.process_last = Some(snap(200, "shell"));
    end.other_processes_last = vec![snap(300, "db")];
    (start, events, end)
}

fn lab_cgroup() -> CgroupScope {
    CgroupScope {
        path: "/lab.slice/db".into(),
        id: 4242,
        cpus_effective: Some(vec![2, 3]),
        mems_effective: Some(vec![0]),
    }
}

#[test]
fn a_cpuset_with_cpus_on_one_node_and_mems_on_another_is_memory_policy_per_process() {
    let (start, events, end) = cpuset_capture(TargetScope::Cgroup(lab_cgroup()));
    let r = replay(start.clone(), &events, end.clone());
    let top = &r.causes[0];
    assert_eq!(top.kind, CauseKind::MemoryPolicy, "{:#?}", r.causes);
    let text = numatrace_core::report::text::render(&r);
    assert_eq!(text.lines().nth(1), Some("traced cgroup /lab.slice/db: 2 processes for 2.0 s, stopped by duration"));
    assert_eq!(top.pages, 8 * 512);
    assert!(top.evidence[0].starts_with("cpuset.mems 0 excludes node 1"), "{:?}", top.evidence);
    // Nothing for one process of the cgroup (its command, its pid): the cgroup's fix does it for all,
    // first its threads to the memory (nothing copied), then the memory to its threads.
    let kinds: Vec<FixKind> = top.fixes.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, vec![FixKind::CgroupCpuset, FixKind::CgroupCpuset], "{:#?}", top.fixes);
    assert!(top.blocked.is_empty(), "{:?}", top.blocked);
    assert_eq!(
        top.fixes[0].commands,
        vec!["echo 0-1 > /sys/fs/cgroup/lab.slice/db/cpuset.cpus", "echo 0 > /sys/fs/cgroup/lab.slice/db/cpuset.mems"]
    );
    assert!(!top.fixes[0].destructive);
    let f = &top.fixes[1];
    assert_eq!(
        f.commands,
        vec![
            "echo 2-3 > /sys/fs/cgroup/lab.slice/db/cpuset.cpus",
            "# DESTRUCTIVE: cgroup v2 migrates the memory of its tasks to node(s) 1 as cpuset.mems changes",
            "echo 1 > /sys/fs/cgroup/lab.slice/db/cpuset.mems",
        ]
    );
    // The cpuset of the process that touched, not the target's: without
    // the db's snapshot nothing explains the placement.
    let mut only_target = end;
    only_target.other_processes_last.clear();
    if let Some(s) = only_target.process_last.as_mut() {
        s.cpuset = None;
    }
    let r = replay(start, &events, only_target);
    assert_eq!(r.causes[0].kind, CauseKind::AllocationSpill, "{:#?}", r.causes);
}

#[test]
fn a_cpuset_set_by_a_parent_is_widened_there_first() {
    let (start, events, mut end) = cpuset_capture(TargetScope::Cgroup(lab_cgroup()));
    for s in end.process_last.iter_mut().chain(end.other_processes_last.iter_mut()) {
        if let Some(cs) = s.cpuset.as_mut() {
            cs.mems_set_by = Some("/lab.slice".into());
        }
    }
    let r = replay(start, &events, end);
    // The memory's node is within the parent's: the first fix needs no widening, the second does.
    assert_eq!(r.causes[0].fixes[0].commands[0], "echo 0-1 > /sys/fs/cgroup/lab.slice/db/cpuset.cpus");
    let f = &r.causes[0].fixes[1];
    assert_eq!(
        f.commands[0],
        "# node(s) 1 not in /lab.slice's cpuset.mems.effective (0): widen /lab.slice first (its other children keep what they have)"
    );
    assert_eq!(f.commands[1], "echo 0-1 > /sys/fs/cgroup/lab.slice/cpuset.mems");
}

#[test]
fn a_unit_or_a_container_gets_its_own_fix() {
    let unit = TargetScope::Unit { name: "db.service".into(), cgroup: lab_cgroup() };
    let (start, events, end) = cpuset_capture(unit);
    let r = replay(start, &events, end);
    let f = &r.causes[0].fixes[0];
    assert_eq!(f.kind, FixKind::UnitDropIn);
    assert_eq!(
        f.commands[1],
        "cat > /etc/systemd/system/db.service.d/numatrace.conf <<'EOF'\n[Service]\nCPUAffinity=2-3\nNUMAPolicy=bind\nNUMAMask=1\nAllowedCPUs=2-3\nAllowedMemoryNodes=1\nEOF"
    );
    let id = "4f1c0a6e1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d".to_string();
    let container = TargetScope::Container { id, runtime: ContainerRuntime::Docker, cgroup: lab_cgroup() };
    let (start, events, end) = cpuset_capture(container);
    let r = replay(start, &events, end);
    let f = &r.causes[0].fixes[0];
    assert_eq!(f.kind, FixKind::ContainerUpdate);
    assert_eq!(f.commands[0], "docker update --cpuset-cpus=2-3 --cpuset-mems=1 4f1c0a6e1a2b");
    assert!(f.notes.iter().any(|n| n.starts_with("cgroup v2 moves its memory to node(s) 1")), "{:?}", f.notes);
}

/// Attached to the cpuset cgroup after its memory was placed: the db's
/// hinting faults from node 1 meet no first touch; its cpuset (mems 0,
/// CPUs on node 1) placed that memory, not an unknown past.
#[test]
fn memory_a_cpuset_placed_before_the_capture_is_memory_policy() {
    let (mut start, _, end) = cpuset_capture(TargetScope::Cgroup(lab_cgroup()));
    let events: Vec<Event> =
        (0..8u64).map(|i| synthetic::hinting(START + S + i * 1000, 300, 300, 50 + i, 64, 1, 0)).collect();
    let with_memory = |s: &numatrace_core::machine::ProcessSnapshot, pages: u64| {
        let mut s = s.clone();
        let maps = vec![synthetic::mapping(0x4000_0000, None, &[(0, pages)])];
        s.memory_by_node =
            numatrace_core::machine::NumaMaps { mappings: maps.clone(), skipped_lines: 0 }.memory_by_node();
        s.numa_maps = Some(numatrace_core::machine::NumaMaps { mappings: maps, skipped_lines: 0 });
        s
    };
    start.process_before = end.process_last.as_ref().map(|s| with_memory(s, 16));
    start.other_processes_before = end.other_processes_last.iter().map(|s| with_memory(s, 4096)).collect();
    let r = replay(start.clone(), &events, end.clone());
    let top = &r.causes[0];
    assert_eq!(top.kind, CauseKind::MemoryPolicy, "{:#?}", r.causes);
    assert!(
        top.evidence[0].starts_with(
            "cpuset.mems 0 excludes node 1: thread 300 on node 1 uses memory on node 0 placed before the capture"
        ),
        "{:?}",
        top.evidence
    );
    assert_eq!(top.fixes[0].kind, FixKind::CgroupCpuset);
    // No hinting faults (balancing off): where the threads ran, against the memory at the start.
    let events = vec![
        synthetic::run_time_sample(START + S / 10, 300, 300, 0),
        synthetic::run_time_sample(START + S, 300, 300, S / 2),
    ];
    let r = replay(start, &events, end);
    let top = &r.causes[0];
    assert_eq!(top.kind, CauseKind::MemoryPolicy, "{:#?}", r.causes);
    assert_eq!(top.pages, 4096 + 16);
    assert!(
        top.evidence[0].starts_with("cpuset.mems 0 excludes node 1: 4112 pages were on node 0 before the capture"),
        "{:?}",
        top.evidence
    );
}
