//! Threads that are moving pages right now (misplaced-page migration,
//! migrate_pages/move_pages/mbind). Page allocations they make are
//! migration targets, not first touches.
//!
//! Every first touch asks "is this thread a mover?"; a hash lookup per page
//! is most of that program's cost, and movers are rare. So a count of
//! movers in flight, read with an inlined array access, lets the common
//! case skip the lookup. The count only rises for an entry that was absent
//! and only falls for one that was present, so it never goes below the
//! truth: a wrong count can cost a lookup, never a misclassified page.
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::bindings::BPF_NOEXIST;

use crate::maps::{MOVERS_IN_FLIGHT, PAGE_MOVERS, PageMover};

#[inline(always)]
fn in_flight_add(delta: i64) {
    if let Some(slot) = MOVERS_IN_FLIGHT.get_ptr_mut(0) {
        // The BPF target offers no stable atomic read-modify-write (its
        // target spec lists load/store only), but the instruction exists
        // (BPF_ATOMIC add): the intrinsic emits it. Movers on two CPUs must
        // not lose each other's update.
        // SAFETY: an 8-aligned i64 map value that lives as long as the program.
        unsafe { atomic_xadd::<i64, i64, { AtomicOrdering::Relaxed }>(slot, delta) };
    }
}

/// Marks `tid` as moving pages for `mover.target_tgid`.
#[inline(always)]
pub fn mark(tid: u32, mover: &PageMover) {
    if PAGE_MOVERS.insert(&tid, mover, BPF_NOEXIST as u64).is_ok() {
        in_flight_add(1);
    } else {
        // Already marked (an exit we never saw): refresh, count unchanged.
        let _ = PAGE_MOVERS.insert(&tid, mover, 0);
    }
}

/// Ends `tid`'s page moving; returns what it was doing, if it was marked.
#[inline(always)]
pub fn unmark(tid: u32) -> Option<PageMover> {
    let mover = unsafe { PAGE_MOVERS.get(&tid) }.copied()?;
    if PAGE_MOVERS.remove(&tid).is_ok() {
        in_flight_add(-1);
    }
    Some(mover)
}

/// Ends the page moving of thread `tid()` if it was marked, for hooks that
/// see a thread after its move is over (its next system call, its next user
/// page fault) when the end itself is not hooked. One array read while
/// nobody moves (`tid` is not even asked for).
#[inline(always)]
pub fn end_if_marked(tid: impl FnOnce() -> u32) {
    if any_in_flight() {
        let _ = unmark(tid());
    }
}

/// Whether any thread may be moving pages: one array read, false while nobody is.
#[inline(always)]
fn any_in_flight() -> bool {
    match MOVERS_IN_FLIGHT.get(0) {
        Some(n) => *n != 0,
        None => true,
    }
}

/// Whether `tid` is moving pages. One array read while nobody is.
#[inline(always)]
pub fn is_moving(tid: u32) -> bool {
    any_in_flight() && unsafe { PAGE_MOVERS.get(&tid) }.is_some()
}
