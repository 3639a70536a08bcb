//! The spike ring against the real kernel (needs root): SIGUSR1 saves the
//! window before it and the --after window, as a readable capture, with the
//! kernel's counts over just that window.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

mod common;
use common::start_tracing;

const NUMATRACE: &str = env!("CARGO_BIN_EXE_numatrace");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("numatrace-spike-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on our own child, which has not been reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

/// Waits (at most 30 s) until `path` exists.
fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} was never written", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root"]
fn sigusr1_saves_the_last_window() {
    let dir = scratch("window");
    let prefix = dir.join("incident");
    let prefix = prefix.to_str().expect("temp path is UTF-8");
    let (live, stderr) = start_tracing(Command::new(NUMATRACE).args([
        "--json",
        "--ring",
        "20s",
        "--after",
        "500ms",
        "-o",
        prefix,
        "--",
        NUMATRACE,
        "workload",
        "init-thread",
        "--mib",
        "16",
        "--seconds",
        "4",
    ]));
    std::thread::sleep(Duration::from_millis(2500));
    signal(&live, libc::SIGUSR1);
    let out = live.wait_with_output().expect("numatrace ends");
    let stderr = stderr.join().unwrap_or_default();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("trigger at") && stderr.contains("SIGUSR1"), "{stderr}");
    let saved = dir.join("incident-1.ntrace");
    let capture =
        numatrace_core::capture::read_path(&saved).unwrap_or_else(|e| panic!("{}: {e}\n{stderr}", saved.display()));
    assert!(capture.complete);
    assert_eq!(capture.end.stopped_by.to_string(), "trigger: SIGUSR1");
    let report = capture.report();
    // The 16 MiB the init thread touched at the start are inside the 20 s window.
    assert!(report.totals.first_touch_pages >= 4096, "{:?}", report.totals);
    assert!(!dir.join("incident-2.ntrace").exists());
}

/// Migrations within a node are only counted in the kernel (not sent), so a
/// window holds them only through the counter readings at its two ends: the
/// window's migrations are the kernel's count over the window, a part of the
/// run's, not 0 (as they were when a window carried events only).
#[test]
#[ignore = "needs root"]
fn a_window_carries_the_kernels_counts_over_just_that_window() {
    let dir = scratch("counts");
    let prefix = dir.join("incident");
    let prefix = prefix.to_str().expect("temp path is UTF-8");
    let (live, stderr) = start_tracing(Command::new(NUMATRACE).args([
        "--json",
        "--ring",
        "1s",
        "--after",
        "500ms",
        "-o",
        prefix,
        "--",
        NUMATRACE,
        "workload",
        "hop",
        "--times",
        "1000000000",
    ]));
    std::thread::sleep(Duration::from_millis(1500));
    signal(&live, libc::SIGUSR1);
    let saved = dir.join("incident-1.ntrace");
    wait_for(&saved);
    std::thread::sleep(Duration::from_millis(500));
    signal(&live, libc::SIGINT);
    let out = live.wait_with_output().expect("numatrace ends");
    let stderr = stderr.join().unwrap_or_default();
    assert!(out.status.success(), "{stderr}");
    let run: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("report is JSON ({e})\n{stderr}"));
    let run_migrations = run["totals"]["migrations"].as_u64().expect("run totals");

    let capture =
        numatrace_core::capture::read_path(&saved).unwrap_or_else(|e| panic!("{}: {e}\n{stderr}", saved.display()));
    let report = capture.report();
    // 1 s before the trigger and 0.5 s after, each end moved to a counter
    // reading (taken about every 100 ms).
    assert!((1.3..=2.0).contains(&capture.end.duration_s), "window of {} s", capture.end.duration_s);
    let window = report.totals.migrations;
    assert!(window > 100, "the workload hops all the time: {:?}", report.totals);
    assert!(window < run_migrations, "a window of the run holds less than the run: {window} of {run_migrations}");
    // Sent (cross-node) plus counted (within a node) against the kernel's
    // count of every migration over the same window. The two counters are
    // read one after the other while the workload hops: a few apart at most.
    let counted_by_kernel = report.kernel_counters["task_migrations"];
    assert!(
        window.abs_diff(counted_by_kernel) <= 2 + counted_by_kernel / 100,
        "{window} vs the kernel's {counted_by_kernel}"
    );
    assert_eq!(report.unread_events, 0);
}
