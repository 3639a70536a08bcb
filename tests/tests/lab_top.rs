//! `numatrace top --once --json` in a 2-node guest (Debian's 6.1 under
//! QEMU, see `cargo xtask lab`): two processes with opposite placements
//! (`numactl --cpunodebind=0 --membind=1` and its mirror) are both found
//! with their memory on the other node, a high remote share and the tag
//! `policy`, ranked above a process bound locally.
//!
//! It boots QEMU, so it is `#[ignore]`d: `cargo xtask test` runs it, or
//! `cargo test -p numatrace-tests --test lab_top -- --include-ignored`.
use std::{sync::OnceLock, time::Duration};

use numatrace_tests::guest;
use serde_json::Value;
use xtask::lab::{Balancing, GuestCommand};

/// What each process first-touches under its policy.
const MIB: u64 = 48;

/// Three `resident` workloads (node 0 -> memory on 1, node 1 -> memory on
/// 0, node 0 -> memory on 0), each awaited, then one `top --once --json`.
fn script() -> String {
    format!(
        r#"start() {{
  numactl --cpunodebind=$1 --membind=$2 numatrace workload resident --mib {MIB} --seconds 600 > /tmp/$3.out 2>&1 &
  echo $! > /tmp/$3.pid
}}
start 0 1 away0
start 1 0 away1
start 0 0 local0
for w in away0 away1 local0; do
  tries=0
  while ! grep -q '"pid"' /tmp/$w.out; do
    tries=$((tries + 1))
    if [ $tries -gt 600 ]; then echo "$w did not start:"; cat /tmp/$w.out; exit 1; fi
    sleep 0.1
  done
done
printf '{{"away0":%s,"away1":%s,"local0":%s}}\n' $(cat /tmp/away0.pid) $(cat /tmp/away1.pid) $(cat /tmp/local0.pid)
numatrace top --once --json --interval 1s
status=$?
kill $(cat /tmp/away0.pid) $(cat /tmp/away1.pid) $(cat /tmp/local0.pid)
exit $status
"#
    )
}

/// The pids line and the view.
fn run() -> Result<(Value, Value), String> {
    let command = GuestCommand {
        argv: ["sh", "-c", &script(), "lab-top", "numactl"].iter().map(|s| s.to_string()).collect(),
        balancing: Balancing::Off,
    };
    let opts = guest::options(2, 384, Duration::from_secs(300));
    let run = guest::run("lab top, 2 nodes", &opts, std::slice::from_ref(&command))?;
    let result = run.results.first().ok_or("no result came back")?;
    let text = String::from_utf8_lossy(&result.stdout).into_owned();
    if result.exit_code != 0 {
        return Err(format!("the script exited with {}:\n{text}", result.exit_code));
    }
    let (pids, view) = text.split_once('\n').ok_or_else(|| format!("no pids line:\n{text}"))?;
    let pids: Value = serde_json::from_str(pids).map_err(|e| format!("pids line ({e}): {pids}"))?;
    let view: Value = serde_json::from_str(view).map_err(|e| format!("top --once --json ({e}):\n{view}"))?;
    Ok((pids, view))
}

fn guest_run() -> &'static (Value, Value) {
    static RUN: OnceLock<Result<(Value, Value), String>> = OnceLock::new();
    RUN.get_or_init(run).as_ref().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
#[ignore = "boots QEMU"]
fn opposite_placements_are_both_found_and_ranked_above_local_ones() {
    let (pids, view) = guest_run();
    assert_eq!(view["schema"], "numatrace.top/1");
    assert_eq!(view["nodes"].as_array().map(Vec::len), Some(2), "{view}");
    let processes = view["processes"].as_array().expect("processes[]");
    let rank = |name: &str| {
        processes.iter().position(|p| p["pid"] == pids[name]).unwrap_or_else(|| panic!("{name} not listed: {view}"))
    };
    let row = |name: &str| &processes[rank(name)];
    for name in ["away0", "away1", "local0"] {
        let p = row(name);
        eprintln!(
            "lab top: {name} rank {} of {}: remote {} memory {} threads {} tag {}",
            rank(name) + 1,
            processes.len(),
            p["remote_memory_share"],
            p["memory_by_node"],
            p["threads_by_node"],
            p["tag"]
        );
    }
    let mib = |p: &Value, node: &str| p["memory_by_node"][node].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64;
    for (name, threads, memory) in [("away0", "0", "1"), ("away1", "1", "0")] {
        let p = row(name);
        assert!(mib(p, memory) >= MIB as f64, "{name}: its {MIB} MiB on node {memory}: {p}");
        assert_eq!(p["threads_by_node"][threads], 1, "{name}: {p}");
        let share = p["remote_memory_share"].as_f64().unwrap_or(0.0);
        assert!(share > 0.9, "{name}: remote share {share}: {p}");
        assert_eq!(p["tag"], "policy", "{name}: {p}");
        assert!(rank(name) < rank("local0"), "{name} ranked below the local process: {view}");
    }
    let local = row("local0");
    assert!(mib(local, "0") >= MIB as f64, "{local}");
    assert!(local["remote_memory_share"].as_f64().unwrap_or(1.0) < 0.05, "{local}");
    assert_eq!(local["tag"], "local");
}

#[test]
#[ignore = "boots QEMU"]
fn as_root_on_6_1_every_per_process_figure_is_counted_in_the_kernel() {
    let (_, view) = guest_run();
    // Debian's 6.1 has BTF-typed tracepoints and fentry: moves, remote first
    // touches and remote hinting faults are all the kernel's counts.
    for flag in ["counted_in_kernel", "first_touches_counted_in_kernel", "hinting_faults_counted_in_kernel"] {
        assert_eq!(view[flag], true, "{flag}: {}", view["cannot_see"]);
    }
    let processes = view["processes"].as_array().expect("processes[]");
    assert!(!processes.is_empty());
    for p in processes {
        for rate in ["remote_first_touch_pages_per_s", "remote_hinting_faults_per_s"] {
            assert!(p[rate].as_f64().is_some_and(|r| r >= 0.0), "{rate}: {p}");
        }
    }
}
