//! One error style: the library returns `thiserror` enums, so a caller decides on a
//! variant, never on a message's text. `Result<_, String>` and `anyhow` are allowed only in
//! `src/cli/`, which turns errors into text.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use crate::support::rust_files;

/// Whether `code` names a `Result<…, String>`: the text after each `Result<` up to its
/// matching `>` ends in `, String`.
fn has_string_error(code: &str) -> bool {
    code.match_indices("Result<").any(|(at, open)| {
        let mut depth = 0usize;
        let inner = &code[at + open.len()..];
        for (i, c) in inner.char_indices() {
            match c {
                '<' | '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                '>' if depth == 0 => {
                    let args: String = inner[..i].split_whitespace().collect();
                    return args.ends_with(",String");
                }
                '>' => depth -= 1,
                _ => {}
            }
        }
        false
    })
}

/// The product's code of every library file (`src/` outside `src/cli/`), by name: comments
/// and the test module (last in its file, where anything goes) left out.
fn library_code() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for file in rust_files(&src) {
        let name = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if name.starts_with("cli/") {
            continue;
        }
        let whole = fs::read_to_string(&file).unwrap();
        let code: String = whole
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        out.push((name, code));
    }
    out
}

#[test]
fn the_library_returns_no_string_errors() {
    let found: BTreeSet<String> = library_code()
        .into_iter()
        .filter(|(_, code)| has_string_error(code))
        .map(|(name, _)| name)
        .collect();
    assert!(
        found.is_empty(),
        "Result<_, String> outside src/cli (give the module a thiserror enum): {found:?}"
    );
}

/// `anyhow` erases the error's type, so a caller could only decide on its text: it is for
/// `src/cli/`, which prints errors, and nowhere else.
#[test]
fn the_library_uses_no_anyhow() {
    let found: BTreeSet<String> = library_code()
        .into_iter()
        .filter(|(_, code)| code.contains("anyhow"))
        .map(|(name, _)| name)
        .collect();
    assert!(
        found.is_empty(),
        "anyhow outside src/cli (give the module a thiserror enum): {found:?}"
    );
}

#[test]
fn a_string_error_is_found_however_it_is_spelt() {
    assert!(has_string_error("fn f() -> Result<(), String> {"));
    assert!(has_string_error(
        "fn f() -> Result<Vec<(u8, u8)>,\n    String> {"
    ));
    assert!(!has_string_error("fn f() -> Result<Vec<String>, Error> {"));
    assert!(!has_string_error("fn f() -> io::Result<String> {"));
}
