//! Where a thread runs: affinity, the current CPU, and the machine's nodes.
use std::fs;

use anyhow::{Result, bail};

/// This thread's id.
pub fn gettid() -> u32 {
    // SAFETY: no arguments.
    unsafe { libc::gettid() as u32 }
}

/// The CPU this thread runs on now.
pub fn current_cpu() -> u32 {
    // SAFETY: no arguments.
    unsafe { libc::sched_getcpu() as u32 }
}

/// Pins the calling thread to these CPUs.
pub fn pin(cpus: &[u32]) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c as usize, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("sched_setaffinity({cpus:?}): {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// CPUs this thread may run on.
pub fn allowed_cpus() -> Vec<u32> {
    // SAFETY: reading our own affinity into a zeroed set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![current_cpu()];
        }
        (0..libc::CPU_SETSIZE as u32).filter(|&c| libc::CPU_ISSET(c as usize, &set)).collect()
    }
}

/// Parses a kernel CPU/node list (`0-3,8`); malformed parts are skipped.
pub fn parse_list(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

/// (node, its CPUs) for every online node that has CPUs; one node 0 with all CPUs where there is no NUMA.
pub fn nodes() -> Vec<(u32, Vec<u32>)> {
    let online = fs::read_to_string("/sys/devices/system/node/online").map(|t| parse_list(&t)).unwrap_or_default();
    let mut out: Vec<(u32, Vec<u32>)> = online
        .into_iter()
        .filter_map(|n| {
            let cpus = fs::read_to_string(format!("/sys/devices/system/node/node{n}/cpulist")).ok()?;
            let cpus = parse_list(&cpus);
            (!cpus.is_empty()).then_some((n, cpus))
        })
        .collect();
    if out.is_empty() {
        out.push((0, allowed_cpus()));
    }
    out
}

/// Names the calling thread (its comm, what ps and numatrace show), with
/// PR_SET_NAME; the kernel keeps the first 15 bytes.
pub fn set_thread_name(name: &str) -> Result<()> {
    let mut buf = [0u8; 16];
    for (slot, b) in buf.iter_mut().zip(name.bytes().take(15)) {
        *slot = b;
    }
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from the pointer; buf is 16 bytes and ends in NUL.
    let rc = unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        bail!("naming this thread {name}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}
