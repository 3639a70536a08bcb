//! Helpers the end-to-end tests share (in this crate and in numatrace's own tests).

use std::collections::BTreeMap;

/// numastat's table: row -> column ("Node 0", ..., "Total") -> MiB.
pub type Table = BTreeMap<String, BTreeMap<String, f64>>;

/// Parses numastat's tables (`-m`, `-p`, folded or not).
pub fn parse_numastat(text: &str) -> Table {
    let mut out: Table = BTreeMap::new();
    let mut columns: Vec<String> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"Node") || words == ["Total"] {
            columns.clear();
            let mut i = 0;
            while i < words.len() {
                if words[i] == "Node" && i + 1 < words.len() {
                    columns.push(format!("Node {}", words[i + 1]));
                    i += 2;
                } else {
                    columns.push(words[i].to_string());
                    i += 1;
                }
            }
            continue;
        }
        if words.len() != columns.len() + 1 || columns.is_empty() {
            continue;
        }
        let Ok(values) = words[1..].iter().map(|w| w.parse::<f64>()).collect::<Result<Vec<f64>, _>>() else { continue };
        let row = out.entry(words[0].to_string()).or_default();
        for (c, v) in columns.iter().zip(values) {
            row.insert(c.clone(), v);
        }
    }
    out
}

/// Boots the lab guests the tests share, one way.
pub mod guest {
    use std::time::Duration;

    use xtask::lab::{self, GuestCommand, GuestNumatrace, LabOptions, LabRun, Topology};

    /// A guest of `nodes` nodes of one CPU and `mem_per_node_mib` each,
    /// killed after `timeout`, running the debug numatrace that `cargo test`
    /// has just built (no second compile).
    pub fn options(nodes: u32, mem_per_node_mib: u64, timeout: Duration) -> LabOptions {
        LabOptions {
            topology: Topology { nodes, cpus_per_node: 1, mem_per_node_mib },
            timeout,
            verbose: false,
            stream_stdout: false,
            numatrace: GuestNumatrace::WorkspaceDebug,
            packages: Vec::new(),
        }
    }

    /// Boots of one guest before a soft lockup fails the test.
    const BOOTS: u32 = 3;

    /// Runs `commands` in one guest. A soft lockup of the emulated guest
    /// kernel boots it again, up to [`BOOTS`] in all, and says so: the
    /// results are then all from one clean boot. The lockups are the
    /// emulator's: a vCPU stuck for over a minute at a static-branch site
    /// (the kernel patches its own text as tracepoints attach) on an idle
    /// host too; no real machine has shown one. `what` names the guest.
    pub fn run(what: &str, opts: &LabOptions, commands: &[GuestCommand]) -> Result<LabRun, String> {
        let mut boot = 1;
        loop {
            match lab::run_commands(opts, commands) {
                Err(e) if boot < BOOTS && format!("{e:#}").contains(lab::qemu::SOFT_LOCKUP) => {
                    eprintln!("{what}: the guest failed ({e:#}); booting it again ({} of {BOOTS})", boot + 1);
                    boot += 1;
                }
                other => return other.map_err(|e| format!("{what}: the guest failed: {e:#}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_two_node_table() {
        let t = parse_numastat(
            "                          Node 0          Node 1           Total\n                 --------------- --------------- ---------------\nMemTotal                  344.92          376.45          721.37\n",
        );
        assert_eq!(t["MemTotal"]["Node 1"], 376.45);
        assert_eq!(t["MemTotal"]["Total"], 721.37);
    }
}
