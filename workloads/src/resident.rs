//! `resident`: memory that stays where it was put, for a reader to compare.
//!
//! First-touches MIB of anonymous memory (THP off), some heap (small malloc
//! blocks, which glibc serves from the brk heap), some main-thread stack and
//! optionally HUGE_MIB of hugetlb pages (from the pool reserved in
//! /sys/.../hugepages), all wherever the inherited memory policy puts them (run it under
//! `numactl --membind=N`), prints one JSON line saying where the region's
//! pages are (move_pages(2) queries), then sleeps for SECONDS without
//! touching or allocating anything, so that `numastat -p` and
//! `numatrace inspect --pid` read the same figures however far apart.
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use serde_json::json;

use crate::{
    numa::{self, Region},
    placement,
};

/// Heap blocks: 1 KiB each, far below malloc's mmap threshold, so they come from the brk heap.
const HEAP_BLOCK: usize = 1024;
/// The most stack it touches (the main thread's limit is usually 8 MiB).
const MAX_STACK_KIB: u64 = 4096;

/// Runs the workload; returns when SECONDS have passed (or the process is killed).
pub fn resident(mib: u64, heap_kib: u64, stack_kib: u64, huge_mib: u64, seconds: f64) -> Result<()> {
    ensure!(mib > 0, "--mib must be at least 1");
    ensure!(stack_kib <= MAX_STACK_KIB, "--stack-kib must be at most {MAX_STACK_KIB}");
    ensure!(seconds.is_finite() && seconds >= 0.0, "--seconds must be a non-negative number, not {seconds}");
    let (policy, policy_nodes) = numa::thread_policy()?;
    let region = Region::new(mib * 256)?;
    region.touch(0..region.pages());
    let heap: Vec<Box<[u8; HEAP_BLOCK]>> = (0..heap_kib).map(|i| Box::new([i as u8 | 1; HEAP_BLOCK])).collect();
    let stack_touched = touch_stack(stack_kib);
    let huge = if huge_mib > 0 { Some(HugeRegion::new(huge_mib << 20)?) } else { None };
    let placed = region.pages_by_node()?;
    println!(
        "{}",
        json!({
            "workload": "resident", "pid": std::process::id(), "tid": placement::gettid(),
            "policy": policy, "policy_nodes": policy_nodes,
            "pages": region.pages(), "pages_by_node": placed,
            "heap_bytes": heap.len() * HEAP_BLOCK, "stack_bytes_touched": stack_touched,
            "huge_bytes": huge.as_ref().map(|h| h.len).unwrap_or(0),
        })
    );
    std::thread::sleep(Duration::from_secs_f64(seconds));
    std::hint::black_box(&heap);
    drop(huge);
    Ok(())
}

/// A private anonymous hugetlb mapping, every page touched; unmapped on drop.
struct HugeRegion {
    ptr: *mut u8,
    len: usize,
}

impl HugeRegion {
    fn new(len: u64) -> Result<HugeRegion> {
        let len = usize::try_from(len)?;
        // SAFETY: a new anonymous mapping, checked for MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            bail!(
                "mmap of {len} bytes of huge pages: {} (reserve them first: echo N > /sys/devices/system/node/nodeM/hugepages/hugepages-2048kB/nr_hugepages)",
                std::io::Error::last_os_error()
            );
        }
        let region = HugeRegion { ptr: ptr.cast(), len };
        // Faulting a hugetlb page in can still fail when the pool runs dry
        // (SIGBUS); mmap reserved the pages, so this touch does not.
        for offset in (0..len).step_by(crate::memory::PAGE) {
            // SAFETY: within the mapping; volatile so the write happens.
            unsafe { std::ptr::write_volatile(region.ptr.add(offset), 1) };
        }
        Ok(region)
    }
}

impl Drop for HugeRegion {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Touches about `kib` KiB of this thread's stack, 4 KiB per frame; returns the bytes touched.
#[inline(never)]
fn touch_stack(kib: u64) -> u64 {
    if kib < 4 {
        return 0;
    }
    let mut frame = [0u8; 4096];
    frame[0] = 1;
    frame[4095] = 1;
    std::hint::black_box(&mut frame);
    let below = touch_stack(kib - 4);
    // The frame is used after the call, so the recursion cannot reuse it.
    std::hint::black_box(&frame);
    4096 + below
}
