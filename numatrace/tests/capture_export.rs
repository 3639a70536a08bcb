//! Exports of a synthetic two-node capture through the real CLI; the SVG is
//! rendered to PNG with rsvg-convert (Debian librsvg2-bin). With
//! NUMATRACE_WRITE_EXAMPLE=1 the PNG is also written to docs/.
use std::process::Command;

use numatrace_core::{
    capture::{self, synthetic},
    event::Event,
};

const NUMATRACE: &str = env!("CARGO_BIN_EXE_numatrace");

fn synthetic_capture(dir: &std::path::Path) -> std::path::PathBuf {
    let (start, events, end) = synthetic::init_thread_capture();
    let path = dir.join("synthetic.ntrace");
    capture::write_path(&path, &start, events.iter().map(Event::encode), &end).unwrap();
    path
}

fn tmpdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("numatrace-export-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn export(capture: &std::path::Path, format: &str, out: &std::path::Path) {
    let o = Command::new(NUMATRACE)
        .args(["export", capture.to_str().unwrap(), "--format", format, "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn svg_renders_to_a_png() {
    let dir = tmpdir();
    let capture = synthetic_capture(&dir);
    let svg = dir.join("timeline.svg");
    export(&capture, "svg", &svg);
    let png = dir.join("timeline.png");
    let r = match Command::new("rsvg-convert").args(["-o", png.to_str().unwrap(), svg.to_str().unwrap()]).output() {
        Ok(r) => r,
        Err(e) => panic!("rsvg-convert is needed (apt-get install librsvg2-bin; cargo xtask setup): {e}"),
    };
    assert!(r.status.success(), "rsvg-convert: {}", String::from_utf8_lossy(&r.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!(width, 1200);
    assert!(height > 200, "{height}");
    if std::env::var_os("NUMATRACE_WRITE_EXAMPLE").is_some() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/timeline-example.png");
        std::fs::copy(&png, docs).unwrap();
    }
}

#[test]
fn every_format_writes_and_stdout_works() {
    let dir = tmpdir();
    let capture = synthetic_capture(&dir);
    for format in ["perfetto", "folded", "svg", "html"] {
        let out = dir.join(format!("out.{format}"));
        export(&capture, format, &out);
        assert!(std::fs::metadata(&out).unwrap().len() > 100, "{format}");
    }
    let o = Command::new(NUMATRACE)
        .args(["export", capture.to_str().unwrap(), "--format", "perfetto", "-o", "-"])
        .output()
        .unwrap();
    let trace: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(trace["traceEvents"].as_array().unwrap().len() > 50);
    let bad = Command::new(NUMATRACE).args(["export", capture.to_str().unwrap(), "--format", "png"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
