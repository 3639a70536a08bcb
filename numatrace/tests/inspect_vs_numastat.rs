//! numastat (Debian's numactl package) is the oracle: `numatrace inspect
//! --json` must show the same per-node figures as `numastat -m` and
//! `numastat -p <pid>` read at the same moment, to numastat's rounding.
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use numatrace_tests::parse_numastat;
use serde_json::Value;

/// numastat prints MiB with two decimals.
const ROUNDING_MIB: f64 = 0.005 + 1e-9;
const MIB: f64 = (1u64 << 20) as f64;

fn numastat(args: &[&str]) -> BTreeMap<String, BTreeMap<String, f64>> {
    let out = Command::new("numastat")
        .args(args)
        .env("NUMASTAT_WIDTH", "10000")
        .output()
        .expect("numastat runs (apt-get install numactl)");
    assert!(out.status.success(), "numastat {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let table = parse_numastat(&String::from_utf8_lossy(&out.stdout));
    assert!(!table.is_empty(), "numastat {args:?} printed no table");
    table
}

fn inspect(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_numatrace"))
        .arg("inspect")
        .arg("--json")
        .args(args)
        .output()
        .expect("numatrace runs");
    assert!(out.status.success(), "numatrace inspect failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON");
    assert_eq!(v["schema"], "numatrace.inspect/1");
    v
}

fn close(ours_bytes: f64, theirs_mib: f64) -> bool {
    (ours_bytes / MIB - theirs_mib).abs() <= ROUNDING_MIB
}

/// Every figure numastat -m shows equals ours, per node and in total.
/// Memory moves between reads, so ours is read just before and just after
/// numastat, in this process (spawning numatrace would itself move Mapped and
/// PageTables by its own size): numastat's figure must lie between the two
/// readings, to its rounding. Up to ten tries on a busy machine.
#[test]
fn meminfo_per_node_equals_numastat_m() {
    use numatrace_core::machine::SystemSnapshot;
    let json = inspect(&[]);
    let mut last_mismatch = Vec::new();
    for _ in 0..10 {
        let before = SystemSnapshot::read().expect("snapshot");
        let theirs = numastat(&["-m"]);
        let after = SystemSnapshot::read().expect("snapshot");
        let nodes: Vec<u32> = before.meminfo.keys().copied().collect();
        assert_eq!(nodes.len(), before.topology.nodes.len());
        let mut mismatch = Vec::new();
        let mut compared = 0;
        for (field, cols) in &theirs {
            for node in &nodes {
                let theirs = cols[&format!("Node {node}")];
                let (Some(a), Some(b)) = (before.meminfo[node].get(field), after.meminfo[node].get(field)) else {
                    mismatch.push(format!("{field} missing on node {node}"));
                    continue;
                };
                compared += 1;
                let (a, b) = (a as f64, b as f64);
                let (lo, hi) = (a.min(b) / MIB - ROUNDING_MIB, a.max(b) / MIB + ROUNDING_MIB);
                if theirs < lo || theirs > hi {
                    mismatch.push(format!(
                        "{field} node {node}: numastat {theirs} MiB, numatrace {:.3}..{:.3} MiB",
                        a / MIB,
                        b / MIB
                    ));
                }
            }
            // numastat's Total column is the sum of its node columns; ours too.
            let sum: f64 = nodes.iter().filter_map(|n| before.meminfo[n].get(field)).map(|v| v as f64).sum();
            let sum_after: f64 = nodes.iter().filter_map(|n| after.meminfo[n].get(field)).map(|v| v as f64).sum();
            let t = cols["Total"];
            if t < sum.min(sum_after) / MIB - ROUNDING_MIB * nodes.len() as f64
                || t > sum.max(sum_after) / MIB + ROUNDING_MIB * nodes.len() as f64
            {
                mismatch.push(format!("{field} total: numastat {t} MiB, numatrace {:.3} MiB", sum / MIB));
            }
        }
        assert!(compared >= 30 * nodes.len(), "compared only {compared} figures");
        // Fields that do not move must match exactly, whatever the moment, also through --json.
        for field in ["MemTotal", "HugePages_Total"] {
            for node in &nodes {
                let ours = json["meminfo"][node.to_string()][field].as_f64().unwrap_or(-1.0);
                let t = theirs[field][&format!("Node {node}")];
                assert!(close(ours, t), "{field} node {node}: numastat {t} vs numatrace --json {}", ours / MIB);
            }
        }
        if mismatch.is_empty() {
            return;
        }
        last_mismatch = mismatch;
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("numatrace inspect differs from numastat -m: {last_mismatch:#?}");
}

/// Set in the child [`process_memory_equals_numastat_p`] starts: this test
/// binary again, running only that test, which then holds memory instead.
const HOLD_MEMORY_ENV: &str = "NUMATRACE_HOLD_MEMORY";

/// The child's part: holds 64 MiB (touched) and a bit of brk heap, then
/// waits for stdin to close.
fn hold_memory() {
    let big = vec![1u8; 64 << 20];
    let small: Vec<Box<[u8; 512]>> = (0..2048).map(|_| Box::new([7u8; 512])).collect();
    println!("ready {}", big.len() + small.len());
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    std::hint::black_box((&big, &small));
}

#[test]
fn process_memory_equals_numastat_p() {
    if std::env::var_os(HOLD_MEMORY_ENV).is_some() {
        hold_memory();
        return;
    }
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", "process_memory_equals_numastat_p", "--nocapture", "--test-threads=1"])
        .env(HOLD_MEMORY_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("child starts");
    let mut reader = BufReader::new(child.stdout.take().expect("child stdout"));
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && !line.contains("ready") {
        line.clear();
    }
    assert!(line.contains("ready"), "child never got ready");
    std::thread::sleep(Duration::from_millis(200));
    let pid = child.id().to_string();

    let mut result = Err(String::new());
    for _ in 0..5 {
        let ours = inspect(&["--pid", &pid]);
        let theirs = numastat(&["-p", &pid]);
        let p = &ours["process"];
        let nodes: Vec<String> = p["memory_by_node"].as_object().expect("memory_by_node").keys().cloned().collect();
        let mut mismatch = Vec::new();
        for (row, key) in
            [("Huge", "huge"), ("Heap", "heap"), ("Stack", "stack"), ("Private", "private"), ("Total", "total")]
        {
            let mut sum = 0.0;
            for node in &nodes {
                let b = p["memory_by_node"][node.as_str()][key].as_f64().unwrap_or(-1.0);
                sum += b;
                let t = theirs[row][&format!("Node {node}")];
                if !close(b, t) {
                    mismatch.push(format!("{row} node {node}: numastat {t} MiB, numatrace {:.4} MiB", b / MIB));
                }
            }
            if !close(sum, theirs[row]["Total"]) {
                mismatch.push(format!(
                    "{row} total: numastat {} MiB, numatrace {:.4} MiB",
                    theirs[row]["Total"],
                    sum / MIB
                ));
            }
        }
        let total_mib = theirs["Total"]["Total"];
        if total_mib < 64.0 {
            mismatch.push(format!("numastat sees only {total_mib} MiB in the child"));
        }
        let threads: u64 =
            p["threads_by_node"].as_object().map(|o| o.values().filter_map(Value::as_u64).sum()).unwrap_or(0);
        if threads == 0 {
            mismatch.push("no threads placed".into());
        }
        result = if mismatch.is_empty() { Ok(()) } else { Err(format!("{mismatch:#?}")) };
        if result.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(child.stdin.take());
    let _ = child.wait();
    if let Err(e) = result {
        panic!("numatrace inspect --pid differs from numastat -p: {e}");
    }
}

#[test]
fn a_missing_process_is_one_error_line_and_nonzero_exit() {
    let out = Command::new(env!("CARGO_BIN_EXE_numatrace"))
        .args(["inspect", "--pid", "4294967"])
        .output()
        .expect("numatrace runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no process with PID 4294967"), "{err}");
}

#[test]
fn parses_folded_numastat_tables() {
    let text = "\nPer-node system memory usage (in MBs):\nToken X not in hash table.\n                          Node 0          Node 1\n                 --------------- ---------------\nMemTotal                 1.00 2.00\n\n                           Total\n                 ---------------\nMemTotal                 3.00\n";
    let t = parse_numastat(text);
    assert_eq!(t["MemTotal"]["Node 1"], 2.0);
    assert_eq!(t["MemTotal"]["Total"], 3.0);
}
