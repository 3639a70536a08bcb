//! A sum per NUMA node: the few nodes a thread touched, ordered by node.
//!
//! Why not `BTreeMap<u32, u64>`: the aggregator adds to one of these per
//! event, and a thread sees one to a handful of nodes. A short sorted list in
//! one allocation is found with a scan of one cache line, where the map walks
//! its nodes. It reads like the map did (`iter`, `values`, `keys`, `get`, `[&node]`).
use std::{collections::BTreeMap, ops::Index};

/// Sums by node id, ordered by node; a node is present once something was added to it (even 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeCounts(Vec<(u32, u64)>);

impl NodeCounts {
    /// Adds `n` to `node`'s sum, making it present.
    #[inline]
    pub fn add(&mut self, node: u32, n: u64) {
        match self.0.iter_mut().find(|(k, _)| *k == node) {
            Some((_, sum)) => *sum += n,
            None => {
                let at = self.0.partition_point(|(k, _)| *k < node);
                self.0.insert(at, (node, n));
            }
        }
    }

    pub fn get(&self, node: &u32) -> Option<&u64> {
        self.0.iter().find(|(k, _)| k == node).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// (node, sum) in node order.
    pub fn iter(&self) -> Iter<'_> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &u32> + ExactSizeIterator {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &u64> + ExactSizeIterator {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn to_map(&self) -> BTreeMap<u32, u64> {
        self.0.iter().copied().collect()
    }
}

/// Iterator over a [`NodeCounts`]' (node, sum) pairs.
pub type Iter<'a> = std::iter::Map<std::slice::Iter<'a, (u32, u64)>, fn(&'a (u32, u64)) -> (&'a u32, &'a u64)>;

impl<'a> IntoIterator for &'a NodeCounts {
    type Item = (&'a u32, &'a u64);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Index<&u32> for NodeCounts {
    type Output = u64;

    /// Panics if nothing was added to the node, like `BTreeMap`'s index.
    fn index(&self, node: &u32) -> &u64 {
        self.get(node).expect("node has no count")
    }
}

impl<const N: usize> From<[(u32, u64); N]> for NodeCounts {
    fn from(pairs: [(u32, u64); N]) -> Self {
        let mut counts = NodeCounts::default();
        for (node, n) in pairs {
            counts.add(node, n);
        }
        counts
    }
}

impl PartialEq<BTreeMap<u32, u64>> for NodeCounts {
    fn eq(&self, other: &BTreeMap<u32, u64>) -> bool {
        self.0.len() == other.len() && self.iter().zip(other).all(|(a, b)| a == b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_by_node_in_node_order() {
        let mut c = NodeCounts::default();
        c.add(3, 5);
        c.add(1, 2);
        c.add(3, 1);
        c.add(2, 0);
        assert_eq!(c, BTreeMap::from([(1, 2), (2, 0), (3, 6)]));
        assert_eq!(c.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(c.values().sum::<u64>(), 8);
        assert_eq!((c[&3], c.get(&4)), (6, None));
        assert_eq!(c.to_map(), BTreeMap::from([(1, 2), (2, 0), (3, 6)]));
        assert_eq!(c, NodeCounts::from([(3, 6), (1, 2), (2, 0)]));
    }
}
