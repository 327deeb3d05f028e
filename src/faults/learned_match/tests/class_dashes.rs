//! Dashes after a range or a class escape, and a caret not first, read as JavaScript reads them.

use super::*;

/// After a range, `-` then `-` is a range from `-` in JavaScript (`[0-9--/]` takes `.`);
/// next to a class escape both dashes are characters (node: `/x[0-9--/]y/.test("x.y")`
/// true, `/x[\s--/]y/.test("x.y")` false). The rewrite used to escape the second dash as
/// if the first were a range's, so the crate read two literal dashes.
#[test]
fn a_range_from_a_dash_after_a_range_is_javascripts() {
    assert_like_javascript(&[
        (r"x[0-9--/]y", "x.y", true),
        (r"x[a-z--0]y", "x.y", true),
        (r"x[a-z--0]y", "x-y", true),
        (r"x[a-z-0]y", "x-y", true),
        (r"x[a-z-0]y", "x.y", false),
        (r"x[\s--/]y", "x.y", false),
        (r"x[\s--/]y", "x-y", true),
        (r"x[\d--/]y", "x.y", false),
        (r"x[\d--/]y", "x/y", true),
        (r"x[+--]y", "x,y", true),
    ]);
}

/// After a class escape, a dash and the item after it are a union in JavaScript, and what
/// follows starts afresh: `[\d-a-z]` is digits, `-`, `a` and `z` (node:
/// `/x[\d-a-z]y/.test("xmy")` false, `"xzy"` true; `/x[\s-a-z]y/` the same). The rewrite
/// escapes the first dash only, so the crate reads `a-z` as a range.
#[test]
fn a_dash_after_the_item_after_a_class_escape_is_javascripts() {
    assert_like_javascript(&[
        (r"x[\d-a-z]y", "xmy", false),
        (r"x[\d-a-z]y", "xzy", true),
        (r"x[\d-a-z]y", "x-y", true),
        (r"x[\s-a-z]y", "xmy", false),
        (r"x[\w-.-z]y", "x/y", false),
        (r"x[^\d-a-z]y", "xmy", true),
    ]);
}

/// The item after a class escape's dash closes a union, and what follows starts afresh: a
/// dash there is a character that may open a range; a class escape that ends a range or a
/// union opens nothing (`[a-\d-c-e]` takes `d`); `\x41` is one item, its digits with it.
/// Expected answers are node's.
#[test]
fn what_follows_a_union_with_a_class_escape_starts_afresh() {
    assert_like_javascript(&[
        (r#"x[\d-\s-!-#]y"#, "x\"y", true),
        (r"x[a-\d-c-e]y", "xdy", true),
        (r"x[a-\d]y", "x-y", true),
        (r"x[a-\d]y", "xby", false),
        (r"x[\d-\x41-c]y", "xBy", false),
        (r"x[\d-\x41-c]y", "x-y", true),
        (r"x[!-\x41--/]y", "x.y", true),
        (r"x[\d--a-c]y", "xby", true),
        (r"x[\d----/]y", "x.y", true),
        (r"x[-\s-a-c]y", "xby", false),
        (r"x[-\s-a-c]y", "xcy", true),
        (r"x[\d-\w-a]y", "x-y", true),
        (r"x[\d-]y", "x-y", true),
    ]);
}

/// A `^` that is not first in a class is a character in JavaScript; a character past ASCII
/// before it leaves the class's ASCII items, so it must not become their first and negate
/// them (`[é^b]` matched every ASCII letter but `b`).
#[test]
fn a_caret_after_a_character_past_ascii_is_a_character() {
    assert_like_javascript(&[
        ("x[\u{e9}^b]y", "xay", false),
        ("x[\u{e9}^b]y", "x^y", true),
        ("x[\u{e9}^b]y", "xby", true),
        (r"x[\u00e9^!]y", "xay", false),
    ]);
}
