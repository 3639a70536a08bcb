//! No import cycles between sibling modules of numatrace and numatrace-core.
//! A module may use its parent and its children; two siblings (or anything
//! under them) must not use each other both ways, so each folder reads as
//! one step of the data flow (kernel -> live -> aggregate -> attribution ->
//! report -> capture/export).
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

type ModPath = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: ModPath = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib" || p == "main") {
        parts.pop();
    }
    parts
}

/// The paths a file names through `crate::`, `super::` and `self::`, with
/// `use` trees expanded one level (`use crate::{a::X, b}` names a and b).
fn named_paths(module: &ModPath, text: &str) -> Vec<ModPath> {
    // Tests may reach anywhere; only the code proper counts.
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    let parent: ModPath = module[..module.len().saturating_sub(1)].to_vec();
    let mut out = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent), ("self::", module.clone())] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut heads = Vec::new();
            if let Some(tree) = rest.strip_prefix('{') {
                let mut depth = 0;
                let mut item = String::new();
                for c in tree.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => heads.push(std::mem::take(&mut item)),
                        _ => {}
                    }
                    if depth == 0 && c != ',' && c != '}' {
                        item.push(c);
                    }
                }
                heads.push(item);
            } else {
                heads.push(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect());
            }
            for head in heads {
                let segments: ModPath = head
                    .trim()
                    .split("::")
                    .map(|s| s.trim().to_string())
                    .take_while(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                    .collect();
                let mut full = base.clone();
                full.extend(segments);
                out.push(full);
            }
        }
    }
    out
}

/// Sibling-level edges `a -> b` of one crate's source tree.
fn sibling_edges(src: &Path) -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<ModPath, PathBuf> = files.iter().map(|f| (module_of(src, f), f.clone())).collect();
    let mut edges = BTreeSet::new();
    for (module, file) in &modules {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for path in named_paths(module, &text) {
            // The longest prefix that is a module of this crate.
            let Some(target) = (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains_key(p))
            else {
                continue;
            };
            let common = module.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common == module.len() || common == target.len() {
                continue; // the module itself, a parent or a child
            }
            edges.insert((module[..=common].join("::"), target[..=common].join("::")));
        }
    }
    edges
}

fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<String> {
    edges
        .iter()
        .filter(|(a, b)| edges.contains(&(b.clone(), a.clone())) && a < b)
        .map(|(a, b)| format!("{a} <-> {b}"))
        .collect()
}

fn reaches(edges: &BTreeSet<(String, String)>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(m) = stack.pop() {
        if m == to {
            return true;
        }
        if seen.insert(m.clone()) {
            stack.extend(edges.iter().filter(|(a, _)| *a == m).map(|(_, b)| b.clone()));
        }
    }
    false
}

fn assert_acyclic(krate: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("src");
    let edges = sibling_edges(&src);
    assert!(edges.len() > 5, "{krate}: found only {} module edges; is the parser still reading the tree?", edges.len());
    let mut found = cycles(&edges);
    for (a, b) in &edges {
        if reaches(&edges, b, a) && !found.iter().any(|c| c.contains(a.as_str())) {
            found.push(format!("{a} -> {b} -> ... -> {a}"));
        }
    }
    assert!(found.is_empty(), "{krate}: import cycles between modules:\n  {}", found.join("\n  "));
}

#[test]
fn numatrace_core_has_no_import_cycles() {
    assert_acyclic("numatrace-core");
}

#[test]
fn numatrace_has_no_import_cycles() {
    assert_acyclic("numatrace");
}

#[test]
fn a_cycle_is_found() {
    let edges: BTreeSet<(String, String)> =
        [("facts", "report"), ("report", "attribution"), ("attribution", "facts"), ("report", "machine")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    assert!(reaches(&edges, "report", "facts"));
    assert!(!reaches(&edges, "machine", "report"));
    let module: ModPath = vec!["inspect".into(), "model".into()];
    let named = named_paths(&module, "use super::findings::{Finding, Severity};\nuse crate::{fixes::Fix, machine};");
    let named: Vec<String> = named.iter().map(|p| p.join("::")).collect();
    assert_eq!(named, ["fixes", "machine", "inspect::findings"]);
}
