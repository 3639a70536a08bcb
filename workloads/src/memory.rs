//! Fresh anonymous memory with known page counts.
use anyhow::{Result, bail};

pub const PAGE: usize = 4096;

/// An anonymous private mapping, unmapped on drop. Transparent huge pages are
/// turned off for it so that one touch is one 4 KiB first touch.
pub struct Buffer {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory; threads coordinate through joins.
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl Buffer {
    pub fn new(pages: u64) -> Result<Buffer> {
        let len = pages as usize * PAGE;
        if len == 0 {
            bail!("empty buffer");
        }
        // SAFETY: a new anonymous mapping; checked for MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            bail!("mmap of {len} bytes failed: {}", std::io::Error::last_os_error());
        }
        // SAFETY: ptr/len is the mapping just made.
        unsafe { libc::madvise(ptr, len, libc::MADV_NOHUGEPAGE) };
        Ok(Buffer { ptr: ptr.cast(), len })
    }

    pub fn pages(&self) -> u64 {
        (self.len / PAGE) as u64
    }

    /// Writes one byte in page `i` (a first touch if it is the first write).
    pub fn touch(&self, i: u64) {
        // SAFETY: i < pages is checked by callers through pages(); volatile so it is not elided.
        unsafe { std::ptr::write_volatile(self.ptr.add(i as usize * PAGE), 1) };
    }

    /// Reads and writes every page once (use, not first touch).
    pub fn sweep(&self) -> u64 {
        let mut sum = 0u64;
        for i in 0..self.pages() {
            // SAFETY: within the mapping.
            unsafe {
                let p = self.ptr.add(i as usize * PAGE);
                sum = sum.wrapping_add(std::ptr::read_volatile(p) as u64);
                std::ptr::write_volatile(p, sum as u8);
            }
        }
        sum
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
