//! `numatrace check` against this kernel: its sources are the ones a live
//! capture attaches, through the same hooks (the two can never disagree);
//! without privileges it says it cannot load programs and exits non-zero.
use std::process::{Command, Output};

use serde_json::Value;

const NUMATRACE: &str = env!("CARGO_BIN_EXE_numatrace");

fn json(out: &Output, what: &str) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

#[test]
#[ignore = "needs root"]
fn check_reports_the_sources_a_live_capture_attaches() {
    let out = Command::new(NUMATRACE).args(["check", "--json"]).output().expect("numatrace check runs");
    let check = json(&out, "numatrace check --json");
    assert_eq!(check["schema"], "numatrace.check/1");
    assert_eq!(check["sources_checked"], true, "{check}");
    let live_out = Command::new(NUMATRACE).args(["--json", "--", "true"]).output().expect("numatrace runs");
    assert!(live_out.status.success(), "{}", String::from_utf8_lossy(&live_out.stderr));
    let live = json(&live_out, "numatrace --json -- true");
    let live_sources = live["sources"].as_array().expect("the report lists its sources");
    let check_sources = check["sources"].as_array().expect("check lists its sources");
    assert!(live_sources.len() >= 10, "{live_sources:?}");
    for l in live_sources {
        let name = l["name"].as_str().expect("a source has a name");
        let c = check_sources.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("check lacks {name}"));
        let attached = l["attached"] == true;
        let state = if attached { "attached" } else { "unavailable" };
        assert_eq!(c["state"], state, "{name}: check {c} vs live {l}");
        assert_eq!(strings(&c["hooks"]), strings(&l["hooks"]), "{name}: check {c} vs live {l}");
        assert_eq!(c["kind"], l["kind"], "{name}: check {c} vs live {l}");
        assert_eq!(c["fallback_reason"], l["fallback_reason"], "{name}: check {c} vs live {l}");
        assert_eq!(c["reason"], l["reason"], "{name}: check {c} vs live {l}");
        if attached {
            let kind = c["kind"].as_str().unwrap_or_else(|| panic!("{name} attached without a kind: {c}"));
            assert!(
                ["raw_tracepoint", "btf_tracepoint", "tracepoint", "fentry", "kprobe"].contains(&kind),
                "{name}: {kind}"
            );
        } else {
            assert!(c["loses"].as_str().is_some_and(|s| !s.is_empty()), "{name} says what is lost: {c}");
        }
    }
    // Beyond a command's capture, check tries only the cgroup joins (a service's sources).
    let extra: Vec<&str> = check_sources
        .iter()
        .filter_map(|c| c["name"].as_str())
        .filter(|n| !live_sources.iter().any(|l| l["name"] == *n))
        .collect();
    assert_eq!(extra, ["cgroup joins"]);
    // The verdict follows from the sources, and the exit status from the verdict.
    let missing =
        |role: &str| check_sources.iter().filter(|c| c["role"] == role && c["state"] == "unavailable").count();
    let level = check["verdict"]["level"].as_str().expect("a verdict");
    let expected = match (missing("core"), missing("detail")) {
        (0, 0) => "full",
        (0, _) => "reduced",
        _ => "cannot_trace",
    };
    assert_eq!(level, expected, "{}", check["verdict"]);
    assert_eq!(out.status.success(), level != "cannot_trace", "{}", check["verdict"]);
    // The host's one fact every check must get right: its nodes are the topology's.
    let nodes = std::fs::read_to_string("/sys/devices/system/node/online").expect("node/online");
    assert!(!check["nodes"].as_array().expect("nodes").is_empty(), "{nodes}");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    assert_eq!(check["kernel"]["release"], release.trim());
    // The always-on counters: what check says attaches is what top gets.
    let counters = check["machine_counters"].as_array().expect("machine counters listed");
    let state = |name: &str| {
        counters.iter().find(|c| c["name"] == name).map(|c| c["state"].clone()).unwrap_or_else(|| panic!("{name}"))
    };
    let top_out = Command::new(NUMATRACE).args(["top", "--once", "--json"]).output().expect("numatrace top runs");
    let top = json(&top_out, "numatrace top --once --json");
    let attached = |name: &str| state(name) == "attached";
    assert_eq!(attached("cross-node migrations per process"), top["counted_in_kernel"] == true, "{counters:?}");
    assert_eq!(
        attached("remote first touches per process"),
        top["first_touches_counted_in_kernel"] == true,
        "{counters:?}"
    );
    assert!(state("balancer task placement") != "not_checked", "{counters:?}");
    eprintln!("numatrace check on this host: {}", check["verdict"]["line"]);
}

/// As root, drops to nobody with setpriv (util-linux); as anyone else, runs it as is.
fn unprivileged(args: &[&str]) -> Output {
    // SAFETY: geteuid(2) has no preconditions.
    let mut command = if unsafe { libc::geteuid() } == 0 {
        let mut setpriv = Command::new("setpriv");
        setpriv.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", NUMATRACE]);
        setpriv
    } else {
        Command::new(NUMATRACE)
    };
    command.args(args).output().expect("numatrace runs (as root: setpriv, from util-linux)")
}

#[test]
fn without_privileges_check_says_it_cannot_load_programs() {
    let out = unprivileged(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().unwrap_or("");
    assert!(last.starts_with("cannot trace here: cannot load programs"), "last line: {last}");
    assert!(last.contains("CAP_BPF") && last.contains("sudo"), "{last}");
    // What files tell is still there.
    assert!(stdout.contains("NUMA balancing") && stdout.contains("kernel.numa_balancing="), "{stdout}");
    assert!(stdout.contains("node 0"), "{stdout}");

    let out = unprivileged(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let check = json(&out, "numatrace check --json (unprivileged)");
    assert_eq!(check["privileges"]["can_load_programs"], false);
    assert_eq!(check["sources_checked"], false);
    assert_eq!(check["verdict"]["level"], "cannot_trace");
    let sources = check["sources"].as_array().expect("sources listed");
    assert!(sources.len() >= 10 && sources.iter().all(|s| s["state"] == "not_checked"), "{sources:?}");
    let counters = check["machine_counters"].as_array().expect("machine counters listed");
    assert!(counters.len() == 4 && counters.iter().all(|s| s["state"] == "not_checked"), "{counters:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    assert!(lines[0].contains("cannot load programs"), "{stderr}");
}

#[test]
fn check_help_says_what_it_checks_and_when_to_run_it() {
    let out = Command::new(NUMATRACE).args(["check", "--help"]).output().expect("numatrace runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["bug report", "new server", "--json", "numatrace.check/1", "Exit status", "lockdown", "fentry"] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}
