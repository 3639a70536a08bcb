//! A process tree at the start (`--tree`): every descendant of the named
//! processes, from /proc/PID/task/TID/children (each thread's children), or,
//! where the kernel lacks those files (CONFIG_PROC_CHILDREN), from every
//! process's parent pid.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
};

use super::cgroup::parse_pids;

/// Every descendant of `roots` now, in order, roots excluded.
pub fn descendants(roots: &[u32]) -> Vec<u32> {
    let has_children_files = roots.iter().any(|r| fs::metadata(format!("/proc/{r}/task/{r}/children")).is_ok());
    let children: Box<dyn Fn(u32) -> Vec<u32>> = if has_children_files {
        Box::new(children_of)
    } else {
        let by_parent = parents_now();
        Box::new(move |pid| by_parent.get(&pid).cloned().unwrap_or_default())
    };
    let roots_set: BTreeSet<u32> = roots.iter().copied().collect();
    let mut seen = BTreeSet::new();
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        for child in children(pid) {
            if !roots_set.contains(&child) && seen.insert(child) {
                stack.push(child);
            }
        }
    }
    seen.into_iter().collect()
}

/// The children of every thread of `pid` (a child belongs to the thread that forked it).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(task.path().join("children")) {
            out.extend(parse_pids(&text));
        }
    }
    out
}

/// parent pid -> children, for every process now.
fn parents_now() -> BTreeMap<u32, Vec<u32>> {
    let mut by_parent: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let Ok(entries) = fs::read_dir("/proc") else { return by_parent };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Some(ppid) = fs::read_to_string(entry.path().join("stat")).ok().and_then(|t| parent_pid(&t)) {
            by_parent.entry(ppid).or_default().push(pid);
        }
    }
    by_parent
}

/// The parent of a process now (None when it is gone).
pub fn parent_of(pid: u32) -> Option<u32> {
    fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|t| parent_pid(&t))
}

/// The process a group of them hangs from: the lowest pid whose parent is
/// outside the group (a service's main process, a container's init), or
/// the lowest pid when every parent is inside (or unknown).
pub fn root_of(pids: &[u32], parent: impl Fn(u32) -> Option<u32>) -> Option<u32> {
    let set: BTreeSet<u32> = pids.iter().copied().collect();
    set.iter().copied().find(|&p| parent(p).is_none_or(|pp| !set.contains(&pp))).or_else(|| set.first().copied())
}

/// Field 4 of /proc/PID/stat (after the name, which may hold spaces and parentheses).
fn parent_pid(stat: &str) -> Option<u32> {
    stat.get(stat.rfind(')')? + 1..)?.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_of_a_group_is_its_lowest_process_whose_parent_is_outside() {
        // 300 forked 120 after a pid wrap; 50's parent is outside too, but 120's is inside.
        let parents = BTreeMap::from([(120, 300), (300, 1), (301, 300), (50, 7)]);
        let parent = |p: u32| parents.get(&p).copied();
        assert_eq!(root_of(&[301, 120, 300], parent), Some(300));
        assert_eq!(root_of(&[301, 120, 300, 50], parent), Some(50));
        // A cycle cannot happen, but unknown parents still give an answer.
        assert_eq!(root_of(&[9, 8], |_| None), Some(8));
        assert_eq!(root_of(&[], parent), None);
    }

    #[test]
    fn reads_the_parent_pid_past_a_name_with_parentheses() {
        assert_eq!(parent_pid("4242 (my (odd) name) S 17 4242 4242 0 -1"), Some(17));
        assert_eq!(parent_pid("4242 (cut"), None);
    }

    #[test]
    fn finds_children_and_grandchildren_of_a_real_process() {
        // sh -> (sleep, sh -> sleep): two levels below the root.
        let mut root = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sh -c 'sleep 30 & wait' & wait"])
            .spawn()
            .expect("sh runs");
        let pid = root.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = Vec::new();
        while std::time::Instant::now() < deadline {
            found = descendants(&[pid]);
            if found.len() >= 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let by_parent = parents_now();
        let mut via_parents = Vec::new();
        let mut stack = vec![pid];
        while let Some(p) = stack.pop() {
            for &c in by_parent.get(&p).into_iter().flatten() {
                via_parents.push(c);
                stack.push(c);
            }
        }
        via_parents.sort_unstable();
        // Kill the whole group before asserting.
        for p in found.iter().chain(std::iter::once(&pid)) {
            // SAFETY: signalling processes this test started.
            unsafe { libc::kill(*p as i32, libc::SIGKILL) };
        }
        let _ = root.wait();
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found, via_parents);
    }
}
