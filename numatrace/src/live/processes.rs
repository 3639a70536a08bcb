//! The processes a capture traces from its start: the first (the
//! [`Target`]) and the others (`--pid` repeated, `--tree`, a cgroup's), with
//! their threads, and when all of them are gone.
use std::{
    collections::{BTreeMap, BTreeSet},
    os::fd::{AsRawFd, OwnedFd},
    path::PathBuf,
};

use anyhow::{Result, bail};
use numatrace_core::{
    facts::InitialThread,
    machine::{ProcessSnapshot, Topology, per_thread},
};

use super::{
    cgroup,
    target::{self, Target, TargetSpec},
    tree,
};

/// The processes traced from the start besides the first.
pub struct Others {
    /// In the order found (the `--pid`s as given, then descendants or the cgroup's).
    pub pids: Vec<u32>,
    /// One per process in `pids`, readable once it has exited.
    pidfds: Vec<OwnedFd>,
    /// A cgroup target's folder: the capture ends when it holds no process.
    cgroup_dir: Option<PathBuf>,
}

impl Others {
    /// The first process of a target: the first `--pid`, or the cgroup's
    /// main one (the lowest pid whose parent is outside it: a service's main
    /// process, a container's init). An empty cgroup is an error (nothing
    /// would be traced until something joins; start the service first).
    pub fn first(spec: &TargetSpec) -> Result<u32> {
        match spec {
            TargetSpec::Pids { pids, .. } => match pids.first() {
                Some(pid) => Ok(*pid),
                None => bail!("no --pid given"),
            },
            TargetSpec::Cgroup(cg) => match tree::root_of(&cgroup_processes(&cg.dir), tree::parent_of) {
                Some(pid) => Ok(pid),
                None => bail!(
                    "cgroup {} has no processes: nothing to trace (start the service first; numatrace does not \
                     wait for processes to join an empty cgroup)",
                    cg.cgroup.path
                ),
            },
            TargetSpec::Command(_) => bail!("a command is started, not looked up"),
        }
    }

    /// The others of `spec` now (none for a command); an explicit `--pid`
    /// that does not exist is an error.
    pub fn find(spec: &TargetSpec, first: u32) -> Result<Others> {
        let mut others = Others {
            pids: Vec::new(),
            pidfds: Vec::new(),
            cgroup_dir: match spec {
                TargetSpec::Cgroup(cg) => Some(cg.dir.clone()),
                _ => None,
            },
        };
        if let TargetSpec::Pids { pids, .. } = spec {
            for &pid in pids.iter().skip(1) {
                if pid != first && !others.pids.contains(&pid) {
                    let pidfd = Target::attach(pid)?.pidfd;
                    others.pids.push(pid);
                    others.pidfds.push(pidfd);
                }
            }
        }
        others.add_new(spec, first);
        Ok(others)
    }

    /// Adds the processes of `spec` not known yet (a descendant or a
    /// cgroup member that appeared, e.g. during the attach); returns them.
    pub fn add_new(&mut self, spec: &TargetSpec, first: u32) -> Vec<u32> {
        let found = match spec {
            // numatrace is a descendant of the shell that started it.
            TargetSpec::Pids { pids, tree: true } => {
                tree::descendants(pids).into_iter().filter(|&p| p != std::process::id()).collect()
            }
            TargetSpec::Cgroup(cg) => cgroup_processes(&cg.dir),
            TargetSpec::Pids { tree: false, .. } | TargetSpec::Command(_) => Vec::new(),
        };
        let known: BTreeSet<u32> = self.pids.iter().copied().chain([first]).collect();
        let mut added = Vec::new();
        for pid in found.into_iter().filter(|p| !known.contains(p)) {
            // Gone since it was listed: nothing to trace.
            if let Ok(pidfd) = target::pidfd_open(pid) {
                self.pids.push(pid);
                self.pidfds.push(pidfd);
                added.push(pid);
            }
        }
        added
    }

    pub fn is_empty(&self) -> bool {
        self.pids.is_empty() && self.cgroup_dir.is_none()
    }

    /// Whether every traced process is gone: for a cgroup, when it holds
    /// none (also those that joined); otherwise when the first and every
    /// other process traced from the start have exited.
    pub fn all_exited(&self, first: &Target) -> bool {
        if let Some(dir) = &self.cgroup_dir {
            return cgroup::populated(dir) != Some(true);
        }
        let mut fds: Vec<libc::pollfd> = std::iter::once(&first.pidfd)
            .chain(&self.pidfds)
            .map(|fd| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 })
            .collect();
        // SAFETY: `fds` is a valid array of pollfd of the given length; timeout 0 never blocks.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        ready >= 0 && fds.iter().all(|f| f.revents & libc::POLLIN != 0)
    }
}

/// The processes of a cgroup, but numatrace itself: run from a shell of the
/// traced cgroup (or with `--cgroup /`), tracing itself would feed back (its
/// reads of the ring make more events). Likewise for a tree.
fn cgroup_processes(dir: &std::path::Path) -> Vec<u32> {
    let me = std::process::id();
    cgroup::processes(dir).into_iter().filter(|&p| p != me).collect()
}

/// The threads of these processes now (one stat read each, in parallel),
/// skipping those in `known`.
pub fn threads_of(pids: &[u32], known: &BTreeSet<u32>) -> Vec<InitialThread> {
    let pairs: Vec<(u32, u32)> = pids
        .iter()
        .flat_map(|&pid| target::thread_ids(pid).into_iter().map(move |tid| (pid, tid)))
        .filter(|(_, tid)| !known.contains(tid))
        .collect();
    per_thread::map(&pairs, |&(pid, tid)| {
        let t = target::thread(pid, tid);
        InitialThread { tid, tgid: pid, comm: t.comm, cpu: t.cpu }
    })
}

/// Snapshots of these processes (policy, cpuset, placement; numa_maps walks
/// the page tables), in parallel; processes gone meanwhile are left out.
pub fn snapshots(pids: &[u32], topology: &Topology) -> Vec<ProcessSnapshot> {
    // One worker per 256 items in per_thread::map: numa_maps reads are far
    // slower than a stat file, so give each process its own slot.
    let chunks: Vec<&[u32]> = pids.chunks(pids.len().div_ceil(8).max(1)).collect();
    let parallel = |part: &&[u32]| -> Vec<ProcessSnapshot> {
        part.iter().filter_map(|&pid| ProcessSnapshot::read_with(pid, topology).ok()).collect()
    };
    if chunks.len() <= 1 {
        return chunks.iter().flat_map(parallel).collect();
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks.iter().map(|part| scope.spawn(move || parallel(part))).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// The live processes among a capture's threads (those with a thread that
/// has not exited), but `first`: new children and joiners too.
pub fn live_others(threads: impl Iterator<Item = (u32, bool)>, first: u32) -> Vec<u32> {
    let mut live: BTreeMap<u32, bool> = BTreeMap::new();
    for (tgid, exited) in threads {
        *live.entry(tgid).or_default() |= !exited;
    }
    live.into_iter().filter(|&(tgid, alive)| alive && tgid != first).map(|(tgid, _)| tgid).collect()
}

/// Processes whose every thread has exited, but `first` and those already
/// in `done` (they are added to it): the kernel may give their ids to new,
/// unrelated processes, which must not be traced.
pub fn newly_exited(threads: impl Iterator<Item = (u32, bool)>, first: u32, done: &mut BTreeSet<u32>) -> Vec<u32> {
    let mut alive: BTreeMap<u32, bool> = BTreeMap::new();
    for (tgid, exited) in threads {
        *alive.entry(tgid).or_default() |= !exited;
    }
    let gone: Vec<u32> =
        alive.into_iter().filter(|&(tgid, a)| !a && tgid != first && !done.contains(&tgid)).map(|(t, _)| t).collect();
    done.extend(&gone);
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_exited_once_all_its_threads_are_and_is_told_once() {
        let mut done = BTreeSet::new();
        let threads = [(10, true), (20, true), (20, false), (30, true), (30, true)];
        assert_eq!(newly_exited(threads.into_iter(), 10, &mut done), vec![30]);
        assert_eq!(newly_exited(threads.into_iter(), 10, &mut done), Vec::<u32>::new());
    }

    #[test]
    fn live_others_are_processes_with_a_running_thread_but_the_first() {
        let threads = [(10, false), (20, true), (20, false), (30, true), (40, false)];
        assert_eq!(live_others(threads.into_iter(), 10), vec![20, 40]);
    }

    #[test]
    fn threads_of_lists_every_thread_of_each_process_but_the_known() {
        let me = std::process::id();
        let all = threads_of(&[me], &BTreeSet::new());
        assert!(all.iter().any(|t| t.tid == me && t.tgid == me && t.cpu.is_some()), "{all:?}");
        let known: BTreeSet<u32> = all.iter().map(|t| t.tid).collect();
        assert!(threads_of(&[me], &known).len() < all.len().max(1));
    }
}
