//! Dashes after a range or a class escape, read as JavaScript reads them.

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
