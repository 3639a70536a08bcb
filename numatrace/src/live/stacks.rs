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
            Some(known) => known.stale |= addrs.iter().any(|a| known.maps.find(*a).is_none()),
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
                known.maps = maps;
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
