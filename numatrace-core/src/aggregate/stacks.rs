//! Which call stacks first touched (and took remote hinting faults in) each
//! region, for `--stacks`: a run carries the stack that started it, and all
//! of its pages count for that stack. Empty, and never looked up, in a
//! capture without stacks.
use std::collections::BTreeMap;

use super::RegionKey;
use crate::stacks::StackKey;

/// One stack's share of one region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackTouch {
    pub tid: u32,
    /// Pages first touched by runs that started with this stack.
    pub pages: u64,
    /// Of them, landed on another node than the thread's.
    pub remote_pages: u64,
    /// Remote hinting faults of runs that started with it (the memory's users).
    pub remote_faults: u64,
}

/// Per region, per stack and thread.
#[derive(Clone, Debug, Default)]
pub struct StackTouches {
    pub regions: BTreeMap<RegionKey, BTreeMap<(u32, u32), StackTouch>>,
}

impl StackTouches {
    fn entry(&mut self, key: RegionKey, stack: u32, tid: u32) -> &mut StackTouch {
        let e = self.regions.entry(key).or_default().entry((stack, tid)).or_default();
        e.tid = tid;
        e
    }

    pub fn first_touch(&mut self, key: RegionKey, stack: u32, tid: u32, pages: u64, remote: bool) {
        let e = self.entry(key, stack, tid);
        e.pages += pages;
        if remote {
            e.remote_pages += pages;
        }
    }

    pub fn remote_hinting_faults(&mut self, key: RegionKey, stack: u32, tid: u32, faults: u64) {
        self.entry(key, stack, tid).remote_faults += faults;
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Every (region, stack, touch).
    pub fn iter(&self) -> impl Iterator<Item = (RegionKey, StackKey, &StackTouch)> {
        self.regions.iter().flat_map(|(region, stacks)| {
            stacks.iter().map(move |((id, _), t)| (*region, StackKey { tgid: region.tgid, id: *id }, t))
        })
    }
}
