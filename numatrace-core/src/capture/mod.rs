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
