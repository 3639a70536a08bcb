//! `numatrace inspect` against Debian's numastat inside the NUMA lab (a
//! 2-node and a 4-node guest, Debian's 6.1 kernel under QEMU, see `cargo
//! xtask lab`): the multi-node half of numatrace/tests/inspect_vs_numastat.rs,
//! which can only see this host's one node.
//!
//! One guest boot per topology runs every command; each test reads its part:
//! - topology: inspect sees N nodes, each with the CPUs, size and distances
//!   `numactl --hardware` shows.
//! - meminfo, frozen: `/sys/devices/system/node` is copied to a tmpfs and
//!   bind-mounted over itself, so `numastat -m` and `numatrace inspect --json`
//!   read the very same bytes: every figure on every node must be equal to
//!   numastat's rounding (two decimals of MiB). This checks the parsing; 3
//!   huge pages are reserved on each node first, so HugePages_* are not 0.
//! - meminfo, live: `numastat -m` run between two `numatrace inspect --json`
//!   on the live files, three times. Each reader's own process is part of
//!   what it reads (numatrace maps 2 to 9 MiB more of its executable than
//!   numastat and has more anonymous pages, page tables and kernel stacks), so the fields that count the reader itself (MemFree, MemUsed,
//!   Mapped, AnonPages, the LRU lists, KernelStack, PageTables) get a bounded
//!   slack; in at least one of the three rounds every figure must lie between
//!   the two inspect readings (to numastat's rounding, or within that slack),
//!   and the fixed ones (MemTotal, HugePages_*) must equal numastat's in all
//!   of them.
//! - process: `numatrace workload resident` under `numactl --membind=<node>`
//!   holds 16 MiB plus heap, stack and 4 MiB of hugetlb pages on the chosen
//!   node and sleeps; `numastat -p` and `numatrace inspect --pid --json`
//!   must agree on every node and row (Huge, Heap, Stack, Private, Total) to
//!   numastat's rounding, twice.
//! - check: `numatrace check --json` on Debian's 6.1 attaches the
//!   machine-wide sources through raw and BTF-typed tracepoints (the BTF
//!   read whole: 6.1 refuses its mmap), and sees the guest's nodes.
//!
//! They boot QEMU, so they are `#[ignore]`d: `cargo xtask test` runs them, or
//! `cargo test -p numatrace-tests --test lab_inspect -- --include-ignored`
//! (see tests/README.md).
use std::{
    collections::BTreeMap,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use numatrace_tests::guest;
use numatrace_tests::{Table, parse_numastat};
use serde_json::Value;
use xtask::lab::{self, Balancing, GuestCommand};

/// numastat prints MiB with two decimals.
const ROUNDING_MIB: f64 = 0.005 + 1e-9;
const MIB: f64 = (1u64 << 20) as f64;
/// Memory per guest node.
const MEM_PER_NODE_MIB: u64 = 384;
/// numastat -m readings on the live files, each between two inspect readings.
const LIVE_ROUNDS: usize = 3;
/// What the resident workload first-touches on the chosen node, besides heap and stack.
const RESIDENT_MIB: u64 = 16;
const RESIDENT_HEAP_KIB: u64 = 512;
const RESIDENT_STACK_KIB: u64 = 256;
/// 2 MiB huge pages reserved on every node (the frozen script's `echo 3`), and
/// how much of them the resident workload maps.
const HUGE_PAGES_PER_NODE: u64 = 3;
const RESIDENT_HUGE_MIB: u64 = 4;
/// numastat -p / inspect --pid pairs on the resident process.
const PROCESS_ROUNDS: usize = 2;

/// Fields of `numastat -m` that count the reading process itself, with how
/// far numatrace's reading may be from numastat's (MiB): both have a few
/// hundred KiB of anonymous memory, page tables and one or two kernel stacks,
/// which is also what MemFree and MemUsed see of them (measured: AnonPages
/// and Inactive(anon) 0.6 MiB apart with the debug build, MemFree 0.08, the
/// others less). Mapped: see [`mapped_slack_mib`].
const READER_FIELDS: [(&str, f64); 9] = [
    ("MemFree", 1.0),
    ("MemUsed", 1.0),
    ("AnonPages", 2.0),
    ("Active", 2.0),
    ("Inactive", 2.0),
    ("Active(anon)", 2.0),
    ("Inactive(anon)", 2.0),
    ("KernelStack", 0.25),
    ("PageTables", 0.25),
];

/// How far numatrace's Mapped may be from numastat's (MiB): numatrace maps
/// pages of its own executable while it reads (measured: 2.0 MiB more for the
/// static release build, 8.7 MiB more for the debug build), numastat those of
/// a small binary and libc. At most the executable's size, plus 4 MiB.
fn mapped_slack_mib() -> f64 {
    let exe = std::env::var_os(lab::NUMATRACE_ENV).map(std::path::PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        target.join("debug/numatrace")
    });
    let size = std::fs::metadata(&exe)
        .map(|m| m.len() as f64 / MIB)
        .unwrap_or_else(|e| panic!("the guest's numatrace {}: {e}", exe.display()));
    size + 4.0
}

/// Fields that do not move while the guest idles: equal in every live round.
const FIXED_FIELDS: [&str; 4] = ["MemTotal", "HugePages_Total", "HugePages_Free", "HugePages_Surp"];

/// `numactl --hardware`: node -> CPUs, node -> size in MiB, and the distance matrix.
#[derive(Debug, Default)]
struct Hardware {
    cpus: BTreeMap<u32, Vec<u32>>,
    size_mib: BTreeMap<u32, u64>,
    distances: Vec<Vec<u32>>,
}

fn parse_hardware(text: &str) -> Result<Hardware, String> {
    let mut hw = Hardware::default();
    let mut in_distances = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["node", "distances:"] => in_distances = true,
            ["node", id, "cpus:", cpus @ ..] => {
                let id: u32 = id.parse().map_err(|e| format!("node id in {line:?}: {e}"))?;
                let cpus = cpus
                    .iter()
                    .map(|c| c.parse::<u32>())
                    .collect::<Result<Vec<u32>, _>>()
                    .map_err(|e| format!("{line:?}: {e}"))?;
                hw.cpus.insert(id, cpus);
            }
            ["node", id, "size:", size, "MB"] => {
                let id: u32 = id.parse().map_err(|e| format!("node id in {line:?}: {e}"))?;
                hw.size_mib.insert(id, size.parse().map_err(|e| format!("{line:?}: {e}"))?);
            }
            [row, rest @ ..] if in_distances && row.ends_with(':') => {
                hw.distances.push(
                    rest.iter()
                        .map(|d| d.parse::<u32>())
                        .collect::<Result<Vec<u32>, _>>()
                        .map_err(|e| format!("{line:?}: {e}"))?,
                );
            }
            _ => {}
        }
    }
    if hw.cpus.is_empty() || hw.distances.is_empty() {
        return Err(format!("numactl --hardware printed no nodes or no distances:\n{text}"));
    }
    Ok(hw)
}

/// Splits a script's stdout at lines `@@<name>` into (name, text) sections, in order.
fn sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("@@") {
            out.push((name.trim().to_string(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

fn inspect_json(text: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("inspect --json printed no JSON ({e}): {text}"))?;
    if v["schema"] != "numatrace.inspect/1" {
        return Err(format!("unexpected schema {}", v["schema"]));
    }
    Ok(v)
}

fn numastat_table(text: &str, what: &str) -> Result<Table, String> {
    let t = parse_numastat(text);
    if t.is_empty() {
        return Err(format!("{what} printed no table: {text}"));
    }
    Ok(t)
}

/// Reserves HUGE_PAGES_PER_NODE 2 MiB huge pages on every node (so that the
/// HugePages_* rows are not all zero, and for the resident workload), then
/// copies the node folder of sysfs (what numastat and numatrace read) to a
/// tmpfs and mounts the copy over it, so both read the same bytes.
const FROZEN_SCRIPT: &str = r#"set -e
for f in /sys/devices/system/node/node*/hugepages/hugepages-2048kB/nr_hugepages; do echo 3 > $f; done
src=/sys/devices/system/node
dst=/tmp/frozen-node
mkdir -p $dst
for f in online possible has_cpu has_memory has_normal_memory; do cat $src/$f > $dst/$f; done
for d in $src/node[0-9]*; do
  n=$dst/${d##*/}
  mkdir -p $n
  for f in cpulist cpumap distance meminfo numastat vmstat; do cat $d/$f > $n/$f; done
  for h in $d/hugepages/hugepages-*; do
    mkdir -p $n/hugepages/${h##*/}
    for f in nr_hugepages free_hugepages surplus_hugepages; do cat $h/$f > $n/hugepages/${h##*/}/$f; done
  done
done
mount -o bind $dst $src
echo @@numastat
numastat -m
echo @@inspect
numatrace inspect --json
umount $src
"#;

/// A kernel without BTF, as far as numatrace can tell: /dev/null mounted
/// over /sys/kernel/btf/vmlinux (the kernel keeps its own). `numatrace
/// check` must say what works and what does not, and a capture must still
/// count first touches through the classic tracepoints.
const NO_BTF_SCRIPT: &str = r#"mount -o bind /dev/null /sys/kernel/btf/vmlinux || exit 3
numatrace check --json > /tmp/check.json
echo "@@check_exit"
echo $?
numatrace --json -- numatrace example touch --pages 4096 --threads 1 > /tmp/trace.json 2> /tmp/trace.err
echo "@@trace_exit"
echo $?
umount /sys/kernel/btf/vmlinux
echo @@check
cat /tmp/check.json
echo @@trace
cat /tmp/trace.json
echo @@trace_stderr
cat /tmp/trace.err
"#;

/// Starts the resident workload bound to `node`, waits for its line, then
/// reads it with numastat -p and inspect --pid in turns.
fn process_script(node: u32) -> String {
    format!(
        r#"numactl --membind={node} numatrace workload resident --mib {RESIDENT_MIB} --heap-kib {RESIDENT_HEAP_KIB} --stack-kib {RESIDENT_STACK_KIB} --huge-mib {RESIDENT_HUGE_MIB} --seconds 600 > /tmp/resident.out 2>&1 &
pid=$!
tries=0
while ! grep -q '"pid"' /tmp/resident.out; do
  tries=$((tries + 1))
  if [ $tries -gt 600 ] || ! kill -0 $pid 2>/dev/null; then echo "the resident workload did not start:"; cat /tmp/resident.out; kill $pid 2>/dev/null; exit 1; fi
  sleep 0.1
done
echo @@truth
cat /tmp/resident.out
for round in $(seq {PROCESS_ROUNDS}); do
  echo @@numastat
  numastat -p $pid
  echo @@inspect
  numatrace inspect --pid $pid --json
done
kill $pid
wait $pid 2>/dev/null || true
"#
    )
}

/// Everything one guest printed, parsed.
#[derive(Debug)]
struct Guest {
    hardware: Hardware,
    /// LIVE_ROUNDS + 1 inspect readings around LIVE_ROUNDS numastat -m readings.
    live_inspect: Vec<Value>,
    live_numastat: Vec<Table>,
    frozen_numastat: Table,
    frozen_inspect: Value,
    /// The node the resident workload was bound to.
    target: u32,
    truth: Value,
    process_rounds: Vec<(String, Table, Value)>,
    /// `numatrace check --json`: its exit status and output.
    check: (i32, String),
    /// [`NO_BTF_SCRIPT`]'s sections.
    no_btf: Vec<(String, String)>,
}

/// Guests run one at a time: they share this machine's few cores.
static ONE_GUEST_AT_A_TIME: Mutex<()> = Mutex::new(());

fn command(argv: &[&str]) -> GuestCommand {
    GuestCommand { argv: argv.iter().map(|s| s.to_string()).collect(), balancing: Balancing::Off }
}

fn run_guest(nodes: u32) -> Result<Guest, String> {
    let _turn = ONE_GUEST_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The chosen node: not the first (where the guest's own memory mostly is), not always the last.
    let target = nodes / 2;
    let process = process_script(target);
    let mut commands = vec![command(&["numactl", "--hardware"])];
    for _ in 0..LIVE_ROUNDS {
        commands.push(command(&["numatrace", "inspect", "--json"]));
        commands.push(command(&["numastat", "-m"]));
    }
    commands.push(command(&["numatrace", "inspect", "--json"]));
    // Extra words after the script name the host programs the guest needs (sh's $1, $2, ... otherwise unused).
    commands.push(command(&["sh", "-c", FROZEN_SCRIPT, "lab-frozen", "numastat"]));
    commands.push(command(&["sh", "-c", &process, "lab-process", "numastat", "numactl"]));
    // Last: it attaches every source once (a few seconds under TCG) and may fail on its own.
    let check = command(&["numatrace", "check", "--json"]);
    commands.push(check.clone());
    commands.push(command(&["sh", "-c", NO_BTF_SCRIPT, "lab-no-btf"]));
    let opts = guest::options(nodes, MEM_PER_NODE_MIB, Duration::from_secs(300));
    let started = Instant::now();
    let run = guest::run(&format!("lab inspect, {nodes} nodes"), &opts, &commands)?;
    eprintln!(
        "lab inspect: {nodes} nodes, {} commands: boot {:.1} s, guest total {:.1} s, with the image build {:.1} s (console log {})",
        commands.len(),
        run.boot_s,
        run.total_s,
        started.elapsed().as_secs_f64(),
        run.console_log.display()
    );
    if run.results.len() != commands.len() {
        return Err(format!("{} commands ran, {} results came back", commands.len(), run.results.len()));
    }
    let mut outputs = Vec::new();
    let mut checked = None;
    for (c, r) in commands.iter().zip(&run.results) {
        let text = String::from_utf8_lossy(&r.stdout).into_owned();
        if c.argv == check.argv {
            checked = Some((r.exit_code, text));
            continue;
        }
        if r.exit_code != 0 {
            return Err(format!(
                "`{}` exited with {} in the {nodes}-node guest; stdout:\n{text}",
                c.argv.join(" "),
                r.exit_code
            ));
        }
        outputs.push(text);
    }
    let mut outputs = outputs.into_iter();
    let mut next = || outputs.next().ok_or_else(|| "missing output".to_string());
    let hardware = parse_hardware(&next()?)?;
    let mut live_inspect = Vec::new();
    let mut live_numastat = Vec::new();
    for _ in 0..LIVE_ROUNDS {
        live_inspect.push(inspect_json(&next()?)?);
        live_numastat.push(numastat_table(&next()?, "numastat -m")?);
    }
    live_inspect.push(inspect_json(&next()?)?);

    let frozen = sections(&next()?);
    let (frozen_numastat, frozen_inspect) = match frozen.as_slice() {
        [(a, m), (b, i)] if a == "numastat" && b == "inspect" => {
            (numastat_table(m, "numastat -m (frozen)")?, inspect_json(i)?)
        }
        _ => return Err(format!("the frozen-sysfs script printed {frozen:?}")),
    };

    let process = sections(&next()?);
    let mut process = process.into_iter();
    let truth = match process.next() {
        Some((name, text)) if name == "truth" => serde_json::from_str::<Value>(text.trim())
            .map_err(|e| format!("the workload's line is not JSON ({e}): {text}"))?,
        other => return Err(format!("expected the workload's line first, got {other:?}")),
    };
    let mut process_rounds = Vec::new();
    while let (Some((a, numastat)), Some((b, inspect))) = (process.next(), process.next()) {
        if a != "numastat" || b != "inspect" {
            return Err(format!("unexpected sections {a}, {b} in the process script's output"));
        }
        process_rounds.push((numastat.clone(), numastat_table(&numastat, "numastat -p")?, inspect_json(&inspect)?));
    }
    if process_rounds.len() != PROCESS_ROUNDS {
        return Err(format!(
            "{} numastat -p / inspect --pid rounds came back, expected {PROCESS_ROUNDS}",
            process_rounds.len()
        ));
    }
    let check = checked.ok_or("numatrace check did not run")?;
    let no_btf = sections(&next()?);
    Ok(Guest {
        hardware,
        live_inspect,
        live_numastat,
        frozen_numastat,
        frozen_inspect,
        target,
        truth,
        process_rounds,
        check,
        no_btf,
    })
}

fn guest(nodes: u32) -> &'static Guest {
    static TWO: OnceLock<Result<Guest, String>> = OnceLock::new();
    static FOUR: OnceLock<Result<Guest, String>> = OnceLock::new();
    let cell = if nodes == 2 { &TWO } else { &FOUR };
    cell.get_or_init(|| run_guest(nodes)).as_ref().unwrap_or_else(|e| panic!("{e}"))
}

/// `a` and `b` differ by at most `tolerance`; false when either is NaN (a figure missing).
fn within(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance
}

fn node_col(node: u32) -> String {
    format!("Node {node}")
}

fn meminfo_bytes(inspect: &Value, node: u32, field: &str) -> Option<f64> {
    inspect["meminfo"][node.to_string()][field].as_f64()
}

// ---- topology ----

fn topology(nodes: u32) {
    let g = guest(nodes);
    let hw = &g.hardware;
    assert_eq!(hw.cpus.len(), nodes as usize, "numactl --hardware itself sees {:?}", hw.cpus);
    for inspect in g.live_inspect.iter().chain([&g.frozen_inspect]) {
        let t = &inspect["topology"];
        let listed = t["nodes"].as_array().unwrap_or_else(|| panic!("topology.nodes missing: {t}"));
        assert_eq!(listed.len(), nodes as usize, "inspect sees {} nodes in a {nodes}-node guest", listed.len());
        for (i, n) in listed.iter().enumerate() {
            let id = n["id"].as_u64().unwrap_or(u64::MAX) as u32;
            assert_eq!(id, i as u32, "node ids in order");
            let cpus: Vec<u32> =
                n["cpus"].as_array().into_iter().flatten().filter_map(Value::as_u64).map(|c| c as u32).collect();
            // The lab gives node i CPU i (one CPU per node); numactl agrees.
            assert_eq!(cpus, vec![id], "CPUs of node {id}");
            assert_eq!(Some(&cpus), hw.cpus.get(&id), "CPUs of node {id}: inspect vs numactl --hardware");
            let total_mib = n["mem_total_bytes"].as_u64().unwrap_or(0) >> 20;
            assert_eq!(
                Some(&total_mib),
                hw.size_mib.get(&id),
                "size of node {id} in MiB: inspect vs numactl --hardware"
            );
            assert!(
                total_mib > MEM_PER_NODE_MIB / 2 && total_mib <= MEM_PER_NODE_MIB,
                "node {id} holds {total_mib} MiB of the {MEM_PER_NODE_MIB} MiB given"
            );
        }
        let distances: Vec<Vec<u32>> = serde_json::from_value(t["distances"].clone())
            .unwrap_or_else(|e| panic!("topology.distances is not a matrix ({e}): {}", t["distances"]));
        assert_eq!(distances, hw.distances, "distances: inspect vs numactl --hardware");
        for (i, row) in distances.iter().enumerate() {
            assert_eq!(row.len(), nodes as usize);
            for (j, d) in row.iter().enumerate() {
                assert!(if i == j { *d == 10 } else { *d > 10 }, "distance {i}->{j} is {d}");
            }
        }
        let online: Vec<u64> = t["online_cpus"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
        assert_eq!(online, (0..u64::from(nodes)).collect::<Vec<_>>(), "online CPUs");
    }
    eprintln!(
        "lab inspect, {nodes} nodes: topology as numactl --hardware: cpus {:?}, sizes {:?} MiB, distances {:?}",
        hw.cpus, hw.size_mib, hw.distances
    );
}

#[test]
#[ignore = "boots QEMU"]
fn topology_equals_numactl_hardware_2_nodes() {
    topology(2);
}

#[test]
#[ignore = "boots QEMU"]
fn topology_equals_numactl_hardware_4_nodes() {
    topology(4);
}

// ---- numastat -m ----

/// Every numastat -m figure equals inspect's, on every node and in total, when both read the same files.
fn meminfo_frozen(nodes: u32) {
    let g = guest(nodes);
    let (theirs, ours) = (&g.frozen_numastat, &g.frozen_inspect);
    let ours_nodes: Vec<&String> = ours["meminfo"].as_object().map(|o| o.keys().collect()).unwrap_or_default();
    assert_eq!(ours_nodes.len(), nodes as usize, "inspect's meminfo covers nodes {ours_nodes:?}");
    let mut mismatch = Vec::new();
    let mut compared = 0;
    for (field, cols) in theirs {
        let mut sum = 0.0;
        for node in 0..nodes {
            let Some(t) = cols.get(&node_col(node)) else {
                mismatch.push(format!("numastat shows no {} column for {field}", node_col(node)));
                continue;
            };
            let Some(o) = meminfo_bytes(ours, node, field) else {
                mismatch.push(format!("{field} missing on node {node} in inspect --json"));
                continue;
            };
            sum += o;
            compared += 1;
            if (o / MIB - t).abs() > ROUNDING_MIB {
                mismatch.push(format!("{field} node {node}: numastat {t:.2} MiB, numatrace {:.4} MiB", o / MIB));
            }
        }
        let total = cols.get("Total").copied().unwrap_or(f64::NAN);
        if !within(sum / MIB, total, ROUNDING_MIB * f64::from(nodes)) {
            mismatch.push(format!("{field} total: numastat {total:.2} MiB, numatrace {:.4} MiB", sum / MIB));
        }
    }
    assert!(
        compared >= 30 * nodes as usize,
        "compared only {compared} figures: numastat rows {:?}",
        theirs.keys().collect::<Vec<_>>()
    );
    // The reserved huge pages, in MiB (pages times the 2 MiB default size), so the conversion is checked too.
    for node in 0..nodes {
        let t = theirs.get("HugePages_Total").and_then(|c| c.get(&node_col(node))).copied();
        assert_eq!(
            t,
            Some((HUGE_PAGES_PER_NODE * 2) as f64),
            "numastat's HugePages_Total on node {node}: the guest did not reserve {HUGE_PAGES_PER_NODE} huge pages there"
        );
    }
    assert!(
        mismatch.is_empty(),
        "{nodes} nodes, frozen sysfs: numatrace inspect differs from numastat -m: {mismatch:#?}"
    );
    let row =
        |f: &str| (0..nodes).map(|n| theirs[f].get(&node_col(n)).copied().unwrap_or(f64::NAN)).collect::<Vec<_>>();
    eprintln!(
        "lab inspect, {nodes} nodes, frozen sysfs: {compared} figures equal to numastat -m's rounding; MemTotal {:?}, MemFree {:?}, FilePages {:?}, Slab {:?} MiB",
        row("MemTotal"),
        row("MemFree"),
        row("FilePages"),
        row("Slab")
    );
}

/// numastat -m on the live files lies between the inspect readings around it.
fn meminfo_live(nodes: u32) {
    let g = guest(nodes);
    let mapped_slack = mapped_slack_mib();
    let slack = |field: &str| {
        if field == "Mapped" {
            Some(mapped_slack)
        } else {
            READER_FIELDS.iter().find(|(f, _)| *f == field).map(|(_, s)| *s)
        }
    };
    let mut clean_rounds = 0;
    let mut per_round = Vec::new();
    let mut hard = Vec::new();
    let mut reader_gaps: BTreeMap<&str, f64> = BTreeMap::new();
    for (k, theirs) in g.live_numastat.iter().enumerate() {
        let (before, after) = (&g.live_inspect[k], &g.live_inspect[k + 1]);
        let mut outside = Vec::new();
        for (field, cols) in theirs {
            for node in 0..nodes {
                let t = cols.get(&node_col(node)).copied().unwrap_or(f64::NAN);
                let (Some(a), Some(b)) = (meminfo_bytes(before, node, field), meminfo_bytes(after, node, field)) else {
                    hard.push(format!("round {k}: {field} missing on node {node} in inspect --json"));
                    continue;
                };
                let (lo, hi) = (a.min(b) / MIB, a.max(b) / MIB);
                let gap = if t < lo {
                    lo - t
                } else if t > hi {
                    t - hi
                } else {
                    0.0
                };
                if FIXED_FIELDS.contains(&field.as_str()) {
                    if a != b || gap > ROUNDING_MIB {
                        hard.push(format!(
                            "round {k}: {field} node {node}: numastat {t:.2} MiB, numatrace {:.4}..{:.4} MiB",
                            lo, hi
                        ));
                    }
                } else if let Some(s) = slack(field) {
                    let worst = reader_gaps.entry(field).or_insert(0.0);
                    *worst = worst.max(gap);
                    // Like every live figure, bracketed in one round at least: the
                    // guest's own memory can move both ways within a round (CI saw
                    // node 1's MemFree rise 1 MiB and fall 10 between two readings).
                    if gap > s {
                        outside.push(format!("{field} node {node}: numastat {t:.2} MiB, numatrace {lo:.4}..{hi:.4} MiB (more than the readers' own {s} MiB apart)"));
                    }
                } else if gap > ROUNDING_MIB {
                    outside.push(format!("{field} node {node}: numastat {t:.2} MiB, numatrace {lo:.4}..{hi:.4} MiB"));
                }
            }
        }
        if outside.is_empty() {
            clean_rounds += 1;
        }
        per_round.push(outside);
    }
    assert!(hard.is_empty(), "{nodes} nodes, live: {hard:#?}");
    assert!(
        clean_rounds >= 1,
        "{nodes} nodes, live: in none of {LIVE_ROUNDS} rounds did numastat -m lie between the inspect readings around it: {per_round:#?}"
    );
    eprintln!(
        "lab inspect, {nodes} nodes, live: {clean_rounds}/{LIVE_ROUNDS} rounds with every other figure bracketed; readers' own fields at most this far apart (MiB): {reader_gaps:?}; rounds not bracketed: {:?}",
        per_round.iter().filter(|r| !r.is_empty()).collect::<Vec<_>>()
    );
}

#[test]
#[ignore = "boots QEMU"]
fn meminfo_equals_numastat_m_frozen_2_nodes() {
    meminfo_frozen(2);
}

#[test]
#[ignore = "boots QEMU"]
fn meminfo_equals_numastat_m_frozen_4_nodes() {
    meminfo_frozen(4);
}

#[test]
#[ignore = "boots QEMU"]
fn meminfo_brackets_numastat_m_live_2_nodes() {
    meminfo_live(2);
}

#[test]
#[ignore = "boots QEMU"]
fn meminfo_brackets_numastat_m_live_4_nodes() {
    meminfo_live(4);
}

// ---- numastat -p ----

fn process(nodes: u32) {
    let g = guest(nodes);
    let target = g.target;
    let pid = g.truth["pid"].as_u64().unwrap_or_else(|| panic!("no pid in the workload's line: {}", g.truth));
    // Ground truth: the kernel put the whole region on the chosen node.
    let pages = RESIDENT_MIB * 256;
    assert_eq!(g.truth["pages"].as_u64(), Some(pages), "{}", g.truth);
    assert_eq!(
        g.truth["pages_by_node"][target.to_string()].as_u64(),
        Some(pages),
        "region not all on node {target}: {}",
        g.truth
    );
    assert_eq!(g.truth["policy_nodes"], serde_json::json!([target]), "{}", g.truth);
    assert_eq!(g.truth["huge_bytes"].as_u64(), Some(RESIDENT_HUGE_MIB << 20), "{}", g.truth);
    for (k, (raw, theirs, ours)) in g.process_rounds.iter().enumerate() {
        assert!(raw.contains(&format!("for PID {pid} (")), "round {k}: numastat -p is about another process: {raw}");
        let p = &ours["process"];
        assert_eq!(p["pid"].as_u64(), Some(pid), "round {k}: inspect --pid is about another process");
        let mut mismatch = Vec::new();
        let mut figures = Vec::new();
        for (row, key) in
            [("Huge", "huge"), ("Heap", "heap"), ("Stack", "stack"), ("Private", "private"), ("Total", "total")]
        {
            let mut sum = 0.0;
            let mut line = Vec::new();
            for node in 0..nodes {
                // inspect lists only nodes holding some of the process's memory; the others hold 0.
                let b = match &p["memory_by_node"][node.to_string()] {
                    Value::Null => 0.0,
                    v => v[key].as_f64().unwrap_or(f64::NAN),
                };
                sum += b;
                let t = theirs.get(row).and_then(|c| c.get(&node_col(node))).copied().unwrap_or(f64::NAN);
                line.push(format!("{t:.2}/{:.3}", b / MIB));
                if !within(b / MIB, t, ROUNDING_MIB) {
                    mismatch.push(format!("{row} node {node}: numastat {t:.2} MiB, numatrace {:.4} MiB", b / MIB));
                }
            }
            let t = theirs.get(row).and_then(|c| c.get("Total")).copied().unwrap_or(f64::NAN);
            if !within(sum / MIB, t, ROUNDING_MIB) {
                mismatch.push(format!("{row} total: numastat {t:.2} MiB, numatrace {:.4} MiB", sum / MIB));
            }
            figures.push(format!("{row} {}", line.join(" ")));
        }
        assert!(
            mismatch.is_empty(),
            "{nodes} nodes, round {k}: numatrace inspect --pid differs from numastat -p: {mismatch:#?}\nnumastat -p:\n{raw}"
        );
        let on_target = &p["memory_by_node"][target.to_string()];
        let at_least = |key: &str, bytes: u64| {
            let got = on_target[key].as_u64().unwrap_or(0);
            assert!(
                got >= bytes,
                "round {k}: {key} on node {target} is {got} bytes, the workload put at least {bytes} there"
            );
        };
        at_least("private", RESIDENT_MIB << 20);
        at_least("heap", RESIDENT_HEAP_KIB << 10);
        at_least("stack", RESIDENT_STACK_KIB << 10);
        at_least("huge", RESIDENT_HUGE_MIB << 20);
        assert_eq!(
            p["total_bytes"].as_u64(),
            Some(
                p["memory_by_node"]
                    .as_object()
                    .map(|o| o.values().filter_map(|c| c["total"].as_u64()).sum())
                    .unwrap_or(0)
            )
        );
        let threads: u64 =
            p["threads_by_node"].as_object().map(|o| o.values().filter_map(Value::as_u64).sum()).unwrap_or(0);
        assert_eq!(threads, 1, "the workload has one thread: {}", p["threads_by_node"]);
        eprintln!(
            "lab inspect, {nodes} nodes, PID {pid} bound to node {target}, round {k}, numastat/numatrace MiB per node: {}",
            figures.join("; ")
        );
    }
}

#[test]
#[ignore = "boots QEMU"]
fn process_memory_equals_numastat_p_2_nodes() {
    process(2);
}

#[test]
#[ignore = "boots QEMU"]
fn process_memory_equals_numastat_p_4_nodes() {
    process(4);
}

// ---- numatrace check ----

/// `numatrace check --json` in the guest: Debian's 6.1 has the BTF and the
/// raw tracepoints, so the machine-wide sources attach the cheap way; the
/// nodes are the guest's.
fn check_on_the_guest_kernel(nodes: u32) {
    let (code, text) = &guest(nodes).check;
    let check: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("check --json printed no JSON ({e}): {text}"));
    assert_eq!(check["schema"], "numatrace.check/1");
    assert_eq!(*code, 0, "numatrace check says it cannot trace in the guest: {}", check["verdict"]);
    assert_ne!(check["verdict"]["level"], "cannot_trace", "{}", check["verdict"]);
    assert_eq!(check["sources_checked"], true, "{check}");
    // 6.1 refuses to mmap /sys/kernel/btf/vmlinux: the file is read whole.
    assert_eq!(check["btf"]["access"], "file", "{}", check["btf"]);
    assert_eq!(check["btf"]["task_struct_found"], true, "{}", check["btf"]);
    let sources = check["sources"].as_array().expect("sources listed");
    for (source, kind, hooks) in [
        ("first touches", "raw_tracepoint", &["raw_tracepoint:mm_page_alloc"][..]),
        ("fault addresses", "raw_tracepoint", &["raw_tracepoint:page_fault_user"]),
        ("thread migrations", "btf_tracepoint", &["tp_btf:sched_migrate_task"]),
    ] {
        let s = sources.iter().find(|s| s["name"] == source).unwrap_or_else(|| panic!("{source} not listed"));
        assert_eq!(s["state"], "attached", "{source}: {s}");
        assert_eq!(s["kind"], kind, "{source}: {s}");
        let attached: Vec<&str> = s["hooks"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        assert_eq!(attached, hooks, "{source}: {s}");
    }
    let listed = check["nodes"].as_array().expect("nodes listed");
    assert_eq!(listed.len(), nodes as usize, "{listed:?}");
    for (i, n) in listed.iter().enumerate() {
        assert_eq!(n["id"], i as u64, "{n}");
        assert_eq!(n["cpus"], serde_json::json!([i]), "the lab gives node i CPU i: {n}");
        assert!(n["mem_total_bytes"].as_u64().unwrap_or(0) > (MEM_PER_NODE_MIB << 20) / 2, "{n}");
    }
    // The guest runs with balancing off.
    assert_eq!(check["numa_balancing"]["mode"], "off", "{}", check["numa_balancing"]);
    eprintln!("lab check, {nodes} nodes: {}", check["verdict"]["line"]);
}

#[test]
#[ignore = "boots QEMU"]
fn check_attaches_the_cheap_hooks_on_the_guest_kernel_2_nodes() {
    check_on_the_guest_kernel(2);
}

#[test]
#[ignore = "boots QEMU"]
fn check_attaches_the_cheap_hooks_on_the_guest_kernel_4_nodes() {
    check_on_the_guest_kernel(4);
}

/// Without BTF (hidden from numatrace), `check` says so and what that costs,
/// still exits 0 (tracing works, with reduced detail), and a capture counts
/// every first touch through the classic tracepoints.
#[test]
#[ignore = "boots QEMU"]
fn without_btf_check_explains_and_a_capture_still_counts_2_nodes() {
    let g = guest(2);
    let section = |name: &str| {
        g.no_btf
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("no {name}: {:?}", g.no_btf))
    };
    let check: Value = serde_json::from_str(&section("check"))
        .unwrap_or_else(|e| panic!("check --json printed no JSON ({e}): {}", section("check")));
    assert_eq!(section("check_exit").trim(), "0", "check says it cannot trace without BTF: {}", check["verdict"]);
    assert_ne!(check["btf"]["access"], "mmap", "{}", check["btf"]);
    assert_ne!(check["btf"]["access"], "file", "BTF was read though hidden: {}", check["btf"]);
    let sources = check["sources"].as_array().expect("sources listed");
    let by_name =
        |name: &str| sources.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("{name} not listed"));
    for source in ["first touches", "thread migrations"] {
        let s = by_name(source);
        assert_eq!(s["state"], "attached", "{source}: {s}");
        assert_eq!(s["kind"], "tracepoint", "{source} without BTF: {s}");
    }
    // What is lost is said: the BTF-typed-only source names why.
    let joins = by_name("cgroup joins");
    assert_ne!(joins["state"], "attached", "{joins}");
    assert!(joins["reason"].as_str().unwrap_or("").contains("BTF"), "{joins}");
    assert_ne!(check["verdict"]["level"], "cannot_trace", "{}", check["verdict"]);
    eprintln!("lab check without BTF: {}", check["verdict"]["line"]);

    assert_eq!(section("trace_exit").trim(), "0", "the capture failed without BTF: {}", section("trace_stderr"));
    let trace = section("trace");
    let start = trace.find("\n{\n").map(|i| i + 1).unwrap_or(0);
    let report: Value =
        serde_json::from_str(&trace[start..]).unwrap_or_else(|e| panic!("no JSON report ({e}): {trace}"));
    let counted = report["kernel_counters"]["first_touch_pages"].as_u64().unwrap_or(0);
    assert!(
        counted >= 4096,
        "the kernel counted {counted} first-touch pages of 4096 touched: {}",
        report["kernel_counters"]
    );
    assert_eq!(report["lost_events"], 0, "{}", report["lost"]);
    let hooks = report["sources"].as_array().into_iter().flatten().find(|s| s["name"] == "first touches").cloned();
    assert_eq!(
        hooks.as_ref().map(|s| s["hooks"].clone()),
        Some(serde_json::json!(["tracepoint:kmem:mm_page_alloc"])),
        "{hooks:?}"
    );
}

#[test]
fn parses_numactl_hardware() {
    let text = "available: 2 nodes (0-1)\nnode 0 cpus: 0 2\nnode 0 size: 344 MB\nnode 0 free: 314 MB\nnode 1 cpus: 1\nnode 1 size: 376 MB\nnode 1 free: 349 MB\nnode distances:\nnode   0   1 \n  0:  10  21 \n  1:  21  10 \n";
    let hw = parse_hardware(text).expect("parses");
    assert_eq!(hw.cpus[&0], vec![0, 2]);
    assert_eq!(hw.size_mib[&1], 376);
    assert_eq!(hw.distances, vec![vec![10, 21], vec![21, 10]]);
    assert!(parse_hardware("No NUMA available on this system\n").is_err());
}

#[test]
fn splits_script_output_into_sections() {
    let s = sections("noise\n@@numastat\na\nb\n@@inspect\n{}\n");
    assert_eq!(s, vec![("numastat".to_string(), "a\nb\n".to_string()), ("inspect".to_string(), "{}\n".to_string())]);
}
