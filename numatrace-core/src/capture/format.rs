//! The `.ntrace` file layout, version 1.
//!
//! ```text
//! file    = header record*
//! header  = magic "NTRACE\r\n" (8 bytes), major u16, minor u16, flags u32 (0)
//! record  = type u8, flags u8, reserved u16 (0), len u32, crc32 u32, payload[len]
//! ```
//! All integers are little-endian; `crc32` (IEEE) covers the payload as
//! stored. Flag bit 0 ([`FLAG_ZSTD`]) means the payload is `raw_len u32`
//! followed by one zstd frame of that many bytes.
//!
//! Record types: [`RecordType::Start`] (the `StartFacts`, JSON), then any
//! number of [`RecordType::Events`] (a batch: `varint len, event bytes`
//! repeated, each event exactly as the kernel wrote it, kind ids from
//! `numatrace-common` that never change), then [`RecordType::End`] (the
//! `EndFacts`, JSON). A file that stops before its End record is a capture
//! that was killed; it stays readable.
//!
//! Compatibility: a reader skips record types it does not know and events of
//! kinds it does not know (counted as lost); it refuses a file whose major
//! version is newer than its own. Minor versions only add record types.
use thiserror::Error;

/// First bytes of every capture file. The CR LF catches text-mode mangling.
pub const MAGIC: [u8; 8] = *b"NTRACE\r\n";
/// Major version this build writes and the newest it reads.
pub const MAJOR: u16 = 1;
/// Minor version this build writes.
pub const MINOR: u16 = 0;
/// Bytes in the file header.
pub const HEADER_LEN: usize = 16;
/// Bytes in a record header.
pub const RECORD_HEADER_LEN: usize = 12;
/// Record flag: the payload is zstd-compressed.
pub const FLAG_ZSTD: u8 = 1;
/// Largest payload (stored or uncompressed) a reader accepts: anything
/// larger is a corrupt length, not a record.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    /// The capture's `StartFacts`, as JSON.
    Start,
    /// A batch of raw kernel events.
    Events,
    /// The capture's `EndFacts`, as JSON.
    End,
    /// A type this version does not know (written by a newer one): skipped.
    Unknown(u8),
}

impl RecordType {
    /// The type's byte in a record header.
    pub fn id(self) -> u8 {
        match self {
            RecordType::Start => 1,
            RecordType::Events => 2,
            RecordType::End => 3,
            RecordType::Unknown(id) => id,
        }
    }

    /// The type with this byte.
    pub fn from_id(id: u8) -> RecordType {
        match id {
            1 => RecordType::Start,
            2 => RecordType::Events,
            3 => RecordType::End,
            other => RecordType::Unknown(other),
        }
    }
}

/// A record header, as it sits in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: RecordType,
    pub flags: u8,
    pub len: u32,
    pub crc: u32,
}

impl RecordHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut b = [0u8; RECORD_HEADER_LEN];
        b[0] = self.kind.id();
        b[1] = self.flags;
        b[4..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..12].copy_from_slice(&self.crc.to_le_bytes());
        b
    }

    /// Reads a header from its bytes.
    pub fn decode(b: &[u8; RECORD_HEADER_LEN]) -> RecordHeader {
        RecordHeader {
            kind: RecordType::from_id(b[0]),
            flags: b[1],
            len: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            crc: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

/// The file header's bytes for this version.
pub fn file_header() -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[..8].copy_from_slice(&MAGIC);
    b[8..10].copy_from_slice(&MAJOR.to_le_bytes());
    b[10..12].copy_from_slice(&MINOR.to_le_bytes());
    b
}

/// Appends `value` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A varint that runs past its buffer or past 64 bits.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("bad varint")]
pub struct BadVarint;

/// Reads an unsigned LEB128 varint at `*pos`, advancing it.
pub fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, BadVarint> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or(BadVarint)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(BadVarint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut pos = 0;
            assert_eq!(get_varint(&b, &mut pos), Ok(v));
            assert_eq!(pos, b.len());
        }
        assert_eq!(get_varint(&[0x80], &mut 0), Err(BadVarint));
        assert_eq!(get_varint(&[0xff; 11], &mut 0), Err(BadVarint));
    }

    #[test]
    fn record_headers_round_trip() {
        let h = RecordHeader { kind: RecordType::Events, flags: FLAG_ZSTD, len: 1234, crc: 0xdead_beef };
        assert_eq!(RecordHeader::decode(&h.encode()), h);
        assert_eq!(RecordType::from_id(99), RecordType::Unknown(99));
    }
}
