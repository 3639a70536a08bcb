//! Every user-space process and its threads from /proc, on every refresh:
//! /proc/PID/stat (and /proc/PID/task/TID/stat for a process with more than
//! one thread) for the CPU each thread last ran on and its CPU time;
//! /proc/PID/cgroup once per process.
use std::{collections::HashMap, fs, io::Read};

use anyhow::{Context, Result};
use numatrace_core::system::{ProcessSample, ThreadSample};
use procfs::{
    FromRead,
    process::{Process, Stat},
};

/// `PF_KTHREAD` in a task's flags: a kernel thread, which has no memory of its own.
const PF_KTHREAD: u32 = 0x0020_0000;

/// A process idle (no CPU time) for this many refreshes in a row is read
/// only every [`IDLE_EVERY`]th refresh: where a sleeping process's threads
/// last ran does not change, and most processes of a big host sleep.
const IDLE_AFTER: u32 = 2;
const IDLE_EVERY: u64 = 4;

/// What the last reading of a pid found.
enum Known {
    /// A user-space process, and how many refreshes in a row it used no CPU.
    Process { sample: ProcessSample, idle: u32 },
    /// A kernel thread or a zombie: not listed.
    Skipped,
}

/// Reads the processes; remembers each one's last reading (its cgroup is
/// read once per process, by pid and start time).
#[derive(Default)]
pub struct ProcessReader {
    known: HashMap<u32, Known>,
    /// The map of the refresh before (what is left in it exited), cleared
    /// and filled at the next: a thousand processes' map allocated anew
    /// each second was churn.
    spare: HashMap<u32, Known>,
    /// How many processes the last refresh listed.
    listed: usize,
    refreshes: u64,
}

impl ProcessReader {
    /// Every user-space process now, in pid order. A process that exits
    /// while it is read is left out; only listing /proc can fail.
    pub fn read(&mut self) -> Result<Vec<ProcessSample>> {
        self.refreshes += 1;
        let page = procfs::page_size();
        let mut out = Vec::with_capacity(self.listed);
        let mut known = std::mem::take(&mut self.spare);
        known.clear();
        let mut buf = Vec::with_capacity(512);
        for entry in fs::read_dir("/proc").context("listing /proc")?.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            // Spread the idle ones over the refreshes by pid.
            let turn = (self.refreshes + u64::from(pid)).is_multiple_of(IDLE_EVERY);
            let previous = self.known.remove(&pid);
            let skip = !turn
                && match &previous {
                    Some(Known::Process { idle, .. }) => *idle >= IDLE_AFTER,
                    Some(Known::Skipped) => true,
                    None => false,
                };
            if skip {
                if let Some(Known::Process { sample, .. }) = &previous {
                    out.push(sample.clone());
                }
                known.extend(previous.map(|k| (pid, k)));
                continue;
            }
            // One open and read of the stat file; procfs's Process would open the folder and stat it first.
            let Some(stat) = read_stat(&format!("/proc/{pid}/stat"), &mut buf) else { continue };
            if stat.flags & PF_KTHREAD != 0 || stat.state == 'Z' {
                known.insert(pid, Known::Skipped);
                continue;
            }
            let threads =
                if stat.num_threads > 1 { threads(pid, &mut buf) } else { thread(&stat).into_iter().collect() };
            if threads.is_empty() {
                continue;
            }
            let ran = |t: &[ThreadSample]| t.iter().map(|t| t.run_ticks).fold(0u64, u64::saturating_add);
            let (cgroup, idle) = match previous {
                Some(Known::Process { sample, idle }) if sample.start_ticks == stat.starttime => {
                    let idle = if ran(&sample.threads) == ran(&threads) { idle + 1 } else { 0 };
                    (sample.cgroup, idle)
                }
                _ => (cgroup_of(pid), 0),
            };
            let sample = ProcessSample {
                pid,
                start_ticks: stat.starttime,
                comm: stat.comm,
                cgroup,
                rss_bytes: stat.rss.saturating_mul(page),
                threads,
            };
            out.push(sample.clone());
            known.insert(pid, Known::Process { sample, idle });
        }
        // Whatever was not listed has exited.
        self.spare = std::mem::replace(&mut self.known, known);
        self.listed = out.len();
        out.sort_by_key(|p| p.pid);
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

/// A stat file, parsed by procfs; `None` when it is gone (the task exited).
// fs::read would stat the file for its size first (a system call more per process) and allocate.
#[allow(clippy::verbose_file_reads)]
fn read_stat(path: &str, buf: &mut Vec<u8>) -> Option<Stat> {
    buf.clear();
    fs::File::open(path).and_then(|mut f| f.read_to_end(buf)).ok()?;
    Stat::from_read(buf.as_slice()).ok()
}

fn threads(pid: u32, buf: &mut Vec<u8>) -> Vec<ThreadSample> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let tids: Vec<String> = tasks.flatten().filter_map(|t| t.file_name().into_string().ok()).collect();
    tids.iter()
        .filter_map(|tid| read_stat(&format!("/proc/{pid}/task/{tid}/stat"), buf))
        .filter_map(|s| thread(&s))
        .collect()
}

/// The cgroup v2 path, else the v1 cpuset hierarchy's, else empty.
fn cgroup_of(pid: u32) -> String {
    let Ok(groups) = Process::new(pid as i32).and_then(|p| p.cgroups()) else { return String::new() };
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

    #[test]
    fn an_idle_process_is_read_every_few_refreshes() {
        let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = sleeper.id();
        let mut reader = ProcessReader::default();
        let mut listed = 0;
        for _ in 0..(IDLE_AFTER as u64 + 2 * IDLE_EVERY) {
            let all = reader.read().unwrap();
            listed += u32::from(all.iter().any(|p| p.pid == pid));
        }
        // Listed every time, read only on its turns once idle.
        assert_eq!(listed, IDLE_AFTER + 2 * IDLE_EVERY as u32);
        assert!(matches!(reader.known.get(&pid), Some(Known::Process { idle, .. }) if *idle >= IDLE_AFTER));
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        // A pid that is gone is forgotten at the next listing.
        reader.read().unwrap();
        assert!(!reader.known.contains_key(&pid));
    }
}
