//! The traced processes besides the first, one bit per tgid in the
//! `TRACKED_TGIDS` array map, mmapped: userspace sets bits with the same
//! atomic OR as the kernel programs, so a process added after the attach
//! never erases one the kernel added to the same word meanwhile (a
//! read-modify-write through the map syscalls would).
use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::{Context, Result, bail};
use aya::maps::MapData;

/// Words of the map for tgids up to the running kernel's `pid_max`.
pub fn words_for_pid_max() -> u32 {
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(numatrace_common::MAX_TRACKED_TGID_WORDS * 64);
    pid_max.div_ceil(64).clamp(1, numatrace_common::MAX_TRACKED_TGID_WORDS)
}

/// The map's words, shared with the kernel.
pub struct TgidBits {
    words: NonNull<AtomicU64>,
    len: usize,
    mapped: usize,
}

// SAFETY: the words are only touched through atomics.
unsafe impl Send for TgidBits {}

impl TgidBits {
    /// Maps the array (`words` u64 values, created with BPF_F_MMAPABLE).
    pub fn map(map: &MapData, words: u32) -> Result<TgidBits> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1);
        let len = words as usize;
        let mapped = (len * 8).div_ceil(page) * page;
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: a shared mapping of a BPF array map's values, no larger than
        // the map (the kernel rounds its area up to pages); unmapped on drop.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), mapped, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mapping the traced processes' bits");
        }
        let words = NonNull::new(ptr.cast::<AtomicU64>()).context("mmap returned no address")?;
        Ok(TgidBits { words, len, mapped })
    }

    /// Adds a process.
    pub fn set(&self, tgid: u32) -> Result<()> {
        let at = (tgid / 64) as usize;
        if at >= self.len {
            bail!("pid {tgid} is above this kernel's pid_max");
        }
        // SAFETY: `at` is within the mapped words, which live until drop.
        let word = unsafe { self.words.as_ptr().add(at).as_ref() }.context("a mapped word")?;
        word.fetch_or(1 << (tgid % 64), Ordering::Relaxed);
        Ok(())
    }
}

impl TgidBits {
    /// Removes a process.
    pub fn clear(&self, tgid: u32) {
        let at = (tgid / 64) as usize;
        if at >= self.len {
            return;
        }
        // SAFETY: `at` is within the mapped words, which live until drop.
        if let Some(word) = unsafe { self.words.as_ptr().add(at).as_ref() } {
            word.fetch_and(!(1 << (tgid % 64)), Ordering::Relaxed);
        }
    }
}

impl Drop for TgidBits {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe { libc::munmap(self.words.as_ptr().cast(), self.mapped) };
    }
}
