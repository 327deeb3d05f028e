//! Review 25: the rewrite's cost past what is charged, and dashes after a range.

use super::*;

/// `[\S]` in a class is rewritten to ~450 bytes (`NOT_SPACE_WIDE`) however it is quantified,
/// and `{0}` makes it compile to nothing: a backtracking pattern keeps its rewritten text
/// (built again at each match) but is charged only per delegate, so 7 KiB of `[\S]{0}`
/// holds ~450 KiB against a 64 KiB charge (an 8 MiB file: ~512 MiB held under the 32 MiB
/// budget).
#[test]
fn a_backtracking_regex_is_charged_for_the_rewritten_pattern_it_keeps() {
    let pattern = format!("(?=a){}", r"[\S]{0}".repeat(1000));
    let regex = Regex::compile(&pattern).unwrap();
    let Regex::Backtracking(kept, _) = &regex else {
        panic!("{regex:?} is not backtracking");
    };
    assert!(
        kept.len() <= regex.memory(),
        "a {}-byte pattern keeps {} bytes, charged {}",
        pattern.len(),
        kept.len(),
        regex.memory()
    );
}

/// One match of that pattern builds the whole rewritten text again, within the tick: the
/// heap it takes is bounded by the delegates' size limit and cache (33 of 8 KiB + 256 KiB
/// at most), not by the pattern's rewritten length.
#[test]
fn one_match_of_a_backtracking_regex_takes_no_more_heap_than_its_delegates_may() {
    let pattern = format!("(?=a){}", r"[\S]{0}".repeat(4000));
    let regex = Regex::compile(&pattern).unwrap();
    crate::rules::memory::start();
    let matched = regex.is_match("a");
    let peak = crate::rules::memory::stop();
    let bound = MAX_BACKTRACKING_DELEGATES * (REGEX_SIZE_LIMIT + REGEX_CACHE_BYTES);
    assert!(matched);
    assert!(
        usize::try_from(peak).unwrap() <= bound,
        "one match of a {}-byte pattern held {peak} bytes at once (bound {bound})",
        pattern.len()
    );
}

/// Loading one pattern of 70 KB (an 8 MiB learned file holds 120 of them) must not take more
/// heap at once than the whole file's compiled regexes may hold: `[\S]{0}` is rewritten to
/// 64 times its length and parsed whole before it compiles to nothing (measured in release:
/// 700 KB of it held 1.77 GB for 8.7 s and was accepted, charged 1,488 bytes).
#[test]
fn loading_a_class_of_not_white_space_holds_no_more_than_the_compiled_budget() {
    let pattern = r"[\S]{0}".repeat(10_000);
    crate::rules::memory::start();
    let compiled = Regex::compile(&pattern).map(|regex| regex.memory());
    let peak = crate::rules::memory::stop();
    assert!(
        usize::try_from(peak).unwrap() <= COMPILED_BUDGET_BYTES,
        "compiling a {}-byte pattern held {peak} bytes at once (charged {compiled:?})",
        pattern.len()
    );
}

/// After a range, `-` then `-` is a range from `-` in JavaScript (`[0-9--/]` takes `.`);
/// the rewrite escapes the second dash as if the first were a range's, so the crate reads
/// two literal dashes (node: `/x[0-9--/]y/.test("x.y")` true, `/x[\s--/]y/.test("x.y")`
/// false: next to a class escape both dashes are literals).
#[test]
fn a_range_from_a_dash_after_a_range_is_javascripts() {
    assert_like_javascript(&[
        (r"x[0-9--/]y", "x.y", true),
        (r"x[a-z--0]y", "x.y", true),
        (r"x[\s--/]y", "x.y", false),
    ]);
}

/// The 1 s a tick's learned regexes may take is checked between matches, so no one match
/// may take it all: a 105 KB pattern (an 8 MiB learned file may hold one 80 times longer)
/// of `[\S]{0}` after a lookahead passes load, charged 64 KiB, and each of its matches
/// rebuilds 6.7 MB of rewritten pattern (in release: 1.8 s and 180 MB of heap a match).
#[test]
fn one_learned_match_stays_within_the_tick_budget() {
    let pattern = format!("(?=a){}", r"[\S]{0}".repeat(15_000));
    let matcher = Matcher::Regex(Field::Stdout, Regex::compile(&pattern).unwrap());
    let compiled = Compiled::build([(matcher, pattern.as_str())]).unwrap();
    let texts = Texts {
        stdout: Some("a"),
        ..Texts::default()
    };
    let mut budget = Budget::for_tick();
    let started = std::time::Instant::now();
    let hit = compiled.hits(
        &[&pattern],
        &texts,
        &Document::new(json!({})),
        &mut budget,
        &[],
    );
    let took = started.elapsed();
    assert_eq!(hit, [true]);
    assert!(
        took <= TICK_BUDGET,
        "one match of a {}-byte learned pattern took {took:?} of a {TICK_BUDGET:?} tick budget",
        pattern.len()
    );
}
