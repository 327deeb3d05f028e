//! The rewrite to whole characters multiplies what it expands (`[\S]` ~450 bytes, even
//! under `{0}`): past [`MAX_REWRITTEN_BYTES`] a pattern is refused before either engine
//! parses it, and a backtracking one is charged the rewritten text it keeps.

use super::*;

/// `[\S]{0}` after a lookahead, `count` times: a backtracking pattern that compiles to
/// nearly nothing but is rewritten to ~450 bytes a copy.
fn not_space_none(count: usize) -> String {
    format!("(?=a){}", r"[\S]{0}".repeat(count))
}

/// The most copies of `[\S]{0}` the cap takes after the lookahead.
fn most_accepted() -> usize {
    let each = javascript::rewrite(r"[\S]{0}").unwrap().len();
    (MAX_REWRITTEN_BYTES - "(?=a)".len()) / each
}

/// `pattern` is refused at load as rewritten past the cap (said with the length).
fn assert_refused_as_too_long(pattern: &str) {
    let refused = Regex::compile(pattern);
    assert!(
        matches!(refused, Err(MatchError::RewrittenTooLong(length)) if length > MAX_REWRITTEN_BYTES),
        "a {}-byte pattern: {refused:?}",
        pattern.len()
    );
}

/// 7 KB of `[\S]{0}` kept ~450 KB rewritten, charged 64 KiB: now refused at load; one at
/// the cap is charged at least the text it keeps, and a longer one more than a shorter.
#[test]
fn a_backtracking_regex_is_charged_for_the_rewritten_pattern_it_keeps() {
    assert_refused_as_too_long(&not_space_none(1000));
    let regex = Regex::compile(&not_space_none(most_accepted())).unwrap();
    let Regex::Backtracking { pattern: kept, .. } = &regex else {
        panic!("{regex:?} is not backtracking");
    };
    assert!(kept.len() <= regex.memory() && kept.len() <= MAX_REWRITTEN_BYTES);
    let short = Regex::compile("(?=a)b").unwrap().memory();
    let long = Regex::compile(&format!("(?=a){}", "b".repeat(101))).unwrap();
    assert_eq!(long.memory(), short + 100, "the kept text is charged");
}

/// One match of a 28 KB pattern built 1.8 MB of rewritten text again and held 47 MB: now
/// refused at load, and one match of the longest accepted holds no more heap than its
/// delegates may (their size limit and cache).
#[test]
fn one_match_of_a_backtracking_regex_takes_no_more_heap_than_its_delegates_may() {
    assert_refused_as_too_long(&not_space_none(4000));
    let regex = Regex::compile(&not_space_none(most_accepted())).unwrap();
    crate::rules::memory::start();
    let matched = regex.is_match("a");
    let peak = crate::rules::memory::stop();
    let bound = MAX_BACKTRACKING_DELEGATES * (REGEX_SIZE_LIMIT + REGEX_CACHE_BYTES);
    assert!(matched);
    assert!(
        usize::try_from(peak).unwrap() <= bound,
        "one match held {peak} bytes at once (bound {bound})"
    );
}

/// Loading 70 KB of `[\S]{0}` (an 8 MiB learned file holds 120 of them) held 177 MB and
/// was accepted, charged 1,488 bytes: the rewrite now stops at the cap, so loading it holds
/// no more than the compiled budget and refuses it.
#[test]
fn loading_a_class_of_not_white_space_holds_no_more_than_the_compiled_budget() {
    let pattern = r"[\S]{0}".repeat(10_000);
    let _ = compile_within_budget(&pattern);
    assert_refused_as_too_long(&pattern);
}

/// A 105 KB pattern passed load and each match rebuilt 6.7 MB of rewritten text (1.8 s in
/// release, past the 1 s tick budget, which is checked only between matches): the learned
/// file now refuses it at load, naming its index and the cap, and keeps the one before it.
#[test]
fn a_pattern_rewritten_past_the_cap_is_refused_at_load_by_index() {
    let warning = refused_after_one_kept("SLOW", &not_space_none(15_000));
    assert!(
        warning.contains("entry 1 (SLOW)")
            && warning.contains(&format!("at most {MAX_REWRITTEN_BYTES}")),
        "{warning}"
    );
}

/// What the lookbehind split walks is bounded before it runs: groups nested past
/// [`MAX_GROUP_NESTING`] (the split recursed once per nested lookbehind, and 6,000 of them
/// overflowed the compile thread's stack) and a group left open (the split scanned the rest
/// of the pattern for its end at every one) are refused at load, well under the length cap.
#[test]
fn deeply_nested_or_unclosed_groups_are_refused_before_the_split() {
    let nested = format!("{}x{}", "(?<=a".repeat(100), ")".repeat(100));
    let unclosed = "(?<=a".repeat(3_000);
    assert!(nested.len() < MAX_REWRITTEN_BYTES && unclosed.len() < MAX_REWRITTEN_BYTES);
    for pattern in [&nested, &unclosed] {
        let refused = Regex::compile(pattern);
        assert!(
            matches!(refused, Err(MatchError::GroupNesting(_))),
            "a {}-byte pattern: {refused:?}",
            pattern.len()
        );
    }
    // Eight groups deep is taken (a lookaround inside a lookbehind is refused for what it
    // compiles: `nested_variable_lookbehinds_compile_within_their_charge`).
    let shallow = format!("{}x{}", "(?:(?<=a)".repeat(8), ")".repeat(8));
    assert!(Regex::compile(&shallow).is_ok(), "{shallow}");
}
