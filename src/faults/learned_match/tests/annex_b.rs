//! Review b27: JavaScript syntax (no flags, Annex B) the engines read otherwise.

use super::*;

/// A brace that does not open `{n}`, `{n,}` or `{n,m}` exactly is a character in
/// JavaScript: `\d{,3}` (Python's 0 to 3) is a digit then `{,3}`, and `\d{1, 3}` (a space)
/// a digit then `{1, 3}`. The regex crate reads both as repetitions. node:
/// `/took \d{,3}ms/` over `took 12ms` false and over `took 1{,3}ms` true, `/retry \d{1, 3}
/// times/` over `retry 2 times` false and over `retry 2{1, 3} times` true; berth answered
/// the opposite to each.
#[test]
fn a_brace_that_is_not_a_repetition_is_a_character() {
    assert_like_javascript(&[
        (r"took \d{,3}ms", "took 12ms", false),
        (r"took \d{,3}ms", "took 1{,3}ms", true),
        (r"retry \d{1, 3} times", "retry 2 times", false),
        (r"retry \d{1, 3} times", "retry 2{1, 3} times", true),
    ]);
}

/// A backreference to a group that took part in no match is empty in JavaScript, and fails
/// in fancy-regex. node: `/^(['"])?\w+\1$/` over `abc` true, `/key=(['"])?\w+\1;/` over
/// `key=abc;` true (an optionally quoted value, unquoted); berth: false to both, so the
/// learned fault never fires on the unquoted value.
#[test]
fn a_backreference_to_an_unmatched_group_is_empty() {
    assert_like_javascript(&[
        (r#"^(['"])?\w+\1$"#, "abc", true),
        (r#"^(['"])?\w+\1$"#, "'abc'", true),
        (r#"key=(['"])?\w+\1;"#, "key=abc;", true),
    ]);
}

/// The braces that are repetitions stay so; a backreference in another branch than its
/// group is empty (node: `/(a)|\1b/.test("b")` true).
#[test]
fn a_repetition_stays_one_and_a_backreference_across_branches_is_empty() {
    assert_like_javascript(&[
        (r"a{2,x}", "a{2,x}", true),
        (r"a{ 2}", "a{ 2}", true),
        (r"a{2}", "aa", true),
        (r"a{2}", "a{2}", false),
        (r"(a)|\1b", "b", true),
    ]);
}
