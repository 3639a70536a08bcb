//! The aggregator's threads by tid: found by a hash per event, listed in tid order.
//!
//! Why not `BTreeMap<u32, ThreadStats>`: every event looks its thread up, and
//! walking the map's nodes was a tenth of the fold's time. Here a lookup is
//! one hash probe into a small index; the tid order the reports want is kept
//! aside and only read when listing.
use std::{
    collections::{BTreeMap, HashMap},
    ops::Index,
};

use rustc_hash::FxBuildHasher;

use super::model::ThreadStats;

/// Every thread seen, by tid.
#[derive(Clone, Debug, Default)]
pub struct ThreadTable {
    /// In first-seen order.
    stats: Vec<ThreadStats>,
    /// tid -> position in `stats`.
    index: HashMap<u32, u32, FxBuildHasher>,
    /// The same, ordered by tid, for listing.
    by_tid: BTreeMap<u32, u32>,
}

impl ThreadTable {
    pub fn len(&self) -> usize {
        self.stats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stats.is_empty()
    }

    pub fn get(&self, tid: &u32) -> Option<&ThreadStats> {
        self.index.get(tid).map(|&at| &self.stats[at as usize])
    }

    pub fn get_mut(&mut self, tid: &u32) -> Option<&mut ThreadStats> {
        self.index.get(tid).map(|&at| &mut self.stats[at as usize])
    }

    pub fn contains_key(&self, tid: &u32) -> bool {
        self.index.contains_key(tid)
    }

    /// The thread `tid`, made with `new()` if it is not known yet.
    #[inline]
    pub fn get_or_insert_with(&mut self, tid: u32, new: impl FnOnce() -> ThreadStats) -> &mut ThreadStats {
        let at = match self.index.get(&tid) {
            Some(&at) => at as usize,
            None => self.insert(tid, new()),
        };
        &mut self.stats[at]
    }

    #[cold]
    fn insert(&mut self, tid: u32, stats: ThreadStats) -> usize {
        let at = self.stats.len();
        self.stats.push(stats);
        // Fits: 2^32 threads are not reachable (tids are below 2^22).
        self.index.insert(tid, at as u32);
        self.by_tid.insert(tid, at as u32);
        at
    }

    /// Takes the thread `tid` out of the table.
    pub fn remove(&mut self, tid: u32) -> Option<ThreadStats> {
        let at = self.index.remove(&tid)? as usize;
        self.by_tid.remove(&tid);
        let last = self.stats.len() - 1;
        if at != last {
            // The last thread takes the removed one's place.
            let moved = self.stats[last].tid;
            self.index.insert(moved, at as u32);
            self.by_tid.insert(moved, at as u32);
        }
        Some(self.stats.swap_remove(at))
    }

    /// (tid, stats) in tid order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&u32, &ThreadStats)> + ExactSizeIterator {
        self.by_tid.iter().map(|(tid, &at)| (tid, &self.stats[at as usize]))
    }

    /// Tids in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &u32> + ExactSizeIterator {
        self.by_tid.keys()
    }

    /// Threads in tid order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &ThreadStats> + ExactSizeIterator {
        self.by_tid.values().map(|&at| &self.stats[at as usize])
    }
}

impl Index<&u32> for ThreadTable {
    type Output = ThreadStats;

    /// Panics if the thread is not known, like `BTreeMap`'s index.
    fn index(&self, tid: &u32) -> &ThreadStats {
        self.get(tid).expect("thread not in the table")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_tid_and_lists_in_tid_order() {
        let mut t = ThreadTable::default();
        for tid in [30, 10, 20, 10] {
            t.get_or_insert_with(tid, || ThreadStats { tid, ..Default::default() }).migrations += 1;
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.values().map(|s| (s.tid, s.migrations)).collect::<Vec<_>>(), [(10, 2), (20, 1), (30, 1)]);
        assert_eq!(t.keys().copied().collect::<Vec<_>>(), [10, 20, 30]);
        assert_eq!(t[&30].tid, 30);
        assert!(t.get(&40).is_none() && t.contains_key(&20));
        t.get_mut(&20).expect("known").migrations = 9;
        assert_eq!(t.iter().map(|(tid, s)| (*tid, s.migrations)).nth(1), Some((20, 9)));
    }

    #[test]
    fn removes_a_thread_and_keeps_the_others_found() {
        let mut t = ThreadTable::default();
        for tid in [30, 10, 20] {
            t.get_or_insert_with(tid, || ThreadStats { tid, migrations: u64::from(tid), ..Default::default() });
        }
        assert_eq!(t.remove(30).map(|s| s.migrations), Some(30));
        assert!(t.remove(30).is_none());
        assert_eq!(t.len(), 2);
        // 20 was last in first-seen order and took 30's place: still found by tid.
        assert_eq!(t[&20].migrations, 20);
        assert_eq!(t.keys().copied().collect::<Vec<_>>(), [10, 20]);
        assert_eq!(t.remove(10).map(|s| s.tid), Some(10));
        assert_eq!(t.remove(20).map(|s| s.tid), Some(20));
        assert!(t.is_empty());
    }
}
