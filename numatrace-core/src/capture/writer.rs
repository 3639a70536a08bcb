//! Writes a capture file as the capture runs: an [`EventSink`] that buffers
//! events into a batch and writes it (compressed, checksummed) at least every
//! [`FLUSH_INTERVAL`], so a killed run loses at most that much.
use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::format::{FLAG_ZSTD, RecordHeader, RecordType, file_header, put_varint};
use crate::{
    capture::sink::EventSink,
    event::Event,
    facts::{EndFacts, StartFacts},
};

/// Longest time an event waits in memory before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// A batch this large (uncompressed) is written at once.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// zstd level: 3 is zstd's default; higher levels gain little on event batches.
const ZSTD_LEVEL: i32 = 3;

/// A capture file being written.
pub struct CaptureWriter<W: Write> {
    out: W,
    /// Where `out` goes, for error messages.
    name: String,
    batch: Vec<u8>,
    batch_events: u64,
    last_flush: Instant,
    /// Events written so far.
    pub events: u64,
    /// Bytes written so far, headers included.
    pub bytes: u64,
}

impl CaptureWriter<File> {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path) -> Result<CaptureWriter<File>> {
        let file = File::create(path).with_context(|| format!("creating capture file {}", path.display()))?;
        Ok(CaptureWriter::new(file, path.display().to_string()))
    }
}

impl<W: Write> CaptureWriter<W> {
    /// A writer into `out`; `name` names it in errors.
    pub fn new(out: W, name: String) -> CaptureWriter<W> {
        CaptureWriter { out, name, batch: Vec::new(), batch_events: 0, last_flush: Instant::now(), events: 0, bytes: 0 }
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn write_record(&mut self, kind: RecordType, payload: &[u8]) -> Result<()> {
        let mut flags = 0;
        let mut stored = std::borrow::Cow::Borrowed(payload);
        if payload.len() > 64 {
            let compressed = zstd::bulk::compress(payload, ZSTD_LEVEL).context("compressing a capture record")?;
            if compressed.len() + 4 < payload.len() {
                let mut framed = Vec::with_capacity(compressed.len() + 4);
                framed.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                framed.extend_from_slice(&compressed);
                stored = std::borrow::Cow::Owned(framed);
                flags |= FLAG_ZSTD;
            }
        }
        let header = RecordHeader { kind, flags, len: stored.len() as u32, crc: crc32fast::hash(&stored) };
        self.out
            .write_all(&header.encode())
            .and_then(|()| self.out.write_all(&stored))
            .with_context(|| format!("writing {}", self.name))?;
        self.bytes += (header.encode().len() + stored.len()) as u64;
        Ok(())
    }

    fn push_raw(&mut self, bytes: &[u8]) -> Result<()> {
        put_varint(&mut self.batch, bytes.len() as u64);
        self.batch.extend_from_slice(bytes);
        self.batch_events += 1;
        self.events += 1;
        if self.batch.len() >= MAX_BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the pending batch, if any, and flushes the file.
    pub fn flush(&mut self) -> Result<()> {
        if !self.batch.is_empty() {
            let batch = std::mem::take(&mut self.batch);
            self.write_record(RecordType::Events, &batch)?;
            self.batch = batch;
            self.batch.clear();
            self.batch_events = 0;
        }
        self.out.flush().with_context(|| format!("writing {}", self.name))?;
        self.last_flush = Instant::now();
        Ok(())
    }
}

impl<W: Write> EventSink for CaptureWriter<W> {
    fn start(&mut self, facts: &StartFacts) -> Result<()> {
        self.out.write_all(&file_header()).with_context(|| format!("writing {}", self.name))?;
        self.bytes += file_header().len() as u64;
        let json = serde_json::to_vec(facts).context("encoding the start facts")?;
        self.write_record(RecordType::Start, &json)?;
        self.flush()
    }

    fn record(&mut self, event: &Event) -> Result<()> {
        self.push_raw(event.encode())
    }

    fn undecodable(&mut self, bytes: &[u8]) -> Result<()> {
        self.push_raw(bytes)
    }

    fn tick(&mut self) -> Result<()> {
        if self.last_flush.elapsed() >= FLUSH_INTERVAL {
            self.flush()?;
        }
        Ok(())
    }

    fn end(&mut self, facts: &EndFacts) -> Result<()> {
        self.flush()?;
        let json = serde_json::to_vec(facts).context("encoding the end facts")?;
        self.write_record(RecordType::End, &json)?;
        self.flush()
    }
}

/// Writes a whole capture (start facts, events, end facts) to `path` at once.
pub fn write_path<'a>(
    path: &Path,
    start: &StartFacts,
    events: impl IntoIterator<Item = &'a [u8]>,
    end: &EndFacts,
) -> Result<PathBuf> {
    let mut writer = CaptureWriter::create(path)?;
    writer.start(start)?;
    for raw in events {
        writer.push_raw(raw)?;
    }
    writer.end(end)?;
    Ok(path.to_path_buf())
}
