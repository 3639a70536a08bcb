//! Symbolizing `--stacks` with blazesym: each address is turned into an
//! offset in the file mapped there (from the process's recorded mappings),
//! then into functions and source lines from that file's ELF symbols and
//! DWARF (inlined calls expanded). Run at the end of a capture, or by
//! `numatrace report --symbols DIR` with the binaries found in DIR by build
//! id or name. A file that is gone, stripped or foreign gives `module+offset`
//! frames, never an error.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use blazesym::symbolize::{
    Input, Symbolized, Symbolizer,
    source::{Elf, Source},
};
use numatrace_core::stacks::{Frame, Mapping, ProcessMaps, StackTable};

/// The ELF build id of a file, as hex (none for a file that is gone or has none).
pub fn build_id(path: &Path) -> Option<String> {
    let id = blazesym::helper::read_elf_build_id(path).ok().flatten()?;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

/// Where the file of a mapping is found: in `dirs` (`DIR/.build-id/ab/cdef...`,
/// `DIR/.build-id/ab/cdef....debug`, or `DIR/<name>` with the same build id,
/// or any build id when none was recorded), else at its recorded path when
/// its build id still matches.
fn locate(m: &Mapping, dirs: &[PathBuf]) -> Option<PathBuf> {
    let matches = |p: &Path| p.is_file() && (m.build_id.is_none() || build_id(p) == m.build_id);
    for dir in dirs {
        if let Some(id) = m.build_id.as_deref().filter(|id| id.len() > 2) {
            let base = dir.join(".build-id").join(&id[..2]);
            for candidate in [base.join(&id[2..]), base.join(format!("{}.debug", &id[2..]))] {
                if candidate.is_file() {
                    return Some(candidate);
                }
            }
        }
        let name = Path::new(&m.path).file_name()?;
        let candidate = dir.join(name);
        if matches(&candidate) {
            return Some(candidate);
        }
    }
    let own = PathBuf::from(&m.path);
    matches(&own).then_some(own)
}

/// The base name of a mapped file.
fn module_name(path: &str) -> String {
    path.trim_end_matches(" (deleted)").rsplit('/').next().unwrap_or(path).to_string()
}

/// A source location: file and line, each if known.
type Location = (Option<String>, Option<u32>);

/// Frames of one address (innermost first): a function with its inlined
/// calls, or the module and offset alone.
fn frames_of(symbolizer: &Symbolizer, file: Option<&Path>, offset: u64, module: Option<String>) -> Vec<Frame> {
    let bare = || vec![Frame { module: module.clone(), offset, ..Default::default() }];
    let Some(file) = file else { return bare() };
    let src = Source::Elf(Elf::new(file));
    let Ok(Symbolized::Sym(sym)) = symbolizer.symbolize_single(&src, Input::FileOffset(offset)) else {
        return bare();
    };
    let location = |ci: Option<&blazesym::symbolize::CodeInfo<'_>>| {
        ci.map(|ci| (Some(ci.to_path().display().to_string()), ci.line)).unwrap_or((None, None))
    };
    // blazesym gives the outer function, then the calls inlined into it,
    // outermost first; each one's location is where it is in its own body.
    let mut out = Vec::new();
    let mut names: Vec<(String, Location)> = vec![(sym.name.to_string(), location(sym.code_info.as_deref()))];
    names.extend(sym.inlined.iter().map(|f| (f.name.to_string(), location(f.code_info.as_ref()))));
    for (name, (file, line)) in names.into_iter().rev() {
        out.push(Frame { function: Some(name), file, line, module: module.clone(), offset });
    }
    out
}

/// Symbolizes every stack of `table` in place; `dirs` are where to look
/// for the binaries first (`--symbols`).
pub fn symbolize(table: &mut StackTable, dirs: &[PathBuf]) {
    let symbolizer = Symbolizer::new();
    let maps: BTreeMap<u32, ProcessMaps> = table.processes.iter().map(|p| (p.tgid, p.clone())).collect();
    let mut located: BTreeMap<String, Option<PathBuf>> = BTreeMap::new();
    for stack in &mut table.stacks {
        let mut frames = Vec::new();
        for (i, &addr) in stack.addrs.iter().enumerate() {
            // A return address points after its call: the call's line is one byte before.
            let pc = if i == 0 { addr } else { addr.saturating_sub(1) };
            match maps.get(&stack.key.tgid).and_then(|p| p.find(pc)) {
                Some(m) => {
                    let file = located.entry(m.path.clone()).or_insert_with(|| locate(m, dirs)).clone();
                    let offset = pc - m.start + m.offset;
                    frames.extend(frames_of(&symbolizer, file.as_deref(), offset, Some(module_name(&m.path))));
                }
                None => frames.push(Frame { offset: addr, ..Default::default() }),
            }
        }
        stack.frames = frames;
    }
}

/// The executable file mappings of a process, with their build ids
/// (`build_ids` caches them by path across reads); `None` when it is gone.
pub fn read_maps(tgid: u32, build_ids: &mut BTreeMap<String, Option<String>>) -> Option<ProcessMaps> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/maps")).ok()?;
    let mut mappings = Vec::new();
    for line in text.lines() {
        let Some(m) = parse_maps_line(line) else { continue };
        let id = build_ids
            .entry(m.path.clone())
            .or_insert_with(|| {
                // Through the process's root: its files even in another mount namespace.
                build_id(Path::new(&format!("/proc/{tgid}/root{}", m.path))).or_else(|| build_id(Path::new(&m.path)))
            })
            .clone();
        mappings.push(Mapping { build_id: id, ..m });
    }
    Some(ProcessMaps { tgid, mappings })
}

/// One executable file mapping of a /proc/PID/maps line (no build id yet).
fn parse_maps_line(line: &str) -> Option<Mapping> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let (_dev, _inode) = (fields.next()?, fields.next()?);
    let path = fields.next()?.trim_start();
    if !perms.contains('x') || !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        path: path.to_string(),
        build_id: None,
    })
}

#[cfg(test)]
mod tests {
    use numatrace_core::stacks::{Stack, StackKey};

    use super::*;

    #[test]
    fn parses_executable_file_mappings_only() {
        let m = parse_maps_line("55d0c0a00000-55d0c0b00000 r-xp 00001000 fd:01 1234      /usr/bin/prog").unwrap();
        assert_eq!(
            (m.start, m.end, m.offset, m.path.as_str()),
            (0x55d0c0a00000, 0x55d0c0b00000, 0x1000, "/usr/bin/prog")
        );
        assert!(parse_maps_line("7ffd1000-7ffd2000 r-xp 00000000 00:00 0          [vdso]").is_none());
        assert!(parse_maps_line("55d0c0a00000-55d0c0b00000 rw-p 00001000 fd:01 1234 /usr/bin/prog").is_none());
        let deleted = parse_maps_line("1000-2000 r-xp 00000000 fd:01 9 /tmp/gone (deleted)").unwrap();
        assert_eq!(module_name(&deleted.path), "gone");
        assert!(parse_maps_line("garbage").is_none());
    }

    /// This test's own code, symbolized through its own mappings: the
    /// function and file come back; a deleted file and an unmapped address
    /// give module+offset and a bare address.
    #[test]
    #[inline(never)]
    fn symbolizes_its_own_code_and_survives_what_is_gone() {
        let here = symbolizes_its_own_code_and_survives_what_is_gone as *const () as u64;
        let maps = read_maps(std::process::id(), &mut BTreeMap::new()).expect("own maps");
        assert!(maps.find(here).is_some(), "own code is in an executable mapping");
        let mut gone = maps.clone();
        gone.tgid = 2;
        for m in &mut gone.mappings {
            m.path = format!("/nonexistent{}", m.path);
        }
        let stack = |tgid| Stack { key: StackKey { tgid, id: 0 }, addrs: vec![here, 0x10], frames: Vec::new() };
        let mut table =
            StackTable { stacks: vec![stack(1), stack(2)], processes: vec![ProcessMaps { tgid: 1, ..maps }, gone] };
        symbolize(&mut table, &[]);
        let own = &table.stacks[0].frames;
        let f = own.iter().find(|f| f.function.is_some()).expect("a named frame");
        assert!(f.function.as_deref().unwrap_or_default().contains("symbolizes_its_own_code"), "{own:?}");
        assert!(f.file.as_deref().unwrap_or_default().ends_with("symbolize.rs"), "{own:?}");
        assert!(f.line.is_some());
        assert_eq!(own.last().map(|f| (f.module.clone(), f.offset)), Some((None, 0x10)));
        let lost = &table.stacks[1].frames;
        assert!(lost[0].function.is_none() && lost[0].module.is_some(), "{lost:?}");
        assert!(lost[0].label().contains("+0x"), "{}", lost[0].label());
    }
}
