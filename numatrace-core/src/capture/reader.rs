//! Reads a capture file back. A file that was cut short (killed run, full
//! disk) or damaged gives what can still be read, with warnings; a file that
//! is not a capture, or is from a newer major version, gives a clear error.
//! Never panics, whatever the bytes.
use std::path::Path;

use thiserror::Error;

use super::format::{
    FLAG_ZSTD, HEADER_LEN, MAGIC, MAJOR, MAX_PAYLOAD, RECORD_HEADER_LEN, RecordHeader, RecordType, get_varint,
};
use crate::{
    aggregate::Aggregator,
    event::Event,
    facts::{EndFacts, SessionFacts, StartFacts},
    report::Report,
};

/// Why a capture file cannot be read at all.
#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("{err}")]
    Io { path: String, err: std::io::Error },
    #[error("not a numatrace capture (no NTRACE header)")]
    NotACapture,
    #[error("capture format {major}.{minor} is newer than this numatrace reads ({MAJOR}.x): upgrade numatrace")]
    NewerVersion { major: u16, minor: u16 },
    #[error("the capture has no readable start record ({0})")]
    NoStart(String),
}

/// A capture read back: its facts and events.
#[derive(Clone, Debug)]
pub struct CaptureFile {
    /// Format version of the file (major, minor).
    pub version: (u16, u16),
    pub start: StartFacts,
    /// The end facts; made up from the events when the file has none.
    pub end: EndFacts,
    /// False when the file has no end record (the capture was killed).
    pub complete: bool,
    /// Every event that decoded, in capture order.
    pub events: Vec<Event>,
    /// Records that did not decode (live ones, or kinds newer than this build).
    pub undecodable: u64,
    /// What could not be read, one line each.
    pub warnings: Vec<String>,
}

impl CaptureFile {
    /// The session facts of the capture.
    pub fn facts(&self) -> SessionFacts {
        SessionFacts { start: self.start.clone(), end: self.end.clone() }
    }

    /// The report and the aggregator, computed exactly as the live run did.
    pub fn replay(&self) -> (Report, Aggregator) {
        let facts = self.facts();
        let mut agg = facts.new_aggregator();
        for event in &self.events {
            agg.ingest(event);
        }
        agg.decode_errors += self.undecodable;
        let report = facts.report(&mut agg);
        (report, agg)
    }

    /// The report, exactly as the live run printed it.
    pub fn report(&self) -> Report {
        self.replay().0
    }
}

/// Reads the capture file at `path`.
pub fn read_path(path: &Path) -> Result<CaptureFile, CaptureError> {
    let bytes = std::fs::read(path).map_err(|err| CaptureError::Io { path: path.display().to_string(), err })?;
    read_bytes(&bytes)
}

fn payload(header: &RecordHeader, stored: &[u8]) -> Result<Vec<u8>, String> {
    if header.flags & !FLAG_ZSTD != 0 {
        return Err(format!("unknown record flags {:#x}", header.flags));
    }
    if header.flags & FLAG_ZSTD == 0 {
        return Ok(stored.to_vec());
    }
    let raw_len = stored
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("compressed record too short")?;
    if raw_len > MAX_PAYLOAD {
        return Err(format!("compressed record claims {raw_len} bytes"));
    }
    let raw = zstd::bulk::decompress(&stored[4..], raw_len).map_err(|e| format!("does not decompress: {e}"))?;
    if raw.len() != raw_len {
        return Err(format!("decompressed to {} bytes, expected {raw_len}", raw.len()));
    }
    Ok(raw)
}

/// Reads a capture from its bytes.
pub fn read_bytes(bytes: &[u8]) -> Result<CaptureFile, CaptureError> {
    if bytes.len() < HEADER_LEN || bytes[..8] != MAGIC {
        return Err(CaptureError::NotACapture);
    }
    let major = u16::from_le_bytes([bytes[8], bytes[9]]);
    let minor = u16::from_le_bytes([bytes[10], bytes[11]]);
    if major > MAJOR {
        return Err(CaptureError::NewerVersion { major, minor });
    }
    if major == 0 {
        return Err(CaptureError::NotACapture);
    }
    let mut warnings = Vec::new();
    let mut start: Option<StartFacts> = None;
    let mut start_problem = "the file ends before it".to_string();
    let mut end: Option<EndFacts> = None;
    let mut events = Vec::new();
    let mut undecodable = 0u64;
    let mut unknown_records = 0u64;
    let mut pos = HEADER_LEN;
    while pos < bytes.len() {
        let Some(head) =
            bytes.get(pos..pos + RECORD_HEADER_LEN).and_then(|h| <&[u8; RECORD_HEADER_LEN]>::try_from(h).ok())
        else {
            warnings.push(format!("the file ends inside a record header at byte {pos} (capture cut short)"));
            break;
        };
        let header = RecordHeader::decode(head);
        let body_at = pos + RECORD_HEADER_LEN;
        let len = header.len as usize;
        if len > MAX_PAYLOAD {
            warnings.push(format!("record at byte {pos} claims {len} bytes: the rest of the file is unreadable"));
            break;
        }
        let Some(stored) = bytes.get(body_at..body_at + len) else {
            warnings.push(format!(
                "the file ends inside a record at byte {pos} ({} of {len} bytes; capture cut short)",
                bytes.len() - body_at
            ));
            break;
        };
        pos = body_at + len;
        if crc32fast::hash(stored) != header.crc {
            warnings.push(format!("record at byte {} fails its checksum: skipped", body_at - RECORD_HEADER_LEN));
            if header.kind == RecordType::Start {
                start_problem = "it fails its checksum".into();
            }
            continue;
        }
        if let RecordType::Unknown(_) = header.kind {
            unknown_records += 1;
            continue;
        }
        let raw = match payload(&header, stored) {
            Ok(raw) => raw,
            Err(why) => {
                warnings.push(format!("record at byte {}: {why}: skipped", body_at - RECORD_HEADER_LEN));
                continue;
            }
        };
        match header.kind {
            RecordType::Start => match serde_json::from_slice::<StartFacts>(&raw) {
                Ok(facts) if start.is_none() => start = Some(facts),
                Ok(_) => warnings.push("a second start record: ignored".into()),
                Err(e) => start_problem = format!("it does not parse: {e}"),
            },
            RecordType::End => match serde_json::from_slice::<EndFacts>(&raw) {
                Ok(facts) => end = Some(facts),
                Err(e) => warnings.push(format!("the end record does not parse ({e}): ignored")),
            },
            RecordType::Events => {
                let mut at = 0;
                while at < raw.len() {
                    let len = match get_varint(&raw, &mut at) {
                        Ok(len) => len as usize,
                        Err(_) => {
                            warnings.push("an event batch is malformed: rest of the batch skipped".into());
                            break;
                        }
                    };
                    let Some(record) = raw.get(at..at.saturating_add(len)) else {
                        warnings.push("an event batch is malformed: rest of the batch skipped".into());
                        break;
                    };
                    at += len;
                    match Event::decode(record) {
                        Ok(event) => events.push(event),
                        Err(_) => undecodable += 1,
                    }
                }
            }
            RecordType::Unknown(_) => {}
        }
    }
    let start = start.ok_or(CaptureError::NoStart(start_problem))?;
    if unknown_records > 0 {
        warnings.push(format!(
            "{unknown_records} records of types this version does not know were skipped (written by a newer numatrace)"
        ));
    }
    if undecodable > 0 {
        warnings.push(format!("{undecodable} events did not decode; they count as lost"));
    }
    let complete = end.is_some();
    let end = end.unwrap_or_else(|| {
        warnings.push("the capture has no end record (killed or still running): duration taken from the last event, kernel totals (run time, lost events) unknown".into());
        let last = events.iter().map(|e| e.header().ts_ns).max().unwrap_or(start.start_ns);
crate::facts::EndFacts::cut_short(last.saturating_sub(start.start_ns) as f64 / 1e9, crate::facts::StopReason::CaptureCutShort)
    });
    Ok(CaptureFile { version: (major, minor), start, end, complete, events, undecodable, warnings })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{
        capture::sink::EventSink,
        capture::{CaptureWriter, format::RECORD_HEADER_LEN, synthetic},
    };

    fn write(start: &StartFacts, events: &[Event], end: Option<&EndFacts>) -> Vec<u8> {
        let mut w = CaptureWriter::new(Vec::new(), "memory".into());
        w.start(start).unwrap();
        for e in events {
            w.record(e).unwrap();
        }
        w.undecodable(&[0xee; 40]).unwrap();
        match end {
            Some(end) => w.end(end).unwrap(),
            None => w.flush().unwrap(),
        }
        w.into_inner()
    }

    fn sample() -> Vec<u8> {
        let (start, events, end) = synthetic::init_thread_capture();
        write(&start, &events, Some(&end))
    }

    #[test]
    fn round_trips_facts_events_and_the_report() {
        let (start, events, end) = synthetic::init_thread_capture();
        let bytes = write(&start, &events, Some(&end));
        let c = read_bytes(&bytes).unwrap();
        assert_eq!(c.start, start);
        assert_eq!(c.end, end);
        assert!(c.complete);
        assert_eq!(c.events, events);
        assert_eq!(c.undecodable, 1);
        assert_eq!(c.version, (1, 0));
        // The report of the file equals the report of the stream it came from.
        let facts = SessionFacts { start, end };
        let mut agg = facts.new_aggregator();
        for e in &events {
            agg.ingest(e);
        }
        agg.ingest_bytes(&[0xee; 40]);
        let live = serde_json::to_string(&facts.report(&mut agg)).unwrap();
        assert_eq!(serde_json::to_string(&c.report()).unwrap(), live);
    }

    #[test]
    fn is_compact() {
        let (start, events, end) = synthetic::init_thread_capture();
        let bytes = write(&start, &events, Some(&end));
        let raw: usize = events.iter().map(|e| e.encode().len()).sum();
        let start_len = serde_json::to_vec(&start).unwrap().len();
        assert!(bytes.len() < start_len + raw / 3, "{} bytes for {raw} bytes of events", bytes.len());
    }

    #[test]
    fn a_killed_capture_reads_with_a_warning() {
        let (start, events, _) = synthetic::init_thread_capture();
        let c = read_bytes(&write(&start, &events, None)).unwrap();
        assert!(!c.complete);
        assert_eq!(c.events.len(), events.len());
        assert_eq!(c.end.stopped_by, crate::facts::StopReason::CaptureCutShort);
        let last = events.iter().map(|e| e.header().ts_ns).max().unwrap();
        assert_eq!(c.end.duration_s, (last - start.start_ns) as f64 / 1e9);
        assert!(c.warnings.iter().any(|w| w.contains("no end record")), "{:?}", c.warnings);
    }

    #[test]
    fn refuses_what_is_not_a_capture_or_too_new() {
        assert!(matches!(read_bytes(b""), Err(CaptureError::NotACapture)));
        assert!(matches!(read_bytes(b"{\"schema\": \"numatrace.report/1\"}"), Err(CaptureError::NotACapture)));
        let mut future = sample();
        future[8] = 2;
        let err = read_bytes(&future).unwrap_err();
        assert!(matches!(err, CaptureError::NewerVersion { major: 2, .. }));
        assert!(err.to_string().contains("upgrade numatrace"), "{err}");
        let mut no_start = sample();
        no_start[HEADER_LEN + 8] ^= 1; // the start record's checksum
        assert!(matches!(read_bytes(&no_start), Err(CaptureError::NoStart(_))));
    }

    #[test]
    fn skips_records_of_unknown_types() {
        let bytes = sample();
        let mut with_unknown = bytes[..HEADER_LEN].to_vec();
        let payload = b"from the future";
        let header = RecordHeader {
            kind: RecordType::Unknown(200),
            flags: 0,
            len: payload.len() as u32,
            crc: crc32fast::hash(payload),
        };
        with_unknown.extend_from_slice(&header.encode());
        with_unknown.extend_from_slice(payload);
        with_unknown.extend_from_slice(&bytes[HEADER_LEN..]);
        let c = read_bytes(&with_unknown).unwrap();
        assert_eq!(c.events.len(), read_bytes(&bytes).unwrap().events.len());
        assert!(c.warnings.iter().any(|w| w.contains("newer numatrace")));
    }

    #[test]
    fn a_corrupt_event_batch_is_skipped_and_said() {
        let bytes = sample();
        let start_len = u32::from_le_bytes(bytes[HEADER_LEN + 4..HEADER_LEN + 8].try_into().unwrap()) as usize;
        let batch_at = HEADER_LEN + RECORD_HEADER_LEN + start_len;
        let mut bad = bytes.clone();
        bad[batch_at + RECORD_HEADER_LEN + 10] ^= 0x40;
        let c = read_bytes(&bad).unwrap();
        assert!(c.events.is_empty());
        assert!(c.complete);
        assert!(c.warnings.iter().any(|w| w.contains("checksum")), "{:?}", c.warnings);
    }

    #[test]
    fn every_truncation_reads_a_prefix() {
        let bytes = sample();
        let full = read_bytes(&bytes).unwrap();
        for cut in 0..bytes.len() {
            match read_bytes(&bytes[..cut]) {
                Ok(c) => {
                    assert!(c.events.len() <= full.events.len());
                    assert_eq!(c.events[..], full.events[..c.events.len()]);
                    assert!(!c.warnings.is_empty(), "cut at {cut} gave no warning");
                }
                Err(CaptureError::NotACapture | CaptureError::NoStart(_)) => {}
                Err(e) => panic!("cut at {cut}: {e}"),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = read_bytes(&bytes);
        }

        #[test]
        fn random_bytes_after_a_valid_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = crate::capture::format::file_header().to_vec();
            bytes.extend_from_slice(&tail);
            let _ = read_bytes(&bytes);
        }

        #[test]
        fn bit_flips_never_panic_and_keep_the_start(flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..6)) {
            let mut bytes = sample();
            let n = bytes.len();
            for (at, bit) in flips {
                bytes[at.index(n)] ^= 1 << bit;
            }
            if let Ok(c) = read_bytes(&bytes) {
                // Whatever survived the checksums is a sane capture.
                prop_assert!(c.events.len() <= 1000);
                let _ = c.report();
            }
        }
    }
}
