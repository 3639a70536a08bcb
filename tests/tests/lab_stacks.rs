//! `--stacks` on two nodes (boots QEMU): the init-thread workload, built
//! with frame pointers and debug info, traced with `--stacks` in a 2-node
//! guest. The capture comes back to this machine (base64 on the guest's
//! stdout) and is read here by the same numatrace build:
//! - the top call site of `first_touch_by_other_thread` is the init thread's
//!   `Buffer::touch` called from `scenarios::init_thread`, with their source
//!   lines, and holds nearly all of the cause's pages;
//! - `numatrace export --format folded --by stack` roots that stack at the
//!   cause and the init thread's name;
//! - speedscope (served on loopback, loaded in headless Chromium) lists the
//!   cause, the thread and the workload's frames in its DOM.
//!
//! On this one-node machine a capture has no cause, so its folded export by
//! stack is empty: only a guest with two nodes shows where remote memory came from.
use std::{fs, path::PathBuf, process::Command, time::Duration};

use numatrace_tests::{
    guest,
    viewers::{folded_frames, lists_frame, serve, speedscope_dom, speedscope_release},
    workload_with_frame_pointers,
};
use serde_json::Value;
use xtask::lab::{Balancing, GuestCommand};

const CAUSE: &str = "first_touch_by_other_thread";
/// Where the init thread first-touches the buffer, and its caller.
const TOUCH: &str = "numatrace_workloads::memory::Buffer::touch";
const INIT: &str = "numatrace_workloads::scenarios::init_thread";

/// What the guest gave back: the workload's ground truth and the capture.
struct Traced {
    truth: Value,
    capture: PathBuf,
}

/// The init-thread workload traced with --stacks in a 2-node guest; its
/// capture saved in `dir`. The workload's stdout is its ground truth line
/// (then numatrace's report); the guest prints that line, then the capture
/// in base64.
fn trace_in_guest(dir: &std::path::Path) -> Traced {
    let workload = workload_with_frame_pointers();
    let script = format!(
        "numatrace --stacks -o /tmp/stacks.ntrace -- {} init-thread --mib 32 --workers 2 --seconds 3 \
         >/tmp/out 2>/tmp/err || {{ cat /tmp/err >&2; exit 1; }}; cat /tmp/err >&2; \
         head -n 1 /tmp/out; base64 /tmp/stacks.ntrace",
        workload.display()
    );
    let command = GuestCommand { argv: vec!["sh".into(), "-c".into(), script], balancing: Balancing::Off };
    let run = guest::run("--stacks", &guest::options(2, 512, Duration::from_secs(600)), &[command])
        .unwrap_or_else(|e| panic!("{e}"));
    let result = &run.results[0];
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    assert_eq!(result.exit_code, 0, "the guest's command failed (console log {}): {stdout}", run.console_log.display());
    let (truth, encoded) = stdout.split_once('\n').expect("a ground truth line, then the capture");
    let truth: Value = serde_json::from_str(truth).unwrap_or_else(|e| panic!("the ground truth line {truth:?}: {e}"));
    let encoded_path = dir.join("stacks.ntrace.b64");
    fs::write(&encoded_path, encoded).unwrap();
    let capture = dir.join("stacks.ntrace");
    let decoded = Command::new("base64").arg("-d").arg(&encoded_path).output().expect("base64 (coreutils) runs");
    assert!(decoded.status.success(), "base64 -d: {}", String::from_utf8_lossy(&decoded.stderr));
    fs::write(&capture, decoded.stdout).unwrap();
    Traced { truth, capture }
}

/// The workspace's debug numatrace: the build the guest ran.
fn numatrace(args: &[&str]) -> String {
    let (_, target) = xtask::static_build::workspace_dirs().unwrap();
    let exe = target.join("debug").join("numatrace");
    let out = Command::new(&exe).args(args).output().unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
    assert!(out.status.success(), "numatrace {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A frame of the report's JSON as `export --by stack` labels it:
/// `function (file's last two components:line)`.
fn label(frame: &Value) -> String {
    let function = frame["function"].as_str().unwrap_or_default();
    let file = frame["file"].as_str().unwrap_or_default();
    let short: Vec<&str> = file.rsplit('/').take(2).collect();
    format!("{function} ({}/{}:{})", short[1], short[0], frame["line"])
}

#[test]
#[ignore = "boots QEMU"]
fn where_remote_memory_came_from_opens_in_speedscope() {
    let dir = std::env::temp_dir().join(format!("numatrace-lab-stacks-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let Traced { truth, capture } = trace_in_guest(&dir);
    let init_tid = truth["init"]["tid"].as_u64().expect("the init thread's tid");
    let init_pages = truth["init"]["first_touch_pages"].as_u64().expect("the init thread's pages");
    assert!(init_pages >= 8192, "{truth}");

    // The report (a pure function of the capture) on this machine: the top
    // site of the cause is the init thread's loop, with its lines.
    let capture_arg = capture.to_str().unwrap();
    let report: Value = serde_json::from_str(&numatrace(&["report", capture_arg, "--json"])).unwrap();
    let causes = report["causes"].as_array().expect("causes");
    let cause = causes.iter().find(|c| c["kind"] == CAUSE).unwrap_or_else(|| panic!("no {CAUSE}: {causes:#?}"));
    let site = &cause["sites"][0];
    let frames = site["frames"].as_array().unwrap_or_else(|| panic!("no sites: {cause:#}"));
    let at = |name: &str| {
        frames.iter().position(|f| f["function"] == name).unwrap_or_else(|| panic!("{name} not in {frames:#?}"))
    };
    let (touch, init) = (at(TOUCH), at(INIT));
    assert!(touch < init, "innermost first: {frames:#?}");
    assert!(frames[init]["file"].as_str().is_some_and(|f| f.ends_with("workloads/src/scenarios.rs")), "{frames:#?}");
    assert!(frames[init]["line"].as_u64().is_some() && frames[touch]["line"].as_u64().is_some(), "{frames:#?}");
    assert_eq!(site["threads"], serde_json::json!([init_tid]), "{site:#}");
    let site_pages = site["pages"].as_u64().unwrap();
    let cause_pages = cause["pages"].as_u64().unwrap();
    assert!(site_pages * 10 >= cause_pages * 9, "the loop's site has {site_pages} of the cause's {cause_pages} pages");
    eprintln!(
        "top site of {CAUSE}: {site_pages} of {cause_pages} pages, {} <- {}",
        label(&frames[touch]),
        label(&frames[init])
    );

    // The folded export by stack: the loop's stack under the cause and the init thread.
    let folded = numatrace(&["export", capture_arg, "--format", "folded", "--by", "stack", "-o", "-"]);
    let (init_label, touch_label) = (label(&frames[init]), label(&frames[touch]));
    let line = folded
        .lines()
        .find(|l| l.contains(&init_label) && l.contains(&touch_label))
        .unwrap_or_else(|| panic!("no stack through {init_label} and {touch_label}:\n{folded}"));
    let (stack, count) = line.rsplit_once(' ').unwrap();
    let stack: Vec<&str> = stack.split(';').collect();
    assert_eq!(stack[..2], [CAUSE, "init"], "rooted at the cause and the thread: {line}");
    let init_at = stack.iter().position(|f| *f == init_label).unwrap();
    let touch_at = stack.iter().position(|f| *f == touch_label).unwrap();
    assert!(init_at < touch_at, "outermost first: {line}");
    assert_eq!(count.parse::<u64>().unwrap(), site_pages, "{line}");
    fs::write(dir.join("stacks.folded"), &folded).unwrap();

    // speedscope lists every frame of the export, these among them.
    let addr = serve(speedscope_release(), dir.clone());
    let dom = speedscope_dom(addr, "stacks.folded");
    for frame in [CAUSE, "init", &init_label, &touch_label] {
        assert!(lists_frame(&dom, frame), "speedscope does not list {frame:?}");
    }
    for frame in folded_frames(&folded) {
        assert!(lists_frame(&dom, frame), "speedscope does not list the frame {frame:?}");
    }
    let _ = fs::remove_dir_all(&dir);
}
