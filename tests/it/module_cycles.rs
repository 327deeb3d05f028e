//! The modules of each directory module under `src/` import each other in one direction
//! only: read off the `use` lines and paths (`super::x`, `crate::dir::x`), the children of
//! a directory form no cycle. (The directory's own `mod.rs` is their parent and is left
//! out: its children may use what it defines.)

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::support::rust_files;

/// The child modules of `dir` (a directory module): name → its source files.
fn children(dir: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() && path.join("mod.rs").exists() {
            out.insert(name, rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") && name != "mod" {
            out.insert(name, vec![path]);
        }
    }
    out
}

/// The identifiers `text` reaches through `prefix` (`super::x`, `super::{x, y::z}`).
fn reached(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        let rest = &text[at + prefix.len()..];
        let group = match rest.strip_prefix('{') {
            Some(inner) => &inner[..inner.find('}').unwrap_or(inner.len())],
            None => rest,
        };
        let firsts: Vec<&str> = if rest.starts_with('{') {
            group.split(',').collect()
        } else {
            vec![group]
        };
        for first in firsts {
            let ident: String = first
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.insert(ident);
        }
    }
    names
}

/// Edges child → sibling child of the directory module at `dir` (`crate::<path>`).
fn edges(src: &Path, dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let module_path = dir
        .strip_prefix(src)
        .unwrap()
        .to_string_lossy()
        .replace('/', "::");
    let kids = children(dir);
    let mut graph = BTreeMap::new();
    for (name, files) in &kids {
        let mut uses = BTreeSet::new();
        for file in files {
            // The product's code only: a doc link to a sibling is no import, and a test
            // module (last in its file) may use any sibling.
            let whole = fs::read_to_string(file).unwrap();
            let code = whole.split("#[cfg(test)]").next().unwrap_or_default();
            let text: String = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            // How many `super::` lead from this file's module up to `dir`.
            let depth = file.strip_prefix(dir).unwrap().components().count();
            let ups = if file.ends_with("mod.rs") {
                depth - 1
            } else {
                depth
            };
            uses.extend(reached(&text, &format!("crate::{module_path}::")));
            uses.extend(reached(&text, &"super::".repeat(ups)));
        }
        uses.retain(|u| u != name && kids.contains_key(u));
        graph.insert(name.clone(), uses);
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn directory_modules(dir: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() && path.join("mod.rs").exists() {
            dirs.push(path.clone());
            dirs.extend(directory_modules(&path));
        }
    }
    dirs
}

#[test]
fn no_directory_module_has_an_import_cycle_between_its_children() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let dirs = directory_modules(&src);
    assert!(
        dirs.iter().any(|d| d.ends_with("daemon/landing")),
        "the landing is a directory module: {dirs:?}"
    );
    let cycles: Vec<String> = dirs
        .iter()
        .filter_map(|dir| {
            cycle(&edges(&src, dir))
                .map(|found| format!("{}: {}", dir.display(), found.join(" -> ")))
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// The landing and the shutdown do not import each other, and the unsaved verdicts sit
/// below both (each of the two may keep or retry one).
#[test]
fn landing_shutdown_and_unsaved_do_not_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = edges(&src, &src.join("daemon"));
    for (from, to) in [
        ("landing", "shutdown"),
        ("shutdown", "landing"),
        ("unsaved", "landing"),
        ("unsaved", "shutdown"),
    ] {
        assert!(
            !graph[from].contains(to),
            "daemon::{from} imports daemon::{to}: {:?}",
            graph[from]
        );
    }
}
