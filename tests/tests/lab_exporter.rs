//! `numatrace exporter`'s kernel counters in a 2-node guest (Debian's 6.1
//! under QEMU, see `cargo xtask lab`), balancing on: two `balance`
//! workloads (thread on node 0, memory on node 1, then unpinned) make the
//! balancer move, swap or leave tasks, and the counters scraped before and
//! after must match the kernel's own record of the same tracepoints, in a
//! tracefs instance of their own.
//!
//! A scrape is not an instant in the trace: each is bracketed by two
//! trace_marker lines. Decisions between the first scrape's end and the
//! second's start were surely counted in between; those between the first
//! one's start and the second one's end may have been. The scraped
//! difference must lie between the two.
//!
//! It boots QEMU, so it is `#[ignore]`d: `cargo xtask test` runs it, or
//! `cargo test -p numatrace-tests --test lab_exporter -- --include-ignored`.
use std::{collections::BTreeMap, time::Duration};

use numatrace_tests::{guest, sections};
use xtask::lab::{Balancing, GuestCommand};

const DECISIONS: [&str; 3] = ["move", "swap", "stick"];

/// The instance's own buffer, clock and marker; the events are already
/// armed globally by the guest's /init (no kernel text is patched here).
const SCRIPT: &str = r#"
I=/sys/kernel/tracing/instances/balancer
mkdir $I || exit 1
echo global > $I/trace_clock
echo 4096 > $I/buffer_size_kb
for e in move swap stick; do echo 1 > $I/events/sched/sched_${e}_numa/enable || exit 1; done
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
scrape() {
  echo "numatrace-lab $1-start" > $I/trace_marker
  wget -q -O /tmp/$1.metrics http://127.0.0.1:9464/metrics || exit 1
  echo "numatrace-lab $1-done" > $I/trace_marker
}
scrape before
numatrace workload balance --mib 32 --seconds 6 > /dev/null &
a=$!
numatrace workload balance --mib 32 --seconds 6 > /dev/null &
b=$!
wait $a $b
scrape after
echo 0 > $I/tracing_on
kill $exporter
for s in before after; do
  echo "=== $s"
  grep -E '^numatrace_(numa_balancer_task_decisions_total|exporter_kernel_counters)' /tmp/$s.metrics
done
echo "=== stderr"
cat /tmp/exporter.err
echo "=== overrun"
cat $I/per_cpu/cpu*/stats | grep overrun
[ $(cat $I/per_cpu/cpu*/stats | grep -c overrun) -ge 2 ] || echo "no overrun line"
echo "=== trace"
grep -E 'sched_(move|swap|stick)_numa|numatrace-lab' $I/trace
"#;

/// `numatrace_numa_balancer_task_decisions_total{decision="D"} N` by D.
fn scraped(lines: &[String]) -> BTreeMap<String, u64> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("numatrace_numa_balancer_task_decisions_total{decision=\""))
        .filter_map(|rest| {
            let (decision, value) = rest.split_once("\"} ")?;
            Some((decision.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Decisions surely between the scrapes, and those that may have been, by decision.
fn traced(lines: &[String]) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let (mut surely, mut maybe) = (BTreeMap::new(), BTreeMap::new());
    // 0: before the first scrape; 1: during it; 2: between; 3: during the second; 4: after.
    let mut phase = 0;
    for line in lines {
        for (marker, next) in [("before-start", 1), ("before-done", 2), ("after-start", 3), ("after-done", 4)] {
            if line.contains(&format!("numatrace-lab {marker}")) {
                phase = next;
            }
        }
        let Some(decision) = DECISIONS.iter().find(|d| line.contains(&format!("sched_{d}_numa:"))) else { continue };
        if phase == 2 {
            *surely.entry(decision.to_string()).or_insert(0) += 1;
        }
        if (1..=3).contains(&phase) {
            *maybe.entry(decision.to_string()).or_insert(0) += 1;
        }
    }
    (surely, maybe)
}

#[test]
#[ignore = "boots QEMU"]
fn scraped_balancer_decisions_match_the_kernels_trace() {
    let command = GuestCommand {
        argv: ["sh", "-c", SCRIPT, "lab-exporter"].iter().map(|s| s.to_string()).collect(),
        balancing: Balancing::Fast,
    };
    let opts = guest::options(2, 384, Duration::from_secs(300));
    let run =
        guest::run("lab exporter, 2 nodes", &opts, std::slice::from_ref(&command)).unwrap_or_else(|e| panic!("{e}"));
    let result = run.results.first().expect("a result came back");
    let text = String::from_utf8_lossy(&result.stdout).into_owned();
    assert_eq!(result.exit_code, 0, "the script failed:\n{text}");
    let s = sections(&text);
    let section = |name: &str| s.get(name).unwrap_or_else(|| panic!("no {name} section:\n{text}"));
    assert!(
        section("after").iter().any(|l| l == "numatrace_exporter_kernel_counters{state=\"attached\"} 1"),
        "not attached:\n{text}"
    );
    assert!(section("stderr").is_empty(), "the exporter complained:\n{text}");
    assert!(section("overrun").iter().all(|l| l.trim().ends_with("overrun: 0")), "the trace lost events:\n{text}");
    let (before, after) = (scraped(section("before")), scraped(section("after")));
    let (surely, maybe) = traced(section("trace"));
    let mut total = 0;
    for d in DECISIONS {
        let (b, a) = (before.get(d).copied(), after.get(d).copied());
        let (Some(b), Some(a)) = (b, a) else { panic!("no {d} series:\n{text}") };
        let delta = a - b;
        let (low, high) = (surely.get(d).copied().unwrap_or(0), maybe.get(d).copied().unwrap_or(0));
        eprintln!(
            "lab exporter: {d}: scraped {b} -> {a} (+{delta}); tracefs between the scrapes {low}, with them {high}"
        );
        assert!(low <= delta && delta <= high, "{d}: scraped +{delta}, the trace says {low}..={high}:\n{text}");
        total += delta;
    }
    assert!(total > 0, "the balancer made no decision in 6 s of two misplaced workloads:\n{text}");
}
