//! Review b22 (failing): learned regexes over text that is not ASCII, against what gstack's
//! JavaScript `RegExp` (no `u` flag) matches: `.` is one UTF-16 unit, and `\s` is Unicode
//! white space (U+00A0, U+2028, U+FEFF, Zs); only `\w`, `\d` and `\b` are ASCII. Each
//! expectation below is what `node -e 'console.log(/…/.test("…"))'` prints.

use super::*;

/// The (pattern, stdout) pairs JavaScript matches, which berth must match to raise the
/// learned fault gstack raises.
fn javascript_matches(patterns: &[(&str, &str)]) -> Vec<String> {
    patterns
        .iter()
        .filter(|(pattern, text)| !Regex::compile(pattern).unwrap().is_match(text))
        .map(|(pattern, text)| format!("{pattern:?} over {text:?}"))
        .collect()
}

/// aa858f6 moved the backtracking engine (lookaround, backreferences) to bytes with ASCII
/// classes, "as in JavaScript". Before it, fancy-regex matched these as JavaScript does;
/// now a learned pattern with a lookaround and a `.` or `\s` misses stdout where gstack
/// finds it (French messages put U+00A0 before a colon), and its fault is never raised.
#[test]
fn backtracking_learned_regexes_match_non_ascii_text_as_javascript_does() {
    let missed = javascript_matches(&[
        (r"(?=ERR)ERR\sX", "ERR\u{a0}X"),
        (r"(?=a)a.b", "a\u{e9}b"),
        (r"(?<=Erreur)\s: disque", "Erreur\u{a0}: disque plein"),
    ]);
    assert!(
        missed.is_empty(),
        "JavaScript matches, berth does not: {missed:?}"
    );
}

/// The same for the linear engine, ASCII and bytes since before this stop: `.` takes one
/// byte of a two-byte character, `\s` no U+00A0.
#[test]
fn linear_learned_regexes_match_non_ascii_text_as_javascript_does() {
    let missed = javascript_matches(&[(r"ERR\sX", "ERR\u{a0}X"), (r"a.b", "a\u{e9}b")]);
    assert!(
        missed.is_empty(),
        "JavaScript matches, berth does not: {missed:?}"
    );
}
