//! Sending events to userspace. Every event is counted: in `SENT` when it is
//! written, in `LOSS` (with, for runs, the pages or faults it carried) when
//! the ring is full. Userspace checks that it read exactly what was sent.
use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use numatrace_common::{EventKind, EventRecord};

use crate::{
    config::config,
    maps::{EVENTS, LOSS, SENT},
};

/// No wakeup per event (it costs ~100x the program): the reader drains on a
/// timer, and is woken only once the ring fills past the threshold.
#[inline(always)]
fn wakeup_flags() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) > config!(wakeup_threshold_bytes) {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Writes `event` to the ring; on failure counts one lost event of its kind
/// carrying `units` pages or faults.
#[inline(always)]
pub fn emit<T: EventRecord>(event: &T, units: u64) {
    emit_as(T::KIND, event, units);
}

/// [`emit`] for a struct sent as several kinds (`NumaPlacementEvent`): `kind`
/// is the one its header carries.
#[inline(always)]
pub fn emit_as<T: 'static>(kind: EventKind, event: &T, units: u64) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(unsafe { core::ptr::read(event) });
            entry.submit(wakeup_flags());
            if let Some(sent) = SENT.get_ptr_mut(kind as u32) {
                unsafe { *sent += 1 };
            }
        }
        None => record_loss(kind, units),
    }
}

#[inline(always)]
pub fn record_loss(kind: EventKind, units: u64) {
    if let Some(loss) = LOSS.get_ptr_mut(kind as u32) {
        unsafe {
            (*loss).events += 1;
            (*loss).units += units;
        }
    }
}
