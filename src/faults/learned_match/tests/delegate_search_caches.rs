//! Review b35 (issue 17's done-when review of 05a74ee): each regex a backtracking pattern
//! compiles is charged 32 KiB for its search, but each keeps, for the match, a lazy DFA
//! of up to 256 KiB (`REGEX_CACHE_BYTES`) and the rest of its engine's caches: a
//! delegate whose DFA states multiply over the 4 KiB window (a letter 13 back, among
//! letters) fills it, ~390 KB a regex, forwards (a lookahead) or backwards (a
//! lookbehind's reverse DFA).

use super::lookbehind_nesting_and_escapes::one_match_holds_no_more_than_its_charge;

/// 4 KiB of letters in no order (a linear congruential sequence): the lazy DFA of
/// `[a-z]*[a-m][a-z]{12}` meets a new state at almost every byte.
fn letters() -> String {
    let mut seed: u32 = 12_345;
    (0..4096)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            char::from(b'a' + u8::try_from((seed >> 16) % 26).unwrap())
        })
        .collect()
}

/// One lookahead: held 526,745 bytes in one match, charged 104,743.
#[test]
fn a_lookaheads_lazy_dfa_is_within_its_charge() {
    one_match_holds_no_more_than_its_charge(r"x(?=[a-z]*[a-m][a-z]{12}1)", &letters());
}

/// 16 of them, each its own regex with its own cache: held 5,144,041 bytes, charged
/// 635,594.
#[test]
fn sixteen_lookaheads_lazy_dfas_are_within_their_charge() {
    let pattern = format!("x{}", "(?=[a-z]*[a-m][a-z]{12}1)".repeat(16));
    one_match_holds_no_more_than_its_charge(&pattern, &format!("x{}1", letters()));
}

/// A lookbehind's reverse DFA, read back over the window: held 422,112 bytes, charged
/// 74,291 (5.7 times; the ~2.5% over known for lookbehinds is at a few states).
#[test]
fn a_lookbehinds_reverse_dfa_is_within_its_charge() {
    one_match_holds_no_more_than_its_charge(
        r"(?<=0[a-z]{12}[a-m][a-z]*)1",
        &format!("{}1", letters()),
    );
}

/// 16 negative lookbehinds (33 regexes, the cap): held 6,715,249 bytes, charged 1,179,250.
#[test]
fn sixteen_negative_lookbehinds_reverse_dfas_are_within_their_charge() {
    let pattern = format!("{}1", "(?<![0-9][a-z]{12}[a-m][a-z]*)".repeat(16));
    one_match_holds_no_more_than_its_charge(&pattern, &format!("{}1", letters()));
}
