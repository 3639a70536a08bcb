//! The NUMA lab's scenarios: each produces one placement pathology on
//! purpose and prints one JSON line of ground truth whose page counts come
//! from the kernel (move_pages(2) queries of where every page sits, node
//! numastat deltas), not from what the scenario meant to do.
use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::{
    numa::{self, MPOL_BIND, MPOL_DEFAULT, Region},
    placement,
};

/// Waits until `path` exists; fails after `limit`.
pub(crate) fn wait_for_file(path: &Path, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        ensure!(Instant::now() < deadline, "{} did not appear within {} s", path.display(), limit.as_secs());
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn emit(value: serde_json::Value) {
    println!("{value}");
}

fn node_of_cpu(cpu: u32) -> Option<u32> {
    placement::nodes().into_iter().find(|(_, cpus)| cpus.contains(&cpu)).map(|(n, _)| n)
}

/// A node and its CPUs.
type NodeCpus = (u32, Vec<u32>);

/// The first and the last node that have CPUs (the home and the far node).
fn home_and_far() -> Result<(NodeCpus, NodeCpus)> {
    let nodes = placement::nodes();
    ensure!(nodes.len() >= 2, "this scenario needs two NUMA nodes with CPUs, the machine has {}", nodes.len());
    let home = nodes.first().cloned().context("no node")?;
    let far = nodes.last().cloned().context("no node")?;
    Ok((home, far))
}

fn get(map: &BTreeMap<String, u64>, node: u32) -> u64 {
    map.get(&node.to_string()).copied().unwrap_or(0)
}

impl Region {
    /// MIB of fresh memory first-touched by this thread with its pages bound to
    /// `node`, then the policy back to default (so later moves are free to act).
    fn first_touch_on(mib: u64, node: u32) -> Result<Region> {
        numa::set_thread_policy(MPOL_BIND, &[node])?;
        let region = Region::new(mib * 256)?;
        region.touch(0..region.pages());
        numa::set_thread_policy(MPOL_DEFAULT, &[])?;
        Ok(region)
    }
}

/// Scenario 2, thread migrated away from its memory: the thread first-touches
/// MIB on the home node, then changes its own affinity to the far node and
/// keeps using the memory for SECONDS.
pub fn migrated(mib: u64, seconds: f64) -> Result<()> {
    let ((home, home_cpus), (far, far_cpus)) = home_and_far()?;
    placement::pin(&home_cpus)?;
    let region = Region::new(mib * 256)?;
    region.touch(0..region.pages());
    let placed = region.pages_by_node()?;
    let started = Instant::now();
    placement::pin(&far_cpus)?;
    let cpu_after_move = placement::current_cpu();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut sweeps = 0u64;
    while Instant::now() < deadline {
        region.sweep();
        sweeps += 1;
    }
    emit(json!({
        "workload": "migrated", "pid": std::process::id(), "tid": placement::gettid(),
        "pages": region.pages(), "home_node": home, "far_node": far,
        "pages_by_node": placed, "pages_by_node_at_end": region.pages_by_node()?,
        "cpu_after_move": cpu_after_move, "node_after_move": node_of_cpu(cpu_after_move), "sweeps": sweeps,
    }));
    Ok(())
}

/// Scenario 3, allocation spill: the thread, on the home node, first-touches
/// the home node's free memory plus EXTRA_MIB; what does not fit falls back
/// to other nodes. Reports where the pages landed and the numastat deltas.
pub fn spill(extra_mib: u64) -> Result<()> {
    let ((home, home_cpus), _) = home_and_far()?;
    placement::pin(&home_cpus)?;
    let free = numa::node_free_bytes(home)?;
    let others_free: u64 =
        numa::online_nodes().into_iter().filter(|&n| n != home).filter_map(|n| numa::node_free_bytes(n).ok()).sum();
    let extra = extra_mib << 20;
    ensure!(
        others_free > extra + (64 << 20),
        "the other nodes have {} MiB free, too little to take a {extra_mib} MiB spill safely",
        others_free >> 20
    );
    let region = Region::new((free + extra) / 4096)?;
    let before = numa::numastat()?;
    region.touch(0..region.pages());
    let after = numa::numastat()?;
    let placed = region.pages_by_node()?;
    emit(json!({
        "workload": "spill", "pid": std::process::id(), "tid": placement::gettid(),
        "home_node": home, "home_free_bytes_before": free, "pages": region.pages(),
        "pages_by_node": placed, "remote_pages": region.pages() - get(&placed, home),
        "numastat_delta": numa::numastat_delta(&before, &after),
    }));
    Ok(())
}

/// Scenario 4 (run under `numactl --cpunodebind=A --membind=B`): first-touches
/// MIB where the inherited CPU and memory policy put it, and says where that is.
pub fn place(mib: u64) -> Result<()> {
    let cpu = placement::current_cpu();
    let (policy, policy_nodes) = numa::thread_policy()?;
    let region = Region::new(mib * 256)?;
    region.touch(0..region.pages());
    let placed = region.pages_by_node()?;
    let cpu_node = node_of_cpu(placement::current_cpu());
    let remote = cpu_node.map(|n| region.pages() - get(&placed, n));
    emit(json!({
        "workload": "place", "pid": std::process::id(), "tid": placement::gettid(),
        "cpu": cpu, "cpu_node": cpu_node, "allowed_cpus": placement::allowed_cpus(),
        "policy": policy, "policy_nodes": policy_nodes,
        "pages": region.pages(), "pages_by_node": placed, "remote_pages": remote,
    }));
    Ok(())
}

/// Scenario 5, balancing sweep: memory first-touched on the far node (by a
/// temporary thread policy) while the thread runs on the home node; then the
/// thread may run anywhere and keeps using the memory for SECONDS, so that the
/// NUMA balancer (if on) moves the thread or the pages.
///
/// With GO_FILE, it waits (at most a minute) for that file to exist after the
/// setup and before it lets go of its CPU pinning: a tracer attached by pid in
/// between sees the balancer's work and nothing of the setup.
pub fn balance(mib: u64, seconds: f64, go_file: Option<&Path>) -> Result<()> {
    let ((home, home_cpus), (far, _)) = home_and_far()?;
    let all_cpus = placement::allowed_cpus();
    placement::pin(&home_cpus)?;
    let region = Region::first_touch_on(mib, far)?;
    let placed = region.pages_by_node()?;
    if let Some(go) = go_file {
        wait_for_file(go, Duration::from_secs(60))?;
    }
    placement::pin(&all_cpus)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut node = node_of_cpu(placement::current_cpu());
    let mut node_changes = vec![json!({"t_s": 0.0, "node": node})];
    let mut sweeps = 0u64;
    while Instant::now() < deadline {
        region.sweep();
        sweeps += 1;
        let now = node_of_cpu(placement::current_cpu());
        if now != node {
            node = now;
            node_changes.push(json!({"t_s": started.elapsed().as_secs_f64(), "node": now}));
        }
    }
    let at_end = region.pages_by_node()?;
    emit(json!({
        "workload": "balance", "pid": std::process::id(), "tid": placement::gettid(),
        "pages": region.pages(), "home_node": home, "far_node": far,
        "pages_by_node": placed, "pages_by_node_at_end": at_end,
        "pages_moved_to_home": get(&at_end, home).saturating_sub(get(&placed, home)),
        "cpu_node_changes": node_changes, "sweeps": sweeps, "seconds": started.elapsed().as_secs_f64(),
    }));
    Ok(())
}

/// Scenario 6, explicit migration: MIB first-touched on the home node, then
/// the first half moved to the far node with move_pages(2) and the second
/// half with mbind(2) and MPOL_MF_MOVE.
pub fn explicit(mib: u64) -> Result<()> {
    let ((home, home_cpus), (far, _)) = home_and_far()?;
    placement::pin(&home_cpus)?;
    let region = Region::first_touch_on(mib, home)?;
    let placed = region.pages_by_node()?;
    let half = region.pages() / 2;
    let moved_by_move_pages = region.move_to(0..half, far)?;
    let after_move_pages = region.pages_by_node()?;
    region.bind_and_move(half..region.pages(), far)?;
    let at_end = region.pages_by_node()?;
    emit(json!({
        "workload": "explicit", "pid": std::process::id(), "tid": placement::gettid(),
        "pages": region.pages(), "home_node": home, "far_node": far, "pages_by_node": placed,
        "moved_by_move_pages": moved_by_move_pages,
        "moved_by_mbind": get(&at_end, far).saturating_sub(get(&after_move_pages, far)),
        "pages_by_node_at_end": at_end,
    }));
    Ok(())
}

/// Scenario 6 with an outside mover (`migratepages PID 0 1`): first-touches
/// MIB on the home node, keeps using it for SECONDS while someone else moves
/// the process's pages, then says where they are.
///
/// With STOP_FILE it keeps going until that file exists (at most a minute) instead.
pub fn hold(mib: u64, seconds: f64, stop_file: Option<&Path>) -> Result<()> {
    let ((home, home_cpus), (far, _)) = home_and_far()?;
    placement::pin(&home_cpus)?;
    let region = Region::first_touch_on(mib, home)?;
    let placed = region.pages_by_node()?;
    let process_before = numa::process_pages_by_node()?;
    let deadline =
        Instant::now() + if stop_file.is_some() { Duration::from_secs(60) } else { Duration::from_secs_f64(seconds) };
    while Instant::now() < deadline && !stop_file.is_some_and(Path::exists) {
        region.sweep();
        std::thread::sleep(Duration::from_millis(50));
    }
    emit(json!({
        "workload": "hold", "pid": std::process::id(), "tid": placement::gettid(),
        "pages": region.pages(), "home_node": home, "far_node": far,
        "pages_by_node": placed, "pages_by_node_at_end": region.pages_by_node()?,
        "process_pages_by_node": process_before, "process_pages_by_node_at_end": numa::process_pages_by_node()?,
    }));
    Ok(())
}

/// Shared data: the main thread, on the first node, first-touches MIB; two
/// workers, one on the first node and one on the last, then read and write
/// all of it for SECONDS (a database buffer pool's shape). With NUMA
/// balancing on, the balancer moves its pages back and forth between them.
/// Prints where the pages sit at the end (move_pages query) and the
/// balancer's vmstat deltas over the run.
pub fn shared(mib: u64, seconds: f64) -> Result<()> {
    let nodes = placement::nodes();
    let (first, first_cpus) = nodes.first().cloned().context("no NUMA node with CPUs")?;
    let (last, last_cpus) = nodes.last().cloned().context("no NUMA node with CPUs")?;
    placement::pin(&first_cpus)?;
    let vmstat_before = numa::vmstat(&["numa_pages_migrated", "numa_hint_faults", "numa_hint_faults_local"])?;
    let main_migrated_before = numa::own_numa_pages_migrated();
    let region = std::sync::Arc::new(Region::new(mib * 256)?);
    region.touch(0..region.pages());
    let pages_at_start = region.pages_by_node()?;
    let main_tid = placement::gettid();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = [(first, first_cpus), (last, last_cpus)]
        .into_iter()
        .map(|(node, cpus)| {
            let region = region.clone();
            std::thread::spawn(move || -> Result<(u32, u32, u64, Option<u64>)> {
                placement::pin(&cpus)?;
                // Read once now, so that the read at the end reuses the stack
                // and heap pages it takes: a first touch at the end would make
                // all of the worker's run time placement, none use.
                let _ = numa::own_numa_pages_migrated();
                let mut sweeps = 0;
                while Instant::now() < deadline {
                    region.sweep();
                    sweeps += 1;
                }
                // Read before the thread exits and takes its count with it.
                Ok((placement::gettid(), node, sweeps, numa::own_numa_pages_migrated()))
            })
        })
        .collect();
    let mut per_worker = Vec::new();
    let mut task_migrated = main_migrated_before.and_then(|before| Some(numa::own_numa_pages_migrated()? - before));
    for w in workers {
        let (tid, node, sweeps, migrated) = w.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
        per_worker.push(json!({"tid": tid, "node": node, "sweeps": sweeps, "numa_pages_migrated": migrated}));
        task_migrated = task_migrated.zip(migrated).map(|(a, b)| a + b);
    }
    let vmstat_after = numa::vmstat(&["numa_pages_migrated", "numa_hint_faults", "numa_hint_faults_local"])?;
    let delta: BTreeMap<&String, u64> =
        vmstat_after.iter().map(|(k, v)| (k, v.saturating_sub(vmstat_before.get(k).copied().unwrap_or(0)))).collect();
    emit(json!({
        "workload": "shared", "pid": std::process::id(), "pages": region.pages(),
        "main": {"tid": main_tid, "node": first},
        "workers": per_worker,
        "pages_by_node": pages_at_start, "pages_by_node_at_end": region.pages_by_node()?,
        "vmstat_delta": delta,
        // The balancer's migrations for this process's threads alone (null where /proc does not say).
        "task_numa_pages_migrated": task_migrated,
    }));
    Ok(())
}
