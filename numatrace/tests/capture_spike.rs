//! The spike ring against the real kernel (needs root): SIGUSR1 saves the
//! window before it and the --after window, as a readable capture.
use std::{
    process::{Command, Stdio},
    time::Duration,
};

const NUMATRACE: &str = env!("CARGO_BIN_EXE_numatrace");

#[test]
fn sigusr1_saves_the_last_window() {
    let dir = std::env::temp_dir().join(format!("numatrace-spike-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = dir.join("incident");
    let live = Command::new(NUMATRACE)
        .args(["--json", "--ring", "20s", "--after", "500ms", "-o", prefix.to_str().unwrap(), "--", NUMATRACE, "workload", "init-thread", "--mib", "16", "--seconds", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    unsafe { libc::kill(live.id() as i32, libc::SIGUSR1) };
    let out = live.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("trigger at") && stderr.contains("SIGUSR1"), "{stderr}");
    let saved = dir.join("incident-1.ntrace");
    let capture = numatrace::capture::read_path(&saved).unwrap_or_else(|e| panic!("{}: {e}\n{stderr}", saved.display()));
    assert!(capture.complete);
    assert_eq!(capture.end.stopped_by, "trigger: SIGUSR1");
    let report = capture.report();
    // The 16 MiB the init thread touched at the start are inside the 20 s window.
    assert!(report.totals.first_touch_pages >= 4096, "{:?}", report.totals);
    assert!(!dir.join("incident-2.ntrace").exists());
}
