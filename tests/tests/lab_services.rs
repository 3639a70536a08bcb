//! Whole services in the lab: PostgreSQL 15 from Debian's packages, carried
//! into a 2-node guest (`cargo xtask lab --package`), traced as a service
//! and checked against the kernel's own ground truth, Shmem per node
//! (/sys/devices/system/node/nodeN/meminfo): shared_buffers is shared memory.
//!
//! The story is the known real case of issue #16: the postmaster runs on
//! node 0 (as a unit's CPUAffinity would put it); a backend there warms
//! shared_buffers (pg_prewarm, as autoprewarm does at start-up), so every
//! buffer is first touched on node 0; the postmaster is then moved to node 1
//! and the pgbench backends it forks from then on run there, reading buffers
//! that all sit on node 0.
//!
//! Each scenario runs with balancing off and on in one guest boot. Its stdout
//! is one JSON line of ground truth, then numatrace's `--json` report, saved
//! to CARGO_TARGET_TMPDIR/lab-services-NAME.out. They boot QEMU: `#[ignore]`d,
//! `cargo xtask test` runs them (see tests/README.md).
use std::{
    io::Write,
    sync::OnceLock,
    time::{Duration, Instant},
};

use numatrace_tests::{
    SCENARIO_SH, guest,
    scenarios::{self, BALANCING, ONE_GUEST_AT_A_TIME, Outcome, Outcomes},
};
use serde_json::Value;
use xtask::lab::{Balancing, GuestCommand};

const NODES: u32 = 2;
/// PostgreSQL's files live in the guest's RAM, and its data directory too.
const MEM_PER_NODE_MIB: u64 = 1024;
const PACKAGES: &[&str] = &["postgresql-15", "postgresql-client-15", "tzdata"];

/// The prewarming backend's own pages (its heap, stack, catalog caches)
/// besides the buffers it fills.
const SLACK_PAGES: u64 = 1200;

/// PostgreSQL in the guest: a `postgres` user, a cluster per scenario run,
/// and Shmem per node in KiB as JSON.
const PG_SH: &str = r#"
P=/usr/lib/postgresql/15/bin
grep -q '^postgres:' /etc/passwd || { echo 'postgres:x:102:104::/var/lib/postgresql:/bin/sh' >>/etc/passwd; echo 'postgres:x:104:' >>/etc/group; }
# postgres refuses to run as root.
asuser() { su -s /bin/sh postgres -c "$*"; }
# A fresh cluster in $D, started on node 0's CPU with 128 MiB of shared_buffers, with pgbench's tables.
pg_start() {
  D=/var/lib/postgresql/$1
  rm -rf /var/lib/postgresql/*; mkdir -p $D /var/run/postgresql
  chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
  asuser "$P/initdb -D $D --no-locale -E UTF8" >/tmp/initdb.log 2>&1 || { cat /tmp/initdb.log >&2; return 1; }
  asuser "numactl --cpunodebind=0 $P/pg_ctl -D $D -o '-c shared_buffers=128MB -c huge_pages=off' -l /tmp/pg.log -w start" >/dev/null || { cat /tmp/pg.log >&2; return 1; }
  pm=$(head -n 1 $D/postmaster.pid)
  asuser "$P/pgbench -h /var/run/postgresql -i -s 5 postgres" >/tmp/pgbench-init.log 2>&1 || { cat /tmp/pgbench-init.log >&2; return 1; }
}
pg_stop() { asuser "$P/pg_ctl -D $D -m fast -w stop" >/dev/null 2>&1; }
psql1() { asuser "$P/psql -h /var/run/postgresql -q -At -c \"$1\" postgres"; }
# The top cause's first fix in /tmp/before.ntrace's report that is cgroup
# writes (echo ... > /sys/fs/cgroup/...): into /tmp/fixcmds and the truth.
cgroup_fix() {
  numatrace report /tmp/before.ntrace > /tmp/before.txt 2>>/tmp/nt.err
  awk '/^  1\. /{ t = 1; next } /^  [0-9]+\. / || /^  verify any fix/{ t = 0 } !t{ next }
    /^     fix: /{ k++; next } (!at || k == at) && /^          echo [0-9,-]+ > \/sys\/fs\/cgroup\//{ at = k; sub(/^ +/, ""); print }' /tmp/before.txt >/tmp/fixcmds
  kv fix "$(jstr "$(tr '\n' ';' </tmp/fixcmds)")"
  [ -s /tmp/fixcmds ]
}
shmem() {
  printf '{'; sep=
  for d in /sys/devices/system/node/node[0-9]*; do printf '%s"%s":%s' "$sep" "${d##*node}" "$(awk '/Shmem:/ { print $4 }' $d/meminfo)"; sep=,; done
  printf '}'
}
"#;

struct Scenario {
    name: &'static str,
    /// Run with balancing off only (the cause does not depend on it).
    off_only: bool,
    body: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    // The postmaster traced with its descendants: the existing ones (checkpointer,
    // background writer...) and those it forks during the capture (the prewarming
    // backend, pgbench's backends).
    Scenario {
        name: "postgres-prewarm",
        off_only: false,
        body: r#"
pg_start prewarm || exit 1
kv postmaster $pm
numatrace --pid $pm --tree -o /tmp/before.ntrace >/dev/null 2>/tmp/nt.err & n=$!
traced
kv shmem_before "$(shmem)"
psql1 "create extension pg_prewarm" >/dev/null
kv prewarm_blocks "$(psql1 "select pg_prewarm('pgbench_accounts')")"
kv shmem_prewarmed "$(shmem)"
kv prewarm_backends "$(psql1 "select count(*) from pg_stat_activity where backend_type = 'client backend'")"
taskset -p -c 1 $pm >/dev/null
asuser "numactl --cpunodebind=1 $P/pgbench -h /var/run/postgresql -c 2 -T 15 -S postgres" >/tmp/pgbench.out 2>&1
kv tps "$(awk '/^tps/ { print int($3) }' /tmp/pgbench.out)"
stop $n; rc0=$rc
kv shmem_after "$(shmem)"
# The first fix, run as printed (a re-pin of every process of the tree), then
# the same load traced again.
if firstfix; then
  eval "$fix" >/dev/null 2>&1
  numatrace --pid $pm --tree -o /tmp/after.ntrace >/dev/null 2>/tmp/nt.err & n=$!
  traced
  asuser "numactl --cpunodebind=1 $P/pgbench -h /var/run/postgresql -c 2 -T 15 -S postgres" >/tmp/pgbench.out 2>&1
  kv tps_fixed "$(awk '/^tps/ { print int($3) }' /tmp/pgbench.out)"
  stop $n
  fixdiff
fi
pg_stop
finish $rc0
"#,
    },
    // A cpuset cgroup whose CPUs are on node 1 and whose memory is on node 0 (what
    // `docker run --cpuset-cpus --cpuset-mems` makes), traced with --cgroup: a
    // process there from the start, and memhog, which joins after it (written
    // into cgroup.procs by its shell, as a runtime adds a task). Every page is
    // remote by the cpuset's design (memory_policy). Truth: node 0's other_node
    // count (pages allocated there for a task running on another node).
    Scenario {
        name: "cpuset-cgroup",
        off_only: true,
        body: r#"
cg=/sys/fs/cgroup/lab-db
echo +cpuset > /sys/fs/cgroup/cgroup.subtree_control
mkdir -p $cg && echo 1 > $cg/cpuset.cpus && echo 0 > $cg/cpuset.mems
sh -c "echo \$\$ > $cg/cgroup.procs; exec sleep 600" & holder=$!
waitfor "grep -q $holder $cg/cgroup.procs" 50
numatrace --cgroup lab-db -o /tmp/before.ntrace >/dev/null 2>/tmp/nt.err & n=$!
traced
snap before
sh -c "echo \$\$ > $cg/cgroup.procs; exec memhog -r2 64m" >/dev/null
snap after
stop $n; rc0=$rc
# The top cause's first fix, its cgroup writes run as printed, then memhog again.
if cgroup_fix; then
  sh -e /tmp/fixcmds
  numatrace --cgroup lab-db -o /tmp/after.ntrace >/dev/null 2>/tmp/nt.err & n=$!
  traced
  sh -c "echo \$\$ > $cg/cgroup.procs; exec memhog -r2 64m" >/dev/null
  stop $n
  level=5; fixdiff
fi
kill $holder
finish $rc0
"#,
    },
    // The same PostgreSQL story with the instance in a cgroup (as a unit or a
    // container puts it), traced with --cgroup: the postmaster and its helpers are
    // moved into it after the start, the backends it forks are born there. The
    // fix for a cgroup is its cpuset files (the cpuset-cgroup scenario enabled the
    // controller below the root).
    Scenario {
        name: "postgres-cgroup",
        off_only: true,
        body: r#"
pg_start incgroup || exit 1
kv postmaster $pm
cg=/sys/fs/cgroup/lab-pg
echo +cpuset > /sys/fs/cgroup/cgroup.subtree_control
mkdir -p $cg
# Joining a cpuset cgroup resets a task's CPUs to the cgroup's: pinned to node 0 again,
# as the instance's unit had it.
for p in $pm $(cat /proc/$pm/task/*/children); do echo $p > $cg/cgroup.procs; taskset -a -p -c 0 $p >/dev/null; done
numatrace --cgroup lab-pg -o /tmp/before.ntrace >/dev/null 2>/tmp/nt.err & n=$!
traced
kv shmem_before "$(shmem)"
psql1 "create extension pg_prewarm" >/dev/null
kv prewarm_blocks "$(psql1 "select pg_prewarm('pgbench_accounts')")"
kv shmem_prewarmed "$(shmem)"
taskset -p -c 1 $pm >/dev/null
asuser "numactl --cpunodebind=1 $P/pgbench -h /var/run/postgresql -c 2 -T 15 -S postgres" >/tmp/pgbench.out 2>&1
stop $n; rc0=$rc
if cgroup_fix; then
  sh -e /tmp/fixcmds
  numatrace --cgroup lab-pg -o /tmp/after.ntrace >/dev/null 2>/tmp/nt.err & n=$!
  traced
  asuser "numactl --cpunodebind=1 $P/pgbench -h /var/run/postgresql -c 2 -T 15 -S postgres" >/tmp/pgbench.out 2>&1
  stop $n
  level=5; fixdiff
fi
pg_stop
finish $rc0
"#,
    },
];

fn run_guest() -> Result<Outcomes, String> {
    let _turn = ONE_GUEST_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut names = Vec::new();
    let mut commands = Vec::new();
    for s in SCENARIOS {
        for (balancing, suffix) in BALANCING.into_iter().filter(|(b, _)| !s.off_only || *b == Balancing::Off) {
            names.push(format!("{}-{suffix}", s.name));
            commands.push(GuestCommand {
                argv: vec!["sh".into(), "-c".into(), format!("fixes=1\n{SCENARIO_SH}{PG_SH}{}", s.body)],
                balancing,
            });
        }
    }
    let mut opts = guest::options(NODES, MEM_PER_NODE_MIB, Duration::from_secs(1200));
    opts.packages = PACKAGES.iter().map(|p| p.to_string()).collect();
    let started = Instant::now();
    let run = guest::run("lab services", &opts, &commands)?;
    let _ = writeln!(
        std::io::stderr(),
        "lab services: {} scenario runs: boot {:.1} s, guest total {:.1} s, with the image build {:.1} s (console log {})",
        commands.len(),
        run.boot_s,
        run.total_s,
        started.elapsed().as_secs_f64(),
        run.console_log.display()
    );
    Ok(scenarios::outcomes("lab-services", env!("CARGO_TARGET_TMPDIR"), names, run.results))
}

fn outcome(scenario: &str, balancing: &str) -> &'static Outcome {
    static GUEST: OnceLock<Result<Outcomes, String>> = OnceLock::new();
    scenarios::pick(GUEST.get_or_init(run_guest), scenario, balancing)
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut at = v;
    for p in path {
        at = &at[*p];
    }
    at.as_u64().or_else(|| at.as_str().and_then(|s| s.trim().parse().ok())).unwrap_or(0)
}

/// Shmem pages the prewarm added on `node` (KiB in meminfo).
fn shmem_pages_added(o: &Outcome, node: &str) -> u64 {
    u(&o.truth, &["shmem_prewarmed", node]).saturating_sub(u(&o.truth, &["shmem_before", node])) / 4
}

fn threads(o: &Outcome) -> &[Value] {
    o.report["threads"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Pages a thread first touched on `node`.
fn first_touched_on(thread: &Value, node: &str) -> u64 {
    u(thread, &["first_touch_pages", node])
}

/// The prewarm put buffers on node 0: numatrace saw one thread, of another
/// process than the postmaster, first-touch as many pages there as Shmem grew.
fn prewarm_counts(o: &Outcome) {
    let truth = shmem_pages_added(o, "0");
    assert!(truth >= 8_000, "{}: the prewarm added only {truth} Shmem pages on node 0 ({})", o.name, o.saved.display());
    let pm = u(&o.truth, &["postmaster"]);
    let warmer = threads(o)
        .iter()
        .filter(|t| u(t, &["tgid"]) != pm)
        .max_by_key(|t| first_touched_on(t, "0"))
        .unwrap_or_else(|| panic!("{}: no thread besides the postmaster's ({})", o.name, o.saved.display()));
    let seen = first_touched_on(warmer, "0");
    let (low, high) = (truth * 95 / 100, truth * 105 / 100 + SLACK_PAGES);
    assert!(
        (low..=high).contains(&seen),
        "{}: the prewarming backend (tid {}) first touched {seen} pages on node 0; Shmem grew by {truth} pages there (allowed {low}..={high}; {})",
        o.name,
        u(warmer, &["tid"]),
        o.saved.display()
    );
}

#[test]
#[ignore = "boots QEMU"]
fn postgres_prewarm_counts_balancing_off() {
    prewarm_counts(outcome("postgres-prewarm", "off"));
}

#[test]
#[ignore = "boots QEMU"]
fn postgres_prewarm_counts_balancing_on() {
    prewarm_counts(outcome("postgres-prewarm", "on"));
}

/// The top cause is the prewarmed shared memory, remote to the backends
/// that use it from node 1, with about the pages the prewarm added to Shmem
/// on node 0.
fn shared_memory_cause(o: &Outcome) {
    let truth = shmem_pages_added(o, "0");
    let cause = &o.report["causes"][0];
    let kind = cause["kind"].as_str().unwrap_or_default();
    assert!(
        kind == "first_touch_by_other_thread" || kind == "shared_across_nodes",
        "{}: the top cause is {kind}: {} ({})",
        o.name,
        cause["summary"],
        o.saved.display()
    );
    let pages = u(cause, &["pages"]);
    let (low, high) = (truth * 85 / 100, truth * 105 / 100 + SLACK_PAGES);
    assert!(
        (low..=high).contains(&pages),
        "{}: the cause has {pages} pages, the prewarm added {truth} to Shmem on node 0 (allowed {low}..={high}; {})",
        o.name,
        o.saved.display()
    );
}

/// The top cause is the prewarming backend's first touch of shared memory
/// that the other processes use from node 1, with about the pages the
/// prewarm added to Shmem on node 0 (its users' run time off node 0 weighs
/// them: the prewarming backend and the postmaster's helpers ran on node 0).
fn prewarm_cause(o: &Outcome) {
    shared_memory_cause(o);
    let pm = u(&o.truth, &["postmaster"]);
    let processes = o.report["processes"].as_array().map(Vec::len).unwrap_or(0);
    // The postmaster, its five helpers, the prewarming backend and pgbench's two.
    assert!(processes >= 9, "{}: {processes} processes in the report ({})", o.name, o.saved.display());
    assert_eq!(u(&o.report, &["target", "pid"]), pm, "{}", o.name);
    assert_eq!(o.report["target"]["scope"]["kind"], "tree", "{}", o.name);
}

/// The first fix, run as printed, brings the remote share below the fix's level.
fn fixed_as_printed(o: &Outcome) {
    let fix = o.truth["fix"].as_str().unwrap_or_default();
    let diff = o.truth["fix_diff"].as_str().unwrap_or_default();
    let _ = writeln!(std::io::stderr(), "lab services: {}: fix `{fix}`: {diff}", o.name);
    assert!(!fix.is_empty(), "{}: no fix that runs as printed ({})", o.name, o.saved.display());
    assert!(diff.starts_with("fixed: "), "{}: after `{fix}`: {diff} ({})", o.name, o.saved.display());
}

#[test]
#[ignore = "boots QEMU"]
fn postgres_prewarm_cause_balancing_off() {
    prewarm_cause(outcome("postgres-prewarm", "off"));
}

#[test]
#[ignore = "boots QEMU"]
fn postgres_prewarm_cause_balancing_on() {
    prewarm_cause(outcome("postgres-prewarm", "on"));
}

#[test]
#[ignore = "boots QEMU"]
fn postgres_fix_as_printed_balancing_off() {
    fixed_as_printed(outcome("postgres-prewarm", "off"));
}

#[test]
#[ignore = "boots QEMU"]
fn postgres_fix_as_printed_balancing_on() {
    fixed_as_printed(outcome("postgres-prewarm", "on"));
}

/// Node 0's pages allocated for tasks on other nodes while memhog ran.
fn other_node_pages(o: &Outcome) -> u64 {
    u(&o.truth, &["after", "node", "0", "other_node"])
        .saturating_sub(u(&o.truth, &["before", "node", "0", "other_node"]))
}

/// Every page memhog touched is remote by the cpuset's design: the cause is
/// memory_policy with as many pages as the kernel counted on node 0 for
/// tasks elsewhere, memhog (which joined after the start) is in the report,
/// and the fix is the cgroup's own files.
fn cpuset_cause(o: &Outcome) {
    let truth = other_node_pages(o);
    assert!(truth >= 16_000, "{}: only {truth} other_node pages on node 0 ({})", o.name, o.saved.display());
    let cause = &o.report["causes"][0];
    assert_eq!(cause["kind"], "memory_policy", "{}: {} ({})", o.name, cause["summary"], o.saved.display());
    let pages = u(cause, &["pages"]);
    let (low, high) = (truth * 95 / 100, truth * 105 / 100);
    assert!(
        (low..=high).contains(&pages),
        "{}: {pages} pages; the kernel counted {truth} ({})",
        o.name,
        o.saved.display()
    );
    assert_eq!(o.report["target"]["scope"]["kind"], "cgroup", "{}", o.name);
    let comms: Vec<&str> =
        o.report["processes"].as_array().into_iter().flatten().filter_map(|p| p["comm"].as_str()).collect();
    assert!(
        comms.contains(&"memhog"),
        "{}: the joiner is not in the report: {comms:?} ({})",
        o.name,
        o.saved.display()
    );
}

#[test]
#[ignore = "boots QEMU"]
fn cpuset_cgroup_cause() {
    cpuset_cause(outcome("cpuset-cgroup", "off"));
}

#[test]
#[ignore = "boots QEMU"]
fn cpuset_cgroup_fix_as_printed() {
    fixed_as_printed(outcome("cpuset-cgroup", "off"));
}

/// The instance traced by its cgroup: the same cause as by its tree, scope
/// cgroup, and the cgroup's cpuset writes fix it as printed.
fn postgres_cgroup_cause(o: &Outcome) {
    shared_memory_cause(o);
    assert_eq!(o.report["target"]["scope"]["kind"], "cgroup", "{}", o.name);
}

#[test]
#[ignore = "boots QEMU"]
fn postgres_cgroup_cause_balancing_off() {
    postgres_cgroup_cause(outcome("postgres-cgroup", "off"));
}

#[test]
#[ignore = "boots QEMU"]
fn postgres_cgroup_fix_as_printed_balancing_off() {
    fixed_as_printed(outcome("postgres-cgroup", "off"));
}
