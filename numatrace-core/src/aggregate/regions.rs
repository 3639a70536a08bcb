//! A table of per-region records keyed by [`RegionKey`]: a compact hash
//! index (8 bytes a slot) in front of a dense array of records, in the order
//! regions were first seen.
//!
//! Why not `HashMap<RegionKey, V>`: its buckets hold the records (hundreds of
//! bytes each), so finding a key's bucket is itself a trip to memory, and a
//! batch cannot ask for the records of the next events while folding this
//! one. Here the index stays in cache (tens of KiB per thousand regions), so
//! [`RegionTable::prefetch`] finds a record without waiting and asks the CPU to
//! load it; a fold then touches that record's cache lines and nothing else.
use std::ops::Index;

use super::{model::RegionKey, prefetch::prefetch_read};

/// Records of type `V` per region, in first-seen order.
#[derive(Clone, Debug)]
pub struct RegionTable<V> {
    /// Open addressing, linear probing; a power of two long (or empty), at
    /// most three quarters used. A slot is 0 (empty) or a tag from the key's
    /// hash in the high half and 1 + the record's position in the low half.
    slots: Vec<u64>,
    entries: Vec<(RegionKey, V)>,
    /// 64 - log2(slots.len()): the hash's top bits pick the home slot.
    shift: u32,
}

impl<V> Default for RegionTable<V> {
    fn default() -> Self {
        RegionTable { slots: Vec::new(), entries: Vec::new(), shift: 64 }
    }
}

/// Fibonacci hashing: neighbouring regions (the usual keys) land far apart.
fn hash(key: &RegionKey) -> u64 {
    ((u64::from(key.tgid) << 40) ^ key.region).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The bits of a slot that hold its tag (the low half holds 1 + the record's position).
const TAG_MASK: u64 = 0xffff_ffff_0000_0000;

/// The slot's tag for a hash: bits the home slot does not use, so that a
/// slot whose tag differs is passed over without loading its record.
fn tag(hash: u64) -> u64 {
    (hash << 8) & TAG_MASK
}

/// How much of a record [`RegionTable::prefetch`] asks for: its key and the
/// first inline entries, what the usual fold reads (all of a 200+ byte record
/// measured ~20 % slower in the aggregator bench than these three lines).
const RECORD_PREFETCH_BYTES: usize = 192;

/// The two steps of a prefetch, taken some events apart: the index slot
/// first, then (once that slot is in cache) the record it points at.
#[derive(Clone, Copy, Debug)]
pub enum PrefetchStep {
    IndexSlot,
    Record,
}

/// Slots of a table that has just grown past empty.
const FIRST_SLOTS: usize = 16;

impl<V> RegionTable<V> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The slot where the search for hash `h` starts (the table must have slots).
    #[inline]
    fn home_slot(&self, h: u64) -> usize {
        (h >> self.shift) as usize & (self.slots.len() - 1)
    }

    /// The slot searched after `at` (linear probing, wrapping around).
    #[inline]
    fn next_slot(&self, at: usize) -> usize {
        (at + 1) & (self.slots.len() - 1)
    }

    /// The position of `key`'s record, or the empty slot where it would go.
    #[inline]
    fn find(&self, key: &RegionKey) -> Result<usize, usize> {
        if self.slots.is_empty() {
            return Err(0);
        }
        let h = hash(key);
        let mut at = self.home_slot(h);
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                return Err(at);
            }
            if slot & TAG_MASK == tag(h) {
                let pos = (slot as u32 - 1) as usize;
                if self.entries[pos].0 == *key {
                    return Ok(pos);
                }
            }
            at = self.next_slot(at);
        }
    }

    pub fn get(&self, key: &RegionKey) -> Option<&V> {
        self.find(key).ok().map(|pos| &self.entries[pos].1)
    }

    pub fn contains_key(&self, key: &RegionKey) -> bool {
        self.find(key).is_ok()
    }

    /// The record of `key`, made with `V::default()` if the region is new.
    #[inline]
    pub fn entry_or_default(&mut self, key: RegionKey) -> &mut V
    where
        V: Default,
    {
        let pos = match self.find(&key) {
            Ok(pos) => pos,
            Err(_) => self.insert(key),
        };
        &mut self.entries[pos].1
    }

    /// Adds a new region's record; returns its position.
    #[cold]
    fn insert(&mut self, key: RegionKey) -> usize
    where
        V: Default,
    {
        if (self.entries.len() + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let pos = self.entries.len();
        self.entries.push((key, V::default()));
        self.place(pos);
        pos
    }

    /// Points a free slot at the record at `pos`.
    fn place(&mut self, pos: usize) {
        let h = hash(&self.entries[pos].0);
        let mut at = self.home_slot(h);
        while self.slots[at] != 0 {
            at = self.next_slot(at);
        }
        // Positions fit: a table of 2^32 regions (8 EiB of memory) is not reachable.
        self.slots[at] = tag(h) | (pos as u64 + 1);
    }

    /// Doubles the slots and indexes every record again.
    fn grow(&mut self) {
        let slots = (self.slots.len() * 2).max(FIRST_SLOTS);
        self.slots = vec![0; slots];
        self.shift = 64 - slots.trailing_zeros();
        for pos in 0..self.entries.len() {
            self.place(pos);
        }
    }

    /// One of the two prefetch steps below for `key`.
    #[inline]
    pub fn prefetch_step(&self, key: &RegionKey, step: PrefetchStep) {
        match step {
            PrefetchStep::IndexSlot => self.prefetch_slot(key),
            PrefetchStep::Record => self.prefetch(key),
        }
    }

    /// Asks the CPU to start loading the index slot where `key`'s search
    /// starts: the first step of a prefetch, which reads no memory itself.
    #[inline]
    pub fn prefetch_slot(&self, key: &RegionKey) {
        if !self.slots.is_empty() {
            prefetch_read(&self.slots[self.home_slot(hash(key))], 8);
        }
    }

    /// Asks the CPU to start loading `key`'s record (if the region is known),
    /// so that folding into it a few events later does not wait for memory.
    /// It reads only the index: the record a matching tag points at is
    /// prefetched without checking its key (a rare wrong guess costs nothing).
    #[inline]
    pub fn prefetch(&self, key: &RegionKey) {
        if self.slots.is_empty() {
            return;
        }
        let h = hash(key);
        let mut at = self.home_slot(h);
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                return;
            }
            if slot & TAG_MASK == tag(h) {
                if let Some(entry) = self.entries.get((slot as u32 - 1) as usize) {
                    prefetch_read(entry, RECORD_PREFETCH_BYTES);
                }
                return;
            }
            at = self.next_slot(at);
        }
    }

    /// (key, record) pairs in first-seen order.
    pub fn iter(&self) -> Iter<'_, V> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Every record, to change in place (keys and order stay).
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &RegionKey> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }
}

/// Iterator over a [`RegionTable`]'s (key, record) pairs.
pub type Iter<'a, V> =
    std::iter::Map<std::slice::Iter<'a, (RegionKey, V)>, fn(&'a (RegionKey, V)) -> (&'a RegionKey, &'a V)>;

impl<V> Index<&RegionKey> for RegionTable<V> {
    type Output = V;

    /// Panics if the region is not in the table, like `HashMap`'s index.
    fn index(&self, key: &RegionKey) -> &V {
        self.get(key).expect("region not in the table")
    }
}

impl<'a, V> IntoIterator for &'a RegionTable<V> {
    type Item = (&'a RegionKey, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(region: u64) -> RegionKey {
        RegionKey { tgid: 1, region }
    }

    #[test]
    fn finds_by_key_across_growth_in_first_seen_order() {
        let mut t: RegionTable<u64> = RegionTable::default();
        assert_eq!(t.get(&key(1)), None);
        t.prefetch_slot(&key(1));
        t.prefetch(&key(1));
        for r in [5, 3, 9, 3, 5] {
            *t.entry_or_default(key(r)) += r;
        }
        for r in 100..1000 {
            *t.entry_or_default(key(r)) += 1;
        }
        assert_eq!(t.len(), 903);
        let got: Vec<_> = t.iter().map(|(k, v)| (k.region, *v)).take(4).collect();
        assert_eq!(got, [(5, 10), (3, 6), (9, 9), (100, 1)]);
        assert!(t.contains_key(&key(999)) && !t.contains_key(&key(1000)));
        assert_eq!(t[&key(500)], 1);
        assert_eq!(t.values().sum::<u64>(), 25 + 900);
        assert_eq!(t[&key(3)], 6);
        assert_eq!(t.get(&key(4)), None);
        assert!(t.contains_key(&key(9)));
        t.prefetch_slot(&key(9));
        t.prefetch(&key(9));
        t.prefetch(&key(4));
    }
}
