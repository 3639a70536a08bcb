//! The exports opened by the viewers people use, not only parsed back: the
//! HTML timeline in headless Chromium (a screenshot and the DOM), the folded
//! stacks and the Trace Event JSON in speedscope, served on loopback and
//! opened in headless Chromium (`numatrace_tests::viewers`). Needs Debian's
//! `chromium` and speedscope's release files (both from `cargo xtask setup`). The
//! Perfetto UI cannot be had offline, so the JSON is checked against the
//! Trace Event Format it reads instead.
//!
//! Two captures go through every viewer: the synthetic two-node one (causes,
//! both node colours, balancer marks; any user) and a live trace of a
//! built-in example (needs root). The folded export by call stack
//! (`--by stack`) is rooted at causes, which need two nodes: this machine's
//! live captures have none, so the lab's `lab_stacks.rs` opens a 2-node
//! `--stacks` capture's in speedscope.
use std::{
    collections::BTreeSet,
    fs,
    io::BufReader,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use numatrace_core::{
    capture::{self, synthetic},
    event::Event,
    export::{Timeline, svg::NODE_COLOURS},
    report::Report,
};
use numatrace_tests::viewers::{
    chromium, escape, folded_frames, lists_frame, serve, speedscope_dom, speedscope_release,
};
use serde_json::Value;

const NUMATRACE: &str = env!("CARGO_BIN_EXE_numatrace");
/// The window Chromium renders the HTML export in; the screenshot has this size.
const WINDOW: (u32, u32) = (1200, 900);

fn tmpdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("numatrace-viewers-{}-{name}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn export(capture: &Path, format: &str, out: &Path) {
    let o = Command::new(NUMATRACE)
        .args(["export", capture.to_str().unwrap(), "--format", format, "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "export --format {format}: {}", String::from_utf8_lossy(&o.stderr));
}

/// What the exports must show, from the capture through numatrace-core.
struct Expected {
    timeline: Timeline,
    report: Report,
}

impl Expected {
    fn of(capture: &Path) -> Expected {
        let file = capture::read_path(capture).expect("the capture reads");
        let report = file.report();
        let timeline = Timeline::build(&file, &report);
        assert!(!timeline.lanes.is_empty(), "the capture has threads");
        Expected { timeline, report }
    }
}

/// The HTML export in Chromium: a screenshot of the window's size with the
/// node lanes drawn in their colours, and the causes and threads in the DOM.
fn html_in_chromium(capture: &Path, want: &Expected, dir: &Path) {
    let html = dir.join("timeline.html");
    export(capture, "html", &html);
    let url = format!("file://{}", html.display());
    let window = format!("--window-size={},{}", WINDOW.0, WINDOW.1);

    let started = Instant::now();
    let shot = dir.join("timeline.png");
    chromium(&[&window, &format!("--screenshot={}", shot.display())], &url);
    let mut decoder = png::Decoder::new(BufReader::new(fs::File::open(&shot).expect("chromium wrote the screenshot")))
        .read_info()
        .expect("the screenshot is a PNG");
    let mut pixels = vec![0; decoder.output_buffer_size().expect("a PNG of sane size")];
    let frame = decoder.next_frame(&mut pixels).expect("the PNG decodes");
    assert_eq!((frame.width, frame.height), WINDOW, "screenshot size");
    assert_eq!(frame.bit_depth, png::BitDepth::Eight);
    let channels = frame.color_type.samples();
    assert!(channels >= 3, "{:?}", frame.color_type);
    let rgb: Vec<[u8; 3]> = pixels[..frame.buffer_size()].chunks_exact(channels).map(|p| [p[0], p[1], p[2]]).collect();
    let background = [255, 255, 255];
    let drawn = rgb.iter().filter(|p| **p != background).count();
    let share = drawn as f64 / rgb.len() as f64;
    eprintln!("html screenshot: {:.1} % of pixels drawn ({:?})", share * 100.0, started.elapsed());
    assert!(share > 0.05, "only {:.2} % of the screenshot differs from the background", share * 100.0);
    for node in &want.timeline.nodes {
        let hex = NODE_COLOURS[*node as usize % NODE_COLOURS.len()];
        let colour: Vec<u8> = (0..3).map(|i| u8::from_str_radix(&hex[1 + 2 * i..3 + 2 * i], 16).unwrap()).collect();
        let painted = rgb.iter().filter(|p| p[..] == colour[..]).count();
        eprintln!("html screenshot: node {node} ({hex}): {painted} pixels");
        assert!(painted > 1000, "node {node}'s lanes ({hex}) are not in the screenshot: {painted} pixels");
    }

    let started = Instant::now();
    let dom = chromium(&["--virtual-time-budget=2000", "--dump-dom"], &url);
    eprintln!("html DOM: {} bytes ({:?})", dom.len(), started.elapsed());
    assert!(dom.contains("<svg"), "no timeline in the DOM");
    let causes = dom.find("<h2>Causes</h2>").expect("the causes section is in the DOM");
    let threads = dom.find("<h2>Threads</h2>").expect("the threads section is in the DOM");
    let section = &dom[causes..threads];
    if want.report.causes.is_empty() {
        assert!(section.contains("None attributed."), "{section}");
    }
    for cause in &want.report.causes {
        assert!(section.contains(&format!("<b>{}</b>", cause.kind.name())), "{} missing: {section}", cause.kind.name());
    }
    for lane in &want.timeline.lanes {
        let row = format!("<td>{}</td><td>{}</td>", lane.tid, escape(&lane.comm));
        assert!(dom[threads..].contains(&row), "thread {} {} not in the table", lane.comm, lane.tid);
        let label = format!("{} (tid {})", escape(&lane.comm), lane.tid);
        assert!(dom[..causes].contains(&label), "thread {} {} not on the timeline", lane.comm, lane.tid);
    }
}

/// The folded stacks in speedscope: every frame, thread names among them.
fn folded_in_speedscope(capture: &Path, want: &Expected, dir: &Path, addr: SocketAddr) {
    export(capture, "folded", &dir.join("timeline.folded"));
    let text = fs::read_to_string(dir.join("timeline.folded")).unwrap();
    let frames = folded_frames(&text);
    for lane in &want.timeline.lanes {
        assert!(frames.contains(format!("{} {}", lane.comm, lane.tid).as_str()), "{} missing: {text}", lane.comm);
    }
    let dom = speedscope_dom(addr, "timeline.folded");
    for frame in frames {
        assert!(lists_frame(&dom, frame), "speedscope does not list the frame {frame:?}");
    }
}

/// The Trace Event JSON in speedscope: one profile per thread, named after
/// the process and the thread, and the first thread's node slices as frames.
fn trace_json_in_speedscope(capture: &Path, want: &Expected, dir: &Path, addr: SocketAddr) {
    export(capture, "perfetto", &dir.join("timeline.json"));
    let trace: Value = serde_json::from_slice(&fs::read(dir.join("timeline.json")).unwrap()).unwrap();
    assert_trace_event_format(&trace, want);
    let dom = speedscope_dom(addr, "timeline.json");
    let t = &want.timeline;
    let lanes = t.lanes.len();
    assert!(dom.contains(&format!("(1/{lanes})")), "speedscope does not show {lanes} thread profiles");
    for lane in &t.lanes {
        let name = escape(&format!("{} (pid {}), {} (tid {})", t.process, t.pid, lane.comm, lane.tid));
        assert!(dom.contains(&format!("title=\"{name}\"")), "speedscope does not list {name}");
    }
    // speedscope names a slice's frame after its name and args: `node 0 {"cpu":0,"node":0}`.
    for segment in &t.lanes[0].segments {
        let node = segment.node.map_or("node ?".to_string(), |n| format!("node {n}"));
        let frame = format!(">{node} {{\"cpu\":");
        assert!(dom.contains(&frame), "{node} of the first thread not in speedscope");
    }
}

/// The Trace Event Format (the JSON Object Format: `traceEvents`, each event
/// with its phase's fields), as Perfetto and chrome://tracing read it.
fn assert_trace_event_format(trace: &Value, want: &Expected) {
    let events = trace["traceEvents"].as_array().expect("traceEvents is an array");
    if let Some(unit) = trace.get("displayTimeUnit") {
        assert!(unit == "ms" || unit == "ns", "displayTimeUnit {unit}");
    }
    let int = |e: &Value, k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{k} is not an integer: {e}"));
    let time = |e: &Value, k: &str| {
        let v = e[k].as_f64().unwrap_or_else(|| panic!("{k} is not a number: {e}"));
        assert!(v >= 0.0, "{k} < 0: {e}");
    };
    let (mut named, mut used) = (BTreeSet::new(), BTreeSet::new());
    for e in events {
        let ph = e["ph"].as_str().unwrap_or_else(|| panic!("no ph: {e}"));
        let name = e["name"].as_str().unwrap_or_else(|| panic!("no name: {e}"));
        assert_eq!(int(e, "pid"), u64::from(want.timeline.pid), "{e}");
        if let Some(args) = e.get("args") {
            assert!(args.is_object(), "args is not an object: {e}");
        }
        match ph {
            "M" => match name {
                "process_name" => assert!(e["args"]["name"].is_string(), "{e}"),
                "thread_name" => {
                    assert!(e["args"]["name"].is_string(), "{e}");
                    named.insert(int(e, "tid"));
                }
                "thread_sort_index" => {
                    int(e, "tid");
                    assert!(e["args"]["sort_index"].is_i64(), "{e}");
                }
                other => panic!("metadata event {other} is not one the format defines: {e}"),
            },
            "X" => {
                time(e, "ts");
                time(e, "dur");
                used.insert(int(e, "tid"));
            }
            "i" | "I" => {
                time(e, "ts");
                let scope = e.get("s").map_or("t", |s| s.as_str().expect("s is a string"));
                assert!(["g", "p", "t"].contains(&scope), "instant scope {scope}: {e}");
                if scope == "t" {
                    used.insert(int(e, "tid"));
                }
            }
            "C" => {
                time(e, "ts");
                let args = e["args"].as_object().unwrap_or_else(|| panic!("a counter without args: {e}"));
                assert!(!args.is_empty() && args.values().all(Value::is_number), "counter values: {e}");
            }
            other => panic!("phase {other} is not one numatrace writes: {e}"),
        }
    }
    let lanes: BTreeSet<u64> = want.timeline.lanes.iter().map(|l| u64::from(l.tid)).collect();
    assert_eq!(named, lanes, "a thread_name event for every thread");
    assert!(used.is_subset(&named), "events on unnamed threads: {:?}", used.difference(&named));
}

/// Every viewer on one capture.
fn every_viewer(capture: &Path, dir: &Path) {
    let want = Expected::of(capture);
    let release = speedscope_release();
    let started = Instant::now();
    html_in_chromium(capture, &want, dir);
    let addr = serve(release, dir.to_path_buf());
    folded_in_speedscope(capture, &want, dir, addr);
    trace_json_in_speedscope(capture, &want, dir, addr);
    eprintln!("viewers: all in {:?}", started.elapsed());
}

#[test]
fn synthetic_two_node_capture_in_every_viewer() {
    let dir = tmpdir("synthetic");
    let (start, events, end) = synthetic::init_thread_capture();
    let path = dir.join("synthetic.ntrace");
    capture::write_path(&path, &start, events.iter().map(Event::encode), &end).unwrap();
    let want = Expected::of(&path);
    assert_eq!(want.timeline.nodes, [0, 1], "the synthetic capture spans two nodes");
    assert!(!want.report.causes.is_empty(), "the synthetic capture has causes");
    every_viewer(&path, &dir);
}

#[test]
#[ignore = "needs root"]
fn live_capture_in_every_viewer() {
    let dir = tmpdir("live");
    let path = dir.join("live.ntrace");
    let o = Command::new(NUMATRACE)
        .args(["-o", path.to_str().unwrap(), "--", NUMATRACE, "example", "init-thread"])
        .args(["--mib", "16", "--workers", "2", "--seconds", "0.5"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = Expected::of(&path);
    let comms: BTreeSet<&str> = want.timeline.lanes.iter().map(|l| l.comm.as_str()).collect();
    assert!(comms.contains("init") && comms.contains("worker-1"), "{comms:?}");
    every_viewer(&path, &dir);
}

/// A capture that cannot be read, or an output that cannot be written, is
/// one error line and exit 1.
#[test]
fn export_of_a_bad_file_is_one_clear_line() {
    let dir = tmpdir("bad");
    let not_capture = dir.join("not.ntrace");
    fs::write(&not_capture, "hello").unwrap();
    let (start, events, end) = synthetic::init_thread_capture();
    let good = dir.join("good.ntrace");
    capture::write_path(&good, &start, events.iter().map(Event::encode), &end).unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["export", "/nonexistent/x.ntrace"], "reading capture /nonexistent/x.ntrace: No such file"),
        (&["export", not_capture.to_str().unwrap()], "not a numatrace capture"),
        (&["export", dir.to_str().unwrap(), "--format", "html"], "Is a directory"),
        (
            &["export", good.to_str().unwrap(), "--format", "html", "-o", "/nonexistent/t.html"],
            "writing /nonexistent/t.html",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(NUMATRACE).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("numatrace: error: ") && stderr.contains(want), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
