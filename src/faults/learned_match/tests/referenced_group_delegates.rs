//! Review b31 (issue 17's done-when review of fd5254b).

use super::lookbehind_nesting_and_escapes::one_match_holds_no_more_than_its_charge as one_match_within_charge;

/// fancy-regex takes a capture group that a backreference names as hard (it may have to
/// backtrack into the group for the reference to match), so it compiles the group's
/// inside on its VM, where each branch of an alternation starts a stretch of its own,
/// delegated as a regex of its own. `delegates` sees no backtracking node under the group
/// and charges it as one stretch: `((?:aaa|baa|…)+)\1x`, 4,000 branches in 16 KB, is
/// charged 3 regexes (114 KB) while one match holds 3.9 MB at once (debug), 34 times its
/// charge, and far past the 33 regexes MAX_BACKTRACKING_DELEGATES allows. fd5254b refused
/// the lookbehind form of this walk (`\b` inside one); this one has no lookaround at all.
#[test]
fn a_referenced_group_compiles_within_its_charge() {
    let pattern = format!(r"((?:{})+)\1x", branches(4000));
    one_match_within_charge(&pattern, "abcabcx");
}

/// The same walk with no backreference: fancy-regex's `compile_concat` compiles what lies
/// between the first and the last lookaround of a sequence on its VM (`visit(child,
/// true)`), so an alternation there is a regex a branch, where `delegates` counts the
/// stretch as one. `(?=a)(?:aaa|baa|…)+(?=b)b`, 3,900 branches in 16 KB, is charged
/// 4 regexes (147 KB) and holds 3.8 MB a match (debug). Written where it is one regex
/// (`x(?:aaa|…)+(?=b)`) the same branches pass the 8 KiB size limit and are refused:
/// between two lookarounds that limit is walked around as well.
#[test]
fn an_alternation_between_lookarounds_compiles_within_its_charge() {
    let pattern = format!("(?=a)(?:{})+(?=b)b", branches(3900));
    one_match_within_charge(&pattern, "aaab");
}

/// `count` distinct three-letter branches of an alternation.
fn branches(count: u32) -> String {
    let letter = |n: u32| char::from(b'a' + u8::try_from(n % 26).unwrap());
    let branch = |i: u32| {
        [letter(i), letter(i / 26), letter(i / 676)]
            .iter()
            .collect()
    };
    (0..count).map(branch).collect::<Vec<String>>().join("|")
}
