//! Capture files against the real kernel (needs root): `numatrace report`
//! prints exactly what the live run printed, a killed run stays readable,
//! and bad files give one clear error line.
use std::{
    process::{Command, Stdio},
    time::Duration,
};

const NUMATRACE: &str = env!("CARGO_BIN_EXE_numatrace");

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("numatrace-capture-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The report part of a live run's stdout (the workload prints a JSON line first).
fn report_part(stdout: &str, json: bool) -> &str {
    let marker = if json { "\n{\n" } else { "\nnumatrace " };
    match stdout.find(marker) {
        Some(i) => &stdout[i + 1..],
        None => stdout,
    }
}

fn check_report_matches_live(name: &str, json: bool, workload: &[&str]) {
    check_report_matches_live_with(name, json, &[], workload);
}

fn check_report_matches_live_with(name: &str, json: bool, flags: &[&str], workload: &[&str]) {
    let file = tmp(name);
    let file_arg = file.to_str().unwrap();
    let mut args = flags.to_vec();
    args.extend(["-o", file_arg]);
    if json {
        args.push("--json");
    }
    args.extend(["--", NUMATRACE, "workload"]);
    args.extend(workload);
    let live = Command::new(NUMATRACE).args(&args).output().unwrap();
    let live_err = String::from_utf8_lossy(&live.stderr);
    assert!(live.status.success(), "{live_err}");
    assert!(live_err.contains("saved"), "{live_err}");
    let mut report_args = vec!["report", file_arg];
    if json {
        report_args.push("--json");
    }
    let replay = Command::new(NUMATRACE).args(&report_args).output().unwrap();
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    assert!(
        replay.stderr.is_empty(),
        "a complete capture reads without warnings: {}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let live_out = String::from_utf8(live.stdout).unwrap();
    let replay_out = String::from_utf8(replay.stdout).unwrap();
    assert_eq!(report_part(&live_out, json), replay_out);
    if json {
        let report: serde_json::Value = serde_json::from_str(&replay_out).unwrap();
        assert!(report["totals"]["first_touch_pages"].as_u64().unwrap() > 0);
    }
}

#[test]
#[ignore = "needs root"]
fn report_of_a_capture_is_the_live_json_byte_for_byte() {
    check_report_matches_live("hop.ntrace", true, &["hop", "--times", "50", "--threads", "2"]);
    check_report_matches_live("init.ntrace", true, &["init-thread", "--mib", "32", "--seconds", "0.5"]);
}

#[test]
#[ignore = "needs root"]
fn report_of_a_capture_is_the_live_text() {
    check_report_matches_live("text.ntrace", false, &["touch", "--pages", "3000", "--threads", "2"]);
}

#[test]
#[ignore = "needs root"]
fn report_of_a_capture_with_stacks_is_the_live_output_byte_for_byte() {
    let init = ["init-thread", "--mib", "16", "--seconds", "0.3"];
    check_report_matches_live_with("stacks.ntrace", true, &["--stacks"], &init);
    check_report_matches_live_with("stacks-text.ntrace", false, &["--stacks"], &init);
}

#[test]
#[ignore = "needs root"]
fn a_killed_capture_still_reports_what_it_saw() {
    let file = tmp("killed.ntrace");
    let mut live = Command::new(NUMATRACE)
        .args([
            "-o",
            file.to_str().unwrap(),
            "--",
            NUMATRACE,
            "workload",
            "init-thread",
            "--mib",
            "32",
            "--seconds",
            "6",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The file fills while the capture runs: wait until the init thread's
    // 32 MiB of first touches are in it (flushed within half a second).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pages: u64 = numatrace_core::capture::read_path(&file)
            .map(|c| {
                c.events
                    .iter()
                    .map(|e| if let numatrace_core::event::Event::FirstTouch(f) = e { f.pages } else { 0 })
                    .sum()
            })
            .unwrap_or(0);
        if pages >= 8192 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the capture file never held the first touches ({pages} pages)");
        assert!(live.try_wait().unwrap().is_none(), "numatrace ended before it was killed");
        std::thread::sleep(Duration::from_millis(100));
    }
    live.kill().unwrap();
    live.wait().unwrap();
    let out = Command::new(NUMATRACE).args(["report", "--json", file.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // CI once saw this fail with nothing on stderr: say how it ended.
    assert!(out.status.success(), "numatrace report ended with {}: {stderr}", out.status);
    assert!(stderr.contains("no end record"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The workload is orphaned by the kill: end it.
    if let Some(pid) = report["target"]["pid"].as_i64() {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    assert_eq!(report["stopped_by"], "capture cut short");
    assert!(report["totals"]["first_touch_pages"].as_u64().unwrap() >= 8192, "{}", report["totals"]);
    let duration = report["duration_s"].as_f64().unwrap();
    assert!(duration > 0.0 && duration < 30.0, "duration {duration}");
}

#[test]
fn bad_files_give_one_clear_error_line() {
    let not_capture = tmp("not.ntrace");
    std::fs::write(&not_capture, "hello").unwrap();
    for (path, want) in
        [(not_capture.to_str().unwrap(), "not a numatrace capture"), ("/nonexistent/x.ntrace", "No such file")]
    {
        let out = Command::new(NUMATRACE).args(["report", path]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("numatrace: error: reading capture") && stderr.contains(want), "{stderr}");
    }
}

/// `numatrace diff` on two real captures: one line saying fixed or not with
/// the figures, and the same as fields in --json. On a one-node host every
/// page is local, so the verdict is "fixed" at 0 %, measured on the
/// process's resident memory (the capture's snapshot).
#[test]
#[ignore = "needs root"]
fn diff_of_two_captures_says_fixed_or_not_in_one_line() {
    let (a, b) = (tmp("diff-a.ntrace"), tmp("diff-b.ntrace"));
    for f in [&a, &b] {
        let out = Command::new(NUMATRACE)
            .args([
                "-o",
                f.to_str().unwrap(),
                "--",
                NUMATRACE,
                "workload",
                "init-thread",
                "--mib",
                "16",
                "--seconds",
                "1.5",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let text = Command::new(NUMATRACE).args(["diff", a.to_str().unwrap(), b.to_str().unwrap()]).output().unwrap();
    assert!(text.status.success(), "{}", String::from_utf8_lossy(&text.stderr));
    let text = String::from_utf8(text.stdout).unwrap();
    let first = text.lines().next().unwrap_or_default();
    let multi_node = std::fs::read_dir("/sys/devices/system/node")
        .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("node")).count())
        .unwrap_or(1)
        > 1;
    if !multi_node {
        assert!(first.starts_with("fixed: remote share 0 % -> 0 % ("), "{text}");
        assert!(first.contains("by resident by run time"), "{text}");
    }
    assert!(first.starts_with("fixed: ") || first.starts_with("not fixed: "), "{text}");
    let json = Command::new(NUMATRACE)
        .args(["diff", "--json", "--fixed-below", "55", a.to_str().unwrap(), b.to_str().unwrap()])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(v["fixed"].is_boolean(), "{v}");
    assert_eq!(v["fixed_below"], serde_json::json!(0.55));
    assert!(v["remote_after"]["pages"].as_u64().unwrap() >= 4096, "16 MiB resident: {v}");
    let bad = Command::new(NUMATRACE)
        .args(["diff", "--fixed-below", "150", a.to_str().unwrap(), b.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not between 0 and 100"));
}
