//! The balancer's misplaced-page migration, entry and return. Its name
//! depends on the kernel (`migrate_misplaced_folio` since 6.7,
//! `migrate_misplaced_page` before); userspace attaches to the one that
//! exists, with fentry/fexit where it can, else kprobe/kretprobe. Marks the
//! thread as a page mover while it runs and reports how long each call took.
use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use numatrace_common::{EventHeader, EventRecord, MisplacedMigrationEvent};

use crate::{emit::emit, maps::PageMover, movers, tracking};

#[inline(always)]
fn enter() -> u32 {
    let Some((tgid, tid)) = tracking::traced_current() else { return 0 };
    let mover = PageMover { target_tgid: tgid, _pad: 0, start_ns: tracking::now_ns() };
    movers::mark(tid, &mover);
    0
}

#[inline(always)]
fn exit() -> u32 {
    let Some((tgid, tid)) = tracking::traced_current() else { return 0 };
    let Some(mover) = movers::unmark(tid) else { return 0 };
    let now = tracking::now_ns();
    let event = MisplacedMigrationEvent {
        header: EventHeader {
            kind: MisplacedMigrationEvent::KIND as u32,
            cpu: tracking::cpu(),
            ts_ns: mover.start_ns,
            tgid,
            tid,
        },
        duration_ns: now.saturating_sub(mover.start_ns),
    };
    emit(&event, 1);
    0
}

#[fentry(function = "migrate_misplaced_folio")]
pub fn migrate_misplaced_fentry(_ctx: FEntryContext) -> u32 {
    enter()
}

#[fexit(function = "migrate_misplaced_folio")]
pub fn migrate_misplaced_fexit(_ctx: FExitContext) -> u32 {
    exit()
}

#[kprobe]
pub fn migrate_misplaced_enter(_ctx: ProbeContext) -> u32 {
    enter()
}

#[kretprobe]
pub fn migrate_misplaced_exit(_ctx: RetProbeContext) -> u32 {
    exit()
}
