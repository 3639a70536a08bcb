//! `--stacks` on two nodes (boots QEMU): the init-thread and spill
//! workloads, built with frame pointers and debug info, traced with
//! `--stacks` in one 2-node guest (Debian's 6.1 kernel: its verifier takes
//! the stack programs, its frame-pointer walk gives whole stacks).
//!
//! init-thread: the capture comes back to this machine (base64 on the
//! guest's stdout) and is read here by the same numatrace build:
//! - the top call site of `first_touch_by_other_thread` is the init thread's
//!   `Buffer::touch` called from `scenarios::init_thread`, at the lines of
//!   the write and of the initialising loop's call, and holds nearly all of
//!   the cause's pages;
//! - `numatrace export --format folded --by stack` roots that stack at the
//!   cause and the init thread's name;
//! - speedscope (served on loopback, loaded in headless Chromium) lists the
//!   cause, the thread and the workload's frames in its DOM.
//!
//! spill: numatrace's report made in the guest: the top call site of
//! `allocation_spill` is `Region::touch`'s loop called from `drift::spill`,
//! at their lines, with nearly all of the spilled pages.
//!
//! On this one-node machine a capture has no cause, so its folded export by
//! stack is empty: only a guest with two nodes shows where remote memory came from.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

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
const SPILL_CAUSE: &str = "allocation_spill";
/// The spill's allocating loop, and its caller.
const REGION_TOUCH: &str = "numatrace_workloads::numa::Region::touch";
const SPILL: &str = "numatrace_workloads::drift::spill";
/// The workload binary's entry: a stack that reaches it was walked whole
/// through the workload's own frames.
const MAIN: &str = "numatrace_workload::main";

/// The workloads' sources, for the lines the frames must name.
const MEMORY_RS: &str = include_str!("../../workloads/src/memory.rs");
const NUMA_RS: &str = include_str!("../../workloads/src/numa.rs");
const SCENARIOS_RS: &str = include_str!("../../workloads/src/scenarios.rs");
const DRIFT_RS: &str = include_str!("../../workloads/src/drift.rs");

/// What the guest gave back.
struct Guest {
    /// init-thread: the workload's ground truth and its capture, brought back.
    init: Traced,
    /// spill: the workload's ground truth and numatrace's report made in the guest.
    spill: Reported,
}

struct Traced {
    truth: Value,
    capture: PathBuf,
}

struct Reported {
    truth: Value,
    report: Value,
}

/// Where the captures and exports are kept (for whoever reads a failure).
fn dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab-stacks");
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Both scenarios in one 2-node guest, once per test process. init-thread:
/// the workload's stdout is its ground truth line (then numatrace's report);
/// the guest prints that line, then the capture in base64. spill: its ground
/// truth line, then numatrace's JSON report.
fn guest() -> &'static Guest {
    static GUEST: OnceLock<Result<Guest, String>> = OnceLock::new();
    GUEST.get_or_init(run_guest).as_ref().unwrap_or_else(|e| panic!("{e}"))
}

fn run_guest() -> Result<Guest, String> {
    let workload = workload_with_frame_pointers().display().to_string();
    let init = format!(
        "numatrace --stacks -o /tmp/stacks.ntrace -- {workload} init-thread --mib 32 --workers 2 --seconds 3 \
         >/tmp/out 2>/tmp/err || {{ cat /tmp/err >&2; exit 1; }}; cat /tmp/err >&2; \
         head -n 1 /tmp/out; base64 /tmp/stacks.ntrace"
    );
    let spill: Vec<String> =
        ["numatrace", "--stacks", "--json", "--", &workload, "spill", "--extra-mib", "48"].map(String::from).into();
    let commands = [
        GuestCommand { argv: vec!["sh".into(), "-c".into(), init], balancing: Balancing::Off },
        GuestCommand { argv: spill, balancing: Balancing::Off },
    ];
    // 384 MiB a node, as lab_scenarios: the spill fills its node, and a
    // smaller node is fewer pages to touch under emulation.
    let run = guest::run("--stacks", &guest::options(2, 384, Duration::from_secs(600)), &commands)?;
    eprintln!("lab --stacks: boot {:.1} s, guest total {:.1} s", run.boot_s, run.total_s);
    let output = |i: usize, name: &str| -> Result<String, String> {
        let result = &run.results[i];
        let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
        fs::write(dir().join(format!("{name}.out")), &stdout).map_err(|e| e.to_string())?;
        if result.exit_code != 0 {
            return Err(format!(
                "{name}: exit status {} (console log {}): {stdout}",
                result.exit_code,
                run.console_log.display()
            ));
        }
        Ok(stdout)
    };
    let split = |name: &str, stdout: &str| -> Result<(Value, String), String> {
        let (line, rest) = stdout.split_once('\n').ok_or_else(|| format!("{name}: no ground truth line: {stdout}"))?;
        let truth = serde_json::from_str(line).map_err(|e| format!("{name}: the ground truth line {line:?}: {e}"))?;
        Ok((truth, rest.to_string()))
    };

    let (truth, encoded) = split("init-thread", &output(0, "init-thread")?)?;
    let encoded_path = dir().join("init-thread.ntrace.b64");
    fs::write(&encoded_path, encoded).map_err(|e| e.to_string())?;
    let capture = dir().join("init-thread.ntrace");
    let decoded = Command::new("base64").arg("-d").arg(&encoded_path).output().expect("base64 (coreutils) runs");
    if !decoded.status.success() {
        return Err(format!("base64 -d: {}", String::from_utf8_lossy(&decoded.stderr)));
    }
    fs::write(&capture, decoded.stdout).map_err(|e| e.to_string())?;

    let (spill_truth, report) = split("spill", &output(1, "spill")?)?;
    let report = serde_json::from_str(&report).map_err(|e| format!("spill: the report is not JSON ({e}): {report}"))?;
    Ok(Guest { init: Traced { truth, capture }, spill: Reported { truth: spill_truth, report } })
}

/// The line (1-based) of `source` holding `code`, the first at or after the line holding `within`.
fn line_of(source: &str, within: &str, code: &str) -> u64 {
    let lines: Vec<&str> = source.lines().collect();
    let from = lines.iter().position(|l| l.contains(within)).unwrap_or_else(|| panic!("no {within:?} in the source"));
    let at =
        lines[from..].iter().position(|l| l.contains(code)).unwrap_or_else(|| panic!("no {code:?} after {within:?}"));
    (from + at + 1) as u64
}

/// The frame of `function` in `frames`: its index, after checking it names
/// `file` (a path ending) and `line`.
fn frame_at(frames: &[Value], function: &str, file: &str, line: u64) -> usize {
    let at = frames
        .iter()
        .position(|f| f["function"] == function)
        .unwrap_or_else(|| panic!("{function} not in {frames:#?}"));
    let frame = &frames[at];
    assert!(frame["file"].as_str().is_some_and(|f| f.ends_with(file)), "{function} is not in {file}: {frame:#}");
    assert_eq!(frame["line"].as_u64(), Some(line), "{function}'s line (in {file}): {frame:#}");
    at
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

/// The top site of the report's `kind` cause, after checking it holds
/// nearly all of the cause's pages and was run by `tid` alone.
fn top_site<'a>(report: &'a Value, kind: &str, tid: u64) -> &'a Value {
    let causes = report["causes"].as_array().expect("causes");
    let cause = causes.iter().find(|c| c["kind"] == kind).unwrap_or_else(|| panic!("no {kind}: {causes:#?}"));
    let site = &cause["sites"][0];
    assert!(site["frames"].is_array(), "no sites: {cause:#}");
    assert_eq!(site["threads"], serde_json::json!([tid]), "{site:#}");
    let site_pages = site["pages"].as_u64().unwrap();
    let cause_pages = cause["pages"].as_u64().unwrap();
    assert!(site_pages * 10 >= cause_pages * 9, "the loop's site has {site_pages} of the cause's {cause_pages} pages");
    site
}

#[test]
#[ignore = "boots QEMU"]
fn where_remote_memory_came_from_opens_in_speedscope() {
    let dir = dir();
    let Traced { truth, capture } = &guest().init;
    let init_tid = truth["init"]["tid"].as_u64().expect("the init thread's tid");
    let init_pages = truth["init"]["first_touch_pages"].as_u64().expect("the init thread's pages");
    assert!(init_pages >= 8192, "{truth}");

    // The report (a pure function of the capture) on this machine: the top
    // site of the cause is the init thread's loop, with its lines.
    let capture_arg = capture.to_str().unwrap();
    let report: Value = serde_json::from_str(&numatrace(&["report", capture_arg, "--json"])).unwrap();
    let site = top_site(&report, CAUSE, init_tid);
    let frames = site["frames"].as_array().unwrap();
    let touch =
        frame_at(frames, TOUCH, "workloads/src/memory.rs", line_of(MEMORY_RS, "pub fn touch", "write_volatile"));
    let init = frame_at(
        frames,
        INIT,
        "workloads/src/scenarios.rs",
        line_of(SCENARIOS_RS, "pub fn init_thread", "buf.touch(i)"),
    );
    assert!(touch < init, "innermost first: {frames:#?}");
    let site_pages = site["pages"].as_u64().unwrap();
    eprintln!("top site of {CAUSE}: {site_pages} pages, {} <- {}", label(&frames[touch]), label(&frames[init]));

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
}

#[test]
#[ignore = "boots QEMU"]
fn the_spills_top_site_is_its_allocating_loop() {
    let Reported { truth, report } = &guest().spill;
    let remote = truth["remote_pages"].as_u64().expect("the spill's remote pages");
    assert!(remote > 4096, "the workload did not spill: {truth}");
    let site = top_site(report, SPILL_CAUSE, truth["tid"].as_u64().expect("the spill's tid"));
    let frames = site["frames"].as_array().unwrap();
    let touch =
        frame_at(frames, REGION_TOUCH, "workloads/src/numa.rs", line_of(NUMA_RS, "pub fn touch", "write_volatile"));
    let spill = frame_at(frames, SPILL, "workloads/src/drift.rs", line_of(DRIFT_RS, "pub fn spill", "region.touch("));
    assert!(touch < spill, "innermost first: {frames:#?}");
    eprintln!(
        "top site of {SPILL_CAUSE}: {} of {remote} remote pages, {} <- {}",
        site["pages"],
        label(&frames[touch]),
        label(&frames[spill])
    );
}

/// The 6.1 guest's verifier takes the first-touch programs with their
/// stack calls (the cheap hook attaches, every stack is kept), and its
/// frame-pointer walk goes from both loops through the workload's `main` to
/// the process's entry. Other stacks of the process (the loader's and
/// glibc's, built without frame pointers) stop early: the report counts
/// them as truncated, with the few pages they placed, and keeps the
/// frame-pointer hint for when truncated stacks placed a real share.
#[test]
#[ignore = "boots QEMU"]
fn the_guest_kernel_takes_whole_stacks() {
    let Guest { init, spill } = guest();
    let init_report: Value =
        serde_json::from_str(&numatrace(&["report", init.capture.to_str().unwrap(), "--json"])).unwrap();
    for (name, report, kind) in [("init-thread", &init_report, CAUSE), ("spill", &spill.report, SPILL_CAUSE)] {
        let first_touches = report["sources"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "first touches"))
            .unwrap_or_else(|| panic!("{name}: first touches not listed: {}", report["sources"]));
        assert_eq!(first_touches["hooks"], serde_json::json!(["raw_tracepoint:mm_page_alloc"]), "{name}");
        let stacks = &report["stacks"];
        assert!(stacks["taken"].as_u64().is_some_and(|n| n > 0), "{name}: {stacks}");
        assert_eq!(stacks["lost"], 0, "{name}: {stacks}");
        assert_eq!(report["kernel_counters"]["lost_stacks"], 0, "{name}");
        let causes = report["causes"].as_array().unwrap();
        let site = &causes.iter().find(|c| c["kind"] == kind).unwrap()["sites"][0];
        let frames = site["frames"].as_array().unwrap();
        let functions: Vec<&str> = frames.iter().map(|f| f["function"].as_str().unwrap_or("?")).collect();
        assert!(functions.contains(&MAIN), "{name}: the walk stopped before {MAIN}: {functions:#?}");
        // Past it too, to the C entry: the report does not count this stack
        // as truncated (glibc's own frames, without frame pointers, end it).
        assert!(
            functions.iter().rev().take(3).any(|f| *f == "main"),
            "{name}: the walk stopped before the process's entry: {functions:#?}"
        );
        let (pages, truncated) =
            (stacks["pages"].as_u64().unwrap_or(0), stacks["truncated_pages"].as_u64().unwrap_or(0));
        assert!(
            pages > 0 && truncated * 10 < pages,
            "{name}: truncated stacks placed {truncated} of {pages} pages: {stacks}"
        );
        assert!(stacks["hint"].is_null(), "{name}: the frame-pointer hint for a program built with them: {stacks}");
        eprintln!("{name}: stacks {stacks}; top site's frames: {functions:?}");
    }
}
