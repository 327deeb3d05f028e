//! Review b34 (issue 17's done-when review of f841d83): inside a lookahead that holds a
//! lookbehind, fancy-regex compiles a repetition of an alternation on its VM, each branch
//! a regex of its own, which the reading of its compiler then used counted as one; and
//! every pattern on its VM compiles one more, for capture group 0. The regexes are now
//! counted in the program the engine built.

use super::class_delegates::one_match_within_charge;
use super::*;

/// The engine's program for the pattern `Regex::compile` keeps: one `Delegate(` line per
/// regex it compiles apart.
struct Program<'a>(&'a fancy_regex::Regex);

impl std::fmt::Display for Program<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.debug_print(f)
    }
}

/// `(?=(?<=a)(?:[a-c]x0|…|[a-c]x39)*c)`: 40 branches, each compiled as a delegate of its
/// own (41 with the capture-group-0 one), held to 33 or refused.
#[test]
fn branches_of_a_repetition_in_a_lookahead_count_against_the_delegate_cap() {
    within_the_delegate_cap(&lookahead_of_branches(40));
}

/// fancy-regex compiles one more delegate than the pattern's own (`()`, capture group 0,
/// for every pattern it runs on its VM): `x(?=a(?=[bc]d)(?:[a-c]x0|…|[a-c]x31)*c)` was
/// counted 33 (the lookahead's `[bc]d` and 32 branches) and compiles 34.
#[test]
fn the_capture_group_zero_delegate_counts_against_the_delegate_cap() {
    let branches: Vec<String> = (0..32).map(|i| format!("[a-c]x{i}")).collect();
    within_the_delegate_cap(&format!("x(?=a(?=[bc]d)(?:{})*c)", branches.join("|")));
}

/// A pattern of the cap's size is kept, charged as many regexes as its program holds.
#[test]
fn a_lookahead_of_branches_under_the_cap_is_charged_each_one() {
    let kept = Regex::compile(&lookahead_of_branches(30)).unwrap();
    assert!(
        matches!(kept, Regex::Backtracking { regexes, .. } if regexes == 31),
        "{kept:?}"
    );
}

/// Either refused past the cap, or the engine's program for the kept pattern holds at most
/// [`MAX_BACKTRACKING_DELEGATES`] delegates.
fn within_the_delegate_cap(pattern: &str) {
    let compiled = Regex::compile(pattern);
    if matches!(compiled, Err(MatchError::TooManyDelegates(n)) if n > MAX_BACKTRACKING_DELEGATES) {
        return;
    }
    let Ok(Regex::Backtracking { pattern: kept, .. }) = compiled else {
        panic!("{compiled:?}");
    };
    let regex = super::super::backtracking::build(&kept).unwrap();
    let delegates = Program(&regex).to_string().matches("Delegate(").count();
    assert!(
        delegates <= MAX_BACKTRACKING_DELEGATES,
        "accepted, and the engine compiled {delegates} delegates (cap {MAX_BACKTRACKING_DELEGATES})"
    );
}

/// The same with 200 branches: one match holds no more than its charge.
#[test]
fn branches_of_a_repetition_in_a_lookahead_are_held_within_their_charge() {
    let text = format!(
        "a{}c",
        (0..200).map(|i| format!("bx{i}")).collect::<String>()
    );
    one_match_within_charge(&lookahead_of_branches(200), &text);
}

/// `(?=(?<=a)(?:[a-c]x0|…)*c)` with `count` branches.
fn lookahead_of_branches(count: usize) -> String {
    let branches: Vec<String> = (0..count).map(|i| format!("[a-c]x{i}")).collect();
    format!("(?=(?<=a)(?:{})*c)", branches.join("|"))
}
