//! `/proc/<pid>/numa_maps`: one line per mapping with its start address, its
//! memory policy and how many pages of it sit on each node.
//!
//! procfs does not parse this file, so this is our own parser. It never fails
//! on a line: a line it cannot make sense of (truncated, odd token) is
//! skipped and counted in [`NumaMaps::skipped_lines`].
//!
//! Categories follow numastat(8) exactly, because numastat is the oracle the
//! figures are checked against: a line is `huge`, `heap` or `stack` when a
//! token *starts with* that word (first match wins), everything else counts as
//! private (which includes file-backed mappings).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a mapping holds, in numastat's categories plus file/anon for the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingKind {
    /// hugetlbfs pages (`huge` token).
    Huge,
    /// The brk heap (`heap` token). malloc arenas of other threads are `Anon`.
    Heap,
    /// The main thread's stack (`stack` token).
    Stack,
    /// Backed by a file (`file=` token): binaries, libraries, mapped files, shm.
    File,
    /// Anonymous memory without a special name: mmap'ed heap, thread stacks, JVM heaps.
    Anon,
}

impl MappingKind {
    /// numastat -p's row for this kind.
    pub fn numastat_row(self) -> &'static str {
        match self {
            MappingKind::Huge => "huge",
            MappingKind::Heap => "heap",
            MappingKind::Stack => "stack",
            MappingKind::File | MappingKind::Anon => "private",
        }
    }
}

/// One line of numa_maps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// Start address of the mapping.
    pub start: u64,
    /// The memory policy as the kernel prints it: `default`, `bind:0`, `interleave:0-1`, `prefer:1`, `weighted interleave:0-3`...
    pub policy: String,
    pub kind: MappingKind,
    /// The backing file, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Pages resident per node (in units of `page_size_bytes`).
    pub pages_by_node: BTreeMap<u32, u64>,
    /// Size of one page of this mapping (`kernelpagesize_kB`, else 4 KiB or the default huge page size).
    pub page_size_bytes: u64,
    /// `anon=` pages, when present.
    #[serde(default)]
    pub anon_pages: u64,
    /// `dirty=` pages, when present.
    #[serde(default)]
    pub dirty_pages: u64,
}

impl Mapping {
    /// Resident bytes per node.
    pub fn bytes_by_node(&self) -> BTreeMap<u32, u64> {
        self.pages_by_node.iter().map(|(&n, &p)| (n, p.saturating_mul(self.page_size_bytes))).collect()
    }

    /// Resident bytes on all nodes.
    pub fn resident_bytes(&self) -> u64 {
        self.pages_by_node.values().fold(0u64, |acc, &p| acc.saturating_add(p.saturating_mul(self.page_size_bytes)))
    }

    /// Shared memory rather than a file on disk, by the name numa_maps
    /// shows: System V, anonymous shared (`/dev/zero`), hugetlb, memfd, POSIX shm.
    pub fn is_shared_memory(&self) -> bool {
        const SHM: [&str; 5] = ["/SYSV", "/dev/zero", "/anon_hugepage", "/memfd:", "/dev/shm/"];
        self.file.as_deref().is_some_and(|f| SHM.iter().any(|p| f.starts_with(p)))
    }

    /// The process's own memory, not the page cache of its files: anonymous,
    /// heap, stack, huge pages and shared memory.
    pub fn is_own_memory(&self) -> bool {
        self.kind != MappingKind::File || self.is_shared_memory()
    }

    /// The policy's mode without its node list (`interleave:0-1` -> `interleave`).
    pub fn policy_mode(&self) -> &str {
        self.policy.split(':').next().unwrap_or(&self.policy)
    }
}

/// A parsed numa_maps file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaMaps {
    pub mappings: Vec<Mapping>,
    /// Lines that could not be parsed (and were left out).
    pub skipped_lines: u64,
}

/// Sizes numa_maps needs to turn page counts into bytes.
#[derive(Clone, Copy, Debug)]
pub struct PageSizes {
    /// The base page size (4096 on x86-64).
    pub base: u64,
    /// The default huge page size (`Hugepagesize` in /proc/meminfo).
    pub default_huge: u64,
}

impl Default for PageSizes {
    fn default() -> Self {
        PageSizes { base: 4096, default_huge: 2 << 20 }
    }
}

/// Parses the text of a numa_maps file. Never fails; odd lines are counted.
pub fn parse(text: &str, sizes: PageSizes) -> NumaMaps {
    let mut out = NumaMaps::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line, sizes) {
            Some(m) => out.mappings.push(m),
            None => out.skipped_lines += 1,
        }
    }
    out
}

/// The words that name a numastat category, in numastat's order of precedence.
const CATEGORY_WORDS: [(&str, MappingKind); 3] =
    [("huge", MappingKind::Huge), ("heap", MappingKind::Heap), ("stack", MappingKind::Stack)];

/// Parses one line; `None` when it is not a well-formed numa_maps line.
pub fn parse_line(line: &str, sizes: PageSizes) -> Option<Mapping> {
    let mut tokens = line.split_whitespace().peekable();
    let start = u64::from_str_radix(tokens.next()?, 16).ok()?;
    let mut policy = tokens.next()?.to_string();
    // "weighted interleave:..." is two words.
    if policy == "weighted" {
        policy.push(' ');
        policy.push_str(tokens.next()?);
    }
    if policy.contains('=') {
        return None;
    }
    let mut category: Option<MappingKind> = None;
    let mut file: Option<String> = None;
    let mut pages_by_node = BTreeMap::new();
    let mut kernel_page_kb: Option<u64> = None;
    let mut anon_pages = 0;
    let mut dirty_pages = 0;
    while let Some(tok) = tokens.next() {
        if category.is_none() {
            category = CATEGORY_WORDS.iter().find(|(w, _)| tok.starts_with(w)).map(|(_, k)| *k);
        }
        if let Some(path) = tok.strip_prefix("file=") {
            // A path may hold spaces: take following words until the next key=value or keyword.
            let mut path = path.to_string();
            while let Some(next) = tokens.peek() {
                if next.contains('=') || CATEGORY_WORDS.iter().any(|(w, _)| next.starts_with(w)) {
                    break;
                }
                path.push(' ');
                path.push_str(next);
                tokens.next();
            }
            file = Some(path);
            continue;
        }
        if let Some(rest) = tok.strip_prefix('N') {
            let (node, pages) = rest.split_once('=')?;
            let node: u32 = node.parse().ok()?;
            let pages: u64 = pages.parse().ok()?;
            *pages_by_node.entry(node).or_insert(0u64) += pages;
            continue;
        }
        if let Some((key, value)) = tok.split_once('=') {
            match key {
                "kernelpagesize_kB" => kernel_page_kb = Some(value.parse().ok()?),
                "anon" => anon_pages = value.parse().ok()?,
                "dirty" => dirty_pages = value.parse().ok()?,
                _ => {}
            }
        }
    }
    let kind = match category {
        Some(k) => k,
        None if file.is_some() => MappingKind::File,
        None => MappingKind::Anon,
    };
    let page_size_bytes = match kernel_page_kb {
        Some(kb) if kb > 0 => kb.saturating_mul(1024),
        _ if kind == MappingKind::Huge => sizes.default_huge,
        _ => sizes.base,
    };
    Some(Mapping { start, policy, kind, file, pages_by_node, page_size_bytes, anon_pages, dirty_pages })
}

/// Memory of one numastat -p category on one node, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryBytes {
    pub huge: u64,
    pub heap: u64,
    pub stack: u64,
    pub private: u64,
    pub total: u64,
}

impl CategoryBytes {
    fn add(&mut self, kind: MappingKind, bytes: u64) {
        let slot = match kind {
            MappingKind::Huge => &mut self.huge,
            MappingKind::Heap => &mut self.heap,
            MappingKind::Stack => &mut self.stack,
            MappingKind::File | MappingKind::Anon => &mut self.private,
        };
        *slot = slot.saturating_add(bytes);
        self.total = self.total.saturating_add(bytes);
    }
}

impl NumaMaps {
    /// Memory per node and category, as `numastat -p` shows it (in bytes rather than MiB).
    pub fn memory_by_node(&self) -> BTreeMap<u32, CategoryBytes> {
        let mut out: BTreeMap<u32, CategoryBytes> = BTreeMap::new();
        for m in &self.mappings {
            for (node, bytes) in m.bytes_by_node() {
                out.entry(node).or_default().add(m.kind, bytes);
            }
        }
        out
    }

    /// Resident bytes of all mappings.
    pub fn resident_bytes(&self) -> u64 {
        self.mappings.iter().map(Mapping::resident_bytes).fold(0, u64::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
564a3f3c5000 default file=/usr/bin/bash mapped=47 mapmax=3 N0=47 kernelpagesize_kB=4
564a69c2c000 default heap anon=51 dirty=51 mapmax=3 active=0 N0=51 kernelpagesize_kB=4
7fb1f0fd1000 interleave:0-1 anon=129 dirty=129 N0=65 N1=64 kernelpagesize_kB=4
7ffc1b5e6000 default stack anon=33 dirty=33 N1=33 kernelpagesize_kB=4
7f0000000000 bind:1 file=/dev/hugepages/x huge dirty=2 N1=2 kernelpagesize_kB=2048
7f1000000000 default file=/tmp/a b c mapped=1 N0=1 kernelpagesize_kB=4
7f2000000000 weighted interleave:0-1 anon=2 N0=1 N1=1 kernelpagesize_kB=4
";

    #[test]
    fn parses_every_kind() {
        let maps = parse(SAMPLE, PageSizes::default());
        assert_eq!(maps.skipped_lines, 0);
        let kinds: Vec<_> = maps.mappings.iter().map(|m| m.kind).collect();
        use MappingKind::*;
        assert_eq!(kinds, vec![File, Heap, Anon, Stack, Huge, File, Anon]);
        assert_eq!(maps.mappings[2].policy_mode(), "interleave");
        assert_eq!(maps.mappings[5].file.as_deref(), Some("/tmp/a b c"));
        assert_eq!(maps.mappings[6].policy, "weighted interleave:0-1");
        let by_node = maps.memory_by_node();
        assert_eq!(by_node[&0].heap, 51 * 4096);
        assert_eq!(by_node[&1].huge, 2 * 2048 * 1024);
        assert_eq!(by_node[&1].stack, 33 * 4096);
        assert_eq!(by_node[&0].private, (47 + 65 + 1 + 1) * 4096);
        let total: u64 = by_node.values().map(|c| c.total).sum();
        assert_eq!(total, maps.resident_bytes());
    }

    #[test]
    fn skips_and_counts_odd_lines() {
        let text = "zzzz default N0=1\n7f00 default N0=\n7f00 default Nx=3\n7f00\n\n7f00 default N0=2\n";
        let maps = parse(text, PageSizes::default());
        assert_eq!(maps.skipped_lines, 4);
        assert_eq!(maps.mappings.len(), 1);
        assert_eq!(maps.mappings[0].pages_by_node[&0], 2);
    }

    proptest::proptest! {
        /// Any text, including truncated real lines, parses without panicking,
        /// and every non-blank line is either a mapping or counted as skipped.
        #[test]
        fn never_panics_and_accounts_for_every_line(text in "(([0-9a-f]{1,12}|zz) (default|bind:0|interleave:0-1|N0=)( (N[0-9]{0,2}=?[0-9]{0,6}|anon=[0-9]{0,3}|heap|stack|huge|file=/x y|kernelpagesize_kB=[0-9]{0,4}|=|[a-z]{1,5})){0,6}\n){0,8}") {
            let maps = parse(&text, PageSizes::default());
            let lines = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
            proptest::prop_assert_eq!(maps.mappings.len() as u64 + maps.skipped_lines, lines);
        }

        #[test]
        fn truncating_a_real_line_never_panics(cut in 0usize..200) {
            for line in SAMPLE.lines() {
                let cut = cut.min(line.len());
                let _ = parse_line(&line[..cut], PageSizes::default());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(text in "\\PC{0,300}") {
            let _ = parse(&text, PageSizes::default());
        }
    }
}
