//! Memory shared between traced processes, found in their snapshots.
//!
//! The kernel side keys a region by (tgid, address >> 21): the same shared
//! page seen from two processes is two regions, and the postmaster's first
//! touch of `shared_buffers` would never meet a backend's hinting faults on
//! it. The processes' numa_maps name each mapping's backing object (a SysV
//! segment, `/dev/zero (deleted)` for anonymous shared memory, a memfd, a
//! file), so a region inside a shared mapping is re-keyed to one canonical
//! process and address per object.
//!
//! What numa_maps can and cannot tell (no inode, no file offset, no end
//! address, no shared/private flag):
//! - a mapping of a file or shared memory holding no anonymous pages
//!   (`anon=0`) holds only page-cache or shmem pages: shared with whoever
//!   maps the object. One with anonymous pages is a private copy-on-write
//!   mapping (a library's data): never shared.
//! - objects whose name is not unique (`/dev/zero (deleted)`, an
//!   IPC_PRIVATE `/SYSV00000000`, `/anon_hugepage`, memfds) are the same
//!   object only at the same address: what a fork inherits (PostgreSQL's
//!   main shared memory). Uniquely named ones (a keyed SysV segment, a
//!   `/dev/shm` file, a regular file) match by name and by which of the
//!   process's mappings of that name it is (the n-th), at any address.
//! - a mapping ends where the next one starts (numa_maps lists every VMA).
use std::collections::{BTreeMap, BTreeSet};

use crate::{
    aggregate::RegionKey,
    machine::{Mapping, ProcessSnapshot},
};

const REGION_SHIFT: u32 = numatrace_common::REGION_SHIFT;

/// The first domain id of a shared object (see [`SharedMappings::domain_of`]).
pub const OBJECT_DOMAIN: u32 = 1 << 31;

/// The identity of a shared object as numa_maps lets us tell it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ObjectKey {
    /// A name many objects share: the same object only at the same address.
    AtAddress { file: String, start: u64 },
    /// A unique name: its n-th mapping in a process.
    Named { file: String, nth: usize },
}

/// Names that many distinct objects carry.
fn name_is_unique(file: &str) -> bool {
    const ANONYMOUS: [&str; 4] = ["/dev/zero", "/SYSV00000000", "/anon_hugepage", "/memfd:"];
    !ANONYMOUS.iter().any(|p| file.starts_with(p))
}

/// A mapping whose pages are shared with every process that maps its object.
fn holds_shared_pages(m: &Mapping) -> bool {
    m.file.is_some() && m.anon_pages == 0
}

/// A process's mapping of an object: (pid, start, end, 4 KiB pages per node).
type Mapped = (u32, u64, u64, BTreeMap<u32, u64>);

/// One process's mapping of a shared object.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Placement {
    start: u64,
    /// The next mapping's start (u64::MAX for the last).
    end: u64,
    object: usize,
}

/// Shared objects mapped by two or more traced processes, and where each
/// process maps them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedMappings {
    /// Per object: its name, the canonical (pid, start), the pids mapping it,
    /// and its pages per node (counted once, from the copy that shows most).
    objects: Vec<SharedObject>,
    /// pid -> its mappings of shared objects, by start.
    by_pid: BTreeMap<u32, Vec<Placement>>,
}

/// A shared object seen in several processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedObject {
    pub file: String,
    /// The process and address its regions are filed under.
    pub canonical_pid: u32,
    pub canonical_start: u64,
    pub pids: BTreeSet<u32>,
    /// 4 KiB pages per node, counted once for all processes.
    pub pages_by_node: BTreeMap<u32, u64>,
}

impl SharedObject {
    /// A numa_maps line standing for the object (for the mapping filters).
    fn as_mapping(&self) -> Mapping {
        Mapping {
            start: self.canonical_start,
            policy: "default".into(),
            kind: crate::machine::MappingKind::File,
            file: Some(self.file.clone()),
            pages_by_node: self.pages_by_node.clone(),
            page_size_bytes: 4096,
            anon_pages: 0,
            dirty_pages: 0,
        }
    }
}

impl SharedMappings {
    /// From the latest snapshot of each process (the first of a pid wins).
    pub fn from_snapshots<'a>(snapshots: impl IntoIterator<Item = &'a ProcessSnapshot>) -> SharedMappings {
        SharedMappings::from_snapshots_and_forks(snapshots, &BTreeMap::new())
    }

    /// As [`SharedMappings::from_snapshots`], and a process forked during
    /// the capture that has no snapshot maps what its nearest ancestor with
    /// one maps shared, at the same addresses (what a fork inherits: a
    /// postmaster's backends). `forks`: child pid -> parent pid.
    pub fn from_snapshots_and_forks<'a>(
        snapshots: impl IntoIterator<Item = &'a ProcessSnapshot>,
        forks: &BTreeMap<u32, u32>,
    ) -> SharedMappings {
        let mut seen: BTreeSet<u32> = BTreeSet::new();
        // object key -> (pid, start, end, pages) for each process mapping it
        let mut found: BTreeMap<ObjectKey, Vec<Mapped>> = BTreeMap::new();
        for snap in snapshots {
            if !seen.insert(snap.pid) {
                continue;
            }
            let Some(maps) = &snap.numa_maps else { continue };
            let mut mappings: Vec<&Mapping> = maps.mappings.iter().collect();
            mappings.sort_by_key(|m| m.start);
            let mut nth: BTreeMap<&str, usize> = BTreeMap::new();
            for (i, m) in mappings.iter().enumerate() {
                let Some(file) = m.file.as_deref() else { continue };
                let n = nth.entry(file).or_default();
                let this_nth = *n;
                *n += 1;
                if !holds_shared_pages(m) {
                    continue;
                }
                let key = if name_is_unique(file) {
                    ObjectKey::Named { file: file.to_string(), nth: this_nth }
                } else {
                    ObjectKey::AtAddress { file: file.to_string(), start: m.start }
                };
                let end = mappings.get(i + 1).map_or(u64::MAX, |next| next.start);
                let pages = m.bytes_by_node().into_iter().map(|(node, b)| (node, b / 4096)).collect();
                found.entry(key).or_default().push((snap.pid, m.start, end, pages));
            }
        }
        // Forked children without a snapshot: their ancestor's shared mappings.
        for &child in forks.keys().filter(|c| !seen.contains(c)) {
            let mut ancestor = forks.get(&child).copied();
            // A chain of forks is short; a loop in bad data ends here too.
            for _ in 0..64 {
                match ancestor {
                    Some(a) if !seen.contains(&a) => ancestor = forks.get(&a).copied(),
                    _ => break,
                }
            }
            let Some(ancestor) = ancestor.filter(|a| seen.contains(a)) else { continue };
            for places in found.values_mut() {
                let inherited: Vec<Mapped> =
                    places.iter().filter(|p| p.0 == ancestor).map(|p| (child, p.1, p.2, BTreeMap::new())).collect();
                places.extend(inherited);
            }
        }
        let mut out = SharedMappings::default();
        for (key, places) in found {
            let pids: BTreeSet<u32> = places.iter().map(|p| p.0).collect();
            if pids.len() < 2 {
                continue;
            }
            let file = match key {
                ObjectKey::AtAddress { file, .. } | ObjectKey::Named { file, .. } => file,
            };
            // The lowest pid: a postmaster before the backends it forked.
            let Some(canonical) = places.iter().min_by_key(|p| p.0) else { continue };
            let pages_by_node =
                places.iter().max_by_key(|p| p.3.values().sum::<u64>()).map(|p| p.3.clone()).unwrap_or_default();
            let object = out.objects.len();
            out.objects.push(SharedObject {
                file: file.replace("\\040", " "),
                canonical_pid: canonical.0,
                canonical_start: canonical.1,
                pids,
                pages_by_node,
            });
            for (pid, start, end, _) in places {
                out.by_pid.entry(pid).or_default().push(Placement { start, end, object });
            }
        }
        for places in out.by_pid.values_mut() {
            places.sort_by_key(|p| p.start);
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn objects(&self) -> &[SharedObject] {
        &self.objects
    }

    /// The object a region of a process lies in, if it is shared.
    pub fn object_of(&self, key: &RegionKey) -> Option<&SharedObject> {
        self.placement(key).and_then(|p| self.objects.get(p.object))
    }

    /// Whose threads use a region: its process's (the tgid), or for shared
    /// memory every process that maps the object (a domain id of its own,
    /// [`OBJECT_DOMAIN`] and up: no tgid reaches 2^31).
    pub fn domain_of(&self, key: &RegionKey) -> u32 {
        match self.placement(key) {
            Some(p) => OBJECT_DOMAIN | p.object as u32,
            None => key.tgid,
        }
    }

    /// The shared object of a domain (`None`: the domain is one process).
    pub fn object_of_domain(&self, domain: u32) -> Option<&SharedObject> {
        if domain & OBJECT_DOMAIN == 0 {
            return None;
        }
        self.objects.get((domain & !OBJECT_DOMAIN) as usize)
    }

    /// Whether a process's threads use the memory of `domain`.
    pub fn in_domain(&self, domain: u32, tgid: u32) -> bool {
        if domain & OBJECT_DOMAIN == 0 {
            return domain == tgid;
        }
        self.objects.get((domain & !OBJECT_DOMAIN) as usize).is_some_and(|o| o.pids.contains(&tgid))
    }

    /// The domains a process's threads use: its own, and each shared object it maps.
    pub fn domains_of(&self, tgid: u32) -> impl Iterator<Item = u32> + '_ {
        let objects = self.by_pid.get(&tgid).map(Vec::as_slice).unwrap_or_default();
        std::iter::once(tgid).chain(objects.iter().map(|p| OBJECT_DOMAIN | p.object as u32))
    }

    fn placement(&self, key: &RegionKey) -> Option<&Placement> {
        let places = self.by_pid.get(&key.tgid)?;
        let lo = key.region << REGION_SHIFT;
        let hi = lo.saturating_add(1 << REGION_SHIFT);
        // The last mapping starting before the region ends, if it reaches into it.
        let i = places.partition_point(|p| p.start < hi);
        let p = places.get(i.checked_sub(1)?)?;
        (p.end > lo).then_some(p)
    }

    /// The key a region is filed under once shared objects are merged: the
    /// canonical process's, at the same offset in the object.
    pub fn alias(&self, key: &RegionKey) -> Option<RegionKey> {
        if key.region == numatrace_common::REGION_UNKNOWN {
            return None;
        }
        let p = self.placement(key)?;
        let o = self.objects.get(p.object)?;
        let offset = i128::from(key.region << REGION_SHIFT) - i128::from(p.start);
        let address = i128::from(o.canonical_start) + offset;
        let region = u64::try_from(address.max(0) >> REGION_SHIFT).ok()?;
        Some(RegionKey { tgid: o.canonical_pid, region })
    }

    /// The aggregator with every process's regions of a shared object filed
    /// under the object's canonical key (`None`: nothing shared to merge).
    pub fn with_aliases(&self, agg: &crate::aggregate::Aggregator) -> Option<crate::aggregate::Aggregator> {
        if self.is_empty() {
            return None;
        }
        agg.with_regions_aliased(|k| self.alias(k))
    }

    /// Pages per node of several processes, each shared object counted
    /// once (numastat -p counts it in every process that maps it).
    pub fn combined_pages_by_node<'a>(
        &self,
        snapshots: impl IntoIterator<Item = &'a ProcessSnapshot>,
    ) -> BTreeMap<u32, u64> {
        self.combined(snapshots, |_| true)
    }

    /// [`SharedMappings::combined_pages_by_node`] of their own memory only
    /// (see [`Mapping::is_own_memory`]): what they placed, not their files' page cache.
    pub fn combined_own_pages_by_node<'a>(
        &self,
        snapshots: impl IntoIterator<Item = &'a ProcessSnapshot>,
    ) -> BTreeMap<u32, u64> {
        self.combined(snapshots, Mapping::is_own_memory)
    }

    fn combined<'a>(
        &self,
        snapshots: impl IntoIterator<Item = &'a ProcessSnapshot>,
        counted: impl Fn(&Mapping) -> bool,
    ) -> BTreeMap<u32, u64> {
        let mut out: BTreeMap<u32, u64> = BTreeMap::new();
        let mut seen: BTreeSet<u32> = BTreeSet::new();
        for snap in snapshots {
            if !seen.insert(snap.pid) {
                continue;
            }
            match &snap.numa_maps {
                Some(maps) => {
                    for m in &maps.mappings {
                        let shared =
                            self.by_pid.get(&snap.pid).is_some_and(|places| places.iter().any(|p| p.start == m.start));
                        if shared || !counted(m) {
                            continue;
                        }
                        for (node, bytes) in m.bytes_by_node() {
                            *out.entry(node).or_default() += bytes / 4096;
                        }
                    }
                }
                None => {
                    for (node, c) in &snap.memory_by_node {
                        *out.entry(*node).or_default() += c.total / 4096;
                    }
                }
            }
        }
        for o in &self.objects {
            if !counted(&o.as_mapping()) {
                continue;
            }
            for (node, pages) in &o.pages_by_node {
                *out.entry(*node).or_default() += pages;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{MappingKind, NumaMaps};

    pub(crate) fn mapping(start: u64, file: Option<&str>, anon: u64, pages: &[(u32, u64)]) -> Mapping {
        Mapping {
            start,
            policy: "default".into(),
            kind: if file.is_some() { MappingKind::File } else { MappingKind::Anon },
            file: file.map(str::to_string),
            pages_by_node: pages.iter().copied().collect(),
            page_size_bytes: 4096,
            anon_pages: anon,
            dirty_pages: 0,
        }
    }

    fn snapshot(pid: u32, mappings: Vec<Mapping>) -> ProcessSnapshot {
        ProcessSnapshot {
            pid,
            taken_at_unix_ms: 0,
            status: None,
            numa_maps: Some(NumaMaps { mappings, skipped_lines: 0 }),
            memory_by_node: BTreeMap::new(),
            threads: Vec::new(),
            threads_by_node: BTreeMap::new(),
            cpuset: None,
            identity: None,
            unreadable: Vec::new(),
        }
    }

    const SHM: u64 = 0x7f00_0000_0000;

    #[test]
    fn a_fork_inherited_mapping_is_one_object_private_memory_is_not() {
        let zero = Some("/dev/zero\\040(deleted)");
        let post = snapshot(
            100,
            vec![
                mapping(0x1000, None, 10, &[(0, 10)]),
                mapping(SHM, zero, 0, &[(0, 32768)]),
                mapping(SHM + (128 << 20), Some("/usr/lib/libc.so.6"), 4, &[(0, 4)]),
            ],
        );
        let backend = |pid| {
            snapshot(
                pid,
                vec![
                    mapping(0x1000, None, 20, &[(1, 20)]),
                    mapping(SHM, zero, 0, &[(0, 30000)]),
                    mapping(SHM + (128 << 20), Some("/usr/lib/libc.so.6"), 2, &[(1, 2)]),
                ],
            )
        };
        // An unrelated process with its own /dev/zero mapping elsewhere.
        let other = snapshot(300, vec![mapping(SHM + (1 << 30), zero, 0, &[(1, 5)])]);
        let snaps = [post, backend(101), backend(102), other];
        let shared = SharedMappings::from_snapshots(&snaps);
        assert_eq!(shared.objects().len(), 1, "{shared:?}");
        let o = &shared.objects()[0];
        assert_eq!((o.file.as_str(), o.canonical_pid), ("/dev/zero (deleted)", 100));
        assert_eq!(o.pids, BTreeSet::from([100, 101, 102]));
        let region = (SHM >> 21) + 3;
        assert_eq!(shared.alias(&RegionKey { tgid: 101, region }), Some(RegionKey { tgid: 100, region }));
        // Private memory at the same address is not shared; nor is the unrelated mapping.
        assert_eq!(shared.alias(&RegionKey { tgid: 101, region: 0 }), None);
        assert_eq!(shared.alias(&RegionKey { tgid: 300, region: (SHM + (1 << 30)) >> 21 }), None);
        // Counted once: 32768 shared pages, not 92768; private pages of each.
        let combined = shared.combined_pages_by_node(&snaps);
        assert_eq!(combined.get(&0), Some(&(10 + 32768 + 4)));
        assert_eq!(combined.get(&1), Some(&(20 + 2 + 20 + 2 + 5)));
        // Their own memory: no library page cache, the shared memory once.
        let own = shared.combined_own_pages_by_node(&snaps);
        assert_eq!(own.get(&0), Some(&(10 + 32768)));
        assert_eq!(own.get(&1), Some(&(20 + 20 + 5)));
    }

    #[test]
    fn a_child_forked_during_the_capture_inherits_its_parents_shared_mappings() {
        let zero = Some("/dev/zero\\040(deleted)");
        let post = snapshot(100, vec![mapping(0x1000, None, 10, &[(0, 10)]), mapping(SHM, zero, 0, &[(0, 512)])]);
        // 101 forked by 100, 102 by 101 (a grandchild), 200 by an untraced process.
        let forks = BTreeMap::from([(101, 100), (102, 101), (200, 1)]);
        let shared = SharedMappings::from_snapshots_and_forks([&post], &forks);
        let region = SHM >> 21;
        for child in [101, 102] {
            assert_eq!(shared.alias(&RegionKey { tgid: child, region }), Some(RegionKey { tgid: 100, region }));
        }
        assert_eq!(shared.alias(&RegionKey { tgid: 200, region }), None);
        assert_eq!(shared.alias(&RegionKey { tgid: 101, region: 0 }), None, "private memory is copied, not shared");
        assert_eq!(shared.objects()[0].pages_by_node, BTreeMap::from([(0, 512)]));
        // Alone, the parent shares nothing.
        assert!(SharedMappings::from_snapshots([&post]).is_empty());
    }

    #[test]
    fn a_named_segment_matches_at_another_address() {
        let sysv = Some("/SYSV0052e2c1\\040(deleted)");
        let a = snapshot(10, vec![mapping(0x4000_0000, sysv, 0, &[(0, 512)])]);
        let b = snapshot(20, vec![mapping(0x8000_0000, sysv, 0, &[(0, 512)])]);
        let shared = SharedMappings::from_snapshots([&a, &b]);
        let got = shared.alias(&RegionKey { tgid: 20, region: (0x8000_0000 >> 21) + 1 });
        assert_eq!(got, Some(RegionKey { tgid: 10, region: (0x4000_0000 >> 21) + 1 }));
        assert_eq!(shared.objects()[0].pages_by_node, BTreeMap::from([(0, 512)]));
    }
}
