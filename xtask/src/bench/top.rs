//! `numatrace top`'s own cost (issue #18): the live screen left on at its
//! default 1 s refresh on a machine with about a thousand processes, in
//! percent of one core. The idle processes are `sleep` children of the bench;
//! top runs in a pseudo-terminal of its own (`script`, which stays the bench's
//! child, so an interrupted bench takes it down too) and quits on a `q` typed
//! into it, its real exit path. Its CPU (utime + stime, all its threads) is
//! read from /proc/PID/stat once its first screens are drawn and again at the
//! end of a fixed window: start-up is left out, as an incident's top pays it
//! once. Most runs are as an unprivileged user (`nobody`: top needs no root,
//! and without it others' numa_maps is unreadable), one as root; for each,
//! whether top holds BPF programs (a kernel side) is read from its open files.
use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{report::median, variants::own_cpu_seconds};

/// The goal: under 2 % of one core at a 1 s refresh with 1000 processes.
pub const TOP_GOAL_PERCENT: f64 = 2.0;

/// Idle processes the bench starts.
pub const IDLE_PROCESSES: u32 = 1000;

/// How long top runs before its CPU is first read (its first sample, first
/// screens), and the windows measured after that: the first, in which top
/// reads every process's numa_maps for the first time within its budget per
/// refresh (a thousand new processes take it about 20 s as root), then the
/// steady one, which the goal is about (what top costs left on).
const SETTLE: Duration = Duration::from_secs(3);
const WINDOW: Duration = Duration::from_secs(20);

/// The pseudo-terminal's size: a thousand rows, a screenful drawn.
const COLUMNS: u32 = 200;
const LINES: u32 = 50;

/// Who top runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum User {
    /// `nobody`: what an unprivileged SRE sees (others' numa_maps unreadable).
    Unprivileged,
    Root,
}

impl User {
    pub fn label(self) -> &'static str {
        match self {
            User::Unprivileged => "nobody",
            User::Root => "root",
        }
    }
}

/// One run of top.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Run {
    pub user: User,
    /// Processes in /proc (user space and kernel threads) when the window began.
    pub processes: u32,
    /// top's CPU before the window: start-up and its first refreshes.
    pub startup_cpu_s: f64,
    /// The window, by the bench's clock.
    pub seconds: f64,
    /// top's CPU in the window.
    pub cpu_s: f64,
    /// The steady window right after the first, by the bench's clock (0: not measured).
    #[serde(default)]
    pub steady_seconds: f64,
    /// top's CPU in the steady window.
    #[serde(default)]
    pub steady_cpu_s: f64,
    /// BPF programs top held open at the end of the window (0: no kernel side).
    pub bpf_programs: u32,
}

impl Run {
    /// top's CPU over the first window, in percent of one core.
    pub fn percent(&self) -> f64 {
        if self.seconds > 0.0 { 100.0 * self.cpu_s / self.seconds } else { 0.0 }
    }

    /// top's CPU over the steady window, in percent of one core; the first
    /// window's where it was not measured (results of earlier runs).
    pub fn steady_percent(&self) -> f64 {
        if self.steady_seconds > 0.0 { 100.0 * self.steady_cpu_s / self.steady_seconds } else { self.percent() }
    }
}

/// Everything the part measured.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Top {
    /// The command run, `numatrace` standing for the release binary.
    pub command: String,
    pub idle_processes: u32,
    pub runs: Vec<Run>,
}

impl Top {
    /// The median percent of one core of the runs as `user`, steady.
    pub fn median_percent(&self, user: User) -> Option<f64> {
        let values: Vec<f64> = self.runs.iter().filter(|r| r.user == user).map(Run::steady_percent).collect();
        median(&values)
    }

    /// The same over the first window (every process's numa_maps read once).
    pub fn median_first_percent(&self, user: User) -> Option<f64> {
        let values: Vec<f64> = self.runs.iter().filter(|r| r.user == user).map(Run::percent).collect();
        median(&values)
    }

    /// Met when every user's median is under the goal (none when not measured).
    pub fn goal_met(&self) -> Option<bool> {
        let medians: Vec<f64> =
            [User::Unprivileged, User::Root].into_iter().filter_map(|u| self.median_percent(u)).collect();
        (!medians.is_empty()).then(|| medians.iter().all(|p| *p < TOP_GOAL_PERCENT))
    }

    /// What the root runs said about a kernel side, in words.
    pub fn kernel_side(&self) -> String {
        let held: Vec<u32> = self.runs.iter().filter(|r| r.user == User::Root).map(|r| r.bpf_programs).collect();
        match held.iter().max() {
            None => "not run as root".into(),
            Some(0) => "no kernel side attached (no BPF program held) as root".into(),
            Some(n) => format!("a kernel side attached as root ({n} BPF programs held)"),
        }
    }
}

/// `sleep` children, killed and reaped however the bench leaves.
struct Sleepers(Vec<Child>);

impl Sleepers {
    fn start(n: u32) -> Result<Sleepers> {
        let mut out = Sleepers(Vec::with_capacity(n as usize));
        for _ in 0..n {
            let child = Command::new("sleep")
                .arg("3600")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting an idle `sleep 3600`")?;
            out.0.push(child);
        }
        Ok(out)
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

/// A copy of the release binary any user may run (the tree it was built in
/// may be closed to `nobody`), removed at the end.
struct SharedBinary(PathBuf);

impl SharedBinary {
    fn of(numatrace: &Path) -> Result<SharedBinary> {
        let dir = std::env::temp_dir().join(format!("numatrace-bench-top-{}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let shared = SharedBinary(dir);
        fs::set_permissions(&shared.0, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("opening {} to every user", shared.0.display()))?;
        let copy = shared.path();
        fs::copy(numatrace, &copy).with_context(|| format!("copying {} to {}", numatrace.display(), copy.display()))?;
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("opening {} to every user", copy.display()))?;
        Ok(shared)
    }

    fn path(&self) -> PathBuf {
        self.0.join("numatrace")
    }
}

impl Drop for SharedBinary {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// top in a pseudo-terminal: `script` and the pipe its keys come from.
struct Screen {
    script: Child,
    keys: Option<ChildStdin>,
}

impl Screen {
    /// Types `q` and waits for top to leave; kills it after 5 s.
    fn quit(mut self) -> Result<()> {
        if let Some(mut keys) = self.keys.take() {
            keys.write_all(b"q").context("typing q into top's terminal")?;
        }
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if self.script.try_wait().context("waiting for top to quit")?.is_some() {
                return Ok(());
            }
            sleep(Duration::from_millis(50));
        }
        bail!("top did not quit within 5 s of `q`")
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // Closing the keys hangs the terminal up; then the pty's processes go.
        drop(self.keys.take());
        if matches!(self.script.try_wait(), Ok(None)) {
            let _ = self.script.kill();
        }
        let _ = self.script.wait();
    }
}

/// A word for `sh -c`, quoted.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The only child of `pid` (from /proc/PID/task/PID/children), once it runs `comm`.
fn child_running(pid: u32, comm: &str, within: Duration) -> Result<u32> {
    let until = Instant::now() + within;
    loop {
        let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(child) = children.split_whitespace().find_map(|c| c.parse::<u32>().ok())
            && fs::read_to_string(format!("/proc/{child}/comm")).is_ok_and(|c| c.trim() == comm)
        {
            return Ok(child);
        }
        if Instant::now() >= until {
            bail!("no {comm} under process {pid} after {} s", within.as_secs());
        }
        sleep(Duration::from_millis(50));
    }
}

/// Entries of /proc that are processes (kernel threads included).
fn proc_count() -> u32 {
    fs::read_dir("/proc")
        .map(|d| d.flatten().filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<u32>().is_ok())).count())
        .unwrap_or(0) as u32
}

/// BPF programs a process holds open (its kernel side, if any).
fn bpf_programs(pid: u32) -> Result<u32> {
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).with_context(|| format!("listing /proc/{pid}/fd"))?;
    Ok(
        fds.flatten()
            .filter(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:bpf-prog"))
            .count() as u32,
    )
}

/// One run: top as `user` for the settle time and the window.
fn run_once(numatrace: &Path, user: User, screen_log: &Path) -> Result<Run> {
    let prefix = match user {
        User::Unprivileged => "setpriv --reuid=nobody --regid=nogroup --clear-groups -- ",
        User::Root => "",
    };
    let command =
        format!("stty cols {COLUMNS} rows {LINES}; exec {prefix}{} top", quoted(&numatrace.display().to_string()));
    let log = fs::File::create(screen_log).with_context(|| format!("creating {}", screen_log.display()))?;
    let mut script = Command::new("script")
        .args(["-qc", &command, "/dev/null"])
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .context("starting `script` (util-linux) for top's terminal")?;
    let keys = script.stdin.take();
    let screen = Screen { script, keys };
    let pid = child_running(screen.script.id(), "numatrace", Duration::from_secs(10))?;
    sleep(SETTLE);
    let cpu = || {
        own_cpu_seconds(pid as i32)
            .with_context(|| format!("top (process {pid}) is gone; its screen is in {}", screen_log.display()))
    };
    let startup_cpu_s = cpu()?;
    let processes = proc_count();
    let started = Instant::now();
    sleep(WINDOW);
    let first_cpu_s = cpu()?;
    let seconds = started.elapsed().as_secs_f64();
    let steady_started = Instant::now();
    sleep(WINDOW);
    let end_cpu_s = cpu()?;
    let steady_seconds = steady_started.elapsed().as_secs_f64();
    let bpf_programs = bpf_programs(pid)?;
    screen.quit()?;
    Ok(Run {
        user,
        processes,
        startup_cpu_s,
        seconds,
        cpu_s: first_cpu_s - startup_cpu_s,
        steady_seconds,
        steady_cpu_s: end_cpu_s - first_cpu_s,
        bpf_programs,
    })
}

/// `rounds` runs as `nobody` and one as root, with [`IDLE_PROCESSES`] idle processes.
pub fn measure(numatrace: &Path, scratch: &Path, rounds: u32) -> Result<Top> {
    let binary = SharedBinary::of(numatrace)?;
    let _sleepers = Sleepers::start(IDLE_PROCESSES)?;
    let screen_log = scratch.join("top-screen.log");
    let mut out = Top {
        command: "numatrace top (1 s refresh, 200x50 terminal)".into(),
        idle_processes: IDLE_PROCESSES,
        runs: Vec::new(),
    };
    // The root run in the middle, so the machine's drift hits both users alike.
    let mut users = vec![User::Unprivileged; rounds.max(1) as usize];
    users.insert(users.len().div_ceil(2), User::Root);
    for (i, user) in users.into_iter().enumerate() {
        let run = run_once(&binary.path(), user, &screen_log)
            .with_context(|| format!("numatrace top, run {} as {}", i + 1, user.label()))?;
        eprintln!(
            "bench:   top run {} as {:<6} {} processes: {:.2} % of one core steady, {:.2} % in the first {:.0} s (start-up {:.3} s CPU, {} BPF programs)",
            i + 1,
            user.label(),
            run.processes,
            run.steady_percent(),
            run.percent(),
            run.seconds,
            run.startup_cpu_s,
            run.bpf_programs
        );
        out.runs.push(run);
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn run(user: User, cpu_s: f64, bpf_programs: u32) -> Run {
        Run {
            user,
            processes: 1100,
            startup_cpu_s: 0.1,
            seconds: 20.0,
            cpu_s: cpu_s * 2.0,
            steady_seconds: 20.0,
            steady_cpu_s: cpu_s,
            bpf_programs,
        }
    }

    /// Three runs as nobody (1.0, 1.5, 3.0 %) and one as root (1.2 %).
    pub(in super::super) fn sample() -> Top {
        Top {
            command: "numatrace top".into(),
            idle_processes: 1000,
            runs: vec![
                run(User::Unprivileged, 0.2, 0),
                run(User::Unprivileged, 0.3, 0),
                run(User::Root, 0.24, 0),
                run(User::Unprivileged, 0.6, 0),
            ],
        }
    }

    #[test]
    fn the_goal_takes_each_users_median() {
        let mut t = sample();
        assert_eq!(t.median_percent(User::Unprivileged), Some(1.5));
        assert!((t.median_percent(User::Root).unwrap() - 1.2).abs() < 1e-9);
        assert_eq!(t.goal_met(), Some(true));
        assert_eq!(t.median_first_percent(User::Unprivileged), Some(3.0), "the first window apart");
        assert_eq!(t.kernel_side(), "no kernel side attached (no BPF program held) as root");
        t.runs[2] = run(User::Root, 0.5, 7);
        assert_eq!(t.goal_met(), Some(false), "root's 2.5 % is over the goal");
        assert_eq!(t.kernel_side(), "a kernel side attached as root (7 BPF programs held)");
        assert_eq!(Top::default().goal_met(), None);
    }

    #[test]
    fn a_quoted_word_survives_the_shell() {
        assert_eq!(quoted("/a b/numatrace"), "'/a b/numatrace'");
        assert_eq!(quoted("it's"), r"'it'\''s'");
    }

    #[test]
    fn bpf_programs_of_a_process_without_any_is_zero() {
        assert_eq!(bpf_programs(std::process::id()).unwrap(), 0);
    }
}
