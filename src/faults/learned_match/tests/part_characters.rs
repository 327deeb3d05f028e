//! Review b27: `.`, `\S`, `\W`, `\D` and negated classes are rewritten as a lead byte and
//! `[\x80-\xBF]*`, which either engine may stop before the character's last byte. A
//! negative lookahead or `\B` right after it then sees a continuation byte, which nothing
//! matches, where JavaScript sees the next character.

use super::*;

/// node: `/[^.](?!.)/.test("voilà.")` false (every character is followed by one, and the
/// last is a period), `/x.\B/.test("xéy")` false, `/foo.(?!bar)/.test("fooébar")` false,
/// `/ok\W(?!\s)/.test("ok€ x")` false; berth answered true to each: the learned fault
/// fires where gstack's does not.
#[test]
fn a_whole_character_is_not_cut_before_a_lookahead_or_non_boundary() {
    assert_like_javascript(&[
        (r"[^.](?!.)", "voilà.", false),
        (r"[^.](?!.)", "voila.", false),
        (r"x.\B", "xéy", false),
        (r"x.\B", "xay", true),
        (r"foo.(?!bar)", "fooébar", false),
        (r"ok\W(?!\s)", "ok€ x", false),
        (r"ok\W(?!\s)", "ok€x", true),
    ]);
}

/// A search starts at every byte, inside a character too: `\B` and a negative lookbehind
/// that may be empty held there, where JavaScript never looks. node:
/// `/\Bé?/.test("x€z")` false, `/(?<!a?)/.test("ü")` false, `/x.(?<!é)/.test("xé")`
/// false, `/\B/.test("€")` true.
#[test]
fn no_zero_width_assertion_holds_inside_a_character() {
    assert_like_javascript(&[
        (r"\Bé?", "x€z", false),
        (r"(?<!a?)", "ü", false),
        (r"(?<!\t*)", "ü", false),
        (r"x.(?<!é)", "xé", false),
        (r"\B", "€", true),
    ]);
}
