//! Call stacks of first touches (`--stacks`): the kernel keeps each distinct
//! user stack once and the runs carry its id; userspace keeps, per process,
//! the stacks' addresses and the mappings they fall in (read from
//! /proc/PID/maps while the process lived), and at the end of the capture
//! the symbolized frames. All of it is stored in the capture's end facts, so
//! a replay prints the same sites, and `report --symbols DIR` can symbolize
//! the addresses again with binaries found elsewhere (by build id).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A stack as the kernel's `STACKS` map names it, within one process (the
/// same id means the same addresses, which mean different code in another process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StackKey {
    pub tgid: u32,
    pub id: u32,
}

/// Everything a capture knows about its stacks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StackTable {
    pub stacks: Vec<Stack>,
    /// Per process, the file mappings its stacks' addresses fall in.
    pub processes: Vec<ProcessMaps>,
}

/// One distinct stack of one process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stack {
    pub key: StackKey,
    /// Instruction addresses, innermost first: the faulting instruction,
    /// then return addresses, as the kernel's frame-pointer walk found them.
    pub addrs: Vec<u64>,
    /// Symbolized frames, innermost first (inlined functions expanded).
    pub frames: Vec<Frame>,
}

/// A process's mappings of files (`/proc/PID/maps` lines with a path).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessMaps {
    pub tgid: u32,
    pub mappings: Vec<Mapping>,
}

/// One executable mapping of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    pub path: String,
    /// The ELF build id (hex), where the file has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
}

/// One frame of a call site.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Frame {
    /// The function (demangled), when a symbol covers the address.
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The file mapped at the address (its base name), when one is.
    pub module: Option<String>,
    /// The address's offset in that file (or the bare address when no file maps it).
    pub offset: u64,
}

impl Frame {
    /// `function (file:line)`, else `module+0xoffset`, else the address.
    pub fn label(&self) -> String {
        match (&self.function, &self.file, self.line) {
            (Some(f), Some(file), Some(line)) => format!("{f} ({}:{line})", short_path(file)),
            (Some(f), _, _) => f.clone(),
            (None, ..) => match &self.module {
                Some(m) => format!("{m}+{:#x}", self.offset),
                None => format!("{:#x}", self.offset),
            },
        }
    }
}

/// The last two components of a source path: enough to find the file.
fn short_path(path: &str) -> &str {
    let mut cut = path.len();
    for _ in 0..2 {
        match path[..cut].rfind('/') {
            Some(at) => cut = at,
            None => return path,
        }
    }
    &path[cut + 1..]
}

impl ProcessMaps {
    /// The mapping that holds `addr`, if any.
    pub fn find(&self, addr: u64) -> Option<&Mapping> {
        self.mappings.iter().find(|m| (m.start..m.end).contains(&addr))
    }
}

impl StackTable {
    /// The stack with this key.
    pub fn get(&self, key: StackKey) -> Option<&Stack> {
        self.stacks.iter().find(|s| s.key == key)
    }

    /// Mappings by process.
    pub fn maps_by_process(&self) -> BTreeMap<u32, &ProcessMaps> {
        self.processes.iter().map(|p| (p.tgid, p)).collect()
    }

    /// Stacks whose walk stopped early: the outermost frame is not a
    /// program's entry (`_start`, `main`, `clone`, a thread start routine).
    /// With frame pointers omitted the kernel's walk stops after a frame or
    /// two, or wanders into garbage.
    pub fn truncated(&self) -> usize {
        self.stacks.iter().filter(|s| s.truncated()).count()
    }
}

impl Stack {
    /// Its walk stopped early (see [`StackTable::truncated`]).
    pub fn truncated(&self) -> bool {
        !reaches_an_entry(&self.frames)
    }
}

/// Stacks holding less than this share of the first-touched pages may be
/// truncated without the hint: a dynamically linked program's loader and
/// C library start-up (no frame pointers in most distributions) first touch
/// a few pages through stacks of one to four frames, in every process.
pub const TRUNCATED_HINT_SHARE: f64 = 0.1;

/// Whether a stack's outermost frames include where threads start.
fn reaches_an_entry(frames: &[Frame]) -> bool {
    const ENTRIES: [&str; 7] =
        ["_start", "main", "__libc_start_main", "__libc_start_call_main", "clone", "clone3", "start_thread"];
    frames.iter().rev().take(3).any(|f| {
        f.function
            .as_deref()
            .is_some_and(|name| ENTRIES.contains(&name) || name.ends_with("::main") || name.contains("thread_start"))
    })
}

/// How to get whole stacks, said where stacks come out truncated.
pub const FRAME_POINTER_HINT: &str = "the user stacks are walked by frame pointers: build with -fno-omit-frame-pointer (C, C++) or RUSTFLAGS=\"-C force-frame-pointers=yes\" (Rust), or use a distribution built with frame pointers (Fedora 38+, Ubuntu 24.04+), for whole stacks";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_say_what_is_known() {
        let full = Frame {
            function: Some("init_thread".into()),
            file: Some("/src/workloads/src/scenarios.rs".into()),
            line: Some(152),
            module: Some("numatrace".into()),
            offset: 0x1234,
        };
        assert_eq!(full.label(), "init_thread (src/scenarios.rs:152)");
        let bare = Frame { module: Some("libc.so.6".into()), offset: 0x29d90, ..Default::default() };
        assert_eq!(bare.label(), "libc.so.6+0x29d90");
        assert_eq!(Frame { offset: 0x7f00, ..Default::default() }.label(), "0x7f00");
    }

    #[test]
    fn a_stack_without_an_entry_is_truncated() {
        let f = |name: &str| Frame { function: Some(name.into()), ..Default::default() };
        let key = StackKey { tgid: 1, id: 0 };
        let whole = Stack { key, addrs: vec![1, 2, 3], frames: vec![f("touch"), f("init"), f("main"), f("_start")] };
        let cut = Stack { key: StackKey { tgid: 1, id: 1 }, addrs: vec![1], frames: vec![f("touch")] };
        let table = StackTable { stacks: vec![whole, cut], processes: Vec::new() };
        assert_eq!(table.truncated(), 1);
    }
}
