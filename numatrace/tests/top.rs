//! `numatrace top` on this host: `--once --json` finds a process the test
//! started, with its memory; the live screen, driven in a real terminal
//! (tmux: send-keys, capture-pane), sorts, filters, quits on `q` and on
//! Ctrl-C and gives the terminal back; as root, Enter traces the selected
//! process and comes back; as `nobody`, it works from /proc alone and says
//! what it cannot see. Needs tmux (`cargo xtask setup` installs it).
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use serde_json::Value;

const NUMATRACE: &str = env!("CARGO_BIN_EXE_numatrace");

/// A child killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `numatrace example resident --mib MIB`, returned once it has touched its memory.
fn resident(mib: u64) -> Killed {
    let mut child = Command::new(NUMATRACE)
        .args(["example", "resident", "--mib", &mib.to_string(), "--seconds", "120"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("numatrace example starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("its JSON line");
    assert!(line.contains('{'), "resident said {line:?}");
    Killed(child)
}

fn top_once_json() -> Value {
    top_once_json_with(&[])
}

fn top_once_json_with(more: &[&str]) -> Value {
    let out =
        Command::new(NUMATRACE).args(["top", "--once", "--json", "--interval", "300ms"]).args(more).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn once_json_lists_a_process_the_test_started_with_its_memory() {
    let child = resident(32);
    let pid = child.0.id();
    let view = top_once_json();
    assert_eq!(view["schema"], "numatrace.top/1");
    assert!(view["interval_seconds"].as_f64().unwrap() >= 0.3);
    let nodes = view["nodes"].as_array().unwrap();
    assert!(!nodes.is_empty());
    assert!(
        nodes.iter().all(|n| n["mem_total_bytes"].as_u64().unwrap() > 0 && !n["cpus"].as_array().unwrap().is_empty())
    );
    let processes = view["processes"].as_array().unwrap();
    let me = processes.iter().find(|p| p["pid"] == pid).unwrap_or_else(|| panic!("pid {pid} not listed"));
    assert_eq!(me["comm"], "numatrace");
    assert!(me["cgroup"].as_str().unwrap().starts_with('/'));
    let memory: u64 = me["memory_by_node"].as_object().unwrap().values().map(|b| b.as_u64().unwrap()).sum();
    assert!(memory >= 32 << 20, "{me}");
    assert!(me["rss_bytes"].as_u64().unwrap() >= 32 << 20, "{me}");
    let threads: u64 = me["threads_by_node"].as_object().unwrap().values().map(|c| c.as_u64().unwrap()).sum();
    assert!(threads >= 1, "{me}");
    // Node ids are JSON strings; every key is a node of the machine.
    let ids: Vec<String> = nodes.iter().map(|n| n["id"].to_string()).collect();
    assert!(me["memory_by_node"].as_object().unwrap().keys().all(|k| ids.contains(k)), "{me}");
    if nodes.len() == 1 {
        assert_eq!((me["remote_memory_share"].as_f64(), me["tag"].as_str()), (Some(0.0), Some("local")));
    }
    assert!(me["cross_node_migrations_per_s"].is_number());
    // Sorted by remote share, largest first, unknown (null) last.
    let shares: Vec<f64> = processes.iter().map(|p| p["remote_memory_share"].as_f64().unwrap_or(-1.0)).collect();
    assert!(shares.windows(2).all(|w| w[0] >= w[1]), "{shares:?}");
}

#[test]
#[ignore = "needs root"]
fn as_root_moves_and_remote_first_touches_are_counted_in_the_kernel() {
    let child = resident(16);
    let pid = child.0.id();
    let view = top_once_json();
    assert_eq!(view["counted_in_kernel"], true, "root attaches the kernel counters");
    let processes = view["processes"].as_array().unwrap();
    assert!(processes.iter().all(|p| p["remote_first_touch_pages_per_s"].is_number()), "a rate for every process");
    let me = processes.iter().find(|p| p["pid"] == pid).unwrap_or_else(|| panic!("pid {pid} not listed"));
    if view["nodes"].as_array().unwrap().len() == 1 {
        // One node: nothing can be remote, and the kernel's count says so exactly.
        assert!(processes.iter().all(|p| p["cross_node_migrations_per_s"] == 0.0), "{processes:?}");
        assert!(processes.iter().all(|p| p["remote_first_touch_pages_per_s"] == 0.0), "{processes:?}");
    }
    assert_eq!(me["comm"], "numatrace");

    let off = top_once_json_with(&["--no-kernel-counters"]);
    assert_eq!(off["counted_in_kernel"], false);
    let processes = off["processes"].as_array().unwrap();
    assert!(processes.iter().all(|p| p["remote_first_touch_pages_per_s"].is_null()), "not counted: null, not 0");
    assert!(processes.iter().all(|p| p["cross_node_migrations_per_s"].is_number()), "the /proc estimate");
}

#[test]
#[ignore = "needs root"]
fn without_root_it_works_from_proc_and_says_what_it_cannot_see() {
    // A root-owned process, seen by `nobody` (setpriv, util-linux).
    let child = resident(16);
    let pid = child.0.id();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", NUMATRACE])
        .args(["top", "--once", "--json", "--interval", "300ms"])
        .output()
        .expect("setpriv runs numatrace");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let view: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    // No kernel side: nothing is claimed as the kernel's count.
    for flag in ["counted_in_kernel", "first_touches_counted_in_kernel", "hinting_faults_counted_in_kernel"] {
        assert_eq!(view[flag], false, "{flag}");
    }
    let cannot_see: Vec<&str> = view["cannot_see"].as_array().unwrap().iter().filter_map(|s| s.as_str()).collect();
    assert!(cannot_see.iter().any(|s| s.contains("numa_maps")), "{cannot_see:?}");
    assert!(
        cannot_see.iter().any(|s| s.contains("moves estimated from /proc") && s.contains("CAP_BPF")),
        "{cannot_see:?}"
    );
    // Its row: what /proc shows anyone (resident memory, threads, moves),
    // and no memory per node rather than a wrong one.
    let processes = view["processes"].as_array().unwrap();
    let row = processes.iter().find(|p| p["pid"] == pid).unwrap_or_else(|| panic!("pid {pid} not listed"));
    assert!(row["memory_by_node"].is_null() && row["remote_memory_share"].is_null(), "{row}");
    assert_eq!(row["tag"], "unknown", "{row}");
    assert!(row["rss_bytes"].as_u64().unwrap() >= 16 << 20, "{row}");
    let threads: u64 = row["threads_by_node"].as_object().unwrap().values().map(|c| c.as_u64().unwrap()).sum();
    assert!(threads >= 1, "{row}");
    assert!(row["cross_node_migrations_per_s"].is_number(), "{row}");
    assert!(row["remote_first_touch_pages_per_s"].is_null() && row["remote_hinting_faults_per_s"].is_null(), "{row}");
}

#[test]
fn bad_input_is_one_line_and_nonzero() {
    for args in [&["top", "--interval", "0s"][..], &["top", "--once", "--interval", "soon"], &["top", "--json"]] {
        let out = Command::new(NUMATRACE).args(args).stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.starts_with("numatrace: error:") || err.starts_with("error:"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // Without a terminal the live screen says what to use instead.
    let out = Command::new(NUMATRACE).arg("top").stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--once --json"));
}

/// A tmux server of its own (a socket per test: tests run in parallel), killed at the end.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A detached 200x50 session running a plain shell whose prompt is `top-test$ `.
    fn start(test: &str) -> Tmux {
        let tmux = Tmux { socket: format!("numatrace-top-{}-{test}", std::process::id()) };
        let ok = Command::new("tmux")
            .args(["-L", &tmux.socket, "-f", "/dev/null", "new-session", "-d", "-x", "200", "-y", "50"])
            .args(["env", "PS1=top-test$ ", "TERM=xterm-256color", "bash", "--norc", "--noprofile"])
            .status()
            .unwrap_or_else(|e| panic!("tmux does not run ({e}): install it (cargo xtask setup)"));
        assert!(ok.success(), "tmux new-session failed");
        tmux.wait_for("top-test$", Duration::from_secs(10));
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(["-L", &self.socket]).args(args).output().unwrap();
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.run(&["send-keys", "-t", "0", k]);
            sleep(Duration::from_millis(150));
        }
    }

    fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", "0", "-l", text]);
        self.run(&["send-keys", "-t", "0", "Enter"]);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "0"])
    }

    fn alternate_screen(&self) -> bool {
        self.run(&["display-message", "-p", "-t", "0", "#{alternate_on}"]).trim() == "1"
    }

    /// Waits until the screen shows `text`; panics with the screen after `timeout`.
    fn wait_for(&self, text: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(start.elapsed() < timeout, "{text:?} not on the screen after {timeout:?}:\n{screen}");
            sleep(Duration::from_millis(100));
        }
    }

    fn wait_until(&self, what: &str, timeout: Duration, f: impl Fn(&Tmux) -> bool) {
        let start = Instant::now();
        while !f(self) {
            assert!(start.elapsed() < timeout, "{what} not after {timeout:?}:\n{}", self.screen());
            sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

/// /bin/sleep copied under a name no other process has, started.
fn named_sleeper(dir: &Path) -> (Killed, String) {
    let name = format!("topsleep{}", std::process::id() % 100_000);
    let exe: PathBuf = dir.join(&name);
    std::fs::copy("/bin/sleep", &exe).expect("copying /bin/sleep");
    (Killed(Command::new(&exe).arg("120").spawn().expect("the sleeper starts")), name)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("numatrace-top-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_screen_sorts_filters_and_gives_the_terminal_back() {
    let dir = temp_dir("tui");
    let (sleeper, name) = named_sleeper(&dir);
    let pid = sleeper.0.id().to_string();
    let tmux = Tmux::start("screen");
    tmux.type_line("echo before-top");
    tmux.wait_for("before-top", Duration::from_secs(5));

    // Ctrl-C quits and restores.
    tmux.type_line(&format!("{NUMATRACE} top --interval 500ms"));
    tmux.wait_for("REMOTE▼", Duration::from_secs(20));
    assert!(tmux.alternate_screen());
    tmux.keys(&["C-c"]);
    tmux.wait_until("the alternate screen left after Ctrl-C", Duration::from_secs(5), |t| !t.alternate_screen());
    tmux.type_line("echo exit-status-$?");
    tmux.wait_for("exit-status-0", Duration::from_secs(5));

    tmux.type_line(&format!("{NUMATRACE} top --interval 500ms"));
    let screen = tmux.wait_for("REMOTE▼", Duration::from_secs(20));
    // The header: the nodes with their CPUs and memory, the per-second counters.
    assert!(screen.contains("numatrace top") && screen.contains("node 0  cpus"), "{screen}");
    assert!(screen.contains("numa_miss") && screen.contains("pages migrated"), "{screen}");
    // Sort by memory, then by pid (ascending first for names and ids).
    tmux.keys(&["m"]);
    tmux.wait_for("RSS▼", Duration::from_secs(5));
    tmux.keys(&["p"]);
    tmux.wait_for("PID▲", Duration::from_secs(5));
    // The kernel's per-process figures sort largest first.
    tmux.keys(&["f"]);
    tmux.wait_for("RFT/s▼", Duration::from_secs(5));
    tmux.keys(&["h"]);
    tmux.wait_for("RHF/s▼", Duration::from_secs(5));
    tmux.keys(&["p"]);
    tmux.wait_for("PID▲", Duration::from_secs(5));
    // Filter by name: only the sleeper is left.
    tmux.keys(&["/"]);
    tmux.run(&["send-keys", "-t", "0", "-l", &name]);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for(&format!("filter: {name}"), Duration::from_secs(5));
    let rows: Vec<&str> =
        screen.lines().filter(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit())).collect();
    assert_eq!(rows.len(), 1, "one process row after the filter:\n{screen}");
    assert!(rows[0].trim_start().starts_with(&pid) && rows[0].contains(&name), "{screen}");
    // Grouped per cgroup and back.
    tmux.keys(&["g"]);
    tmux.wait_for("PROCS", Duration::from_secs(5));
    tmux.keys(&["g"]);
    tmux.wait_for("NAME", Duration::from_secs(5));
    tmux.keys(&["q"]);
    tmux.wait_until("the alternate screen left after q", Duration::from_secs(5), |t| !t.alternate_screen());
    tmux.type_line("echo exit-status-$?");
    let screen = tmux.wait_for("exit-status-0", Duration::from_secs(5));
    // The shell's own screen is back as it was, with its prompt.
    assert!(screen.contains("before-top") && screen.contains("top-test$"), "{screen}");
    assert!(!screen.contains("REMOTE"), "{screen}");
    drop(sleeper);
    let _ = std::fs::remove_dir_all(dir);
}

/// The children of a process, from /proc/*/stat.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
        if rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.extend(entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()));
        }
    }
    out
}

#[test]
fn a_hung_up_terminal_ends_top() {
    let tmux = Tmux::start("hangup");
    let shell: u32 = tmux.run(&["display-message", "-p", "-t", "0", "#{pane_pid}"]).trim().parse().unwrap();
    tmux.type_line(&format!("{NUMATRACE} top --interval 500ms"));
    tmux.wait_for("REMOTE▼", Duration::from_secs(20));
    let top = children(shell);
    assert_eq!(top.len(), 1, "the shell's children: {top:?}");
    drop(tmux);
    let start = Instant::now();
    while Path::new(&format!("/proc/{}", top[0])).exists() {
        let state = std::fs::read_to_string(format!("/proc/{}/stat", top[0])).unwrap_or_default();
        if state.contains(") Z ") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "top still runs after its terminal hung up: {state}");
        sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs root"]
fn enter_traces_the_selected_process_and_comes_back() {
    // numatrace under a name no other process has (a hard link beside it), holding 16 MiB.
    let name = format!("toptrace{}", std::process::id() % 100_000);
    let link = Path::new(NUMATRACE).with_file_name(&name);
    let _ = std::fs::remove_file(&link);
    std::fs::hard_link(NUMATRACE, &link).expect("linking numatrace under another name");
    let mut child = Command::new(&link)
        .args(["example", "resident", "--mib", "16", "--seconds", "120"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the resident example starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("its JSON line");
    let child = Killed(child);
    let pid = child.0.id().to_string();
    let tmux = Tmux::start("enter");
    tmux.type_line(&format!("{NUMATRACE} top --interval 500ms --trace-duration 2s"));
    tmux.wait_for("REMOTE▼", Duration::from_secs(20));
    tmux.keys(&["/"]);
    tmux.run(&["send-keys", "-t", "0", "-l", &name]);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for(&format!("filter: {name}"), Duration::from_secs(5));
    assert!(screen.lines().any(|l| l.trim_start().starts_with(&pid) && l.contains(&name)), "{screen}");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("Press any key to return", Duration::from_secs(60));
    assert!(!tmux.alternate_screen());
    assert!(screen.contains(&format!("tracing process {pid}")), "{screen}");
    // The report of the trace is on the screen.
    assert!(screen.contains("remote"), "no report:\n{screen}");
    tmux.keys(&["Space"]);
    tmux.wait_until("back in top", Duration::from_secs(10), Tmux::alternate_screen);
    tmux.wait_for("REMOTE", Duration::from_secs(10));
    tmux.keys(&["q"]);
    tmux.wait_until("the alternate screen left after q", Duration::from_secs(5), |t| !t.alternate_screen());
    drop(child);
    let _ = std::fs::remove_file(&link);
}
