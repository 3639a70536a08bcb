//! `-o FILE`: the whole live run written to a capture file as it goes.
use std::{
    fs::File,
    path::{Path, PathBuf},
};

use anyhow::Result;
use numatrace_core::{
    capture::{CaptureWriter, sink::EventSink},
    event::Event,
    facts::{EndFacts, StartFacts},
};

/// A capture file of a whole live run, announced on stderr when done.
pub struct FileSink {
    writer: CaptureWriter<File>,
    path: PathBuf,
}

impl FileSink {
    pub fn create(path: &Path) -> Result<FileSink> {
        Ok(FileSink { writer: CaptureWriter::create(path)?, path: path.to_path_buf() })
    }
}

impl EventSink for FileSink {
    fn start(&mut self, facts: &StartFacts) -> Result<()> {
        self.writer.start(facts)
    }
    fn record(&mut self, event: &Event) -> Result<()> {
        self.writer.record(event)
    }
    fn undecodable(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.undecodable(bytes)
    }
    fn tick(&mut self) -> Result<()> {
        self.writer.tick()
    }
    fn end(&mut self, facts: &EndFacts) -> Result<()> {
        self.writer.end(facts)?;
        eprintln!(
            "numatrace: saved {} events to {} ({} bytes); `numatrace report {}` shows this report again",
            self.writer.events,
            self.path.display(),
            self.writer.bytes,
            self.path.display()
        );
        Ok(())
    }
}
