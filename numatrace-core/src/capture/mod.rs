//! Capture files (`.ntrace`): everything a report is computed from (start
//! facts, every kernel event, end facts), written as the capture runs so
//! that a crash or a kill loses at most the last half second, and read back
//! by `numatrace report`, `export` and `diff`. See [`format`] for the layout.
pub mod format;
pub mod reader;
pub mod sink;
pub mod synthetic;
pub mod writer;

pub use reader::{CaptureError, CaptureFile, read_bytes, read_path};
pub use writer::{CaptureWriter, write_path};

/// End facts for a capture that did not end normally (killed run, spike
/// window). Built through serde, so that fields `EndFacts` gains later take
/// their serde defaults here without a change.
pub fn end_facts(duration_s: f64, stopped_by: String) -> crate::facts::EndFacts {
    let value = serde_json::json!({
        "duration_s": duration_s,
        "stopped_by": stopped_by,
        "exit_code": null,
        "kernel": crate::kernel_status::KernelTotals::default(),
    });
    match serde_json::from_value(value) {
        Ok(end) => end,
        Err(e) => unreachable!("EndFacts gained a field without a serde default: {e}"),
    }
}
