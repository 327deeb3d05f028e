//! Review b32 (issue 17's done-when review of 15235b9): the classes fancy-regex compiles
//! one by one on its VM. Each is a VM instruction there (`CharClass`), not a regex of its
//! own, but building 1,830 of them held 1.4 MB at each match: a backtracking pattern is
//! charged its build, measured at load.

use super::*;

/// What fancy-regex compiles on its VM (between a sequence's first and last lookaround,
/// inside a capture group a backreference names) it visits child by child, and every class
/// there that is not in a leading or trailing run of fixed width (`[axy]+?`) is a delegate
/// of its own (`compile_delegate`; distinct ones are not shared by its memo). 15235b9
/// counts only alternation branches there, so 1,830 distinct classes between two
/// lookaheads are charged as one stretch, far under the 33 regexes MAX_BACKTRACKING_DELEGATES
/// allows.
#[test]
fn classes_between_lookarounds_compile_within_their_charge() {
    let pattern = format!("(?=a){}(?=b)b", classes());
    one_match_within_charge(&pattern, &format!("{}b", "a".repeat(1830)));
}

/// The same classes inside a capture group a backreference names: no alternation, no
/// lookaround.
#[test]
fn classes_in_a_referenced_group_compile_within_their_charge() {
    let pattern = format!(r"({})\1x", classes());
    one_match_within_charge(&pattern, &format!("{}x", "a".repeat(3660)));
}

/// The same classes after a lookahead in a repeated group: fancy-regex compiles a hard
/// repetition's body on its VM (`compile_repeat`: `hard | info.hard`), so the run after the
/// lookahead, which `delegates` charges as one stretch, is a delegate a class. No
/// backreference, and no alternation or second lookaround in the sequence.
#[test]
fn classes_after_a_lookahead_in_a_repetition_compile_within_their_charge() {
    let pattern = format!("(?:(?=a){})+b", classes());
    one_match_within_charge(&pattern, &format!("{}b", "a".repeat(1830)));
}

/// 1,830 distinct classes `[axy]+?` (x < y alphanumerics other than `a`), 14.6 KB.
pub(super) fn classes() -> String {
    let letters: Vec<char> = ('0'..='9').chain('b'..='z').chain('A'..='Z').collect();
    let mut out = String::new();
    for (i, x) in letters.iter().enumerate() {
        for y in &letters[i + 1..] {
            out.push_str(&format!("[a{x}{y}]+?"));
        }
    }
    out
}

/// Either refused past the cap on the regexes it compiles, or kept, and one match of
/// `pattern` over `text` holds no more at once than its charge.
pub(super) fn one_match_within_charge(pattern: &str, text: &str) {
    let compiled = Regex::compile(pattern);
    if matches!(compiled, Err(MatchError::TooManyDelegates(n)) if n > MAX_BACKTRACKING_DELEGATES) {
        return;
    }
    assert!(compiled.is_ok(), "{:?}", compiled.err());
    super::lookbehind_nesting_and_escapes::one_match_holds_no_more_than_its_charge(pattern, text);
}
