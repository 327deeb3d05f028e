//! The nesting check walks the split's own tokens (`token_end`), which read a class as
//! JavaScript does: a `]` first ends it (`[]` takes nothing, `[^]` any character). When the
//! check ended a class at its first `]` and the split read that `]` as a character,
//! `[]))]` was two closing groups to the one and one class to the other, which let groups
//! the check never saw open or closed reach the split; and the check ignored a `)` with
//! no group open, which JavaScript refuses.

use super::*;

/// `(?<=` 64 times, then `[]` and 64 `)` a check ending the class at `[]` counts as closes
/// but the split reads as one class: `blocks` of them nest `64 × blocks` lookbehinds the
/// split sees, each closed by the `)` after the `a`.
fn hidden_nesting(blocks: usize) -> String {
    let block = format!(
        "{}[]{}]",
        "(?<=".repeat(MAX_GROUP_NESTING),
        ")".repeat(MAX_GROUP_NESTING)
    );
    format!(
        "{}a{}",
        block.repeat(blocks),
        ")".repeat(MAX_GROUP_NESTING * blocks)
    )
}

/// `Regex::compile` on a thread with room for the split's recursion, so that a pattern that
/// reaches it deep fails this test instead of aborting the test binary.
fn compile_on_a_big_stack(pattern: String) -> Result<Regex, MatchError> {
    std::thread::Builder::new()
        .stack_size(256 * 1024 * 1024)
        .spawn(move || Regex::compile(&pattern))
        .unwrap()
        .join()
        .unwrap()
}

/// 2,560 lookbehinds nested under the 16 KiB cap, which a check ending the class at `[]`
/// saw 64 deep at most: the split recursed once per lookbehind, overflowing the
/// `learned-compile` thread's 2 MiB stack (debug build). Refused as nested.
#[test]
fn an_empty_class_does_not_hide_nesting_from_the_check() {
    let pattern = hidden_nesting(40);
    assert!(pattern.len() <= MAX_REWRITTEN_BYTES, "{}", pattern.len());
    let refused = compile_on_a_big_stack(pattern.clone());
    // Read as JavaScript reads it, the closes after `[]` close its lookbehinds and those
    // after `a` close nothing.
    assert!(
        matches!(refused, Err(MatchError::GroupNesting(depth)) if depth > MAX_GROUP_NESTING)
            || matches!(refused, Err(MatchError::UnmatchedClose(_))),
        "a {}-byte pattern of {} nested lookbehinds behind `[]`: {refused:?}",
        pattern.len(),
        MAX_GROUP_NESTING * 40
    );
}

/// `(?<=[])]` repeated was every group closed to a check ending the class at `[]`, none to
/// the split (`[])]` one class), which scanned the rest of the pattern for each
/// lookbehind's end (the square of its length). A `)` in a class closes nothing to either
/// now: refused as left open.
#[test]
fn an_empty_class_does_not_hide_an_unclosed_group_from_the_check() {
    let pattern = "(?<=[)]".repeat(MAX_REWRITTEN_BYTES / 7);
    let refused = compile_on_a_big_stack(pattern.clone());
    assert!(
        matches!(refused, Err(MatchError::GroupNesting(_))),
        "a {}-byte pattern of unclosed lookbehinds behind `[]`: {refused:?}",
        pattern.len()
    );
}

/// A `)` with no group open is a SyntaxError in JavaScript: refused, naming where it is,
/// rather than ignored (which let closes the check counted balance opens the split saw
/// open). Escaped or in a class it is a character.
#[test]
fn a_close_with_no_group_open_is_refused() {
    for (pattern, at) in [("a)b", 1), ("(a))(b", 3), ("[]])", 3), ("[^]])", 4)] {
        let refused = Regex::compile(pattern);
        assert!(
            matches!(refused, Err(MatchError::UnmatchedClose(found)) if found == at),
            "{pattern}: {refused:?}"
        );
    }
    for pattern in [r"a\)b", "[)]", r"[\])]", "[^)]"] {
        assert!(Regex::compile(pattern).is_ok(), "{pattern}");
    }
}

/// A class holding `]` and `)` is one token to the check and the split alike: a lookbehind
/// over it is closed by the `)` after the class, and split over its branches.
#[test]
fn a_lookbehind_over_a_class_holding_a_bracket_is_split_and_matched() {
    let regex = Regex::compile(r"(?<=[\])]|a)x").unwrap();
    for text in ["]x", ")x", "ax"] {
        assert!(regex.is_match(text), "{text}");
    }
    assert!(!regex.is_match("bx"));
    let negated = Regex::compile(r"(?<=[^\])]|a)x").unwrap();
    assert!(negated.is_match("bx") && !negated.is_match(")x") && negated.is_match("ax"));
}

/// `[]` takes nothing and `[^]` any character, newlines and characters past ASCII whole
/// (node: `/x[]a]y/.test("xay")` false, `/a[^]b/.test("a\nb")` true, `/a[^]b/.test("aéb")`
/// true); the regex crate read `]` first as one of the class's items, so `x[]a]y` fired
/// over `xay`.
#[test]
fn an_empty_class_is_javascripts() {
    assert_like_javascript(&[
        ("x[]a]y", "xay", false),
        ("x[]a]y", "x]y", false),
        ("a[^]b", "a\nb", true),
        ("a[^]b", "a\u{e9}b", true),
        ("a[^]b", "ab", false),
        ("a[^]]b", "ax]b", true),
    ]);
}

/// Refused at load by index, with why.
#[test]
fn a_learned_file_names_the_entry_with_a_close_never_opened() {
    let warning = refused_after_one_kept("CLOSE", "ECONN)");
    assert!(
        warning.contains("entry 1 (CLOSE)") && warning.contains("never opened"),
        "{warning}"
    );
}
