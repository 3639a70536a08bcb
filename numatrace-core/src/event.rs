//! Decoding the kernel's events from ring-buffer bytes (and capture files),
//! and encoding them back for capture files and tests.
use numatrace_common::{
    AffinityChangeEvent, EventHeader, EventKind, FirstTouchEvent, HintingFaultEvent, MigrationCountEvent,
    MisplacedMigrationEvent, NumaPlacementEvent, PageMigrationEvent, RunTimeSampleEvent, TaskExitEvent,
    TaskMigrationEvent, TaskNewEvent,
};
use thiserror::Error;

/// One kernel event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    TaskMigration(TaskMigrationEvent),
    FirstTouch(FirstTouchEvent),
    HintingFault(HintingFaultEvent),
    /// Balancer move, swap or stick (`header.kind` says which).
    NumaPlacement(NumaPlacementEvent),
    PageMigration(PageMigrationEvent),
    TaskNew(TaskNewEvent),
    TaskExit(TaskExitEvent),
    MisplacedMigration(MisplacedMigrationEvent),
    /// Sampled by userspace, not by the kernel programs.
    RunTimeSample(RunTimeSampleEvent),
    /// Read by userspace at the start and end, sent by the kernel at exit.
    MigrationCount(MigrationCountEvent),
    AffinityChange(AffinityChangeEvent),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("{kind} event of {len} bytes, expected {want}")]
    Truncated { kind: &'static str, len: usize, want: usize },
}

fn read<T: Copy>(bytes: &[u8], kind: EventKind) -> Result<T, DecodeError> {
    let want = size_of::<T>();
    if bytes.len() < want {
        return Err(DecodeError::Truncated { kind: kind.name(), len: bytes.len(), want });
    }
    // SAFETY: T is a #[repr(C)] struct of integers from numatrace-common (any bit
    // pattern is valid), and the length was checked; read_unaligned needs no alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn bytes_of<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: T is a plain #[repr(C)] integer struct; viewing it as bytes is sound.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

impl Event {
    /// Decodes one ring-buffer record.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        if bytes.len() < size_of::<EventHeader>() {
            return Err(DecodeError::Short(bytes.len()));
        }
        let id = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let kind = EventKind::from_id(id).ok_or(DecodeError::UnknownKind(id))?;
        Ok(match kind {
            EventKind::TaskMigration => Event::TaskMigration(read(bytes, kind)?),
            EventKind::FirstTouch => Event::FirstTouch(read(bytes, kind)?),
            EventKind::HintingFault => Event::HintingFault(read(bytes, kind)?),
            EventKind::NumaTaskMove | EventKind::NumaTaskSwap | EventKind::NumaTaskStick => {
                Event::NumaPlacement(read(bytes, kind)?)
            }
            EventKind::PageMigration => Event::PageMigration(read(bytes, kind)?),
            EventKind::TaskNew => Event::TaskNew(read(bytes, kind)?),
            EventKind::TaskExit => Event::TaskExit(read(bytes, kind)?),
            EventKind::MisplacedMigration => Event::MisplacedMigration(read(bytes, kind)?),
            EventKind::RunTimeSample => Event::RunTimeSample(read(bytes, kind)?),
            EventKind::MigrationCount => Event::MigrationCount(read(bytes, kind)?),
            EventKind::AffinityChange => Event::AffinityChange(read(bytes, kind)?),
        })
    }

    /// The record's bytes, exactly as the kernel wrote them.
    pub fn encode(&self) -> &[u8] {
        match self {
            Event::TaskMigration(e) => bytes_of(e),
            Event::FirstTouch(e) => bytes_of(e),
            Event::HintingFault(e) => bytes_of(e),
            Event::NumaPlacement(e) => bytes_of(e),
            Event::PageMigration(e) => bytes_of(e),
            Event::TaskNew(e) => bytes_of(e),
            Event::TaskExit(e) => bytes_of(e),
            Event::MisplacedMigration(e) => bytes_of(e),
            Event::RunTimeSample(e) => bytes_of(e),
            Event::MigrationCount(e) => bytes_of(e),
            Event::AffinityChange(e) => bytes_of(e),
        }
    }

    pub fn header(&self) -> &EventHeader {
        match self {
            Event::TaskMigration(e) => &e.header,
            Event::FirstTouch(e) => &e.header,
            Event::HintingFault(e) => &e.header,
            Event::NumaPlacement(e) => &e.header,
            Event::PageMigration(e) => &e.header,
            Event::TaskNew(e) => &e.header,
            Event::TaskExit(e) => &e.header,
            Event::MisplacedMigration(e) => &e.header,
            Event::RunTimeSample(e) => &e.header,
            Event::MigrationCount(e) => &e.header,
            Event::AffinityChange(e) => &e.header,
        }
    }

    pub fn kind(&self) -> Option<EventKind> {
        EventKind::from_id(self.header().kind)
    }

    /// What losing this event loses, as the kernel's loss counts count it:
    /// the pages of a first-touch run or a page migration, the faults of a
    /// hinting-fault run, else 1.
    pub fn units(&self) -> u64 {
        match self {
            Event::FirstTouch(e) => e.pages,
            Event::HintingFault(e) => u64::from(e.faults),
            Event::PageMigration(e) => e.succeeded,
            _ => 1,
        }
    }
}

/// A task name from the kernel's fixed 16-byte field.
pub fn comm_str(comm: &[u8]) -> String {
    let end = comm.iter().position(|b| *b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: EventKind) -> EventHeader {
        EventHeader { kind: kind as u32, cpu: 3, ts_ns: 123_456, tgid: 100, tid: 101 }
    }

    #[test]
    fn every_kind_round_trips() {
        let events = [
            Event::TaskMigration(TaskMigrationEvent {
                header: header(EventKind::TaskMigration),
                orig_cpu: 1,
                dest_cpu: 2,
            }),
            Event::FirstTouch(FirstTouchEvent {
                header: header(EventKind::FirstTouch),
                region: 7,
                pages: 512,
                last_ts_ns: 9,
                cpu_node: 0,
                page_node: 1,
                stack: 0,
            }),
            Event::HintingFault(HintingFaultEvent {
                header: header(EventKind::HintingFault),
                faults: 3,
                pages: 3,
                ..Default::default()
            }),
            Event::NumaPlacement(NumaPlacementEvent {
                header: header(EventKind::NumaTaskSwap),
                src_tid: 1,
                dst_tid: 2,
                ..Default::default()
            }),
            Event::PageMigration(PageMigrationEvent {
                header: header(EventKind::PageMigration),
                succeeded: 5,
                reason: 5,
                ..Default::default()
            }),
            Event::TaskNew(TaskNewEvent {
                header: header(EventKind::TaskNew),
                parent_tid: 100,
                is_thread: 1,
                comm: *b"worker\0\0\0\0\0\0\0\0\0\0",
            }),
            Event::TaskExit(TaskExitEvent { header: header(EventKind::TaskExit), group_dead: 1, ..Default::default() }),
            Event::MisplacedMigration(MisplacedMigrationEvent {
                header: header(EventKind::MisplacedMigration),
                duration_ns: 5000,
            }),
            Event::RunTimeSample(RunTimeSampleEvent { header: header(EventKind::RunTimeSample), run_ns: 123_456_789 }),
            Event::MigrationCount(MigrationCountEvent { header: header(EventKind::MigrationCount), migrations: 4_321 }),
        ];
        for event in events {
            assert_eq!(Event::decode(event.encode()), Ok(event));
        }
    }

    #[test]
    fn rejects_short_unknown_and_truncated() {
        assert_eq!(Event::decode(&[0; 4]), Err(DecodeError::Short(4)));
        let mut unknown = [0u8; 64];
        unknown[0] = 200;
        assert_eq!(Event::decode(&unknown), Err(DecodeError::UnknownKind(200)));
        let e = Event::FirstTouch(FirstTouchEvent { header: header(EventKind::FirstTouch), ..Default::default() });
        assert!(matches!(Event::decode(&e.encode()[..30]), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn reads_comm() {
        assert_eq!(comm_str(b"abc\0\0\0"), "abc");
        assert_eq!(comm_str(b"0123456789abcdef"), "0123456789abcdef");
    }
}
