//! A cause's call sites (`--stacks`): the stacks that first touched its
//! regions, each with the cause's remote pages split over them in proportion
//! to the pages they touched there, and the threads that ran them.
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{evidence::Contribution, kinds::CauseKind};
use crate::{
    aggregate::{Aggregator, stacks::StackTouch},
    stacks::{Frame, StackKey, StackTable},
};

/// Sites kept per cause, most pages first.
pub const MAX_SITES: usize = 10;

/// One call site of a cause.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// Innermost first: the code that touched the memory, then its callers.
    pub frames: Vec<Frame>,
    /// The cause's remote pages attributed to this site.
    pub pages: u64,
    pub threads: Vec<u32>,
    /// The stack in the capture (process and kernel stack id).
    pub stack: StackKey,
}

/// What a touch weighs for a cause: the pages it placed (remote ones when the
/// cause is remote at first touch), else its remote hinting faults.
fn weight(kind: CauseKind, t: &StackTouch, by_faults: bool) -> f64 {
    if by_faults {
        return t.remote_faults as f64;
    }
    match kind {
        CauseKind::AllocationSpill | CauseKind::MemoryPolicy => t.remote_pages as f64,
        _ => t.pages as f64,
    }
}

/// The sites of one cause from its contributions (no frames yet: see [`resolve`]).
pub fn of_cause(agg: &Aggregator, kind: CauseKind, parts: &[Contribution]) -> Vec<Site> {
    if agg.stacks.is_empty() {
        return Vec::new();
    }
    // Region address -> the stack touches there (every process).
    let mut by_region: BTreeMap<u64, Vec<(StackKey, &StackTouch)>> = BTreeMap::new();
    for (key, stack, touch) in agg.stacks.iter() {
        by_region.entry(key.region).or_default().push((stack, touch));
    }
    let mut sites: BTreeMap<StackKey, (f64, BTreeSet<u32>)> = BTreeMap::new();
    for c in parts {
        let touches: Vec<(StackKey, &StackTouch)> = if c.regions.is_empty() {
            by_region.values().flatten().filter(|(_, t)| c.tids.contains(&t.tid)).copied().collect()
        } else {
            c.regions.iter().filter_map(|r| by_region.get(r)).flatten().copied().collect()
        };
        // The placer is among the cause's threads: its stacks, when it has any there.
        let of_tids: Vec<(StackKey, &StackTouch)> =
            touches.iter().filter(|(_, t)| c.tids.contains(&t.tid)).copied().collect();
        let touches = if of_tids.is_empty() { touches } else { of_tids };
        let by_faults = touches.iter().all(|(_, t)| weight(kind, t, false) == 0.0);
        let total: f64 = touches.iter().map(|(_, t)| weight(kind, t, by_faults)).sum();
        if total <= 0.0 {
            continue;
        }
        for (stack, t) in touches {
            let w = weight(kind, t, by_faults);
            if w > 0.0 {
                let site = sites.entry(stack).or_default();
                site.0 += c.pages * w / total;
                site.1.insert(t.tid);
            }
        }
    }
    let mut out: Vec<Site> = sites
        .into_iter()
        .map(|(stack, (pages, tids))| Site {
            frames: Vec::new(),
            pages: pages.round() as u64,
            threads: tids.into_iter().collect(),
            stack,
        })
        .filter(|s| s.pages > 0)
        .collect();
    out.sort_by(|a, b| b.pages.cmp(&a.pages).then(a.stack.cmp(&b.stack)));
    out.truncate(MAX_SITES);
    out
}

/// Fills the sites' frames from the capture's stacks; a stack the table
/// lacks (lost at the end) keeps no frames.
pub fn resolve(sites: &mut [Site], table: Option<&StackTable>) {
    let Some(table) = table else { return };
    for site in sites {
        if let Some(stack) = table.get(site.stack) {
            site.frames.clone_from(&stack.frames);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        aggregate::RegionKey,
        machine::Topology,
        stacks::{Stack, StackTable},
    };

    fn contribution(kind: CauseKind, pages: f64, tids: &[u32], regions: &[u64]) -> Contribution {
        Contribution {
            kind,
            pages,
            tids: tids.iter().copied().collect(),
            first_ns: 0,
            last_ns: 0,
            memory_nodes: BTreeSet::new(),
            thread_nodes: BTreeSet::new(),
            regions: regions.iter().copied().collect(),
            evidence: String::new(),
            repaired_pages: 0.0,
            mover: None,
        }
    }

    #[test]
    fn pages_split_over_the_placers_stacks() {
        let mut agg = Aggregator::new(Topology::synthetic(&[vec![0, 1], vec![2, 3]]), BTreeMap::new());
        let key = |region| RegionKey { tgid: 100, region };
        // Thread 101 touched region 1 from two sites (3:1), region 2 from the first;
        // thread 102 (a user) touched region 1 too, from a third site.
        agg.stacks.first_touch(key(1), 7, 101, 384, false);
        agg.stacks.first_touch(key(1), 8, 101, 128, false);
        agg.stacks.first_touch(key(2), 7, 101, 512, false);
        agg.stacks.first_touch(key(1), 9, 102, 10, false);
        let parts = [contribution(CauseKind::FirstTouchByOtherThread, 1000.0, &[101, 103], &[1, 2])];
        let sites = of_cause(&agg, CauseKind::FirstTouchByOtherThread, &parts);
        let got: Vec<(u32, u64, Vec<u32>)> = sites.iter().map(|s| (s.stack.id, s.pages, s.threads.clone())).collect();
        assert_eq!(got, vec![(7, 875, vec![101]), (8, 125, vec![101])]);
        // A spill weighs only the pages that landed remote.
        agg.stacks.first_touch(key(3), 11, 104, 512, false);
        agg.stacks.first_touch(key(3), 12, 104, 512, true);
        let spill = [contribution(CauseKind::AllocationSpill, 512.0, &[104], &[3])];
        let sites = of_cause(&agg, CauseKind::AllocationSpill, &spill);
        assert_eq!(sites.iter().map(|s| (s.stack.id, s.pages)).collect::<Vec<_>>(), vec![(12, 512)]);
        let table = StackTable {
            stacks: vec![Stack {
                key: StackKey { tgid: 100, id: 12 },
                addrs: vec![0x1000],
                frames: vec![Frame { function: Some("fill".into()), ..Default::default() }],
            }],
            processes: Vec::new(),
        };
        let mut sites = sites;
        resolve(&mut sites, Some(&table));
        assert_eq!(sites[0].frames[0].function.as_deref(), Some("fill"));
    }

    #[test]
    fn no_stacks_no_sites() {
        let agg = Aggregator::new(Topology::synthetic(&[vec![0, 1], vec![2, 3]]), BTreeMap::new());
        let parts = [contribution(CauseKind::FirstTouchByOtherThread, 10.0, &[1], &[1])];
        assert!(of_cause(&agg, CauseKind::FirstTouchByOtherThread, &parts).is_empty());
    }
}
