//! The exporter's per-process kernel counters in a 2-node guest (Debian's
//! 6.1 under QEMU, one CPU per node, balancing off), against the kernel's
//! own record of the same tracepoints in a tracefs instance:
//! - `hop` moves a thread between the two CPUs, so across nodes, then sleeps;
//!   its `numatrace_cross_node_migrations_total` must be exactly the
//!   `sched_migrate_task` events of its threads between CPUs of two nodes;
//! - `resident` under `numactl --cpunodebind=0 --membind=1` first-touches
//!   16 MiB on node 1 from node 0, then sleeps; its
//!   `numatrace_remote_first_touch_pages_total` must be exactly the pages of
//!   the movable `mm_page_alloc` events of its threads whose page (pfn, placed
//!   by /proc/zoneinfo's node spans) is not on the node of the event's CPU.
//!
//! Both processes are asleep for several refreshes before the scrape, so the
//! exporter's last reading holds all they did, and both are still alive
//! (exited processes leave their series). Every count must match exactly,
//! for both processes and both counters.
//!
//! With balancing on (fast scans), `migrated` first-touches 64 MiB on node 0
//! and moves itself to node 1, where it keeps using it: the balancer's
//! hinting faults find the pages remote until it has migrated them. Its
//! `numatrace_remote_hinting_faults_total` must be exactly the
//! `task_numa_fault` calls of its threads without `TNF_FAULT_LOCAL`, as a
//! tracefs kprobe on the same function records them (the process is
//! stopped before the scrape, so no fault falls between the two).
//!
//! It boots QEMU, so it is `#[ignore]`d: `cargo xtask test` runs it, or
//! `cargo test -p numatrace-tests --test lab_kernel_counts -- --include-ignored`.
use std::{collections::BTreeMap, time::Duration};

use numatrace_tests::{guest, sections};
use serde_json::Value;
use xtask::lab::{Balancing, GuestCommand};

/// What `resident` first-touches on node 1.
const MIB: u64 = 16;
/// CPU changes `hop` makes.
const HOPS: u32 = 40;

fn script() -> String {
    format!(
        r#"I=/sys/kernel/tracing/instances/counts
mkdir $I || exit 1
echo global > $I/trace_clock
echo 16384 > $I/buffer_size_kb
echo 1 > $I/events/sched/sched_migrate_task/enable || exit 1
# Movable allocations only (__GFP_MOVABLE), as the counter.
echo 'gfp_flags & 8' > $I/events/kmem/mm_page_alloc/filter || exit 1
echo 1 > $I/events/kmem/mm_page_alloc/enable || exit 1
echo 1 > $I/tracing_on
ifconfig lo 127.0.0.1 up
# Every allocation counted: no budget pauses (under emulation the default 1 % would).
numatrace exporter --listen 127.0.0.1:9464 --interval 1s --remote-first-touches --overhead-budget 100 > /tmp/exporter.out 2> /tmp/exporter.err &
exporter=$!
tries=0
while ! grep -q serving /tmp/exporter.out; do
  tries=$((tries + 1))
  if [ $tries -gt 600 ]; then echo "the exporter did not start:"; cat /tmp/exporter.err; exit 1; fi
  sleep 0.1
done
numatrace workload hop --times {HOPS} --hold 30 > /tmp/hop.json &
hop=$!
numactl --cpunodebind=0 --membind=1 numatrace workload resident --mib {MIB} --seconds 30 > /tmp/resident.json &
resident=$!
for w in hop resident; do
  tries=0
  while ! grep -q '"pid"' /tmp/$w.json; do
    tries=$((tries + 1))
    if [ $tries -gt 600 ]; then echo "$w did not start:"; cat /tmp/$w.json; exit 1; fi
    sleep 0.1
  done
done
# Both asleep from here: a few refreshes read all they did.
sleep 4
ls /proc/$resident/task > /tmp/resident.tasks
wget -q -O /tmp/metrics http://127.0.0.1:9464/metrics || exit 1
echo 0 > $I/tracing_on
kill $exporter $hop $resident
tids="$hop $resident $(grep -o '"tid":[0-9]*' /tmp/hop.json | cut -d: -f2) $(cat /tmp/resident.tasks)"
pattern="($(echo $tids | tr ' ' '|'))"
echo "=== pids"
echo "$hop $resident"
echo "=== hop"
cat /tmp/hop.json
echo "=== resident"
cat /tmp/resident.json
cat /tmp/resident.tasks
echo "=== metrics"
grep -E '^numatrace_(cross_node_migrations_total|remote_first_touch_pages_total|remote_first_touch_counted_ratio|exporter_kernel_counters)' /tmp/metrics
echo "=== stderr"
cat /tmp/exporter.err
echo "=== cpus"
for n in /sys/devices/system/node/node[0-9]*; do echo "${{n##*node}} $(cat $n/cpulist)"; done
echo "=== zones"
grep -E '^Node|spanned|start_pfn' /proc/zoneinfo
echo "=== overrun"
cat $I/per_cpu/cpu*/stats | grep overrun
echo "=== trace"
grep -E "sched_migrate_task: .* pid=$pattern |-$pattern +\[[0-9]+\].* mm_page_alloc: " $I/trace
"#
    )
}

/// Remote hinting faults: the exporter's counter against a kprobe on the
/// same kernel function, recorded in a tracefs instance.
fn hinting_fault_script() -> String {
    format!(
        r#"I=/sys/kernel/tracing/instances/faults
mkdir $I || exit 1
echo global > $I/trace_clock
echo 8192 > $I/buffer_size_kb
# task_numa_fault(last_cpupid, mem_node, pages, flags)
echo 'p:numatrace_lab/numa_fault task_numa_fault flags=$arg4:s32' >> /sys/kernel/tracing/kprobe_events || exit 1
echo 1 > $I/events/numatrace_lab/numa_fault/enable || exit 1
echo 1 > $I/tracing_on
ifconfig lo 127.0.0.1 up
numatrace exporter --listen 127.0.0.1:9464 --interval 1s > /tmp/exporter.out 2> /tmp/exporter.err &
exporter=$!
tries=0
while ! grep -q serving /tmp/exporter.out; do
  tries=$((tries + 1))
  if [ $tries -gt 600 ]; then echo "the exporter did not start:"; cat /tmp/exporter.err; exit 1; fi
  sleep 0.1
done
numatrace workload migrated --mib {HINTING_MIB} --seconds 60 > /tmp/migrated.json &
migrated=$!
sleep 6
# Stopped: no fault of it between the exporter's last reading and the trace's end.
kill -STOP $migrated
sleep 4
ls /proc/$migrated/task > /tmp/migrated.tasks
wget -q -O /tmp/metrics http://127.0.0.1:9464/metrics || exit 1
echo 0 > $I/tracing_on
kill -CONT $migrated
kill $exporter $migrated
echo "=== pid"
echo $migrated
echo "=== tasks"
cat /tmp/migrated.tasks
echo "=== metrics"
grep -E '^numatrace_(remote_hinting_faults_total|exporter_kernel_counters)' /tmp/metrics
echo "=== stderr"
cat /tmp/exporter.err
echo "=== vmstat"
grep numa_hint /proc/vmstat
echo "=== overrun"
cat $I/per_cpu/cpu*/stats | grep overrun
echo "=== trace"
grep 'numa_fault:' $I/trace
"#
    )
}

/// What `migrated` first-touches on node 0 and uses from node 1.
const HINTING_MIB: u64 = 64;
/// The kernel's flag for a hinting fault on the faulting CPU's node
/// (include/linux/sched/numa_balancing.h), spelled out here as the test's
/// own reading of the kernel, not numatrace's.
const TNF_FAULT_LOCAL: i64 = 0x08;

/// Hinting faults of `tids` the kernel did not count as local, from the
/// kprobe's lines (`comm-TID [CPU] ...: numa_fault: (...) flags=N`).
fn remote_hinting_faults(trace: &[String], tids: &[u32]) -> u64 {
    trace
        .iter()
        .filter(|l| l.contains("numa_fault:"))
        .filter(|l| task_and_cpu(l).is_some_and(|(tid, _)| tids.contains(&tid)))
        .filter_map(|l| field(l, "flags=").and_then(|f| f.parse::<i64>().ok()))
        .filter(|flags| flags & TNF_FAULT_LOCAL == 0)
        .count() as u64
}

/// `NAME{pid="P",...} N` by pid.
fn scraped(lines: &[String], name: &str) -> BTreeMap<u32, u64> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(&format!("{name}{{pid=\"")))
        .filter_map(|rest| {
            let (pid, rest) = rest.split_once('"')?;
            let (_, value) = rest.rsplit_once("} ")?;
            Some((pid.parse().ok()?, value.trim().parse().ok()?))
        })
        .collect()
}

/// A cpulist (`0-1,4`) as CPUs.
fn cpulist(text: &str) -> Vec<u32> {
    text.split(',')
        .filter_map(|part| match part.trim().split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?..=b.parse().ok()?).collect::<Vec<u32>>()),
            None => part.trim().parse().ok().map(|c| vec![c]),
        })
        .flatten()
        .collect()
}

/// Each node's pfn spans, from /proc/zoneinfo's zones (`start_pfn`, `spanned`).
fn zones(lines: &[String]) -> Vec<(u32, u64, u64)> {
    let (mut out, mut node, mut spanned) = (Vec::new(), None, None);
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Node", n, ..] => {
                node = n.trim_end_matches(',').parse::<u32>().ok();
                spanned = None;
            }
            ["spanned", n] => spanned = n.parse::<u64>().ok(),
            ["start_pfn:", n] => {
                if let (Some(node), Some(spanned), Ok(start)) = (node, spanned, n.parse::<u64>()) {
                    out.push((node, start, start + spanned));
                }
            }
            _ => {}
        }
    }
    out
}

/// The value of `key=` in a trace line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key))
}

/// `pfn=0x1a2b` (6.1) or `pfn=6699`.
fn pfn(line: &str) -> Option<u64> {
    let v = field(line, "pfn=")?;
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The tid and CPU of the task a trace line was written in (`comm-TID [CPU]`).
fn task_and_cpu(line: &str) -> Option<(u32, u32)> {
    let (task, rest) = line.split_once(" [")?;
    let (_, tid) = task.trim().rsplit_once('-')?;
    let (cpu, _) = rest.split_once(']')?;
    Some((tid.parse().ok()?, cpu.parse().ok()?))
}

/// The kernel's truth per process: (cross-node migrations, remote first-touch pages).
fn truth(
    trace: &[String],
    tgid_of: &BTreeMap<u32, u32>,
    node_of_cpu: &BTreeMap<u32, u32>,
    zones: &[(u32, u64, u64)],
) -> BTreeMap<u32, (u64, u64)> {
    let node_of_pfn = |pfn: u64| zones.iter().find(|(_, a, b)| (*a..*b).contains(&pfn)).map(|(n, _, _)| *n);
    let mut out: BTreeMap<u32, (u64, u64)> = tgid_of.values().map(|t| (*t, (0, 0))).collect();
    for line in trace {
        if line.contains("sched_migrate_task:") {
            let num = |key| field(line, key).and_then(|v| v.parse::<u32>().ok());
            let (Some(tid), Some(from), Some(to)) = (num("pid="), num("orig_cpu="), num("dest_cpu=")) else { continue };
            let Some(tgid) = tgid_of.get(&tid) else { continue };
            let (a, b) = (node_of_cpu.get(&from), node_of_cpu.get(&to));
            if a.is_some() && b.is_some() && a != b {
                out.entry(*tgid).or_default().0 += 1;
            }
        } else if line.contains("mm_page_alloc:") {
            let Some((tid, cpu)) = task_and_cpu(line) else { continue };
            let Some(tgid) = tgid_of.get(&tid) else { continue };
            let order: u32 = field(line, "order=").and_then(|v| v.parse().ok()).unwrap_or(0);
            let (Some(page_node), Some(cpu_node)) = (pfn(line).and_then(node_of_pfn), node_of_cpu.get(&cpu)) else {
                continue;
            };
            if page_node != *cpu_node {
                out.entry(*tgid).or_default().1 += 1 << order;
            }
        }
    }
    out
}

/// Runs a script in a 2-node guest: its output, and its sections. The
/// script must succeed, the exporter must not complain (its `stderr`
/// section) and the trace must not have lost events (`overrun`).
fn run_script(name: &str, script: &str, balancing: Balancing) -> (String, BTreeMap<String, Vec<String>>) {
    let command = GuestCommand { argv: ["sh", "-c", script, name].iter().map(|s| s.to_string()).collect(), balancing };
    let opts = guest::options(2, 384, Duration::from_secs(300));
    let run = guest::run(name, &opts, std::slice::from_ref(&command)).unwrap_or_else(|e| panic!("{e}"));
    let result = run.results.first().expect("a result came back");
    let text = String::from_utf8_lossy(&result.stdout).into_owned();
    assert_eq!(result.exit_code, 0, "the script failed:\n{text}");
    let s = sections(&text);
    let section = |name: &str| s.get(name).unwrap_or_else(|| panic!("no {name} section:\n{text}"));
    assert!(section("stderr").is_empty(), "the exporter complained:\n{text}");
    assert!(section("overrun").iter().all(|l| l.trim().ends_with("overrun: 0")), "the trace lost events:\n{text}");
    (text, s)
}

#[test]
#[ignore = "boots QEMU"]
fn scraped_per_process_counts_match_the_kernels_trace() {
    let (text, s) = run_script("lab kernel counts, 2 nodes", &script(), Balancing::Off);
    let section = |name: &str| s.get(name).unwrap_or_else(|| panic!("no {name} section:\n{text}"));
    let metrics = section("metrics");
    assert!(metrics.iter().any(|l| l == "numatrace_exporter_kernel_counters{state=\"attached\"} 1"), "{text}");
    // The first-touch counter was never paused: its counts are every allocation's.
    let ratio = metrics.iter().find_map(|l| l.strip_prefix("numatrace_remote_first_touch_counted_ratio "));
    assert_eq!(ratio.and_then(|r| r.trim().parse::<f64>().ok()), Some(1.0), "{text}");

    let pids: Vec<u32> = section("pids")[0].split_whitespace().filter_map(|p| p.parse().ok()).collect();
    let [hop, resident] = pids[..] else { panic!("pids: {text}") };
    let hop_json: Value = serde_json::from_str(&section("hop")[0]).expect("hop's JSON line");
    let resident_json: Value = serde_json::from_str(&section("resident")[0]).expect("resident's JSON line");
    let mut tgid_of: BTreeMap<u32, u32> = BTreeMap::from([(hop, hop), (resident, resident)]);
    for t in hop_json["threads"].as_array().expect("hop's threads") {
        tgid_of.insert(t["tid"].as_u64().expect("a tid") as u32, hop);
    }
    for t in section("resident")[1..].iter().filter_map(|t| t.trim().parse::<u32>().ok()) {
        tgid_of.insert(t, resident);
    }
    let node_of_cpu: BTreeMap<u32, u32> = section("cpus")
        .iter()
        .filter_map(|l| l.split_once(' '))
        .flat_map(|(node, cpus)| {
            let node: u32 = node.parse().expect("a node id");
            cpulist(cpus).into_iter().map(move |c| (c, node))
        })
        .collect();
    let zones = zones(section("zones"));
    assert!(zones.iter().any(|z| z.0 == 1 && z.2 > z.1), "node 1 has memory: {zones:?}\n{text}");
    let truth = truth(section("trace"), &tgid_of, &node_of_cpu, &zones);

    let moves = scraped(metrics, "numatrace_cross_node_migrations_total");
    let pages = scraped(metrics, "numatrace_remote_first_touch_pages_total");
    for (name, pid) in [("hop", hop), ("resident", resident)] {
        let (true_moves, true_pages) = truth[&pid];
        let (got_moves, got_pages) = (moves.get(&pid).copied(), pages.get(&pid).copied());
        eprintln!(
            "lab kernel counts: {name} (pid {pid}): cross-node migrations scraped {got_moves:?}, traced {true_moves}; remote first-touch pages scraped {got_pages:?}, traced {true_pages}"
        );
        assert_eq!(got_moves, Some(true_moves), "{name}'s cross-node migrations:\n{text}");
        assert_eq!(got_pages, Some(true_pages), "{name}'s remote first-touch pages:\n{text}");
    }
    // The workloads' own accounts: every CPU change of hop crosses nodes
    // (one CPU per node); resident's region is all on node 1.
    let hops: u64 = hop_json["threads"].as_array().expect("threads").iter().filter_map(|t| t["hops"].as_u64()).sum();
    assert!(hops > 0 && truth[&hop].0 >= hops, "hop changed CPU {hops} times: {:?}\n{text}", truth[&hop]);
    let region = resident_json["pages_by_node"]["1"].as_u64().unwrap_or(0);
    assert_eq!(region, MIB * 256, "resident's region is on node 1:\n{text}");
    assert!(truth[&resident].1 >= region, "remote pages {:?} < the region's {region}\n{text}", truth[&resident]);
}

#[test]
#[ignore = "boots QEMU"]
fn scraped_remote_hinting_faults_match_the_kernels_trace() {
    // Its stderr is empty: the hinting-fault counter attached (fentry on 6.1).
    let (text, s) = run_script("lab hinting faults, 2 nodes", &hinting_fault_script(), Balancing::Fast);
    let section = |name: &str| s.get(name).unwrap_or_else(|| panic!("no {name} section:\n{text}"));
    let pid: u32 = section("pid")[0].trim().parse().expect("a pid");
    let tids: Vec<u32> = section("tasks").iter().filter_map(|t| t.trim().parse().ok()).collect();
    assert!(tids.contains(&pid), "{text}");
    let traced = remote_hinting_faults(section("trace"), &tids);
    let scraped = scraped(section("metrics"), "numatrace_remote_hinting_faults_total").get(&pid).copied();
    eprintln!(
        "lab hinting faults: migrated (pid {pid}, {HINTING_MIB} MiB): remote hinting faults scraped {scraped:?}, traced {traced}; {:?}",
        section("vmstat")
    );
    // The balancer did scan it: its memory was remote for a while.
    assert!(traced > 0, "no remote hinting fault traced:\n{text}");
    assert_eq!(scraped, Some(traced), "migrated's remote hinting faults:\n{text}");
}

#[test]
fn reads_hinting_fault_lines() {
    let trace: Vec<String> = [
        "       numatrace-160     [001] .....     4.18: numa_fault: (task_numa_fault+0x0/0xc60) flags=1",
        "       numatrace-160     [001] .....     4.19: numa_fault: (task_numa_fault+0x0/0xc60) flags=8",
        "       numatrace-161     [001] .....     4.19: numa_fault: (task_numa_fault+0x0/0xc60) flags=0",
        "       numatrace-111     [000] .....     4.20: numa_fault: (task_numa_fault+0x0/0xc60) flags=0",
    ]
    .iter()
    .map(|l| l.to_string())
    .collect();
    // Local (8) left out; another process's (111) left out.
    assert_eq!(remote_hinting_faults(&trace, &[160, 161]), 2);
}

#[test]
fn reads_zoneinfo_spans_and_trace_lines() {
    let lines: Vec<String> = [
        "Node 0, zone      DMA",
        "        spanned  4095",
        "  start_pfn:           1",
        "Node 1, zone   Normal",
        "        spanned  98304",
        "  start_pfn:           98304",
    ]
    .iter()
    .map(|l| l.to_string())
    .collect();
    assert_eq!(zones(&lines), [(0, 1, 4096), (1, 98304, 196608)]);
    let alloc = "   numatrace-231     [000] .....    12.345678: mm_page_alloc: page=00000000a1b2c3d4 pfn=0x18001 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO";
    assert_eq!(task_and_cpu(alloc), Some((231, 0)));
    assert_eq!(pfn(alloc), Some(0x18001));
    let migrate = "  <idle>-0       [001] d..2.    12.3: sched_migrate_task: comm=hopper-1 pid=232 prio=120 orig_cpu=1 dest_cpu=0";
    let tgid_of = BTreeMap::from([(231, 231), (232, 231)]);
    let node_of_cpu = BTreeMap::from([(0, 0), (1, 1)]);
    let truth = truth(&[alloc.to_string(), migrate.to_string()], &tgid_of, &node_of_cpu, &zones(&lines));
    assert_eq!(truth[&231], (1, 1));
    assert_eq!(cpulist("0-2,5"), [0, 1, 2, 5]);
}
