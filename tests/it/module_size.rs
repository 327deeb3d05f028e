//! Small modules and short functions, so a newcomer reads one concept per file: every file
//! under `src/` stays within [`MAX_FILE_LINES`], and every function of the daemon's core
//! (`src/daemon/`) within [`MAX_DAEMON_FN_LINES`]. Read off the text as rustfmt lays it
//! out: a function runs from its `fn` line to the first `}` at the same indentation.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::rust_files;

const MAX_FILE_LINES: usize = 600;
const MAX_DAEMON_FN_LINES: usize = 80;

/// Files still over the bound while another change splits them, each with the size it may
/// not grow past.
const SPLIT_PENDING: &[(&str, usize)] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every source file under `src/<under>`: its name below `src/` and its text.
fn sources(under: &str) -> Vec<(String, String)> {
    rust_files(&src().join(under))
        .into_iter()
        .map(|file| {
            let name = file
                .strip_prefix(src())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, fs::read_to_string(&file).unwrap())
        })
        .collect()
}

/// Every function in `code` longer than `max` lines: its name, first line and length. A
/// test module (last in its file) is left out.
fn long_functions(code: &str, max: usize) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code
        .lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .collect();
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        if line.trim_end().ends_with('}') {
            continue; // `fn f() {}` on one line
        }
        let indent = line.len() - line.trim_start().len();
        // A declaration without a body (a trait's) ends at its `;`.
        let Some(open) = lines[at..]
            .iter()
            .position(|l| l.trim_end().ends_with('{') || l.trim_end().ends_with(';'))
            .map(|i| at + i)
        else {
            continue;
        };
        if lines[open].trim_end().ends_with(';') {
            continue;
        }
        let close = lines[open + 1..]
            .iter()
            .position(|l| {
                l.len() - l.trim_start().len() == indent && l.trim_start().starts_with('}')
            })
            .map_or(lines.len(), |i| open + 1 + i);
        let length = close - at + 1;
        if length > max {
            found.push((name, at + 1, length));
        }
    }
    found
}

/// The name of the function a line starts, if it starts one.
fn fn_name(line: &str) -> Option<String> {
    let mut words = line.split_whitespace().peekable();
    while let Some(word) = words.next() {
        match word {
            "pub" | "async" | "const" | "unsafe" | "extern" => {}
            w if w.starts_with("pub(") => {}
            "fn" => {
                let name: String = words
                    .peek()?
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                return Some(name);
            }
            _ => return None,
        }
    }
    None
}

#[test]
fn every_source_file_is_under_600_lines() {
    let mut over = Vec::new();
    for (name, text) in sources("") {
        let lines = text.lines().count();
        let allowed = SPLIT_PENDING
            .iter()
            .find(|(pending, _)| *pending == name)
            .map_or(MAX_FILE_LINES, |&(_, now)| now);
        if lines > allowed {
            over.push(format!("{name}: {lines} lines"));
        }
    }
    assert!(
        over.is_empty(),
        "over {MAX_FILE_LINES} lines (split by concept): {over:#?}"
    );
}

#[test]
fn every_daemon_function_is_under_80_lines() {
    let mut over = Vec::new();
    for (name, code) in sources("daemon") {
        for (function, line, length) in long_functions(&code, MAX_DAEMON_FN_LINES) {
            over.push(format!("{name}:{line} {function}: {length} lines"));
        }
    }
    assert!(
        over.is_empty(),
        "daemon functions over {MAX_DAEMON_FN_LINES} lines: {over:#?}"
    );
}

#[test]
fn the_function_scan_measures_bodies_and_skips_declarations() {
    let body = "        x();\n".repeat(5);
    let code = format!(
        "trait T {{\n    fn declared(&self);\n}}\n\nimpl S {{\n    pub(crate) async fn long(\n        &self,\n    ) -> u8 {{\n{body}        if y {{\n        }}\n    }}\n\n    fn short() {{}}\n\n    fn other() {{\n        z();\n    }}\n}}\n"
    );
    assert_eq!(
        long_functions(&code, 3),
        [("long".to_owned(), 6, 11)],
        "{code}"
    );
}
