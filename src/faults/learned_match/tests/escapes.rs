//! Review b27: an escape outside a class that JavaScript (no flags, Annex B) reads as the
//! character itself, and the regex crate as something else.

use super::*;

/// `\<` and `\>` are `<` and `>` in JavaScript, start and end of a word to the regex crate,
/// which the rewrite passes them to as written (`escape`). node:
/// `/Unexpected token \</.test("SyntaxError: Unexpected token < in JSON")` true, `/-\>/`
/// over `a -> b` true, `/\<\/html\>/` over `</html>` true, `/\<div\>/` over `a div b`
/// false; berth answered the opposite to each: the learned fault for a JSON parse error
/// never fires, and one for a tag fires over the bare word.
#[test]
fn an_escaped_angle_bracket_is_the_character() {
    assert_like_javascript(&[
        (
            r"Unexpected token \<",
            "SyntaxError: Unexpected token < in JSON",
            true,
        ),
        (r"-\>", "a -> b", true),
        (r"\<\/html\>", "</html>", true),
        (r"\<div\>", "a div b", false),
    ]);
}

/// In a class too: `[\a]` is `a` (the crate's bell), `[\<]` is `<` (the crate refused it).
#[test]
fn an_identity_escape_in_a_class_is_the_character() {
    assert_like_javascript(&[
        (r"x[\a]y", "xay", true),
        (r"x[\<]y", "x<y", true),
        (r"x[\z-]y", "x-y", true),
    ]);
}
