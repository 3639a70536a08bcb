//! Synthetic event streams, one per cause: the ranking and shares must
//! come out as the scenario was built.
use std::collections::BTreeMap;

use numatrace_common::{
    EventHeader, EventKind, FirstTouchEvent, HintingFaultEvent, NumaPlacementEvent, PageMigrationEvent, TaskMigrationEvent,
};

use super::*;
use crate::{
    aggregate::Aggregator,
    event::Event,
    kernel::KernelTotals,
    sysinfo::MachineTopology,
    topology::Topology,
};

const S: u64 = 1_000_000_000;
const START: u64 = 100 * S;

fn agg() -> Aggregator {
    let reasons = BTreeMap::from([(3, "syscall_or_cpuset".to_string()), (4, "mempolicy_mbind".into()), (5, "numa_misplaced".into())]);
    let mut a = Aggregator::new(Topology::synthetic(&[vec![0, 1], vec![2, 3]]), reasons);
    for tid in [10, 11, 12] {
        a.add_thread(tid, 10, "app", None);
    }
    a
}

fn hdr(kind: EventKind, tid: u32, ts: u64) -> EventHeader {
    EventHeader { kind: kind as u32, cpu: 0, ts_ns: START + ts, tgid: 10, tid }
}

fn touch(a: &mut Aggregator, tid: u32, region: u64, cpu_node: u16, page_node: u16, pages: u64, ts: u64) {
    a.ingest(&Event::FirstTouch(FirstTouchEvent {
        header: hdr(EventKind::FirstTouch, tid, ts),
        region,
        pages,
        last_ts_ns: START + ts + 1000,
        cpu_node,
        page_node,
        _pad: 0,
    }));
}

fn migrate(a: &mut Aggregator, tid: u32, from: i32, to: i32, ts: u64) {
    a.ingest(&Event::TaskMigration(TaskMigrationEvent { header: hdr(EventKind::TaskMigration, tid, ts), orig_cpu: from, dest_cpu: to }));
}

/// A hinting-fault run of `pages` faults of `tid` in `region`.
#[allow(clippy::too_many_arguments)]
fn hint(a: &mut Aggregator, tid: u32, region: u64, cpu_node: u16, mem_node: u16, pages: u32, migrated: u32, local: u32, ts: u64) {
    a.ingest(&Event::HintingFault(HintingFaultEvent {
        header: hdr(EventKind::HintingFault, tid, ts),
        region,
        last_ts_ns: START + ts + S,
        faults: pages,
        pages,
        migrated_pages: migrated,
        cpu_node,
        mem_node,
        local,
        _pad: 0,
    }));
}

/// Ends the capture with run times: (tid, node, seconds).
fn finish(a: &mut Aggregator, runtime: &[(u32, u32, f64)]) {
    for &(tid, node, s) in runtime {
        a.add_run_time(tid, node, (s * 1e9) as u64);
    }
    a.finish(KernelTotals::default());
}

fn env() -> FixEnv {
    let machine = MachineTopology::synthetic(&[vec![0, 1], vec![2, 3]], 8 << 30);
    FixEnv { pid: 10, nodes: machine.nodes, resident_bytes: 64 << 20, ..Default::default() }
}

fn run(a: &Aggregator, ctx: &ProcessContext) -> Vec<Cause> {
    attribute(a, ctx, &FixEnv { started_by_numatrace: ctx.started_by_numatrace, ..env() }, START)
}

fn command_ctx() -> ProcessContext {
    ProcessContext { started_by_numatrace: true, ..Default::default() }
}

#[test]
fn init_thread_pattern_without_hinting_faults() {
    let mut a = agg();
    for r in 0..8 {
        touch(&mut a, 10, r, 0, 0, 512, S / 10);
    }
    finish(&mut a, &[(10, 0, 0.05), (11, 1, 2.0), (12, 1, 2.0)]);
    let causes = run(&a, &command_ctx());
    let top = &causes[0];
    assert_eq!(top.kind, CauseKind::FirstTouchByOtherThread);
    assert!((top.pages as f64 - 4096.0).abs() <= 4096.0 * 0.05, "{} pages", top.pages);
    assert!(top.share > 0.99);
    assert_eq!(top.memory_nodes, vec![0]);
    assert_eq!(top.thread_nodes, vec![1]);
    assert!(top.threads.contains(&10) && top.threads.contains(&11));
    assert!(top.summary.contains("init-thread"), "{}", top.summary);
    assert!(top.fixes.iter().any(|f| f.commands.iter().any(|c| c.contains("--interleave=all"))));
    assert!(!top.destructive);
}

#[test]
fn threads_using_their_own_memory_are_not_blamed() {
    let mut a = agg();
    touch(&mut a, 11, 1, 1, 1, 512, S);
    touch(&mut a, 12, 2, 0, 0, 512, S);
    finish(&mut a, &[(11, 1, 2.0), (12, 0, 2.0)]);
    let causes = run(&a, &command_ctx());
    assert!(causes.iter().all(|c| c.pages == 0), "{causes:?}");
}

#[test]
fn thread_migrated_off_its_memory() {
    let mut a = agg();
    for r in 0..4 {
        touch(&mut a, 11, r, 0, 0, 512, S);
    }
    migrate(&mut a, 11, 1, 2, 2 * S);
    finish(&mut a, &[(11, 0, 0.2), (11, 1, 3.0)]);
    let causes = run(&a, &command_ctx());
    assert_eq!(causes[0].kind, CauseKind::ThreadMigrated);
    assert_eq!(causes[0].pages, 2048);
    assert_eq!(causes[0].memory_nodes, vec![0]);
    assert_eq!(causes[0].thread_nodes, vec![1]);
    assert!(causes[0].window.start_s >= 0.9 && causes[0].window.end_s >= 2.0, "{:?}", causes[0].window);
    assert!(causes[0].recommendation.contains("numactl --cpunodebind=0 --membind=0"), "{}\n{:#?}", causes[0].recommendation, causes[0].fixes);
}

#[test]
fn balancer_moves_are_not_ordinary_migrations() {
    let mut a = agg();
    touch(&mut a, 11, 1, 0, 0, 512, S);
    migrate(&mut a, 11, 1, 2, 2 * S);
    a.ingest(&Event::NumaPlacement(NumaPlacementEvent {
        header: hdr(EventKind::NumaTaskMove, 11, 2 * S - 1000),
        src_tid: 11,
        src_tgid: 10,
        src_cpu: 1,
        src_node: 0,
        dst_cpu: 2,
        dst_node: 1,
        ..Default::default()
    }));
    finish(&mut a, &[(11, 1, 3.0)]);
    let causes = run(&a, &command_ctx());
    assert_eq!(causes[0].kind, CauseKind::NumaBalancer);
    assert!(causes.iter().all(|c| c.kind != CauseKind::ThreadMigrated));
}

#[test]
fn allocation_spill_when_no_policy_explains_it() {
    let mut a = agg();
    touch(&mut a, 11, 1, 0, 0, 1000, S);
    touch(&mut a, 11, 2, 0, 1, 3000, S);
    finish(&mut a, &[(11, 0, 2.0)]);
    let causes = run(&a, &command_ctx());
    assert_eq!(causes[0].kind, CauseKind::AllocationSpill);
    assert_eq!(causes[0].pages, 3000);
    assert_eq!(causes[0].share, 1.0);
}

#[test]
fn memory_policy_when_bind_explains_it() {
    let mut a = agg();
    touch(&mut a, 11, 1, 1, 0, 3000, S);
    finish(&mut a, &[(11, 1, 2.0)]);
    let ctx = ProcessContext { process_policy: Some((context::PolicyMode::Bind, vec![0])), ..command_ctx() };
    let causes = run(&a, &ctx);
    assert_eq!(causes[0].kind, CauseKind::MemoryPolicy);
    assert_eq!(causes[0].pages, 3000);
    assert!(causes[0].evidence[0].contains("bind"));
    assert!(causes[0].recommendation.contains("--cpunodebind=1 --membind=1"), "{}", causes[0].recommendation);
}

#[test]
fn cpuset_that_forbids_the_fix_shows_the_cgroup_change() {
    let mut a = agg();
    touch(&mut a, 11, 1, 1, 0, 3000, S);
    finish(&mut a, &[(11, 1, 2.0)]);
    let ctx = ProcessContext { cpuset_mems: Some(vec![0]), ..command_ctx() };
    let mut env = env();
    env.constraints.allowed = crate::sysinfo::Allowed { cpus: vec![0, 1, 2, 3], mems: vec![0] };
    let causes = attribute(&a, &ctx, &env, START);
    assert_eq!(causes[0].kind, CauseKind::MemoryPolicy);
    assert!(causes[0].blocked.iter().any(|b| b.contains("forbids")), "{:?}", causes[0].blocked);
}

#[test]
fn balancer_page_migrations_and_hinting_faults() {
    let mut a = agg();
    touch(&mut a, 11, 1, 0, 0, 512, S);
    for (ts, local) in [(2 * S, 0), (3 * S, 1)] {
        hint(&mut a, 11, 1, 0, 0, 100, 0, local, ts);
    }
    a.ingest(&Event::PageMigration(PageMigrationEvent {
        header: hdr(EventKind::PageMigration, 11, 3 * S),
        succeeded: 900,
        reason: 5,
        ..Default::default()
    }));
    finish(&mut a, &[(11, 0, 3.0)]);
    let causes = run(&a, &command_ctx());
    assert_eq!(causes[0].kind, CauseKind::NumaBalancer);
    assert_eq!(causes[0].pages, 900);
    assert!(causes[0].fixes.iter().any(|f| f.destructive && f.commands.iter().any(|c| c.contains("numa_balancing"))));
}

#[test]
fn hinting_faults_name_the_thread_that_placed_the_memory() {
    let mut a = agg();
    touch(&mut a, 10, 1, 0, 0, 512, S);
    hint(&mut a, 11, 1, 1, 0, 2000, 0, 0, 2 * S);
    finish(&mut a, &[(10, 0, 0.1), (11, 1, 3.0)]);
    let causes = run(&a, &command_ctx());
    assert_eq!(causes[0].kind, CauseKind::FirstTouchByOtherThread);
    // Rescans of one region count at most the region's 512 pages.
    assert_eq!(causes[0].pages, 512);
}

#[test]
fn explicit_migrations() {
    let mut a = agg();
    a.ingest(&Event::PageMigration(PageMigrationEvent {
        header: hdr(EventKind::PageMigration, 11, S),
        succeeded: 5000,
        reason: 3,
        on_behalf: 1,
        ..Default::default()
    }));
    finish(&mut a, &[(11, 0, 1.0)]);
    let causes = run(&a, &command_ctx());
    assert_eq!(causes[0].kind, CauseKind::ExplicitMigration);
    assert_eq!(causes[0].pages, 5000);
    assert!(causes[0].evidence[0].contains("on its behalf"));
}

#[test]
fn memory_placed_before_an_attach() {
    let mut a = agg();
    finish(&mut a, &[(11, 1, 2.0), (12, 1, 2.0)]);
    let ctx = ProcessContext { pages_by_node_at_start: vec![(0, 10_000), (1, 100)], ..Default::default() };
    let causes = run(&a, &ctx);
    assert_eq!(causes[0].kind, CauseKind::PlacedBeforeCapture);
    assert_eq!(causes[0].pages, 10_000);
    assert!(causes[0].fixes.iter().any(|f| f.destructive), "re-pinning a live process is marked destructive");
}

#[test]
fn ranks_by_share_and_shares_sum_to_one() {
    let mut a = agg();
    touch(&mut a, 11, 1, 0, 1, 3000, S);
    a.ingest(&Event::PageMigration(PageMigrationEvent {
        header: hdr(EventKind::PageMigration, 11, S),
        succeeded: 1000,
        reason: 4,
        ..Default::default()
    }));
    finish(&mut a, &[(11, 0, 1.0)]);
    let causes = run(&a, &command_ctx());
    assert_eq!(causes.iter().map(|c| c.kind).collect::<Vec<_>>(), vec![CauseKind::AllocationSpill, CauseKind::ExplicitMigration]);
    assert!((causes[0].share - 0.75).abs() < 1e-9);
    assert!((causes.iter().map(|c| c.share).sum::<f64>() - 1.0).abs() < 1e-9);
}

#[test]
fn one_node_machines_get_no_pinning_advice() {
    let mut a = Aggregator::new(Topology::synthetic(&[vec![0, 1]]), BTreeMap::new());
    touch(&mut a, 11, 1, 0, 0, 100, S);
    finish(&mut a, &[(11, 0, 1.0)]);
    let machine = MachineTopology::synthetic(&[vec![0, 1]], 8 << 30);
    let env = FixEnv { nodes: machine.nodes, ..Default::default() };
    assert!(attribute(&a, &command_ctx(), &env, START).is_empty());
    assert!(headline(&[], false).contains("One NUMA node"));
}

#[test]
fn a_few_stray_pages_do_not_make_a_headline() {
    let mut a = agg();
    touch(&mut a, 11, 1, 0, 0, 1, S);
    migrate(&mut a, 11, 1, 2, 2 * S);
    finish(&mut a, &[(11, 1, 3.0)]);
    let causes = run(&a, &command_ctx());
    assert_eq!(causes[0].pages, 1);
    let line = headline(&causes, true);
    assert!(line.starts_with("No significant remote memory"), "{line}");
}

#[test]
fn init_thread_that_ran_as_long_as_its_workers_is_still_the_init_pattern() {
    // Under emulation the init thread's memset takes as long as the workers run.
    let mut a = agg();
    for r in 0..16 {
        touch(&mut a, 10, r, 0, 0, 512, S / 10);
    }
    touch(&mut a, 11, 100, 0, 0, 2, S / 10);
    touch(&mut a, 12, 101, 0, 0, 2, S / 10);
    migrate(&mut a, 11, 0, 2, S);
    migrate(&mut a, 12, 0, 2, S);
    finish(&mut a, &[(10, 0, 1.2), (11, 1, 0.5), (12, 1, 0.5)]);
    let causes = run(&a, &command_ctx());
    assert_eq!(causes[0].kind, CauseKind::FirstTouchByOtherThread, "{causes:#?}");
    assert!((causes[0].pages as f64 - 8192.0).abs() <= 8192.0 * 0.05, "{} pages", causes[0].pages);
}

#[test]
fn threads_that_allocate_their_own_memory_are_not_an_init_pattern() {
    let mut a = agg();
    for r in 0..16 {
        touch(&mut a, 10, r, 0, 0, 512, S / 10);
    }
    for r in 100..116 {
        touch(&mut a, 11, r, 1, 1, 512, S / 10);
    }
    finish(&mut a, &[(10, 0, 1.0), (11, 1, 1.0)]);
    assert!(run(&a, &command_ctx()).iter().all(|c| c.pages == 0));
}

#[test]
fn pages_the_balancer_moved_home_are_not_still_remote() {
    // Attached to a process whose 8192 pages sat on node 1 while it ran on node 0;
    // the balancer migrated them all home during the capture.
    let mut a = agg();
    for r in 0..16 {
        hint(&mut a, 11, r, 0, 0, 512, 512, 0, 2 * S);
    }
    a.ingest(&Event::PageMigration(PageMigrationEvent {
        header: hdr(EventKind::PageMigration, 11, 2 * S),
        succeeded: 8192,
        reason: 5,
        ..Default::default()
    }));
    finish(&mut a, &[(11, 0, 3.0)]);
    let ctx = ProcessContext { pages_by_node_at_start: vec![(1, 8192), (0, 100)], ..Default::default() };
    let causes = run(&a, &ctx);
    assert_eq!(causes[0].kind, CauseKind::NumaBalancer, "{causes:#?}");
    assert_eq!(causes[0].pages, 8192);
    assert!(causes[0].summary.contains("fix in progress"), "{}", causes[0].summary);
    assert!(causes.iter().filter(|c| c.kind == CauseKind::PlacedBeforeCapture).all(|c| c.pages < 256), "{causes:#?}");
}

#[test]
fn the_balancer_evidence_names_what_it_repaired() {
    let mut a = agg();
    touch(&mut a, 10, 1, 0, 0, 512, S);
    hint(&mut a, 11, 1, 1, 1, 512, 512, 0, 2 * S);
    a.ingest(&Event::PageMigration(PageMigrationEvent {
        header: hdr(EventKind::PageMigration, 11, 2 * S),
        succeeded: 512,
        reason: 5,
        ..Default::default()
    }));
    finish(&mut a, &[(10, 0, 0.1), (11, 1, 3.0)]);
    let causes = run(&a, &command_ctx());
    assert_eq!(causes[0].kind, CauseKind::NumaBalancer);
    assert_eq!(causes[0].pages, 512);
    assert!(causes[0].evidence.iter().any(|e| e.contains("init-thread pattern")), "{:#?}", causes[0].evidence);
}
