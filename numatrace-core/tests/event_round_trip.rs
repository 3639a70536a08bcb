//! The kernel/user contract, without a kernel: for every event kind, the
//! bytes a kernel program writes (the `#[repr(C)]` struct of
//! numatrace-common, as is) decode into that struct with the same values, and
//! encode back to the same bytes. A kind added to `EventKind` without a case
//! here does not compile (the match below has no catch-all arm).
use numatrace_common::{
    AffinityChangeEvent, EventHeader, EventKind, EventRecord, FirstTouchEvent, HintingFaultEvent, MigrationCountEvent,
    MisplacedMigrationEvent, NumaPlacementEvent, PageMigrationEvent, RunTimeSampleEvent, TaskExitEvent,
    TaskMigrationEvent, TaskNewEvent,
};
use numatrace_core::event::{DecodeError, Event};

/// The bytes of a struct, as the kernel's `bpf_ringbuf_reserve` + write leaves them.
fn kernel_bytes<T: Copy>(value: &T) -> Vec<u8> {
    // SAFETY: the event structs are #[repr(C)] integers with explicit padding
    // fields, so every byte is initialised.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

/// A header whose every field differs from the others and from zero.
fn header(kind: EventKind) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        cpu: 0x0102_0304,
        ts_ns: 0x1112_1314_1516_1718,
        tgid: 0x2122_2324,
        tid: 0x3132_3334,
    }
}

/// One event of `kind` with every field set to a distinct, non-zero value.
fn sample(kind: EventKind) -> Event {
    let h = header(kind);
    match kind {
        EventKind::TaskMigration => Event::TaskMigration(TaskMigrationEvent { header: h, orig_cpu: 7, dest_cpu: -9 }),
        EventKind::FirstTouch => Event::FirstTouch(FirstTouchEvent {
            header: h,
            region: 0x4142_4344_4546_4748,
            pages: 512,
            last_ts_ns: 0x1112_1314_1516_1799,
            cpu_node: 3,
            page_node: 0xfffe,
            stack: 0x5152_5354,
        }),
        EventKind::HintingFault => Event::HintingFault(HintingFaultEvent {
            header: h,
            region: 0x4142_4344_4546_4748,
            last_ts_ns: 0x1112_1314_1516_1799,
            faults: 11,
            pages: 13,
            migrated_pages: 17,
            cpu_node: 1,
            mem_node: 2,
            local: 1,
            stack: 0x5152_5354,
        }),
        EventKind::NumaTaskMove | EventKind::NumaTaskSwap | EventKind::NumaTaskStick => {
            Event::NumaPlacement(NumaPlacementEvent {
                header: h,
                src_tid: 101,
                src_tgid: 100,
                src_cpu: 3,
                src_node: 1,
                dst_tid: 202,
                dst_tgid: 200,
                dst_cpu: 5,
                dst_node: -1,
            })
        }
        EventKind::PageMigration => Event::PageMigration(PageMigrationEvent {
            header: h,
            succeeded: 1_000_001,
            failed: 3,
            thp_succeeded: 2,
            reason: 5,
            on_behalf: 1,
        }),
        EventKind::TaskNew => {
            Event::TaskNew(TaskNewEvent { header: h, parent_tid: 99, is_thread: 1, comm: *b"worker-12345678\0" })
        }
        EventKind::TaskExit => {
            Event::TaskExit(TaskExitEvent { header: h, group_dead: 1, _pad: 0x5152_5354, comm: *b"0123456789abcdef" })
        }
        EventKind::MisplacedMigration => {
            Event::MisplacedMigration(MisplacedMigrationEvent { header: h, duration_ns: 0x6162_6364_6566_6768 })
        }
        EventKind::RunTimeSample => {
            Event::RunTimeSample(RunTimeSampleEvent { header: h, run_ns: 0x7172_7374_7576_7778 })
        }
        EventKind::MigrationCount => Event::MigrationCount(MigrationCountEvent { header: h, migrations: 4_321 }),
        EventKind::AffinityChange => Event::AffinityChange(AffinityChangeEvent {
            header: h,
            by_pid: 555,
            by_tgid: 550,
            by_comm: *b"taskset\0\0\0\0\0\0\0\0\0",
        }),
    }
}

/// The record's bytes as the kernel writes them, from the struct itself
/// (not through numatrace's encoder).
fn written_by_kernel(event: &Event) -> Vec<u8> {
    match event {
        Event::TaskMigration(e) => kernel_bytes(e),
        Event::FirstTouch(e) => kernel_bytes(e),
        Event::HintingFault(e) => kernel_bytes(e),
        Event::NumaPlacement(e) => kernel_bytes(e),
        Event::PageMigration(e) => kernel_bytes(e),
        Event::TaskNew(e) => kernel_bytes(e),
        Event::TaskExit(e) => kernel_bytes(e),
        Event::MisplacedMigration(e) => kernel_bytes(e),
        Event::RunTimeSample(e) => kernel_bytes(e),
        Event::MigrationCount(e) => kernel_bytes(e),
        Event::AffinityChange(e) => kernel_bytes(e),
    }
}

#[test]
fn every_kind_decodes_to_what_the_kernel_wrote_and_encodes_back() {
    for kind in EventKind::ALL {
        let event = sample(kind);
        let bytes = written_by_kernel(&event);
        assert_eq!(bytes.len(), kind.record_size(), "{kind:?}: the struct sent is not the one its id names");
        let decoded = Event::decode(&bytes).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(decoded, event, "{kind:?}");
        assert_eq!(decoded.kind(), Some(kind));
        assert_eq!(decoded.encode(), bytes.as_slice(), "{kind:?}: encoding changed the record");
    }
}

#[test]
fn bytes_past_the_struct_are_not_read() {
    // The decoder reads the struct's size and no more: a longer record decodes the same.
    for kind in EventKind::ALL {
        let event = sample(kind);
        let mut bytes = written_by_kernel(&event);
        bytes.extend_from_slice(&[0xee; 8]);
        assert_eq!(Event::decode(&bytes), Ok(event), "{kind:?}");
    }
}

#[test]
fn every_kind_one_byte_short_is_refused() {
    for kind in EventKind::ALL {
        let bytes = written_by_kernel(&sample(kind));
        let short = &bytes[..bytes.len() - 1];
        assert!(
            matches!(Event::decode(short), Err(DecodeError::Truncated { want, .. }) if want == kind.record_size()),
            "{kind:?}: {:?}",
            Event::decode(short)
        );
    }
}

#[test]
fn each_struct_is_sent_as_the_kind_it_names() {
    let pairs = [
        (TaskMigrationEvent::KIND, size_of::<TaskMigrationEvent>()),
        (FirstTouchEvent::KIND, size_of::<FirstTouchEvent>()),
        (HintingFaultEvent::KIND, size_of::<HintingFaultEvent>()),
        (PageMigrationEvent::KIND, size_of::<PageMigrationEvent>()),
        (TaskNewEvent::KIND, size_of::<TaskNewEvent>()),
        (TaskExitEvent::KIND, size_of::<TaskExitEvent>()),
        (MisplacedMigrationEvent::KIND, size_of::<MisplacedMigrationEvent>()),
        (RunTimeSampleEvent::KIND, size_of::<RunTimeSampleEvent>()),
        (MigrationCountEvent::KIND, size_of::<MigrationCountEvent>()),
        (AffinityChangeEvent::KIND, size_of::<AffinityChangeEvent>()),
    ];
    let mut kinds: Vec<EventKind> = pairs.iter().map(|(k, _)| *k).collect();
    kinds.extend(NumaPlacementEvent::KINDS);
    kinds.sort();
    assert_eq!(kinds, EventKind::ALL, "every kind has exactly one struct");
    for (kind, size) in pairs {
        assert_eq!(kind.record_size(), size, "{kind:?}");
        assert!(matches!(sample(kind).kind(), Some(k) if k == kind));
    }
    for kind in NumaPlacementEvent::KINDS {
        assert_eq!(kind.record_size(), size_of::<NumaPlacementEvent>());
    }
}

#[test]
fn ids_are_stable() {
    // Capture files keep these numbers: never renumber.
    let ids: Vec<(u32, &str)> = EventKind::ALL.iter().map(|k| (*k as u32, k.name())).collect();
    assert_eq!(
        ids,
        [
            (1, "task_migration"),
            (2, "first_touch"),
            (3, "hinting_fault"),
            (4, "numa_task_move"),
            (5, "numa_task_swap"),
            (6, "numa_task_stick"),
            (7, "page_migration"),
            (8, "task_new"),
            (9, "task_exit"),
            (10, "misplaced_migration"),
            (11, "run_time_sample"),
            (12, "migration_count"),
            (13, "affinity_change"),
        ]
    );
    for kind in EventKind::ALL {
        assert_eq!(EventKind::from_id(kind as u32), Some(kind));
    }
    assert_eq!(EventKind::from_id(0), None);
    assert_eq!(EventKind::from_id(14), None);
}
