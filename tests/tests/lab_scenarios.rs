//! The NUMA lab scenarios: each workload produces one placement pathology on
//! purpose in a multi-node guest (Debian's 6.1 cloud kernel under QEMU, see
//! `cargo xtask lab`), numatrace traces it there, and its report is checked
//! against the workload's ground truth (page counts the kernel gave the
//! workload: move_pages(2) queries, numastat deltas).
//!
//! One guest boot serves every 2-node scenario and one every 4-node scenario.
//! Counts are checked by `*_counts_*` tests; the cause numatrace names first
//! by `*_cause_*` tests. They boot QEMU, so they are
//! `#[ignore]`d: `cargo xtask test` runs them, or `cargo test -p numatrace-tests
//! --test lab_scenarios -- --include-ignored` (see tests/README.md).
//!
//! Tolerances: first-touch pages are compared within 5 % plus 256 pages,
//! because the traced process also first-touches pages of its own (stack,
//! heap, libraries, numactl before its exec: about 100–200 pages) that the
//! workload's region count does not include.
use std::{
    collections::BTreeMap,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use numatrace_tests::guest;
use serde_json::Value;
use xtask::lab::{Balancing, GuestCommand};

/// Pages the traced process first-touches besides the workload's region.
const PROCESS_SLACK_PAGES: u64 = 256;

/// What a scenario printed in the guest: the workload's ground truth line and numatrace's report.
#[derive(Debug)]
struct Outcome {
    truth: Value,
    report: Value,
}

type Outcomes = BTreeMap<&'static str, Result<Outcome, String>>;

fn traced(workload: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = ["numatrace", "--json", "--"].iter().map(|s| s.to_string()).collect();
    argv.extend(workload.iter().map(|s| s.to_string()));
    argv
}

/// A guest shell command: start `workload` in the background, attach
/// `numatrace --json --pid` to it (run through `tracer_prefix`, e.g. a
/// `taskset`), wait until numatrace is tracing, run `action` ($w is the
/// workload's pid), wait for both, then print the workload's ground truth line
/// and the report. `programs` are host programs the action uses, passed as
/// $1.. so that the lab copies them into the guest.
fn traced_by_pid(name: &str, workload: &str, tracer_prefix: &str, action: &str, programs: &[&str]) -> Vec<String> {
    // numatrace says "numatrace: tracing pid ..." on stderr once every probe is
    // attached. Waits at most 60 s; its stderr is shown afterwards.
    let script = format!(
        "{workload} >/tmp/{name}.truth & w=$!; \
         {tracer_prefix} numatrace --json --pid $w >/tmp/{name}.report 2>/tmp/{name}.err & n=$!; \
         i=0; until grep -q '^numatrace: tracing pid' /tmp/{name}.err 2>/dev/null || [ $i -ge 300 ]; do sleep 0.2; i=$((i+1)); done; \
         {action}; wait $w; a=$?; wait $n; b=$?; cat /tmp/{name}.err >&2; cat /tmp/{name}.truth /tmp/{name}.report; [ $a = 0 ] && [ $b = 0 ]"
    );
    let mut argv = vec!["sh".to_string(), "-c".to_string(), script, "sh".to_string()];
    argv.extend(programs.iter().map(|p| p.to_string()));
    argv
}

/// The scenarios of a guest with `nodes` nodes. init-thread's workers run for
/// 3 s so that they, not the init thread (whose start-up under emulation takes
/// most of a second), are clearly the memory's users.
fn scenarios(nodes: u32) -> Vec<(&'static str, Vec<String>, Balancing)> {
    let last = (nodes - 1).to_string();
    let mut list = vec![
        (
            "init-thread",
            traced(&["numatrace", "workload", "init-thread", "--mib", "32", "--workers", "2", "--seconds", "3"]),
            Balancing::Off,
        ),
        ("spill", traced(&["numatrace", "workload", "spill", "--extra-mib", "48"]), Balancing::Off),
    ];
    if nodes == 2 {
        list.extend([
            ("migrated", traced(&["numatrace", "workload", "migrated", "--mib", "32", "--seconds", "1"]), Balancing::Off),
            (
                "policy",
                traced(&["numactl", &format!("--cpunodebind={last}"), "--membind=0", "numatrace", "workload", "place", "--mib", "32"]),
                Balancing::Off,
            ),
            ("explicit", traced(&["numatrace", "workload", "explicit", "--mib", "32"]), Balancing::Off),
            // Balancing on (the default of most multi-socket distributions): the
            // balancer repairs what the init thread did, and must not take its blame.
            (
                "init-thread-balancing",
                traced(&["numatrace", "workload", "init-thread", "--mib", "32", "--workers", "1", "--seconds", "4"]),
                Balancing::Fast,
            ),
            // Two workers on two nodes use one buffer: shared data, with balancing off
            // and on (on, the balancer moves its pages back and forth).
            ("shared", traced(&["numatrace", "workload", "shared", "--mib", "16", "--seconds", "3"]), Balancing::Off),
            ("shared-balancing", traced(&["numatrace", "workload", "shared", "--mib", "16", "--seconds", "4"]), Balancing::Fast),
            // The balancer's work alone: balancing is off while the workload puts its memory
            // on the far node and numatrace attaches by pid; then balancing goes on (with the
            // fast scan settings) and the workload lets go of its CPU.
            //
            // numatrace runs on the far node's CPU. On the workload's CPU (a debug build
            // under emulation is busy) it gave the ordinary load balancer a second runnable
            // task there, and the NUMA-aware load balancer then pulled the workload over to
            // its memory's node: no hinting-fault migration, no balancer task move, and
            // nothing left for the balancer to do (CI, once in about ten runs).
            (
                "balance",
                traced_by_pid(
                    "balance",
                    "echo 0 >/proc/sys/kernel/numa_balancing; numatrace workload balance --mib 32 --seconds 6 --go-file /tmp/balance.go",
                    // One CPU per node (run_guest's topology): CPU {last} is on node {last}.
                    &format!("taskset -c {last}"),
                    "echo 1 >/proc/sys/kernel/numa_balancing; touch /tmp/balance.go",
                    &[],
                ),
                Balancing::Fast,
            ),
            // An administrator moves a running process's pages with migratepages while
            // numatrace traces that process by pid.
            (
                "migratepages",
                traced_by_pid(
                    "migratepages",
                    "numatrace workload hold --mib 32 --stop-file /tmp/hold.stop",
                    "",
                    "\"$1\" $w 0 1; touch /tmp/hold.stop",
                    &["migratepages"],
                ),
                Balancing::Off,
            ),
        ]);
    }
    list
}

/// Guests run one at a time: they share this machine's few cores.
static ONE_GUEST_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run_guest(nodes: u32) -> Result<Outcomes, String> {
    let _turn = ONE_GUEST_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let list = scenarios(nodes);
    let commands: Vec<GuestCommand> =
        list.iter().map(|(_, argv, balancing)| GuestCommand { argv: argv.clone(), balancing: *balancing }).collect();
    let opts = guest::options(nodes, 384, Duration::from_secs(600));
    let run = guest::run(&format!("lab, {nodes} nodes"), &opts, &commands)?;
    eprintln!(
        "lab: {nodes} nodes, {} scenarios: boot {:.1} s, guest total {:.1} s (console log {})",
        list.len(),
        run.boot_s,
        run.total_s,
        run.console_log.display()
    );
    Ok(list
        .iter()
        .zip(run.results)
        .map(|((name, argv, _), result)| {
            let text = String::from_utf8_lossy(&result.stdout).into_owned();
            // Kept for whoever reads a failure: the ground truth line and the full report.
            let saved = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lab-{nodes}-nodes-{name}.out"));
            let _ = std::fs::write(&saved, &text);
            (
                *name,
                parse_outcome(&text, result.exit_code)
                    .map_err(|e| format!("scenario {name} ({}): {e}", argv.join(" "))),
            )
        })
        .collect())
}

/// Splits a scenario's stdout into the workload's JSON line and numatrace's JSON report.
fn parse_outcome(text: &str, exit_code: i32) -> Result<Outcome, String> {
    if exit_code != 0 {
        return Err(format!("exit status {exit_code}; stdout: {text}"));
    }
    let (line, rest) = text.split_once('\n').ok_or_else(|| format!("no ground truth line in stdout: {text:?}"))?;
    let truth: Value = serde_json::from_str(line).map_err(|e| format!("ground truth is not JSON ({e}): {line}"))?;
    let report: Value = serde_json::from_str(rest).map_err(|e| format!("the report is not JSON ({e}): {rest}"))?;
    Ok(Outcome { truth, report })
}

fn guest(nodes: u32) -> &'static Result<Outcomes, String> {
    static TWO: OnceLock<Result<Outcomes, String>> = OnceLock::new();
    static FOUR: OnceLock<Result<Outcomes, String>> = OnceLock::new();
    let cell = if nodes == 2 { &TWO } else { &FOUR };
    cell.get_or_init(|| run_guest(nodes))
}

fn outcome(nodes: u32, name: &str) -> &'static Outcome {
    let outcomes = guest(nodes).as_ref().unwrap_or_else(|e| panic!("{e}"));
    match outcomes.get(name) {
        Some(Ok(o)) => o,
        Some(Err(e)) => panic!("{e}"),
        None => panic!("no scenario {name} on {nodes} nodes"),
    }
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for key in path {
        cur = &cur[*key];
    }
    cur.as_u64().unwrap_or(0)
}

fn node_pages(map: &Value, node: u64) -> u64 {
    map[node.to_string()].as_u64().unwrap_or(0)
}

fn thread(report: &Value, tid: u64) -> &Value {
    report["threads"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["tid"].as_u64() == Some(tid)))
        .unwrap_or_else(|| panic!("thread {tid} is not in the report: {}", report["threads"]))
}

/// `actual` is within 5 % of `expected`, plus `slack` pages the workload does not count.
fn assert_close(what: &str, actual: u64, expected: u64, slack: u64) {
    let tolerance = expected / 20 + slack;
    assert!(
        actual.abs_diff(expected) <= tolerance,
        "{what}: numatrace says {actual}, the ground truth is {expected} (tolerance {tolerance})"
    );
}

/// The report names `kind` as the first (largest) cause, with shares in 0..1 sorted largest first.
fn assert_first_cause(report: &Value, kind: &str, pages: Option<u64>) -> Value {
    let causes = report["causes"].as_array().unwrap_or_else(|| {
        panic!("the report has no causes[]; its keys: {:?}", report.as_object().map(|o| o.keys().collect::<Vec<_>>()))
    });
    let first = causes.first().unwrap_or_else(|| panic!("causes[] is empty, expected {kind}"));
    assert_eq!(
        first["kind"].as_str(),
        Some(kind),
        "first cause; all causes: {}",
        serde_json::to_string_pretty(causes).unwrap_or_default()
    );
    let shares: Vec<f64> = causes.iter().map(|c| c["share"].as_f64().unwrap_or(-1.0)).collect();
    assert!(shares.iter().all(|s| (0.0..=1.0).contains(s)), "shares outside 0..1: {shares:?}");
    assert!(shares.windows(2).all(|w| w[0] >= w[1]), "causes not sorted by share: {shares:?}");
    if let Some(pages) = pages {
        assert_close(
            &format!("pages of cause {kind}"),
            first["pages"].as_u64().unwrap_or(0),
            pages,
            PROCESS_SLACK_PAGES,
        );
    }
    first.clone()
}

/// Every node the report names (node maps' keys, causes' nodes) is one of the
/// guest's `nodes`: an unknown node is counted apart, never shown as a node.
fn assert_only_real_nodes(report: &Value, nodes: u64) {
    let mut named: Vec<(String, u64)> = Vec::new();
    for t in report["threads"].as_array().into_iter().flatten() {
        for map in ["first_touch_pages", "runtime_ms_by_node"] {
            for k in t[map].as_object().into_iter().flatten().map(|(k, _)| k) {
                named.push((format!("threads[].{map}"), k.parse().unwrap_or(u64::MAX)));
            }
        }
    }
    for k in report["totals"]["first_touch_pages_by_node"].as_object().into_iter().flatten().map(|(k, _)| k) {
        named.push(("totals.first_touch_pages_by_node".into(), k.parse().unwrap_or(u64::MAX)));
    }
    for c in report["causes"].as_array().into_iter().flatten() {
        for key in ["memory_nodes", "thread_nodes"] {
            for n in c[key].as_array().into_iter().flatten() {
                named.push((format!("causes[].{key}"), n.as_u64().unwrap_or(u64::MAX)));
            }
        }
    }
    let bad: Vec<_> = named.iter().filter(|(_, n)| *n >= nodes).collect();
    assert!(bad.is_empty(), "nodes outside 0..{nodes} in the report: {bad:?}");
    assert!(!report["headline"].as_str().unwrap_or_default().contains("65535"), "{}", report["headline"]);
}

// ---- scenario 1: init-thread first touch ----

fn init_thread_counts(nodes: u32) {
    let o = outcome(nodes, "init-thread");
    let pages = u(&o.truth, &["init", "first_touch_pages"]);
    let init_node = u(&o.truth, &["init", "node"]);
    let worker_node = u(&o.truth, &["worker_node"]);
    assert_ne!(init_node, worker_node, "the workload did not put init and workers on different nodes: {}", o.truth);
    let init = thread(&o.report, u(&o.truth, &["init", "tid"]));
    assert_close(
        "pages the init thread first-touched on its node",
        node_pages(&init["first_touch_pages"], init_node),
        pages,
        PROCESS_SLACK_PAGES,
    );
    for w in o.truth["workers"].as_array().into_iter().flatten() {
        let t = thread(&o.report, w["tid"].as_u64().unwrap_or(0));
        let touched: u64 =
            t["first_touch_pages"].as_object().map(|m| m.values().filter_map(Value::as_u64).sum()).unwrap_or(0);
        assert!(
            touched < pages / 20,
            "worker {} first-touched {touched} pages, expected almost none of {pages}",
            w["tid"]
        );
        let ran: f64 = t["runtime_ms_by_node"][worker_node.to_string()].as_f64().unwrap_or(0.0);
        assert!(ran > 0.0, "worker {} never ran on node {worker_node}: {}", w["tid"], t["runtime_ms_by_node"]);
    }
    assert!(
        u(&o.report, &["totals", "remote_first_touch_pages"]) < pages / 20,
        "init-thread first touches are local to the init thread, yet the report has {} remote",
        o.report["totals"]["remote_first_touch_pages"]
    );
}

fn init_thread_cause(nodes: u32) {
    let o = outcome(nodes, "init-thread");
    let cause =
        assert_first_cause(&o.report, "first_touch_by_other_thread", Some(u(&o.truth, &["init", "first_touch_pages"])));
    let rec = cause["recommendation"].as_str().unwrap_or_default().to_lowercase();
    // The users all run on one node: the whole process there (a bind), or the
    // workers' own first touch, or an interleave.
    assert!(
        rec.contains("--membind")
            || rec.contains("first touch")
            || rec.contains("first-touch")
            || rec.contains("interleave"),
        "recommendation: {rec}"
    );
}

#[test]
#[ignore = "boots QEMU"]
fn scenario_1_init_thread_counts_2_nodes() {
    init_thread_counts(2);
}
#[test]
#[ignore = "boots QEMU"]
fn scenario_1_init_thread_cause_2_nodes() {
    init_thread_cause(2);
}
#[test]
#[ignore = "boots QEMU"]
fn scenario_1_init_thread_counts_4_nodes() {
    init_thread_counts(4);
}
#[test]
#[ignore = "boots QEMU"]
fn scenario_1_init_thread_cause_4_nodes() {
    init_thread_cause(4);
}

/// The guest's kernel (Debian 12's 6.1) has the BTF for the cheap hooks;
/// it refuses to mmap /sys/kernel/btf/vmlinux, so numatrace must read the
/// file instead or fall back to classic tracepoints for all three
/// machine-wide sources. The other sources with a raw or BTF-typed form
/// (they detach in milliseconds, a classic tracepoint one RCU grace period
/// at a time) use it there too: 6.1's prototypes differ from 6.18's
/// (`sched_process_exit` without `group_dead`, `mm_migrate_pages` with 7
/// arguments, not 8).
fn cheap_hooks_attach(nodes: u32) {
    let o = outcome(nodes, "init-thread");
    let sources = o.report["sources"].as_array().cloned().unwrap_or_default();
    for (source, hooks) in [
        ("first touches", &["raw_tracepoint:mm_page_alloc"][..]),
        ("fault addresses", &["raw_tracepoint:page_fault_user"]),
        ("thread migrations", &["tp_btf:sched_migrate_task"]),
        ("thread creation", &["tp_btf:task_newtask"]),
        ("thread exit", &["tp_btf:sched_process_exit"]),
        ("balancer task placement", &["tp_btf:sched_move_numa", "tp_btf:sched_swap_numa", "tp_btf:sched_stick_numa"]),
        ("page migrations", &["raw_tracepoint:mm_migrate_pages"]),
        ("explicit migration calls", &["raw_tracepoint:sys_enter"]),
        ("affinity changes", &["raw_tracepoint:sys_enter"]),
        // Found in the kernel's BTF (not kallsyms, which costs start-up ~40 ms).
        ("hinting faults", &["fentry:task_numa_fault"]),
        ("misplaced-page migration", &["fentry:migrate_misplaced_page", "fexit:migrate_misplaced_page"]),
    ] {
        let status = sources.iter().find(|s| s["name"] == source).unwrap_or_else(|| panic!("{source} not listed"));
        let attached: Vec<&str> =
            status["hooks"].as_array().map(|h| h.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
        assert_eq!(attached, hooks, "{source} on the guest kernel: {status}");
    }
}

#[test]
#[ignore = "boots QEMU"]
fn cheap_hooks_attach_on_the_guest_kernel_2_nodes() {
    cheap_hooks_attach(2);
}

// ---- scenario 2: thread migrated away from its memory ----

#[test]
#[ignore = "boots QEMU"]
fn scenario_2_migrated_counts_2_nodes() {
    let o = outcome(2, "migrated");
    let (pages, home, far) = (u(&o.truth, &["pages"]), u(&o.truth, &["home_node"]), u(&o.truth, &["far_node"]));
    assert_eq!(
        node_pages(&o.truth["pages_by_node"], home),
        pages,
        "the kernel did not place the region on the home node: {}",
        o.truth
    );
    assert_eq!(o.truth["node_after_move"].as_u64(), Some(far), "the thread did not move to the far node: {}", o.truth);
    let t = thread(&o.report, u(&o.truth, &["tid"]));
    assert_close(
        "pages first-touched on the home node",
        node_pages(&t["first_touch_pages"], home),
        pages,
        PROCESS_SLACK_PAGES,
    );
    assert!(
        t["cross_node_migrations"].as_u64().unwrap_or(0) >= 1,
        "no cross-node migration of thread {}: {t}",
        t["tid"]
    );
    assert!(t["remote_first_touch_pages"].as_u64().unwrap_or(u64::MAX) < pages / 20, "first touches were local: {t}");
    let ran_far = t["runtime_ms_by_node"][far.to_string()].as_f64().unwrap_or(0.0);
    assert!(ran_far > 100.0, "the thread used its memory from node {far} for about 1 s, report says {ran_far} ms");
}

#[test]
#[ignore = "boots QEMU"]
fn scenario_2_migrated_cause_2_nodes() {
    let o = outcome(2, "migrated");
    let cause = assert_first_cause(&o.report, "thread_migrated", Some(u(&o.truth, &["pages"])));
    // The workload moves itself with sched_setaffinity: the mover is named.
    let evidence = cause["evidence"].to_string();
    assert!(evidence.contains("changed its own CPU affinity"), "the mover is not named: {evidence}");
    let summary = cause["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("changed their own CPU affinity"), "the summary does not name the mover: {summary}");
    // "Pin CPU and memory together": a pin, or a CPU bind with a memory bind.
    let rec = cause["recommendation"].as_str().unwrap_or_default().to_lowercase();
    assert!(rec.contains("pin") || rec.contains("cpunodebind") && rec.contains("membind"), "recommendation: {rec}");
}

// ---- scenario 3: allocation spill ----

fn spill_counts(nodes: u32) {
    let o = outcome(nodes, "spill");
    let home = u(&o.truth, &["home_node"]);
    let remote = u(&o.truth, &["remote_pages"]);
    assert!(remote > 4096, "the workload did not spill (remote pages {remote}): {}", o.truth);
    let t = thread(&o.report, u(&o.truth, &["tid"]));
    for (node, truth_pages) in o.truth["pages_by_node"].as_object().into_iter().flatten() {
        let Ok(n) = node.parse::<u64>() else { continue };
        let truth_pages = truth_pages.as_u64().unwrap_or(0);
        assert_close(
            &format!("pages first-touched on node {n}"),
            node_pages(&t["first_touch_pages"], n),
            truth_pages,
            PROCESS_SLACK_PAGES,
        );
    }
    assert_close(
        "remote first-touch pages",
        t["remote_first_touch_pages"].as_u64().unwrap_or(0),
        remote,
        PROCESS_SLACK_PAGES,
    );
    // numastat: pages the home node could not give show as numa_foreign there and numa_miss where they landed.
    let delta = &o.truth["numastat_delta"];
    let foreign = u(delta, &[&home.to_string(), "numa_foreign"]);
    let miss: u64 = delta
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(n, _)| **n != home.to_string())
        .map(|(_, c)| c["numa_miss"].as_u64().unwrap_or(0))
        .sum();
    assert_close("numa_foreign of the home node vs remote first touches", foreign, remote, PROCESS_SLACK_PAGES);
    assert_close("numa_miss of the other nodes vs remote first touches", miss, remote, PROCESS_SLACK_PAGES);
}

fn spill_cause(nodes: u32) {
    let o = outcome(nodes, "spill");
    assert_only_real_nodes(&o.report, u64::from(nodes));
    assert_first_cause(&o.report, "allocation_spill", Some(u(&o.truth, &["remote_pages"])));
}

#[test]
#[ignore = "boots QEMU"]
fn scenario_3_spill_counts_2_nodes() {
    spill_counts(2);
}
#[test]
#[ignore = "boots QEMU"]
fn scenario_3_spill_cause_2_nodes() {
    spill_cause(2);
}
#[test]
#[ignore = "boots QEMU"]
fn scenario_3_spill_counts_4_nodes() {
    spill_counts(4);
}
#[test]
#[ignore = "boots QEMU"]
fn scenario_3_spill_cause_4_nodes() {
    spill_cause(4);
}

// ---- scenario 4: memory policy mismatch ----

#[test]
#[ignore = "boots QEMU"]
fn scenario_4_policy_counts_2_nodes() {
    let o = outcome(2, "policy");
    let pages = u(&o.truth, &["pages"]);
    assert_eq!(o.truth["policy"].as_str(), Some("bind"), "numactl --membind did not set a bind policy: {}", o.truth);
    assert_eq!(o.truth["cpu_node"].as_u64(), Some(1), "numactl --cpunodebind=1 did not hold: {}", o.truth);
    assert_eq!(
        node_pages(&o.truth["pages_by_node"], 0),
        pages,
        "the kernel did not bind the pages to node 0: {}",
        o.truth
    );
    let t = thread(&o.report, u(&o.truth, &["tid"]));
    assert_close("pages first-touched on node 0", node_pages(&t["first_touch_pages"], 0), pages, PROCESS_SLACK_PAGES);
    assert_close(
        "remote first-touch pages",
        t["remote_first_touch_pages"].as_u64().unwrap_or(0),
        pages,
        PROCESS_SLACK_PAGES,
    );
}

#[test]
#[ignore = "boots QEMU"]
fn scenario_4_policy_cause_2_nodes() {
    let o = outcome(2, "policy");
    assert_first_cause(&o.report, "memory_policy", Some(u(&o.truth, &["pages"])));
}

// ---- scenario 5: NUMA balancing sweep ----

#[test]
#[ignore = "boots QEMU"]
fn scenario_5_balance_counts_2_nodes() {
    let o = outcome(2, "balance");
    let (pages, far) = (u(&o.truth, &["pages"]), u(&o.truth, &["far_node"]));
    assert_eq!(
        node_pages(&o.truth["pages_by_node"], far),
        pages,
        "the region was not placed on the far node: {}",
        o.truth
    );
    let t = thread(&o.report, u(&o.truth, &["tid"]));
    let hinting = t["hinting_faults_local"].as_u64().unwrap_or(0) + t["hinting_faults_remote"].as_u64().unwrap_or(0);
    assert!(hinting > 0, "no NUMA hinting faults in 8 s of balancing: {t}");
    let moves = t["numa_task_moves"].as_u64().unwrap_or(0) + t["numa_task_swaps"].as_u64().unwrap_or(0);
    let misplaced = u(&o.report, &["totals", "page_migrations", "numa_misplaced"]);
    let moved_home = u(&o.truth, &["pages_moved_to_home"]);
    assert!(
        moves > 0 || misplaced > 0,
        "the balancer neither moved the thread nor migrated pages: thread {t}, truth {}",
        o.truth
    );
    // Pages can move back and forth; every net move is at least one numa_misplaced migration.
    assert!(
        misplaced + moved_home / 20 >= moved_home,
        "{moved_home} pages moved home but numatrace saw {misplaced} numa_misplaced migrations"
    );
}

#[test]
#[ignore = "boots QEMU"]
fn scenario_5_balance_cause_2_nodes() {
    // The memory was on the far node before numatrace attached; the balancer's
    // migrations bring it to the thread: repairs, with their cost, not a cause.
    let o = outcome(2, "balance");
    let cause = assert_first_cause(&o.report, "placed_before_capture", None);
    let (start, end) = (cause["window"]["start_s"].as_f64(), cause["window"]["end_s"].as_f64());
    assert!(matches!((start, end), (Some(s), Some(e)) if e >= s && s >= 0.0), "no time window in the cause: {cause}");
    let cost = &o.report["magnitude"]["cost"];
    assert!(
        u(cost, &["balancer_pages_migrated"]) + u(cost, &["balancer_task_moves"]) > 0,
        "the balancer's repair is not shown as a cost: {cost}"
    );
    let balancer_pages: u64 = o.report["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["kind"] == "numa_balancer")
        .map(|c| u(c, &["pages"]))
        .sum();
    assert!(balancer_pages < PROCESS_SLACK_PAGES, "the balancer's repairs were blamed: {balancer_pages} pages");
}

// ---- scenario 6: explicit migration ----

#[test]
#[ignore = "boots QEMU"]
fn scenario_6_explicit_counts_2_nodes() {
    let o = outcome(2, "explicit");
    let (by_move_pages, by_mbind) = (u(&o.truth, &["moved_by_move_pages"]), u(&o.truth, &["moved_by_mbind"]));
    assert!(by_move_pages > 0 && by_mbind > 0, "the kernel moved nothing: {}", o.truth);
    let migrations = &o.report["totals"]["page_migrations"];
    assert_close(
        "pages migrated with reason syscall_or_cpuset (move_pages)",
        migrations["syscall_or_cpuset"].as_u64().unwrap_or(0),
        by_move_pages,
        0,
    );
    assert_close(
        "pages migrated with reason mempolicy_mbind (mbind)",
        migrations["mempolicy_mbind"].as_u64().unwrap_or(0),
        by_mbind,
        0,
    );
}

#[test]
#[ignore = "boots QEMU"]
fn scenario_6_migratepages_counts_2_nodes() {
    let o = outcome(2, "migratepages");
    let (home, far) = (u(&o.truth, &["home_node"]), u(&o.truth, &["far_node"]));
    let moved = node_pages(&o.truth["pages_by_node_at_end"], far);
    assert_eq!(
        node_pages(&o.truth["pages_by_node"], home),
        u(&o.truth, &["pages"]),
        "the region did not start on node {home}: {}",
        o.truth
    );
    assert!(moved > 0, "migratepages moved nothing: {}", o.truth);
    // migrate_pages(2) moves every page only this process maps (stack, heap, its
    // binary's private pages too): the ground truth is the growth of the process's
    // pages on the far node in /proc/PID/numa_maps.
    let process_moved = node_pages(&o.truth["process_pages_by_node_at_end"], far)
        .saturating_sub(node_pages(&o.truth["process_pages_by_node"], far));
    assert!(
        process_moved >= moved,
        "numa_maps says {process_moved} process pages moved, fewer than the region's {moved}: {}",
        o.truth
    );
    let migrated = u(&o.report, &["totals", "page_migrations", "syscall_or_cpuset"]);
    assert_close("pages migrated with reason syscall_or_cpuset (migratepages)", migrated, process_moved, 0);
}

#[test]
#[ignore = "boots QEMU"]
fn scenario_6_migratepages_cause_2_nodes() {
    let o = outcome(2, "migratepages");
    assert_first_cause(&o.report, "explicit_migration", None);
}

#[test]
#[ignore = "boots QEMU"]
fn scenario_6_explicit_cause_2_nodes() {
    let o = outcome(2, "explicit");
    assert_first_cause(
        &o.report,
        "explicit_migration",
        Some(u(&o.truth, &["moved_by_move_pages"]) + u(&o.truth, &["moved_by_mbind"])),
    );
}

// ---- balancing on: the balancer repairs, the root cause keeps the blame ----

#[test]
#[ignore = "boots QEMU"]
fn scenario_7_init_thread_with_balancing_cause_2_nodes() {
    let o = outcome(2, "init-thread-balancing");
    let pages = u(&o.truth, &["init", "first_touch_pages"]);
    let cause = assert_first_cause(&o.report, "first_touch_by_other_thread", Some(pages));
    let balancer_pages: u64 = o.report["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["kind"] == "numa_balancer")
        .map(|c| u(c, &["pages"]))
        .sum();
    assert!(
        balancer_pages < PROCESS_SLACK_PAGES,
        "the balancer repaired the init thread's placement and is blamed for {balancer_pages} pages: {}",
        o.report["causes"]
    );
    let misplaced = u(&o.report, &["magnitude", "cost", "balancer_pages_migrated"]);
    assert!(misplaced > 0, "the balancer migrated nothing in 4 s of fast scanning: {}", o.report["magnitude"]);
    assert_eq!(u(&cause, &["repaired_pages"]) > 0, misplaced > 0, "repairs shown on the cause: {cause}");
    assert!(o.report["magnitude"]["of_consequence"].as_bool() == Some(true), "{}", o.report["magnitude"]);
    let headline = o.report["headline"].as_str().unwrap_or_default();
    assert!(
        headline.contains("of its memory") && headline.contains("is remote"),
        "no magnitude in the headline: {headline}"
    );
    assert_only_real_nodes(&o.report, 2);
}

fn shared_cause(name: &str) {
    let o = outcome(2, name);
    let nodes: Vec<u64> = o.truth["workers"].as_array().into_iter().flatten().map(|w| u(w, &["node"])).collect();
    assert_eq!(nodes, [0, 1], "the workers did not run on both nodes: {}", o.truth);
    let cause = assert_first_cause(&o.report, "shared_across_nodes", None);
    assert_eq!(cause["fixes"][0]["kind"], "interleave_all", "first fix: {}", cause["fixes"][0]);
    // Nothing can predate a capture that started the command.
    assert!(
        o.report["causes"].as_array().into_iter().flatten().all(|c| c["kind"] != "placed_before_capture"),
        "placed_before_capture for a command numatrace started: {}",
        o.report["causes"]
    );
    assert_only_real_nodes(&o.report, 2);
}

#[test]
#[ignore = "boots QEMU"]
fn scenario_8_shared_cause_2_nodes() {
    shared_cause("shared");
}

#[test]
#[ignore = "boots QEMU"]
fn scenario_8_shared_with_balancing_cause_2_nodes() {
    shared_cause("shared-balancing");
    let o = outcome(2, "shared-balancing");
    // The threads' own counts (/proc/<tid>/sched): vmstat's is machine-wide
    // and holds numatrace's own pages, which a loaded guest runs long enough
    // for the balancer to move (1009 seen against vmstat's 3609 once).
    let migrated = u(&o.truth, &["task_numa_pages_migrated"]);
    let machine_wide = u(&o.truth, &["vmstat_delta", "numa_pages_migrated"]);
    assert!(migrated <= machine_wide, "the threads' count {migrated} exceeds the machine's {machine_wide}");
    let seen = u(&o.report, &["magnitude", "cost", "balancer_pages_migrated"]);
    assert_close("pages the balancer migrated (the threads' numa_pages_migrated)", seen, migrated, PROCESS_SLACK_PAGES);
}

// ---- every fix proven by running it as printed ----
//
// For each scenario numatrace started with `--`, the first fix of the top
// cause that restarts the command under numactl/taskset is run exactly as
// printed, traced again, and the remote share must fall to the level the fix
// promises: below 5 % for a bind or a pin, about (n-1)/n for an interleave.
// Left out: `migrated` and `explicit`, whose workloads move their own thread
// or pages in code (no placement from outside undoes that), and the attach
// scenarios, whose fixes act on a pid that is gone by the second boot.

/// Scenarios whose first runnable fix is run, with their balancing. Not
/// the spill: its workload pins itself to the first node and overfills
/// whichever node it runs on by design, so no restart can hold it; the
/// spill's `--preferred` fix is run as printed on memhog in lab_real.
const FIXED_SCENARIOS: [(&str, Balancing); 5] = [
    ("init-thread", Balancing::Off),
    ("policy", Balancing::Off),
    ("shared", Balancing::Off),
    ("init-thread-balancing", Balancing::Fast),
    ("shared-balancing", Balancing::Fast),
];

/// The first fix of the top cause that restarts the command (its first
/// command starts with numactl or taskset): (fix kind, command line).
fn first_restart_fix(report: &Value) -> Option<(String, String)> {
    let fixes = report["causes"][0]["fixes"].as_array()?;
    fixes.iter().find_map(|f| {
        let cmd = f["commands"].as_array()?.first()?.as_str()?;
        let runnable = (cmd.starts_with("numactl ") || cmd.starts_with("taskset ")) && !cmd.contains('<');
        runnable.then(|| (f["kind"].as_str().unwrap_or_default().to_string(), cmd.to_string()))
    })
}

/// Reports of the fixes run as printed, by scenario: (fix kind, command, report after).
type FixRuns = BTreeMap<&'static str, Result<(String, String, Value), String>>;

fn fix_runs() -> &'static Result<FixRuns, String> {
    static RUNS: OnceLock<Result<FixRuns, String>> = OnceLock::new();
    RUNS.get_or_init(|| {
        let before = guest(2).as_ref().map_err(|e| e.clone())?;
        let mut planned = Vec::new();
        for (name, balancing) in FIXED_SCENARIOS {
            let report = match before.get(name) {
                Some(Ok(o)) => &o.report,
                _ => continue,
            };
            if let Some((kind, cmd)) = first_restart_fix(report) {
                // exec: the printed line is parsed by the shell as a user's would be,
                // and numatrace traces exactly that command. The trailing names are
                // host programs the lab copies into the guest.
                let argv = ["sh", "-c", &format!("exec numatrace --json -- {cmd}"), "sh", "numactl", "taskset"];
                planned.push((
                    name,
                    kind,
                    cmd,
                    GuestCommand { argv: argv.iter().map(|s| s.to_string()).collect(), balancing },
                ));
            }
        }
        let _turn = ONE_GUEST_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let opts = guest::options(2, 384, Duration::from_secs(600));
        let commands: Vec<GuestCommand> = planned.iter().map(|p| p.3.clone()).collect();
        let run = guest::run("lab fixes as printed", &opts, &commands)?;
        Ok(planned
            .into_iter()
            .zip(run.results)
            .map(|((name, kind, cmd, _), result)| {
                let text = String::from_utf8_lossy(&result.stdout).into_owned();
                let saved =
                    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lab-2-nodes-{name}-fixed.out"));
                let _ = std::fs::write(&saved, &text);
                // The workload's ground-truth line comes first, then the report.
                let report = text
                    .find("\n{\n")
                    .map(|at| &text[at + 1..])
                    .ok_or_else(|| format!("no report after `{cmd}` (exit {}): {text}", result.exit_code))
                    .and_then(|json| {
                        serde_json::from_str::<Value>(json).map_err(|e| format!("report of `{cmd}` is not JSON ({e})"))
                    });
                (name, report.map(|r| (kind, cmd, r)))
            })
            .collect())
    })
}

fn fix_works(name: &str) {
    let before = &outcome(2, name).report;
    let runs = fix_runs().as_ref().unwrap_or_else(|e| panic!("{e}"));
    let (kind, cmd, after) = match runs.get(name) {
        Some(Ok(run)) => run,
        Some(Err(e)) => panic!("{e}"),
        None => panic!("scenario {name} has no fix that restarts the command: {}", before["causes"][0]["fixes"]),
    };
    assert!(cmd.matches("numactl").count() <= 1 && cmd.matches("taskset").count() <= 1, "a second launcher in `{cmd}`");
    let share = |r: &Value| r["magnitude"]["remote_memory_share"].as_f64().unwrap_or(f64::NAN);
    let (was, now) = (share(before), share(after));
    eprintln!("{name}: fix {kind} `{cmd}`: remote share {:.1}% -> {:.1}%", was * 100.0, now * 100.0);
    let nodes = after["topology"]["nodes"].as_array().map_or(2, Vec::len) as f64;
    let promised = if kind == "interleave_all" { (nodes - 1.0) / nodes + 0.1 } else { 0.05 };
    assert!(
        now <= promised,
        "{name}: `{cmd}` ({kind}) left {:.1}% of the memory remote (promised at most {:.0}%); was {:.1}%; report: {}",
        now * 100.0,
        promised * 100.0,
        was * 100.0,
        after["headline"]
    );
    // An interleave promises an even spread, not less remote memory: for
    // shared data it trades one node's remote users for every node's.
    if kind != "interleave_all" {
        assert!(now < was, "{name}: `{cmd}` did not lower the remote share ({was} -> {now})");
    }
}

#[test]
#[ignore = "boots QEMU"]
fn fix_as_printed_init_thread_2_nodes() {
    fix_works("init-thread");
}
/// The spill's fixes: never an interleave (19 % remote would become 50 %;
/// run as printed it did: 19.5 % -> 50.2 %); where no node has room for
/// it, the report says so first; where one has, `--preferred` on it (run
/// as printed on memhog in lab_real: this workload spills on any node).
#[test]
#[ignore = "boots QEMU"]
fn fix_as_printed_spill_2_nodes() {
    let report = &outcome(2, "spill").report;
    let needed = u(report, &["magnitude", "memory_pages"]) * 4096;
    let most_free =
        report["topology"]["nodes"].as_array().into_iter().flatten().map(|n| u(n, &["mem_free_bytes"])).max();
    let fixes = report["causes"][0]["fixes"].as_array().cloned().unwrap_or_default();
    let kinds: Vec<&str> = fixes.iter().filter_map(|f| f["kind"].as_str()).collect();
    eprintln!(
        "spill: {} MiB needed, the most free on a node {} MiB: fixes {kinds:?}",
        needed >> 20,
        most_free.unwrap_or(0) >> 20
    );
    assert!(!kinds.contains(&"interleave_all"), "an interleave raises the remote share of this spill: {kinds:?}");
    if kinds.first() == Some(&"no_node_has_room") {
        let free = most_free.unwrap_or(0);
        assert!(
            free < needed + needed / 10,
            "node with {} MiB free said to have no room for {} MiB",
            free >> 20,
            needed >> 20
        );
    } else {
        assert_eq!(kinds.first(), Some(&"preferred"), "a node has room: {kinds:?}");
        let cmd = fixes[0]["commands"][0].as_str().unwrap_or_default();
        let node = cmd.split("--preferred=").nth(1).and_then(|s| s.split_whitespace().next()).map(str::to_string);
        let room = report["topology"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["id"].as_u64().map(|id| id.to_string()) == node)
            .map(|n| u(n, &["mem_free_bytes"]));
        assert!(room.is_some_and(|free| free >= needed), "`{cmd}`: not a node with room for {} MiB", needed >> 20);
        assert!(cmd.contains(&format!("--cpunodebind={}", node.unwrap_or_default())), "`{cmd}`: CPUs elsewhere");
    }
}
#[test]
#[ignore = "boots QEMU"]
fn fix_as_printed_policy_2_nodes() {
    fix_works("policy");
}
#[test]
#[ignore = "boots QEMU"]
fn fix_as_printed_shared_2_nodes() {
    fix_works("shared");
}
#[test]
#[ignore = "boots QEMU"]
fn fix_as_printed_init_thread_with_balancing_2_nodes() {
    fix_works("init-thread-balancing");
}
#[test]
#[ignore = "boots QEMU"]
fn fix_as_printed_shared_with_balancing_2_nodes() {
    fix_works("shared-balancing");
}
