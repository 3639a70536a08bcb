//! Whole services as targets, against the real kernel (root): several
//! `--pid`s, `--tree`, and `--cgroup` with a process that joins during the
//! capture; and the one-line errors of targets that do not exist.
use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::JoinHandle,
    time::{Duration, Instant},
};

mod common;
use common::start_tracing;

use serde_json::Value;

const NUMATRACE: &str = env!("CARGO_BIN_EXE_numatrace");

/// Waits for numatrace's report.
fn report_of(tracer: Child, stderr: JoinHandle<String>) -> (Value, String) {
    let out = tracer.wait_with_output().expect("numatrace ends");
    let stderr = stderr.join().unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("report is JSON ({e}): {stdout}\n{stderr}"));
    (report, stderr)
}

fn go_file(test: &str) -> PathBuf {
    let go = std::env::temp_dir().join(format!("numatrace-targets-{test}-{}.go", std::process::id()));
    let _ = std::fs::remove_file(&go);
    go
}

/// A touch workload of `pages` pages that waits for `go` before touching.
fn touch(pages: u32, go: &Path) -> Child {
    Command::new(NUMATRACE)
        .args(["example", "touch", "--pages", &pages.to_string(), "--go-file"])
        .arg(go)
        .stdout(Stdio::piped())
        .spawn()
        .expect("workload starts")
}

/// The ground truth a touch workload printed: (tid, pages it first touched).
fn truth_of(line: &str) -> Vec<(u64, u64)> {
    let truth: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("ground truth ({e}): {line}"));
    truth["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| (t["tid"].as_u64().expect("tid"), t["first_touch_pages"].as_u64().expect("pages")))
        .collect()
}

/// First-touch pages the report gives thread `tid` (None: not in the report).
fn first_touches(report: &Value, tid: u64) -> Option<u64> {
    let t = report["threads"].as_array()?.iter().find(|t| t["tid"] == tid)?;
    Some(t["first_touch_pages"].as_object()?.values().filter_map(Value::as_u64).sum())
}

/// Each thread of the truth is in the report with exactly its pages (plus a
/// few of its own stack pages).
fn assert_every_touch_seen(report: &Value, truth: &[(u64, u64)], who: &str) {
    assert!(!truth.is_empty(), "{who}: no threads in the ground truth");
    for &(tid, want) in truth {
        let seen = first_touches(report, tid).unwrap_or_else(|| panic!("{who}: thread {tid} not in the report"));
        assert!(seen >= want && seen <= want + 8, "{who}: thread {tid} saw {seen}, touched {want}");
    }
}

#[test]
#[ignore = "needs root"]
fn several_pids_are_traced_together_until_both_exit() {
    let go = go_file("pids");
    let (a, b) = (touch(3000, &go), touch(2000, &go));
    let (pa, pb) = (a.id().to_string(), b.id().to_string());
    let (tracer, stderr) =
        start_tracing(Command::new(NUMATRACE).args(["--json", "--pid", &pa, "--pid", &pb, "--duration", "60s"]));
    std::fs::write(&go, b"").expect("go file");
    let (report, stderr) = report_of(tracer, stderr);
    let _ = std::fs::remove_file(&go);
    let ta = truth_of(&String::from_utf8_lossy(&a.wait_with_output().expect("a ends").stdout));
    let tb = truth_of(&String::from_utf8_lossy(&b.wait_with_output().expect("b ends").stdout));
    assert_eq!(report["stopped_by"], "target exit", "ends when both have exited: {stderr}");
    assert!(stderr.contains(&format!("tracing pid {pa} (")) && stderr.contains("and 1 more process"), "{stderr}");
    assert_eq!(report["target"]["pids"], serde_json::json!([pa.parse::<u32>().ok(), pb.parse::<u32>().ok()]));
    assert_eq!(report["target"]["scope"]["kind"], "processes");
    assert_every_touch_seen(&report, &ta, "first pid");
    assert_every_touch_seen(&report, &tb, "second pid");
}

#[test]
#[ignore = "needs root"]
fn a_tree_includes_the_children_that_existed_before_the_start() {
    let go = go_file("tree");
    let script = format!(
        "{n} example touch --pages 2500 --go-file {g} & {n} example touch --pages 1500 --go-file {g} & wait",
        n = NUMATRACE,
        g = go.display()
    );
    let parent = Command::new("sh").args(["-c", &script]).stdout(Stdio::piped()).spawn().expect("sh starts");
    let pid = parent.id();
    // Both children exist (and have exec'd) before numatrace starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let kids: Vec<&str> = children.split_whitespace().collect();
        let execd = kids.iter().all(|k| {
            std::fs::read_link(format!("/proc/{k}/exe")).is_ok_and(|e| e.to_string_lossy().contains("numatrace"))
        });
        if kids.len() == 2 && execd {
            break;
        }
        assert!(Instant::now() < deadline, "the children did not start: {children:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (tracer, stderr) = start_tracing(Command::new(NUMATRACE).args([
        "--json",
        "--pid",
        &pid.to_string(),
        "--tree",
        "--duration",
        "60s",
    ]));
    std::fs::write(&go, b"").expect("go file");
    let (report, stderr) = report_of(tracer, stderr);
    let _ = std::fs::remove_file(&go);
    let out = parent.wait_with_output().expect("sh ends");
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "two ground truths: {lines:?}");
    assert_eq!(report["stopped_by"], "target exit", "{stderr}");
    assert_eq!(report["target"]["scope"]["kind"], "tree");
    assert_eq!(report["target"]["pids"].as_array().map(Vec::len), Some(3), "{}", report["target"]);
    assert!(stderr.contains("and 2 more processes of its tree"), "{stderr}");
    for line in &lines {
        assert_every_touch_seen(&report, &truth_of(line), "child");
    }
}

#[test]
#[ignore = "needs root"]
fn every_process_is_snapshotted_at_the_start_and_while_it_runs() {
    let mut sleepers: Vec<Child> =
        (0..3).map(|_| Command::new("sleep").arg("60").spawn().expect("sleep starts")).collect();
    let pids: Vec<u32> = sleepers.iter().map(Child::id).collect();
    let file = std::env::temp_dir().join(format!("numatrace-targets-snap-{}.ntrace", std::process::id()));
    let (a, b, c) = (pids[0].to_string(), pids[1].to_string(), pids[2].to_string());
    let out = Command::new(NUMATRACE)
        .args(["--pid", &a, "--pid", &b, "--pid", &c, "--duration", "1500ms", "-o"])
        .arg(&file)
        .output()
        .expect("numatrace runs");
    for s in &mut sleepers {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let capture = numatrace_core::capture::read_path(&file).expect("the capture reads");
    let _ = std::fs::remove_file(&file);
    let facts = capture.facts();
    assert_eq!(facts.start.target.pids, pids);
    assert_eq!(facts.start.process_before.as_ref().map(|s| s.pid), Some(pids[0]));
    let before: Vec<u32> = facts.start.other_processes_before.iter().map(|s| s.pid).collect();
    assert_eq!(before, pids[1..], "the others at the start");
    assert!(facts.start.other_processes_before.iter().all(|s| s.numa_maps.is_some()));
    assert_eq!(facts.end.process_last.as_ref().map(|s| s.pid), Some(pids[0]));
    let mut last: Vec<u32> = facts.end.other_processes_last.iter().map(|s| s.pid).collect();
    last.sort_unstable();
    assert_eq!(last, pids[1..], "the others at the last snapshot (at 100 ms and 1 s)");
    let threads: Vec<(u32, u32)> = facts.start.initial_threads.iter().map(|t| (t.tgid, t.tid)).collect();
    assert_eq!(threads, pids.iter().map(|&p| (p, p)).collect::<Vec<_>>(), "one thread each, with its tgid");
}

/// A cgroup v2 made for a test, removed (its processes killed) on drop.
struct TestCgroup {
    dir: PathBuf,
    procs: Vec<Child>,
}

impl TestCgroup {
    fn new(name: &str) -> TestCgroup {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let mount = mountinfo
            .lines()
            .find_map(|l| {
                let (before, after) = l.split_once(" - ")?;
                (after.split_whitespace().next()? == "cgroup2").then(|| before.split(' ').nth(4).map(PathBuf::from))?
            })
            .expect("this host mounts cgroup v2");
        let dir = mount.join(format!("numatrace-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        TestCgroup { dir, procs: Vec::new() }
    }

    fn join(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", self.dir.display()));
    }

    /// A `sleep` in the cgroup, so that it is not empty.
    fn add_sleeper(&mut self) -> u32 {
        let sleeper = Command::new("sleep").arg("120").spawn().expect("sleep starts");
        let pid = sleeper.id();
        self.join(pid);
        self.procs.push(sleeper);
        pid
    }

    fn kill_all(&mut self) {
        for mut p in self.procs.drain(..) {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.kill_all();
        // A cgroup can be removed only once its last process is gone.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
#[ignore = "needs root"]
fn a_cgroup_target_sees_a_process_that_joins_after_the_start() {
    let mut cgroup = TestCgroup::new("join");
    let sleeper = cgroup.add_sleeper();
    let go = go_file("cgroup");
    let joiner = touch(4000, &go);
    let dir = cgroup.dir.to_string_lossy().into_owned();
    let (tracer, stderr) =
        start_tracing(Command::new(NUMATRACE).args(["--json", "--cgroup", &dir, "--duration", "60s"]));
    cgroup.join(joiner.id());
    std::fs::write(&go, b"").expect("go file");
    // A process whose threads exist before it joins: the kernel sees the
    // move of the process, numatrace names its other threads from /proc.
    let threaded = Command::new(NUMATRACE)
        .args(["example", "init-thread", "--mib", "8", "--workers", "2", "--seconds", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("init-thread starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(format!("/proc/{}/task", threaded.id())).map_or(0, Iterator::count) < 3 {
        assert!(Instant::now() < deadline, "init-thread never started its workers");
        std::thread::sleep(Duration::from_millis(10));
    }
    let threaded_pid = threaded.id();
    cgroup.join(threaded_pid);
    // Its threads are traced like the leader: an affinity change of a
    // worker (by tid, from outside) is seen once numatrace has tracked it
    // (on its next drain, every 100 ms).
    std::thread::sleep(Duration::from_millis(500));
    let worker = std::fs::read_dir(format!("/proc/{threaded_pid}/task"))
        .expect("its threads")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|&tid| tid != threaded_pid)
        .expect("a worker thread");
    let taskset = Command::new("taskset").args(["-pc", "0", &worker.to_string()]).output().expect("taskset runs");
    assert!(taskset.status.success(), "taskset: {}", String::from_utf8_lossy(&taskset.stderr));
    let truth = truth_of(&String::from_utf8_lossy(&joiner.wait_with_output().expect("joiner ends").stdout));
    threaded.wait_with_output().expect("init-thread ends");
    // Empty now: the capture ends by itself.
    cgroup.kill_all();
    let (report, stderr) = report_of(tracer, stderr);
    let _ = std::fs::remove_file(&go);
    assert_eq!(report["stopped_by"], "target exit", "ends once the cgroup is empty: {stderr}");
    assert!(stderr.contains("join by cgroup id (tp_btf:cgroup_attach_task"), "{stderr}");
    let scope = &report["target"]["scope"];
    assert_eq!(scope["kind"], "cgroup");
    assert_eq!(scope["id"].as_u64(), Some(std::fs::metadata(&cgroup.dir).expect("cgroup dir").ino()));
    assert_eq!(report["target"]["pids"], serde_json::json!([sleeper]), "the joiner was not there at the start");
    assert_every_touch_seen(&report, &truth, "joiner");
    let names: Vec<&str> = report["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .filter(|t| t["tgid"] == threaded_pid)
        .filter_map(|t| t["comm"].as_str())
        .collect();
    for name in ["init", "worker-1", "worker-2"] {
        assert!(names.contains(&name), "{name} of the threaded joiner: {names:?}");
    }
    let affinity = &report["ring_events"]["affinity_change"];
    assert!(affinity["received"].as_u64().unwrap_or(0) >= 1, "the worker's affinity change: {affinity}");
    let joins = report["sources"].as_array().and_then(|s| s.iter().find(|s| s["name"] == "cgroup joins"));
    assert_eq!(joins.map(|s| &s["attached"]), Some(&Value::Bool(true)), "{}", report["sources"]);
}

/// Starts `argv` as a child created straight into the cgroup at `dir`
/// (`clone3(CLONE_INTO_CGROUP)`, as systemd and crun start processes), its
/// stdout into a pipe; returns its pid and the pipe's read end.
fn spawn_into_cgroup(dir: &Path, argv: &[&str]) -> (i32, std::fs::File) {
    use std::{ffi::CString, os::fd::AsRawFd};
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let cgroup = std::fs::File::open(dir).expect("the cgroup folder opens");
    let args: Vec<CString> = argv.iter().map(|a| CString::new(*a).expect("no NUL")).collect();
    let mut c_argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    c_argv.push(std::ptr::null());
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe");
    let clone_args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: clone3 without CLONE_VM is a fork; the child only calls
    // async-signal-safe functions (dup2, execv, _exit) on memory prepared before.
    let pid =
        unsafe { libc::syscall(libc::SYS_clone3, &clone_args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if pid == 0 {
        unsafe {
            libc::dup2(fds[1], 1);
            libc::execv(c_argv[0], c_argv.as_ptr());
            libc::_exit(127);
        }
    }
    assert!(pid > 0, "clone3: {}", std::io::Error::last_os_error());
    // SAFETY: closing our copy of the write end, and owning the read end.
    unsafe { libc::close(fds[1]) };
    (pid as i32, unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) })
}

#[test]
#[ignore = "needs root"]
fn a_cgroup_target_sees_a_process_created_straight_into_it() {
    let mut cgroup = TestCgroup::new("cloneinto");
    cgroup.add_sleeper();
    let dir = cgroup.dir.to_string_lossy().into_owned();
    let (tracer, stderr) =
        start_tracing(Command::new(NUMATRACE).args(["--json", "--cgroup", &dir, "--duration", "60s"]));
    let (pid, mut stdout) = spawn_into_cgroup(&cgroup.dir, &[NUMATRACE, "example", "touch", "--pages", "3000"]);
    let truth = std::io::read_to_string(&mut stdout).expect("its ground truth");
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    cgroup.kill_all();
    let (report, stderr) = report_of(tracer, stderr);
    assert_eq!(report["stopped_by"], "target exit", "{stderr}");
    assert_every_touch_seen(&report, &truth_of(&truth), "created in the cgroup");
    // The creator (this test) is not in the cgroup, and not traced.
    let me = u64::from(std::process::id());
    assert!(
        report["threads"].as_array().expect("threads").iter().all(|t| t["tgid"] != me),
        "the test process is not traced"
    );
}

#[test]
#[ignore = "needs root"]
fn an_empty_cgroup_is_one_clear_error() {
    let cgroup = TestCgroup::new("empty");
    let out = Command::new(NUMATRACE).args(["--cgroup"]).arg(&cgroup.dir).output().expect("numatrace runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("has no processes: nothing to trace"), "{stderr}");
}

#[test]
fn targets_that_do_not_exist_are_one_line_and_nonzero() {
    // Looked up before anything is loaded: no root needed.
    for (args, says) in [
        (vec!["--cgroup", "numatrace-no-such-cgroup"], "no cgroup /numatrace-no-such-cgroup"),
        (vec!["--unit", "numatrace-no-such-unit"], "no systemd unit numatrace-no-such-unit.service"),
        (vec!["--container", "0123456789abcdef0123"], "no container 0123456789abcdef0123"),
        (vec!["--container", "postgres"], "--container takes a container id"),
        (vec!["--tree"], "--pid"),
        (vec!["--cgroup", "x", "--unit", "y"], "cannot be used with"),
    ] {
        let out = Command::new(NUMATRACE).args(&args).output().expect("numatrace runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty() && (lines.len() == 1 || lines[0].starts_with("error:")), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?} should say {says:?}: {stderr}");
    }
}

/// BPF run time per program run, by program name, of the programs `tracer`
/// holds (kernel accounting while run-time stats are on).
fn program_stats(tracer: u32, before: &std::collections::BTreeSet<u32>) -> Vec<(String, u64, u64)> {
    let held: std::collections::BTreeSet<u32> = std::fs::read_dir(format!("/proc/{tracer}/fdinfo"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .filter_map(|t| t.lines().find_map(|l| l.strip_prefix("prog_id:")?.trim().parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| !before.contains(&p.id()) && held.contains(&p.id()) && p.run_count() > 0)
        .map(|p| (p.name_as_str().unwrap_or("?").to_string(), p.run_time().as_nanos() as u64, p.run_count()))
        .collect()
}

/// Not a check: the figures of the cost question. The same
/// fault-heavy workload traced as a pid (today's filter: one compare) and
/// as the second process of a cgroup (a hash lookup for it, and for every
/// other process's events on the machine), with the kernel's per-program
/// run time (`BPF_ENABLE_STATS`). Run with --nocapture to see them.
#[test]
#[ignore = "needs root; a measurement"]
fn cost_per_event_of_a_cgroup_target_against_a_pid() {
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
    let rounds: u32 = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let mut table: std::collections::BTreeMap<(String, &str), (u64, u64)> = Default::default();
    for round in 0..rounds {
        for mode in ["pid", "cgroup"] {
            let before: std::collections::BTreeSet<u32> =
                aya::programs::loaded_programs().filter_map(Result::ok).map(|p| p.id()).collect();
            let mut cgroup = TestCgroup::new(&format!("cost{round}"));
            let go = go_file(&format!("cost-{mode}"));
            let workload = Command::new(NUMATRACE)
                .args(["example", "touch", "--pages", "40000", "--threads", "2", "--rounds", "3", "--go-file"])
                .arg(&go)
                .stdout(Stdio::piped())
                .spawn()
                .expect("workload starts");
            let pid = workload.id().to_string();
            let dir = cgroup.dir.to_string_lossy().into_owned();
            let args: Vec<&str> = match mode {
                "pid" => vec!["--json", "--pid", &pid, "--duration", "60s"],
                _ => {
                    cgroup.add_sleeper();
                    cgroup.join(workload.id());
                    vec!["--json", "--cgroup", &dir, "--duration", "60s"]
                }
            };
            let (tracer, stderr) = start_tracing(Command::new(NUMATRACE).args(&args));
            let tracer_pid = tracer.id();
            std::fs::write(&go, b"").expect("go file");
            workload.wait_with_output().expect("workload ends");
            let stats = program_stats(tracer_pid, &before);
            // SAFETY: signalling our own child.
            unsafe { libc::kill(tracer_pid as i32, libc::SIGINT) };
            let (report, _) = report_of(tracer, stderr);
            let _ = std::fs::remove_file(&go);
            assert!(report["totals"]["first_touch_pages"].as_u64().unwrap_or(0) >= 240_000, "{}", report["totals"]);
            for (name, ns, runs) in stats {
                let e = table.entry((name, mode)).or_default();
                e.0 += ns;
                e.1 += runs;
            }
        }
    }
    let mut all = std::collections::BTreeMap::<&str, (u64, u64)>::new();
    eprintln!(
        "{:<28} {:>14} {:>14} {:>12} {:>12}",
        "program", "pid ns/run", "cgroup ns/run", "pid runs", "cgroup runs"
    );
    let names: std::collections::BTreeSet<String> = table.keys().map(|(n, _)| n.clone()).collect();
    for name in names {
        let get = |mode| table.get(&(name.clone(), mode)).copied().unwrap_or_default();
        let (p, c) = (get("pid"), get("cgroup"));
        let per = |(ns, runs): (u64, u64)| if runs == 0 { 0.0 } else { ns as f64 / runs as f64 };
        eprintln!("{name:<28} {:>14.1} {:>14.1} {:>12} {:>12}", per(p), per(c), p.1, c.1);
        for (mode, v) in [("pid", p), ("cgroup", c)] {
            let e = all.entry(mode).or_default();
            e.0 += v.0;
            e.1 += v.1;
        }
    }
    for (mode, (ns, runs)) in all {
        eprintln!("all programs, {mode}: {:.1} ns/run over {runs} runs", ns as f64 / runs.max(1) as f64);
    }
}
