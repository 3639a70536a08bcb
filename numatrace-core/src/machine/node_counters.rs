//! `/sys/devices/system/node/node<N>/numastat`: the allocator's per-node
//! counters (what plain `numastat` prints), in pages since boot.
use serde::{Deserialize, Serialize};

/// Allocation counters of one node, in pages.
///
/// `numa_hit`: allocations meant for this node that landed here;
/// `numa_miss`: allocations meant for another node that landed here;
/// `numa_foreign`: allocations meant for this node that landed elsewhere;
/// `interleave_hit`: interleaved allocations that got this node;
/// `local_node`/`other_node`: allocations here by a task running on this / another node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCounters {
    pub numa_hit: u64,
    pub numa_miss: u64,
    pub numa_foreign: u64,
    pub interleave_hit: u64,
    pub local_node: u64,
    pub other_node: u64,
}

impl NodeCounters {
    /// Parses a node numastat file; unknown lines are ignored, malformed ones counted.
    pub fn parse(text: &str) -> (NodeCounters, u64) {
        let mut c = NodeCounters::default();
        let mut skipped = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut words = line.split_whitespace();
            let (Some(key), Some(value)) = (words.next(), words.next().and_then(|v| v.parse::<u64>().ok())) else {
                skipped += 1;
                continue;
            };
            match key {
                "numa_hit" => c.numa_hit = value,
                "numa_miss" => c.numa_miss = value,
                "numa_foreign" => c.numa_foreign = value,
                "interleave_hit" => c.interleave_hit = value,
                "local_node" => c.local_node = value,
                "other_node" => c.other_node = value,
                _ => {}
            }
        }
        (c, skipped)
    }

    /// Share of this node's allocations that were meant for another node (0..1).
    pub fn miss_ratio(&self) -> f64 {
        let all = self.numa_hit.saturating_add(self.numa_miss);
        if all == 0 { 0.0 } else { self.numa_miss as f64 / all as f64 }
    }

    /// Share of allocations meant for this node that landed elsewhere (0..1).
    pub fn foreign_ratio(&self) -> f64 {
        let all = self.numa_hit.saturating_add(self.numa_foreign);
        if all == 0 { 0.0 } else { self.numa_foreign as f64 / all as f64 }
    }

    /// Per-second rates between two readings `seconds` apart (counters that went backwards give 0).
    pub fn rate_since(&self, earlier: &NodeCounters, seconds: f64) -> CounterRates {
        let r = |now: u64, then: u64| if seconds > 0.0 { now.saturating_sub(then) as f64 / seconds } else { 0.0 };
        CounterRates {
            numa_hit: r(self.numa_hit, earlier.numa_hit),
            numa_miss: r(self.numa_miss, earlier.numa_miss),
            numa_foreign: r(self.numa_foreign, earlier.numa_foreign),
            interleave_hit: r(self.interleave_hit, earlier.interleave_hit),
            local_node: r(self.local_node, earlier.local_node),
            other_node: r(self.other_node, earlier.other_node),
        }
    }
}

/// [`NodeCounters`] as pages per second over an interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterRates {
    pub numa_hit: f64,
    pub numa_miss: f64,
    pub numa_foreign: f64,
    pub interleave_hit: f64,
    pub local_node: f64,
    pub other_node: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_format() {
        let (c, skipped) = NodeCounters::parse(
            "numa_hit 10\nnuma_miss 5\nnuma_foreign 1\ninterleave_hit 2\nlocal_node 9\nother_node 6\nbad\n",
        );
        assert_eq!(
            c,
            NodeCounters {
                numa_hit: 10,
                numa_miss: 5,
                numa_foreign: 1,
                interleave_hit: 2,
                local_node: 9,
                other_node: 6
            }
        );
        assert_eq!(skipped, 1);
        assert!((c.miss_ratio() - 5.0 / 15.0).abs() < 1e-9);
        let later = NodeCounters { numa_hit: 20, ..c };
        assert_eq!(later.rate_since(&c, 2.0).numa_hit, 5.0);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = NodeCounters::parse(&text);
        }
    }
}
