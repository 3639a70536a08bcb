//! `--stacks` during a capture: each new stack a run names is read from the
//! kernel's `STACKS` map once (per process and id), and the process's
//! mappings are read from /proc while it lives: at its first stack, and
//! again when an address falls outside the mappings known (a library loaded
//! since, or the first read caught the process in its exec). Symbolized at
//! the end ([`StackCollector::finish`]), never on the event path.
use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use aya::maps::{MapData, StackTraceMap};
use numatrace_core::{
    event::Event,
    stacks::{ProcessMaps, Stack, StackKey, StackTable},
};

/// A process's mappings are read again at most this often, and at most
/// [`MAX_REREADS`] times: a truncated stack's garbage addresses fall outside
/// every mapping, and would otherwise have them read on every drain.
const REREAD_EVERY: Duration = Duration::from_millis(100);
const MAX_REREADS: u32 = 20;

/// What is known of one process's mappings.
struct Maps {
    maps: ProcessMaps,
    read_at: Instant,
    reads: u32,
    /// An address of a stack fell outside them.
    stale: bool,
}

pub struct StackCollector {
    map: StackTraceMap<MapData>,
    stacks: BTreeMap<StackKey, Vec<u64>>,
    maps: BTreeMap<u32, Maps>,
    build_ids: BTreeMap<String, Option<String>>,
    /// Ids the map did not hold when read (shown as no stack).
    pub unreadable: BTreeSet<StackKey>,
}

impl StackCollector {
    pub fn new(map: StackTraceMap<MapData>) -> StackCollector {
        StackCollector {
            map,
            stacks: BTreeMap::new(),
            maps: BTreeMap::new(),
            build_ids: BTreeMap::new(),
            unreadable: BTreeSet::new(),
        }
    }

    /// Reads the stack an event names, if it is new.
    pub fn observe(&mut self, event: &Event) {
        let (tgid, id) = match event {
            Event::FirstTouch(e) => (e.header.tgid, e.stack_id()),
            Event::HintingFault(e) => (e.header.tgid, e.stack_id()),
            _ => return,
        };
        let Some(id) = id else { return };
        let key = StackKey { tgid, id };
        if self.stacks.contains_key(&key) || self.unreadable.contains(&key) {
            return;
        }
        let addrs: Vec<u64> = match self.map.get(&id, 0) {
            Ok(trace) => trace.frames().iter().map(|f| f.ip).collect(),
            Err(_) => {
                self.unreadable.insert(key);
                return;
            }
        };
        match self.maps.get_mut(&tgid) {
            Some(known) => {
                known.stale |= addrs.iter().any(|a| known.maps.find(*a).is_none());
                // Read in the middle of its exec (no file mapped yet): again now.
                if known.maps.mappings.is_empty()
                    && let Some(maps) = crate::symbolize::read_maps(tgid, &mut self.build_ids)
                {
                    known.maps = maps;
                    known.read_at = Instant::now();
                }
            }
            None => {
                if let Some(maps) = crate::symbolize::read_maps(tgid, &mut self.build_ids) {
                    let stale = addrs.iter().any(|a| maps.find(*a).is_none());
                    self.maps.insert(tgid, Maps { maps, read_at: Instant::now(), reads: 1, stale });
                }
            }
        }
        self.stacks.insert(key, addrs);
    }

    /// Reads again the mappings of processes whose stacks fell outside them
    /// (after each drain).
    pub fn refresh(&mut self) {
        for (tgid, known) in &mut self.maps {
            if !known.stale || known.reads >= MAX_REREADS || known.read_at.elapsed() < REREAD_EVERY {
                continue;
            }
            known.reads += 1;
            known.read_at = Instant::now();
            if let Some(maps) = crate::symbolize::read_maps(*tgid, &mut self.build_ids) {
                known.maps = merged(&known.maps, maps);
                known.stale = self
                    .stacks
                    .iter()
                    .filter(|(k, _)| k.tgid == *tgid)
                    .any(|(_, addrs)| addrs.iter().any(|a| known.maps.find(*a).is_none()));
            }
        }
    }

    /// The stacks with their frames, for the capture's end facts.
    pub fn finish(self) -> StackTable {
        let mut table = StackTable {
            stacks: self.stacks.into_iter().map(|(key, addrs)| Stack { key, addrs, frames: Vec::new() }).collect(),
            processes: self.maps.into_values().map(|m| m.maps).collect(),
        };
        crate::symbolize::symbolize(&mut table, &[]);
        table
    }
}

/// The mappings read now, and those read before that none of them
/// overlaps: a process read as it exits (a zombie has none) or after an
/// unmap keeps what its earlier stacks ran in.
fn merged(before: &ProcessMaps, now: ProcessMaps) -> ProcessMaps {
    let mut mappings = now.mappings;
    let kept: Vec<_> = before
        .mappings
        .iter()
        .filter(|old| !mappings.iter().any(|m| m.start < old.end && old.start < m.end))
        .cloned()
        .collect();
    mappings.extend(kept);
    mappings.sort_by_key(|m| m.start);
    ProcessMaps { tgid: now.tgid, mappings }
}

#[cfg(test)]
mod tests {
    use numatrace_core::stacks::Mapping;

    use super::*;

    #[test]
    fn a_later_read_keeps_what_it_does_not_replace() {
        let m = |start, end, path: &str| Mapping { start, end, offset: 0, path: path.into(), build_id: None };
        let before = ProcessMaps { tgid: 1, mappings: vec![m(0x1000, 0x2000, "/a"), m(0x5000, 0x6000, "/old")] };
        let now = ProcessMaps { tgid: 1, mappings: vec![m(0x5800, 0x7000, "/new"), m(0x9000, 0xa000, "/lib")] };
        let got: Vec<String> = merged(&before, now).mappings.into_iter().map(|m| m.path).collect();
        assert_eq!(got, ["/a", "/new", "/lib"]);
        let zombie = ProcessMaps { tgid: 1, mappings: Vec::new() };
        assert_eq!(merged(&before, zombie).mappings, before.mappings);
    }
}
