//! `--stacks` against this kernel (needs root): the init-thread workload,
//! built with frame pointers, traced with --stacks. The stack that placed
//! the init thread's memory names the initialising function and its source
//! line; the capture replays byte for byte; the folded export by stack has
//! it; and a stripped binary's capture shows module+offset, then the
//! functions once `report --symbols DIR` is given the unstripped binary.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use numatrace_core::{capture::read_path, stacks::StackKey};
use numatrace_tests::workload_with_frame_pointers;

const NUMATRACE: &str = env!("CARGO_BIN_EXE_numatrace");

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("numatrace-stacks-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Traces `workload init-thread` with --stacks into `file`; returns the
/// live stdout's report (JSON) and the init thread's tid.
fn trace_init_thread(workload: &Path, file: &Path) -> (String, u32) {
    let out = Command::new(NUMATRACE)
        .args(["--stacks", "--json", "-o"])
        .arg(file)
        .arg("--")
        .arg(workload)
        .args(["init-thread", "--mib", "32", "--seconds", "0.5"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (line, report) = stdout.split_once('\n').unwrap();
    let ground: serde_json::Value = serde_json::from_str(line).unwrap();
    (report.to_string(), ground["init"]["tid"].as_u64().unwrap() as u32)
}

/// The stack that first touched most of the init thread's pages, and how many.
fn init_stack(file: &Path, init_tid: u32) -> (numatrace_core::stacks::Stack, u64, u64) {
    let capture = read_path(file).unwrap();
    let (_, agg) = capture.replay();
    let mut pages: std::collections::BTreeMap<StackKey, u64> = Default::default();
    let mut all = 0;
    for (_, key, touch) in agg.stacks.iter().filter(|(_, _, t)| t.tid == init_tid) {
        *pages.entry(key).or_default() += touch.pages;
        all += touch.pages;
    }
    let (key, most) = pages.into_iter().max_by_key(|(_, p)| *p).expect("the init thread's stacks");
    let table = capture.end.stacks.expect("the capture keeps its stacks");
    (table.get(key).expect("the stack is in the table").clone(), most, all)
}

fn names_init_thread(frames: &[numatrace_core::stacks::Frame]) -> bool {
    frames.iter().any(|f| {
        f.function.as_deref().is_some_and(|n| n.ends_with("scenarios::init_thread"))
            && f.file.as_deref().is_some_and(|p| p.ends_with("scenarios.rs"))
            && f.line.is_some()
    })
}

#[test]
#[ignore = "needs root"]
fn the_init_threads_stack_names_the_initialising_function_and_line() {
    let workload = workload_with_frame_pointers();
    let file = tmp("init.ntrace");
    let (live, init_tid) = trace_init_thread(workload, &file);
    let (stack, most, all) = init_stack(&file, init_tid);
    // 32 MiB touched page by page in one loop: nearly all from one stack.
    assert!(most >= 8192 && most * 10 >= all * 9, "{most} of {all} pages: {stack:?}");
    assert!(names_init_thread(&stack.frames), "{:#?}", stack.frames);
    let touch = stack.frames.iter().position(|f| f.function.as_deref().is_some_and(|n| n.ends_with("Buffer::touch")));
    let init = stack.frames.iter().position(|f| f.function.as_deref().is_some_and(|n| n.ends_with("init_thread")));
    assert!(touch < init && touch.is_some(), "innermost first: {:#?}", stack.frames);
    let report: serde_json::Value = serde_json::from_str(&live).unwrap();
    assert!(report["stacks"]["taken"].as_u64().unwrap() > 0, "{}", report["stacks"]);
    assert_eq!(report["stacks"]["taken"], report["kernel_counters"]["stacks"]);
    assert_eq!(report["kernel_counters"]["lost_stacks"], 0);

    // The capture replays byte for byte, stacks and all.
    let replay = Command::new(NUMATRACE).arg("report").arg(&file).arg("--json").output().unwrap();
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    assert_eq!(String::from_utf8(replay.stdout).unwrap(), live);
}

#[test]
#[ignore = "needs root"]
fn a_stripped_binary_shows_offsets_until_symbols_are_given() {
    let full = workload_with_frame_pointers();
    let stripped_dir = tmp("stripped");
    std::fs::create_dir_all(&stripped_dir).unwrap();
    let stripped = stripped_dir.join("numatrace-workload");
    let status = Command::new("strip").arg("-o").arg(&stripped).arg(full).status().expect("strip (binutils) runs");
    assert!(status.success());
    let file = tmp("stripped.ntrace");
    let (_, init_tid) = trace_init_thread(&stripped, &file);
    let (stack, _, _) = init_stack(&file, init_tid);
    assert!(!names_init_thread(&stack.frames), "{:#?}", stack.frames);
    assert!(
        stack.frames[0].function.is_none() && stack.frames[0].label().starts_with("numatrace-workload+0x"),
        "{:#?}",
        stack.frames
    );

    // The unstripped binary, found by name and build id in DIR.
    let symbols = full.parent().unwrap();
    let out =
        Command::new(NUMATRACE).arg("report").arg(&file).arg("--symbols").arg(symbols).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The report's causes need two nodes; the symbolized table is checked through the core.
    let mut capture = read_path(&file).unwrap();
    let table = capture.end.stacks.as_mut().unwrap();
    numatrace::symbolize::symbolize(table, &[symbols.to_path_buf()]);
    let again = table.get(stack.key).unwrap();
    assert!(names_init_thread(&again.frames), "{:#?}", again.frames);

    let bad = Command::new(NUMATRACE).arg("report").arg(&file).args(["--symbols", "/nonexistent"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&bad.stderr).lines().count(), 1, "{}", String::from_utf8_lossy(&bad.stderr));
}

#[test]
#[ignore = "needs root"]
fn folded_by_stack_without_stacks_is_one_clear_error() {
    let file = tmp("plain.ntrace");
    let out = Command::new(NUMATRACE)
        .arg("-o")
        .arg(&file)
        .args(["--", NUMATRACE, "workload", "touch", "--pages", "256", "--threads", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let export = Command::new(NUMATRACE)
        .arg("export")
        .arg(&file)
        .args(["--format", "folded", "--by", "stack", "-o", "-"])
        .output()
        .unwrap();
    assert_eq!(export.status.code(), Some(1));
    let err = String::from_utf8_lossy(&export.stderr);
    assert!(err.contains("--stacks") && err.lines().count() == 1, "{err}");
}
