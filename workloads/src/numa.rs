//! The kernel's NUMA memory interfaces, as the lab scenarios use them:
//! where each page of a buffer is (move_pages(2) query), memory policy
//! (set_mempolicy(2), get_mempolicy(2), mbind(2)), explicit page moves, and
//! the per-node allocation counters of /sys/devices/system/node/node*/numastat.
use std::{collections::BTreeMap, fs};

use anyhow::{Context, Result, bail};

use crate::memory::PAGE;

pub const MPOL_DEFAULT: i32 = 0;
pub const MPOL_BIND: i32 = 2;
pub const MPOL_MF_MOVE: u32 = 1 << 1;
/// Bits of the node masks passed to the kernel (one u64).
const MAX_NODE: u64 = 64;

/// An anonymous private mapping with THP off, whose pages the scenarios
/// place, query and move. Unmapped on drop.
pub struct Region {
    ptr: *mut u8,
    pages: u64,
}

// SAFETY: plain memory; the scenarios coordinate threads with joins.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    pub fn new(pages: u64) -> Result<Region> {
        if pages == 0 {
            bail!("a region needs at least one page");
        }
        let len = pages as usize * PAGE;
        // SAFETY: a new anonymous mapping, checked for MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            bail!("mmap of {len} bytes: {}", std::io::Error::last_os_error());
        }
        // SAFETY: ptr/len is the mapping just made.
        unsafe { libc::madvise(ptr, len, libc::MADV_NOHUGEPAGE) };
        Ok(Region { ptr: ptr.cast(), pages })
    }

    pub fn pages(&self) -> u64 {
        self.pages
    }

    fn page_ptr(&self, i: u64) -> *mut u8 {
        debug_assert!(i < self.pages);
        // SAFETY: within the mapping for i < pages.
        unsafe { self.ptr.add(i as usize * PAGE) }
    }

    /// First-touches (writes) every page in `range`.
    pub fn touch(&self, range: std::ops::Range<u64>) {
        for i in range.start..range.end.min(self.pages) {
            // SAFETY: within the mapping; volatile so the write happens.
            unsafe { std::ptr::write_volatile(self.page_ptr(i), 1) };
        }
    }

    /// Reads and writes one byte of every page (use, not first touch).
    pub fn sweep(&self) -> u64 {
        let mut sum = 0u64;
        for i in 0..self.pages {
            let p = self.page_ptr(i);
            // SAFETY: within the mapping.
            unsafe {
                sum = sum.wrapping_add(std::ptr::read_volatile(p) as u64);
                std::ptr::write_volatile(p, sum as u8);
            }
        }
        sum
    }

    /// Node id -> pages of this region that sit there now (the kernel's own
    /// answer, move_pages(2) without target nodes). Pages not present are
    /// counted under "absent".
    pub fn pages_by_node(&self) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        const CHUNK: u64 = 8192;
        let mut start = 0;
        while start < self.pages {
            let n = CHUNK.min(self.pages - start);
            let ptrs: Vec<*mut libc::c_void> = (start..start + n).map(|i| self.page_ptr(i).cast()).collect();
            let mut status = vec![0i32; n as usize];
            // SAFETY: ptrs and status have n entries; a null nodes array only queries.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_move_pages,
                    0,
                    n as libc::c_ulong,
                    ptrs.as_ptr(),
                    std::ptr::null::<i32>(),
                    status.as_mut_ptr(),
                    0,
                )
            };
            if rc < 0 {
                bail!("move_pages (query): {}", std::io::Error::last_os_error());
            }
            for s in status {
                let key = if s >= 0 { s.to_string() } else { "absent".to_string() };
                *out.entry(key).or_default() += 1;
            }
            start += n;
        }
        Ok(out)
    }

    /// Moves pages `range` to `node` with move_pages(2); returns how many now sit there.
    pub fn move_to(&self, range: std::ops::Range<u64>, node: u32) -> Result<u64> {
        let ptrs: Vec<*mut libc::c_void> = range.clone().map(|i| self.page_ptr(i).cast()).collect();
        let nodes = vec![node as i32; ptrs.len()];
        let mut status = vec![0i32; ptrs.len()];
        // SAFETY: the three arrays have the same length.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_move_pages,
                0,
                ptrs.len() as libc::c_ulong,
                ptrs.as_ptr(),
                nodes.as_ptr(),
                status.as_mut_ptr(),
                MPOL_MF_MOVE as libc::c_int,
            )
        };
        if rc < 0 {
            bail!("move_pages to node {node}: {}", std::io::Error::last_os_error());
        }
        Ok(status.iter().filter(|&&s| s == node as i32).count() as u64)
    }

    /// Binds pages `range` to `node` with mbind(2), moving what is already there.
    pub fn bind_and_move(&self, range: std::ops::Range<u64>, node: u32) -> Result<()> {
        let mask: u64 = 1 << node;
        let len = (range.end - range.start) as usize * PAGE;
        // SAFETY: the range lies within the mapping; the mask is one u64.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mbind,
                self.page_ptr(range.start),
                len,
                MPOL_BIND,
                &mask as *const u64,
                MAX_NODE,
                MPOL_MF_MOVE,
            )
        };
        if rc < 0 {
            bail!("mbind to node {node} with MPOL_MF_MOVE: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.ptr.cast(), self.pages as usize * PAGE) };
    }
}

/// Sets the calling thread's memory policy (MPOL_DEFAULT ignores `nodes`).
pub fn set_thread_policy(mode: i32, nodes: &[u32]) -> Result<()> {
    let mask: u64 = nodes.iter().fold(0, |m, n| m | 1 << n);
    let (mask_ptr, maxnode) =
        if mode == MPOL_DEFAULT { (std::ptr::null(), 0) } else { (&mask as *const u64, MAX_NODE) };
    // SAFETY: the mask is one u64 or null.
    let rc = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, mask_ptr, maxnode) };
    if rc < 0 {
        bail!("set_mempolicy({mode}, {nodes:?}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's memory policy: (mode name, nodes).
pub fn thread_policy() -> Result<(String, Vec<u32>)> {
    let mut mode: i32 = 0;
    let mut mask: u64 = 0;
    // SAFETY: mode and a one-u64 mask are valid out-pointers.
    let rc = unsafe {
        libc::syscall(libc::SYS_get_mempolicy, &mut mode as *mut i32, &mut mask as *mut u64, MAX_NODE, 0usize, 0usize)
    };
    if rc < 0 {
        bail!("get_mempolicy: {}", std::io::Error::last_os_error());
    }
    let name = match mode & 0xff {
        0 => "default",
        1 => "preferred",
        2 => "bind",
        3 => "interleave",
        4 => "local",
        _ => "other",
    };
    Ok((name.to_string(), (0..64).filter(|n| mask & (1 << n) != 0).collect()))
}

/// Node id -> (counter -> value) from every node's numastat.
pub fn numastat() -> Result<BTreeMap<String, BTreeMap<String, u64>>> {
    let mut out = BTreeMap::new();
    for node in online_nodes() {
        let path = format!("/sys/devices/system/node/node{node}/numastat");
        let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let counters = text
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.trim().parse::<u64>().ok()?))
            })
            .collect();
        out.insert(node.to_string(), counters);
    }
    Ok(out)
}

/// after - before, per node and counter.
pub fn numastat_delta(
    before: &BTreeMap<String, BTreeMap<String, u64>>,
    after: &BTreeMap<String, BTreeMap<String, u64>>,
) -> BTreeMap<String, BTreeMap<String, u64>> {
    after
        .iter()
        .map(|(node, counters)| {
            let old = before.get(node);
            let d = counters
                .iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(old.and_then(|o| o.get(k)).copied().unwrap_or(0))))
                .collect();
            (node.clone(), d)
        })
        .collect()
}

/// Free memory of a node in bytes, from its meminfo.
pub fn node_free_bytes(node: u32) -> Result<u64> {
    let path = format!("/sys/devices/system/node/node{node}/meminfo");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| {
            let rest = l.split_once("MemFree:")?.1;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .map(|kb| kb * 1024)
        .with_context(|| format!("no MemFree in {path}"))
}

/// Online node ids (with or without CPUs), from /sys/devices/system/node/online.
pub fn online_nodes() -> Vec<u32> {
    let text = fs::read_to_string("/sys/devices/system/node/online").unwrap_or_else(|_| "0".into());
    crate::placement::parse_list(&text)
}

/// Node id -> pages of this whole process there, summed over /proc/self/numa_maps
/// (`N<node>=<pages>` of every mapping, huge pages counted in 4 KiB pages).
pub fn process_pages_by_node() -> Result<BTreeMap<String, u64>> {
    let text = fs::read_to_string("/proc/self/numa_maps").context("reading /proc/self/numa_maps")?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let scale = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("kernelpagesize_kB="))
            .and_then(|k| k.parse::<u64>().ok())
            .map_or(1, |kb| (kb / 4).max(1));
        for word in line.split_whitespace() {
            if let Some((node, pages)) = word.strip_prefix('N').and_then(|w| w.split_once('='))
                && let (Ok(node), Ok(pages)) = (node.parse::<u32>(), pages.parse::<u64>())
            {
                *out.entry(node.to_string()).or_default() += pages * scale;
            }
        }
    }
    Ok(out)
}

/// The named counters of /proc/vmstat (absent ones are 0).
/// Pages the NUMA balancer migrated for the calling thread so far (the
/// `numa_pages_migrated` line of /proc/thread-self/sched): the process's own
/// share of vmstat's machine-wide count, which also holds every other
/// process's (numatrace's own memory included).
pub fn own_numa_pages_migrated() -> Option<u64> {
    let text = fs::read_to_string("/proc/thread-self/sched").ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("numa_pages_migrated"))
        .and_then(|rest| rest.trim_start().strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

pub fn vmstat(names: &[&str]) -> Result<BTreeMap<String, u64>> {
    let text = fs::read_to_string("/proc/vmstat").context("reading /proc/vmstat")?;
    let mut out: BTreeMap<String, u64> = names.iter().map(|n| (n.to_string(), 0)).collect();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(' ')
            && let Some(slot) = out.get_mut(k)
        {
            *slot = v.trim().parse().unwrap_or(0);
        }
    }
    Ok(out)
}
