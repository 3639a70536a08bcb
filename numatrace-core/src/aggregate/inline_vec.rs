//! A list that keeps its first few items inline, in its owner's memory.
//!
//! Why: the aggregator's region tables are hash maps of short lists, folded
//! into once per event in a random region. With a `Vec` each fold costs two
//! dependent cache misses (the region's record, then the list's heap block);
//! with the first items inline in the record, the usual fold costs one.
//!
//! Items are found by a small key ([`Keyed`]); the keys of the items past the
//! inline ones are kept apart, packed, so that finding one of those scans a
//! cache line or two instead of every item (a region used by many threads).
use std::ops::Index;

/// An item that a `u64` identifies within its list: two items with the same
/// key are the same item (e.g. one thread from one node onto one node).
pub trait Keyed {
    fn key(&self) -> u64;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlineVec<T, const N: usize> {
    len: usize,
    head: [T; N],
    /// Items past the first `N`, in order.
    tail: Vec<T>,
    /// `tail[i].key()`, packed.
    tail_keys: Vec<u64>,
}

impl<T: Copy + Default, const N: usize> Default for InlineVec<T, N> {
    fn default() -> Self {
        InlineVec { len: 0, head: [T::default(); N], tail: Vec::new(), tail_keys: Vec::new() }
    }
}

impl<T: Keyed, const N: usize> InlineVec<T, N> {
    /// Appends `item` and returns it, in place.
    pub fn push(&mut self, item: T) -> &mut T {
        self.len += 1;
        match self.head.get_mut(self.len - 1) {
            Some(slot) => {
                *slot = item;
                slot
            }
            None => {
                self.tail_keys.push(item.key());
                self.tail.push(item);
                let last = self.tail.len() - 1;
                &mut self.tail[last]
            }
        }
    }

    /// Replaces each item by `map(item)`, in order, merging an item whose
    /// new key is already present into the one before it (`merge(into, item)`).
    pub fn remap(&mut self, map: impl Fn(T) -> T, merge: impl Fn(&mut T, &T))
    where
        T: Copy + Default,
    {
        let items: Vec<T> = self.head[..self.len.min(N)].iter().chain(&self.tail).copied().collect();
        *self = InlineVec { len: 0, head: [T::default(); N], tail: Vec::new(), tail_keys: Vec::new() };
        for item in items {
            let item = map(item);
            match self.find_mut(item.key()) {
                Some(into) => merge(into, &item),
                None => {
                    self.push(item);
                }
            }
        }
    }

    /// The item with this key, if any.
    #[inline]
    pub fn find_mut(&mut self, key: u64) -> Option<&mut T> {
        let n = self.len.min(N);
        if let Some(i) = self.head[..n].iter().position(|item| item.key() == key) {
            return Some(&mut self.head[i]);
        }
        let i = self.tail_keys.iter().position(|k| *k == key)?;
        self.tail.get_mut(i)
    }
}

impl<T, const N: usize> InlineVec<T, N> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn parts(&self) -> (&[T], &[T]) {
        (&self.head[..self.len.min(N)], &self.tail)
    }

    /// Items in the order they were pushed.
    pub fn iter(&self) -> std::iter::Chain<std::slice::Iter<'_, T>, std::slice::Iter<'_, T>> {
        let (head, tail) = self.parts();
        head.iter().chain(tail)
    }

    pub fn iter_mut(&mut self) -> std::iter::Chain<std::slice::IterMut<'_, T>, std::slice::IterMut<'_, T>> {
        let n = self.len.min(N);
        self.head[..n].iter_mut().chain(self.tail.iter_mut())
    }
}

impl<T, const N: usize> Index<usize> for InlineVec<T, N> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        let (head, tail) = self.parts();
        if i < head.len() { &head[i] } else { &tail[i - head.len()] }
    }
}

impl<'a, T, const N: usize> IntoIterator for &'a InlineVec<T, N> {
    type Item = &'a T;
    type IntoIter = std::iter::Chain<std::slice::Iter<'a, T>, std::slice::Iter<'a, T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Keyed for u32 {
        fn key(&self) -> u64 {
            u64::from(*self)
        }
    }

    impl Keyed for u64 {
        fn key(&self) -> u64 {
            *self
        }
    }

    #[test]
    fn finds_items_inline_and_past_the_inline_ones() {
        let mut v: InlineVec<u32, 2> = InlineVec::default();
        for i in 0..5 {
            v.push(i * 10);
        }
        *v.find_mut(10).expect("inline") += 1;
        *v.find_mut(40).expect("in the tail") += 1;
        assert!(v.find_mut(7).is_none());
        assert_eq!(v.iter().copied().collect::<Vec<_>>(), [0, 11, 20, 30, 41]);
    }

    #[test]
    fn keeps_push_order_across_the_inline_boundary() {
        let mut v: InlineVec<u32, 2> = InlineVec::default();
        assert!(v.is_empty());
        for i in 0..5 {
            v.push(i * 10);
        }
        assert_eq!(v.len(), 5);
        assert_eq!(v.iter().copied().collect::<Vec<_>>(), [0, 10, 20, 30, 40]);
        assert_eq!((v[1], v[2], v[4]), (10, 20, 40));
        for x in v.iter_mut() {
            *x += 1;
        }
        assert_eq!((&v).into_iter().copied().collect::<Vec<_>>(), [1, 11, 21, 31, 41]);
    }

    #[test]
    fn a_short_list_stays_inline() {
        let mut v: InlineVec<u64, 4> = InlineVec::default();
        v.push(7);
        assert_eq!(v.iter().copied().collect::<Vec<_>>(), [7]);
        assert_eq!(v.tail.capacity(), 0);
    }
}
