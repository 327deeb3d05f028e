//! Review b23 (failing): 0b31b7e's rewrite to whole characters splices a class's items
//! before bytes of its own, so a `-` that ended the class (a literal in JavaScript and in
//! the `regex` crate) now opens a range over them.

use super::*;

/// How `pattern` answers over `text` where JavaScript's `RegExp` (no flags, as gstack
/// builds them; `node -e 'console.log(/…/.test("…"))'`) answers `javascript`, or `None`
/// when they agree.
fn unlike(pattern: &str, text: &str, javascript: bool) -> Option<String> {
    let berth = Regex::compile(pattern).map(|regex| regex.is_match(text));
    match berth {
        Ok(answer) if answer == javascript => None,
        Ok(answer) => Some(format!(
            "{pattern:?} over {text:?}: {answer} (JavaScript: {javascript})"
        )),
        Err(e) => Some(format!(
            "{pattern:?} refused: {e} (JavaScript over {text:?}: {javascript})"
        )),
    }
}

/// `[^+-]` is neither `+` nor `-`; the rewrite makes it `[^+-\x80-\xBF]`, a range from
/// `+` to 0x80 that takes out every digit and letter, so the learned fault never fires
/// (before 0b31b7e it matched `x5`, and `x[^\w-]` compiled).
#[test]
fn a_dash_ending_a_negated_class_stays_a_literal() {
    let unlike: Vec<String> = [
        (r"x[^+-]", "x5", true),
        (r"x[^ -]", "x5", true),
        (r"(?=x)x[^+-]", "x5", true),
        (r"x[^\w-]", "x+", true),
    ]
    .into_iter()
    .filter_map(|(pattern, text, javascript)| unlike(pattern, text, javascript))
    .collect();
    assert!(unlike.is_empty(), "unlike JavaScript: {unlike:?}");
}

/// `[\s-z]` is white space, `-` or `z` (JavaScript reads a dash next to a class escape as
/// a literal); the rewrite makes it `[\t\n\x0B\x0C\r\x20-z]`, a range from space to `z`,
/// so the learned fault fires over any ASCII character (before 0b31b7e it was refused at
/// load).
#[test]
fn a_dash_after_white_space_in_a_class_stays_a_literal() {
    let unlike: Vec<String> = [
        (r"x[\s-z]", "x5", false),
        (r"x[\s-z]", "xA", false),
        (r"x[\s-z]", "x-", true),
        (r"(?=x)x[\s-z]", "x5", false),
    ]
    .into_iter()
    .filter_map(|(pattern, text, javascript)| unlike(pattern, text, javascript))
    .collect();
    assert!(unlike.is_empty(), "unlike JavaScript: {unlike:?}");
}
