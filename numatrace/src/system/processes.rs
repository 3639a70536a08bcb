//! Every user-space process and its threads from /proc, on every refresh:
//! /proc/PID/stat (and /proc/PID/task/TID/stat for a process with more than
//! one thread) for the CPU each thread last ran on and its CPU time;
//! /proc/PID/cgroup once per process.
use std::collections::HashMap;

use anyhow::Result;
use numatrace_core::system::{ProcessSample, ThreadSample};
use procfs::process::{Process, Stat};

/// `PF_KTHREAD` in a task's flags: a kernel thread, which has no memory of its own.
const PF_KTHREAD: u32 = 0x0020_0000;

/// Reads the processes; remembers each one's cgroup (by pid and start time).
#[derive(Default)]
pub struct ProcessReader {
    cgroups: HashMap<u32, (u64, String)>,
}

impl ProcessReader {
    /// Every user-space process now, in pid order. A process that exits
    /// while it is read is left out; only listing /proc can fail.
    pub fn read(&mut self) -> Result<Vec<ProcessSample>> {
        let page = procfs::page_size();
        let mut out = Vec::new();
        for process in procfs::process::all_processes()?.flatten() {
            let Ok(stat) = process.stat() else { continue };
            if stat.flags & PF_KTHREAD != 0 || stat.state == 'Z' {
                continue;
            }
            let threads = if stat.num_threads > 1 {
                threads(&process)
            } else {
                vec![thread(&stat)].into_iter().flatten().collect()
            };
            if threads.is_empty() {
                continue;
            }
            let pid = stat.pid as u32;
            let cgroup = match self.cgroups.get(&pid) {
                Some((start, cgroup)) if *start == stat.starttime => cgroup.clone(),
                _ => {
                    let cgroup = cgroup_of(&process);
                    self.cgroups.insert(pid, (stat.starttime, cgroup.clone()));
                    cgroup
                }
            };
            out.push(ProcessSample {
                pid,
                start_ticks: stat.starttime,
                comm: stat.comm,
                cgroup,
                rss_bytes: stat.rss.saturating_mul(page),
                threads,
            });
        }
        out.sort_by_key(|p| p.pid);
        let alive: std::collections::HashSet<u32> = out.iter().map(|p| p.pid).collect();
        self.cgroups.retain(|pid, _| alive.contains(pid));
        Ok(out)
    }
}

fn thread(stat: &Stat) -> Option<ThreadSample> {
    Some(ThreadSample {
        tid: stat.pid as u32,
        cpu: u32::try_from(stat.processor?).ok()?,
        run_ticks: stat.utime.saturating_add(stat.stime),
    })
}

fn threads(process: &Process) -> Vec<ThreadSample> {
    let Ok(tasks) = process.tasks() else { return Vec::new() };
    tasks.flatten().filter_map(|t| t.stat().ok()).filter_map(|s| thread(&s)).collect()
}

/// The cgroup v2 path, else the v1 cpuset hierarchy's, else empty.
fn cgroup_of(process: &Process) -> String {
    let Ok(groups) = process.cgroups() else { return String::new() };
    let v2 = groups.0.iter().find(|g| g.hierarchy == 0);
    let cpuset = groups.0.iter().find(|g| g.controllers.iter().any(|c| c == "cpuset"));
    v2.or(cpuset).map(|g| g.pathname.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_its_threads() {
        let worker = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(500)));
        let all = ProcessReader::default().read().unwrap();
        let me = all.iter().find(|p| p.pid == std::process::id()).expect("this process");
        assert!(me.threads.len() >= 2, "{me:?}");
        assert!(me.rss_bytes > 0);
        assert!(me.cgroup.starts_with('/'), "{me:?}");
        // Kernel threads are left out: kthreadd (pid 2) is one.
        assert!(all.iter().all(|p| p.comm != "kthreadd"));
        worker.join().unwrap();
    }
}
