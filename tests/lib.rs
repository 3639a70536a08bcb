//! Helpers the end-to-end tests share (in this crate and in numatrace's own tests).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

pub mod viewers;

/// A guest script's output cut at its `=== NAME` lines: each section's lines by name.
pub fn sections(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("=== ") {
            current = name.to_string();
            out.entry(current.clone()).or_default();
        } else if !current.is_empty() {
            out.entry(current.clone()).or_default().push(line.to_string());
        }
    }
    out
}

/// numastat's table: row -> column ("Node 0", ..., "Total") -> MiB.
pub type Table = BTreeMap<String, BTreeMap<String, f64>>;

/// Parses numastat's tables (`-m`, `-p`, folded or not).
pub fn parse_numastat(text: &str) -> Table {
    let mut out: Table = BTreeMap::new();
    let mut columns: Vec<String> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"Node") || words == ["Total"] {
            columns.clear();
            let mut i = 0;
            while i < words.len() {
                if words[i] == "Node" && i + 1 < words.len() {
                    columns.push(format!("Node {}", words[i + 1]));
                    i += 2;
                } else {
                    columns.push(words[i].to_string());
                    i += 1;
                }
            }
            continue;
        }
        if words.len() != columns.len() + 1 || columns.is_empty() {
            continue;
        }
        let Ok(values) = words[1..].iter().map(|w| w.parse::<f64>()).collect::<Result<Vec<f64>, _>>() else { continue };
        let row = out.entry(words[0].to_string()).or_default();
        for (c, v) in columns.iter().zip(values) {
            row.insert(c.clone(), v);
        }
    }
    out
}

/// The workloads' binary built with frame pointers (the kernel walks them
/// for `--stacks`), in its own target directory (`target/frame-pointers/`)
/// so that the workspace's build is untouched; built once per test process.
pub fn workload_with_frame_pointers() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let (workspace, target) = xtask::static_build::workspace_dirs().expect("the workspace's directories");
        let target = target.join("frame-pointers");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&workspace)
            .args(["build", "--quiet", "-p", "numatrace-workloads", "--bin", "numatrace-workload"])
            .env("CARGO_TARGET_DIR", &target)
            .env("RUSTFLAGS", "-C force-frame-pointers=yes")
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the workload with frame pointers");
        target.join("debug").join("numatrace-workload")
    })
}

/// Shell functions every lab scenario script starts with (lab_real, lab_services) (the guest's sh; busybox
/// awk). Each writes JSON to stdout; `kv` adds a key to the ground truth line
/// and `finish` prints that line, then numatrace's report.
pub const SCENARIO_SH: &str = r#"
set -u
# One guest runs every scenario: nothing of the one before may be read as this one's.
rm -f /tmp/w.out /tmp/nt.json /tmp/nt.err /tmp/before.* /tmp/after.* /tmp/fix
fix= level=
: >/tmp/truth
t0=$(date +%s)
# Appends "key":value to the ground truth.
kv() { printf '"%s":%s,' "$1" "$2" >>/tmp/truth; }
# Every node's numastat counters: {"0":{"numa_hit":1,...},...}
nodestat() {
  printf '{'; sep=
  for d in /sys/devices/system/node/node[0-9]*; do
    printf '%s"%s":{' "$sep" "${d##*node}"
    awk '{ printf "%s\"%s\":%s", (NR > 1 ? "," : ""), $1, $2 }' "$d/numastat"
    printf '}'; sep=,
  done
  printf '}'
}
# The /proc/vmstat counters of NUMA placement and page migration.
vmstat() {
  awk 'BEGIN { printf "{" } /^(numa_|pgmigrate_|thp_migration|thp_fault_alloc |pgfault )/ { printf "%s\"%s\":%s", (n++ ? "," : ""), $1, $2 } END { printf "}" }' /proc/vmstat
}
# Both, as one snapshot.
snap() { kv "$1" "{\"node\":$(nodestat),\"vmstat\":$(vmstat)}"; }
# Pages of the processes "$@" by node from numa_maps: "anon" sums the
# anonymous mappings (no file=), "all" every mapping; "anon_total" sums the
# anon= fields (private pages of file mappings too).
pages() {
  for p in "$@"; do cat /proc/$p/numa_maps 2>/dev/null; done | awk '
    { f = ($0 ~ / file=/)
      for (i = 2; i <= NF; i++) {
        if ($i ~ /^N[0-9]+=/) { split(substr($i, 2), a, "="); all[a[1]] += a[2]; if (!f) anon[a[1]] += a[2] }
        if ($i ~ /^anon=/) { split($i, b, "="); at += b[2] }
      } }
    END {
      printf "{\"anon_total\":%d,\"anon\":{", at; s = ""
      for (k in anon) { printf "%s\"%s\":%d", s, k, anon[k]; s = "," }
      printf "},\"all\":{"; s = ""
      for (k in all) { printf "%s\"%s\":%d", s, k, all[k]; s = "," }
      printf "}}" }'
}
# The threads of the processes "$@": tid, name, the CPU each last ran on (stat field 39), its node, its allowed CPUs.
threads() {
  printf '['; sep=
  for t in $(for p in "$@"; do echo /proc/$p/task/[0-9]*; done); do
    cpu=$(awk '{ sub(/.*\) /, ""); print $37 }' $t/stat 2>/dev/null) || continue
    [ -n "$cpu" ] || continue
    node=$(ls -d /sys/devices/system/cpu/cpu$cpu/node[0-9]* 2>/dev/null | head -n 1)
    printf '%s{"tid":%s,"comm":"%s","cpu":%s,"node":%s,"allowed":"%s"}' "$sep" "${t##*/}" "$(cat $t/comm)" "$cpu" "${node##*node}" "$(awk '/^Cpus_allowed_list/ { print $2 }' $t/status)"
    sep=,
  done
  printf ']'
}
# The processes' anonymous memory in KiB, each page counted once: a page a fork
# shares between them is split among them in Pss_Anon (smaps_rollup).
pss() { for p in "$@"; do cat /proc/$p/smaps_rollup 2>/dev/null; done | awk '/^Pss_Anon:/ { s += $2 } END { printf "%d", s }'; }
# Pages and threads of the processes $2... under key $1.
sample() { k=$1; shift; kv "$k" "{\"pids\":\"$*\",\"pages\":$(pages "$@"),\"pss_anon_kib\":$(pss "$@"),\"threads\":$(threads "$@")}"; }
# Waits until the command $1 succeeds, for at most $2 tenths of a second.
waitfor() { i=0; until eval "$1" >/dev/null 2>&1; do [ $i -ge $2 ] && return 1; sleep 0.1; i=$((i+1)); done; }
# The pid of a running program (the first pidof names).
pidof1() { pidof "$1" | awk '{ print $1 }'; }
# Waits for numatrace (pid $1) to say it is tracing (it prints that once every probe is attached).
traced() { waitfor "grep -q '^numatrace: tracing' /tmp/nt.err" 600 || { echo "numatrace never started tracing" >&2; cat /tmp/nt.err >&2; }; }
# Waits for memhog's first pass (it ends its line of dots; it was started with
# -r1000, it would go on touching the same pages), stops it, samples its pages
# under key $2, ends it and waits for numatrace (pid $1): rc is its status.
memhog_pass() {
  waitfor '[ $(wc -l </tmp/w.out) -ge 1 ]' 1800 || echo "memhog never finished its first pass" >&2
  m=$(pidof1 memhog)
  if [ -n "$m" ]; then
    kill -STOP $m; sample $2 $m; kill -KILL $m
  else
    echo "memhog is not running: $(cat /tmp/w.out)" >&2; kill -INT $1
    # Why, for the test's message: CI keeps only the assertion.
    kv "${2}_gone" "$(jstr "$(head -c 300 /tmp/w.out | tr '\n' ' ' | sed 's/[^ -~]/ /g') | kernel: $(dmesg | grep -i -E 'out of memory|killed process|oom' | tail -n 3 | tr '\n' ' ' | sed 's/[^ -~]/ /g')")"
  fi
  wait $1; rc=$?
}
# memhog's home: the node with less free memory ($home, its MemFree in KiB
# $free), the other one has more ($other, $other_free): a spill from home can be
# fixed by running there, when it fits. The truth gets all four.
home_and_free() {
  # Free what the scenarios before left in caches: the sizes below leave
  # memhog little headroom, and numatrace runs beside it.
  sync; echo 3 > /proc/sys/vm/drop_caches; echo 1 > /proc/sys/vm/compact_memory 2>/dev/null
  f0=$(awk '/MemFree/ { print $4 }' /sys/devices/system/node/node0/meminfo)
  f1=$(awk '/MemFree/ { print $4 }' /sys/devices/system/node/node1/meminfo)
  if [ $f0 -le $f1 ]; then home=0 free=$f0 other=1 other_free=$f1; else home=1 free=$f1 other=0 other_free=$f0; fi
  kv home $home; kv free_kib_home $free; kv other $other; kv free_kib_other $other_free
}
# memhog as "$2"... traced from its start, capture /tmp/$1.ntrace, one pass,
# sampled as $1. numatrace runs on the other node's CPU (its own allocations do
# not spill), on the home node's for a fix (memhog runs on the other node then:
# a CPU each, as before).
hog() {
  c=$1; shift; cpu=$other; [ $c = fixed ] && cpu=$home
  taskset -c $cpu numatrace -o /tmp/$c.ntrace -- "$@" >/tmp/w.out 2>/tmp/nt.err & n=$!; memhog_pass $n $c
}
# Stops numatrace (pid $1) as Ctrl-C does and waits for it: rc is its status.
# SIGINT goes again every 2 s until it has stopped: a background job ignores
# SIGINT until numatrace installs its handler, which it does just after saying
# it traces (one sent in between would be lost, and the capture never end).
stop() {
  i=0
  while [ $i -lt 600 ] && awk '/^State:/ { exit $2 == "Z" }' /proc/$1/status 2>/dev/null; do
    [ $((i % 10)) = 0 ] && kill -INT $1
    sleep 0.2; i=$((i+1))
  done
  wait $1; rc=$?
}
# Waits until numatrace has taken a snapshot of the process after now (it
# takes them at 0.1 s, 1 s, then every 5 s: one within 6 s), running $1
# meanwhile (else sleeping). numatrace diff weighs the process's pages by the
# last snapshot: an earlier one shows moved threads where they were.
settle() { s0=$(date +%s); until [ $(($(date +%s) - s0)) -ge 7 ]; do ${1:-sleep 0.2}; done; }
# numatrace on the command "$2"..., in the background ($n: its pid), saving its
# capture as /tmp/$1.ntrace (before: the scenario, after: its fix). The
# command's stdout goes to /tmp/w.out (numatrace's text report follows it
# there), its stderr and numatrace's to /tmp/nt.err.
trace() { c=$1; shift; numatrace -o /tmp/$c.ntrace -- "$@" >/tmp/w.out 2>/tmp/nt.err & n=$!; }
# $1 as a JSON string.
jstr() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
# Sets $fix to the first fix of the top cause in /tmp/before.ntrace's text
# report that runs as printed (its first command starts with numactl or
# taskset, or migratepages, or re-pins several processes in a `for pid in`
# loop, and has no <placeholder>), and $level to the
# remote share (%) its verify line says it brings the process below (5 unless
# it says --fixed-below). Fails when there is none, or when fixes are not run
# in this scenario ($fixes is not 1). Both go into the truth.
firstfix() {
  [ "$fixes" = 1 ] || return 1
  numatrace report /tmp/before.ntrace >/tmp/before.txt 2>>/tmp/nt.err
  awk '
    /^  1\. / { top = 1; next }
    /^  [0-9]+\. / || /^  verify any fix/ { top = 0 }
    !top { next }
    /^     fix: / { k++; line = 0; next }
    /^          / {
      w = substr($0, 11)
      if (w ~ /^(note|cost): /) next
      if (w ~ /^verify: /) { if (k == at && match(w, /--fixed-below [0-9]+/)) level = substr(w, RSTART + 14, RLENGTH - 14); next }
      line++
      if (!at && line == 1 && w ~ /^(numactl|taskset|migratepages|for pid in [0-9 ]+; do taskset) / && w !~ /</) { at = k; cmd = w }
    }
    END { print (level ? level : 5); print cmd }' /tmp/before.txt >/tmp/fix
  level=$(sed -n 1p /tmp/fix); fix=$(sed -n 2p /tmp/fix)
  kv fix "$(jstr "$fix")"; kv fix_level "$level"
  [ -n "$fix" ]
}
# The first line of numatrace diff between the captures before and after the
# fix, at the fix's own level, into the truth.
fixdiff() { kv fix_diff "$(jstr "$(numatrace diff --fixed-below $level /tmp/before.ntrace /tmp/after.ntrace 2>&1 | head -n 1)")"; }
# Prints the ground truth line and the report. A scenario that ends its program
# itself once the truth is read (kill) fails only when numatrace wrote no report:
# numatrace's own status ($1) is in the truth.
finish() {
  cat /tmp/nt.err >&2
  numatrace report --json /tmp/before.ntrace >/tmp/nt.json
  printf '{%s"numatrace_status":%s,"wall_s":%s,"thp":"%s"}\n' "$(cat /tmp/truth)" "$1" $(($(date +%s) - t0)) "$(cat /sys/kernel/mm/transparent_hugepage/enabled)"
  cat /tmp/nt.json
  [ -s /tmp/nt.json ]
}
"#;

/// The scenario runs that lab_real and lab_services share: each scenario
/// prints one ground-truth JSON line, then numatrace's JSON report.
pub mod scenarios {
    use std::{collections::BTreeMap, path::PathBuf, sync::Mutex};

    use serde_json::Value;
    use xtask::lab::{Balancing, CommandResult};

    /// Balancing settings every scenario runs with, and the suffix of its name.
    pub const BALANCING: [(Balancing, &str); 2] = [(Balancing::Off, "off"), (Balancing::Fast, "on")];

    /// Guests run one at a time: they share this machine's few cores.
    pub static ONE_GUEST_AT_A_TIME: Mutex<()> = Mutex::new(());

    /// What a scenario printed in the guest.
    #[derive(Debug)]
    pub struct Outcome {
        pub name: String,
        pub truth: Value,
        pub report: Value,
        /// Where its whole output was saved, for the failure messages.
        pub saved: PathBuf,
    }

    /// Each scenario run by name (`memhog-off`): its outcome, or why there is none.
    pub type Outcomes = BTreeMap<String, Result<Outcome, String>>;

    /// The runs' outcomes, in `names` order; each output is saved in
    /// `saved_in` as `{prefix}-{name}.out`.
    pub fn outcomes(prefix: &str, saved_in: &str, names: Vec<String>, results: Vec<CommandResult>) -> Outcomes {
        names
            .into_iter()
            .zip(results)
            .map(|(name, result)| {
                let text = String::from_utf8_lossy(&result.stdout).into_owned();
                let saved = std::path::Path::new(saved_in).join(format!("{prefix}-{name}.out"));
                let _ = std::fs::write(&saved, &text);
                let outcome = parse_outcome(&text, result.exit_code)
                    .map(|(truth, report)| Outcome { name: name.clone(), truth, report, saved: saved.clone() })
                    .map_err(|e| format!("scenario {name}: {e} (output saved in {})", saved.display()));
                (name, outcome)
            })
            .collect()
    }

    /// Splits a scenario's stdout into the ground truth line and numatrace's JSON report.
    pub fn parse_outcome(text: &str, exit_code: i32) -> Result<(Value, Value), String> {
        if exit_code != 0 {
            return Err(format!("exit status {exit_code}; stdout: {text}"));
        }
        let (line, rest) = text.split_once('\n').ok_or_else(|| format!("no ground truth line in stdout: {text:?}"))?;
        let truth: Value = serde_json::from_str(line).map_err(|e| format!("ground truth is not JSON ({e}): {line}"))?;
        let report: Value = serde_json::from_str(rest).map_err(|e| format!("the report is not JSON ({e}): {rest}"))?;
        Ok((truth, report))
    }

    /// The outcome of `scenario` with `balancing` (`off`, `on`); panics with
    /// why the guest or the scenario failed.
    pub fn pick<'a>(guest: &'a Result<Outcomes, String>, scenario: &str, balancing: &str) -> &'a Outcome {
        let outcomes = guest.as_ref().unwrap_or_else(|e| panic!("{e}"));
        let name = format!("{scenario}-{balancing}");
        match outcomes.get(&name) {
            Some(Ok(o)) => o,
            Some(Err(e)) => panic!("{e}"),
            None => panic!("no scenario {name}"),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn splits_the_truth_from_the_report() {
            let (truth, report) = parse_outcome("{\"a\":1}\n{\n \"b\": 2\n}\n", 0).unwrap();
            assert_eq!((truth["a"].as_u64(), report["b"].as_u64()), (Some(1), Some(2)));
            assert!(parse_outcome("{\"a\":1}\n", 3).unwrap_err().contains("exit status 3"));
            assert!(parse_outcome("no json\n{}", 0).unwrap_err().contains("ground truth is not JSON"));
        }
    }
}

/// Boots the lab guests the tests share, one way.
pub mod guest {
    use std::time::Duration;

    use xtask::lab::{self, GuestCommand, GuestNumatrace, LabOptions, LabRun, Topology};

    /// A guest of `nodes` nodes of one CPU and `mem_per_node_mib` each,
    /// killed after `timeout`, running the debug numatrace that `cargo test`
    /// has just built (no second compile).
    pub fn options(nodes: u32, mem_per_node_mib: u64, timeout: Duration) -> LabOptions {
        LabOptions {
            topology: Topology { nodes, cpus_per_node: 1, mem_per_node_mib },
            timeout,
            verbose: false,
            stream_stdout: false,
            numatrace: GuestNumatrace::WorkspaceDebug,
            packages: Vec::new(),
        }
    }

    /// Boots of one guest before a soft lockup fails the test.
    const BOOTS: u32 = 3;

    /// Runs `commands` in one guest. A soft lockup of the emulated guest
    /// kernel boots it again, up to [`BOOTS`] in all, and says so: the
    /// results are then all from one clean boot. The lockups are the
    /// emulator's: a vCPU stuck for over a minute at a static-branch site
    /// (the kernel patches its own text as tracepoints attach) on an idle
    /// host too; no real machine has shown one. `what` names the guest.
    pub fn run(what: &str, opts: &LabOptions, commands: &[GuestCommand]) -> Result<LabRun, String> {
        let mut boot = 1;
        loop {
            match lab::run_commands(opts, commands) {
                Err(e) if boot < BOOTS && format!("{e:#}").contains(lab::qemu::SOFT_LOCKUP) => {
                    eprintln!("{what}: the guest failed ({e:#}); booting it again ({} of {BOOTS})", boot + 1);
                    boot += 1;
                }
                other => return other.map_err(|e| format!("{what}: the guest failed: {e:#}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_two_node_table() {
        let t = parse_numastat(
            "                          Node 0          Node 1           Total\n                 --------------- --------------- ---------------\nMemTotal                  344.92          376.45          721.37\n",
        );
        assert_eq!(t["MemTotal"]["Node 1"], 376.45);
        assert_eq!(t["MemTotal"]["Total"], 721.37);
    }

    #[test]
    fn cuts_a_guest_script_at_its_section_lines() {
        let s = sections("boot noise\n=== pids\n12 13\n=== stderr\n=== metrics\na 1\nb 2\n");
        assert_eq!(s["pids"], ["12 13"]);
        assert!(s["stderr"].is_empty(), "an empty section is still there");
        assert_eq!(s["metrics"], ["a 1", "b 2"]);
        assert_eq!(s.len(), 3, "nothing before the first section");
    }
}
