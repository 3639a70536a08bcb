//! `/sys/devices/system/node/node<N>/meminfo`: what `numastat -m` shows.
//!
//! Lines read `Node 0 MemTotal:  6645972 kB`. Values in kB become bytes;
//! `HugePages_*` values are page counts and become bytes by the default huge
//! page size, exactly as numastat converts them.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One node's meminfo, field name -> bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeMeminfo(pub BTreeMap<String, u64>);

/// numastat -m's row order; fields it does not know come after, by name.
pub const NUMASTAT_ORDER: [&str; 36] = [
    "MemTotal",
    "MemFree",
    "MemUsed",
    "HighTotal",
    "HighFree",
    "LowTotal",
    "LowFree",
    "Active",
    "Inactive",
    "Active(anon)",
    "Inactive(anon)",
    "Active(file)",
    "Inactive(file)",
    "Unevictable",
    "Mlocked",
    "Dirty",
    "Writeback",
    "FilePages",
    "Mapped",
    "AnonPages",
    "Shmem",
    "KernelStack",
    "PageTables",
    "NFS_Unstable",
    "Bounce",
    "WritebackTmp",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "AnonHugePages",
    "ShmemHugePages",
    "ShmemPmdMapped",
    "HugePages_Total",
    "HugePages_Free",
    "HugePages_Surp",
    "KReclaimable",
];

impl NodeMeminfo {
    /// Parses a node meminfo file. Lines that do not parse are counted in the second value.
    pub fn parse(text: &str, default_huge_page_bytes: u64) -> (NodeMeminfo, u64) {
        let mut fields = BTreeMap::new();
        let mut skipped = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match parse_line(line, default_huge_page_bytes) {
                Some((k, v)) => {
                    fields.insert(k, v);
                }
                None => skipped += 1,
            }
        }
        (NodeMeminfo(fields), skipped)
    }

    pub fn get(&self, field: &str) -> Option<u64> {
        self.0.get(field).copied()
    }

    /// Field names in numastat -m's order, then the rest.
    pub fn ordered_fields(&self) -> Vec<&str> {
        let mut out: Vec<&str> = NUMASTAT_ORDER.iter().copied().filter(|f| self.0.contains_key(*f)).collect();
        out.extend(self.0.keys().map(String::as_str).filter(|k| !NUMASTAT_ORDER.contains(k)));
        out
    }
}

fn parse_line(line: &str, huge: u64) -> Option<(String, u64)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    // "Node", id, "Field:", value, optional unit
    if words.len() < 4 || words[0] != "Node" {
        return None;
    }
    words[1].parse::<u32>().ok()?;
    let key = words[2].strip_suffix(':')?;
    let value: u64 = words[3].parse().ok()?;
    let bytes = match words.get(4) {
        Some(&"kB") => value.checked_mul(1024)?,
        Some(_) => return None,
        None if key.starts_with("HugePages") => value.checked_mul(huge)?,
        None => value,
    };
    Some((key.to_string(), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kb_and_hugepage_counts() {
        let text =
            "Node 0 MemTotal:        6645972 kB\nNode 0 MemFree:  1 kB\nNode 0 HugePages_Total:     3\nNode 0 bogus\n";
        let (m, skipped) = NodeMeminfo::parse(text, 2 << 20);
        assert_eq!(m.get("MemTotal"), Some(6645972 * 1024));
        assert_eq!(m.get("HugePages_Total"), Some(3 * (2 << 20)));
        assert_eq!(skipped, 1);
        assert_eq!(m.ordered_fields(), vec!["MemTotal", "MemFree", "HugePages_Total"]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = NodeMeminfo::parse(&text, 2 << 20);
        }
    }
}
