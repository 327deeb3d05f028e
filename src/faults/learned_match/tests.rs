//! The window, the engines, the budgets.

use super::*;
use serde_json::json;

#[test]
fn the_window_is_the_last_200_lines_within_32_kib() {
    let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
    let w = window(&text);
    // 200 pieces of a text ending in `\n`: the last is empty, as in gstack's stdoutTail.
    assert!(
        w.starts_with("line 801\n") && w.ends_with("line 999\n"),
        "{w}"
    );
    let long = "é".repeat(40_000);
    let w = window(&long);
    assert!(w.len() <= WINDOW_BYTES && w.len() > WINDOW_BYTES - 2);
    assert_eq!(window("short"), "short");
}

#[test]
fn regexes_follow_javascript_classes_and_refuse_huge_ones() {
    let ascii_word = Regex::compile(r"^\w+$").unwrap();
    assert!(ascii_word.is_match("abc_1"));
    assert!(!ascii_word.is_match("é"), "\\w is ASCII, as in JavaScript");
    assert!(matches!(
        Regex::compile("ECONN(?=RESET)"),
        Ok(Regex::Backtracking(..))
    ));
    assert!(
        Regex::compile("ECONN(?=RESET)")
            .unwrap()
            .is_match("x ECONNRESET")
    );
    let err = Regex::compile("[01]*1[01]{5000}x").unwrap_err().to_string();
    assert!(err.contains("size limit"), "{err}");
    assert!(Regex::compile("(x").is_err());
}

/// The worst pattern the size limit accepts: 1,200 of them fit the memory budget, and
/// the budget is what bounds a file of them, not the count.
#[test]
fn the_worst_accepted_regex_is_measured_against_the_memory_budget() {
    let regex = Regex::compile("[01]*1[01]{108}x").unwrap();
    let memory = regex.memory();
    eprintln!("worst accepted linear regex: {memory} bytes");
    assert!(
        memory > 0 && memory * 1200 <= COMPILED_BUDGET_BYTES,
        "{memory}"
    );
    // Three stretches: before the lookahead, inside it, after it.
    assert_eq!(
        Regex::compile("ECONN(?=RESET)").unwrap().memory(),
        3 * BACKTRACKING_CHARGE
    );
}

/// Each lookaround (or backreference) is one more stretch compiled on its own: the cap on
/// them bounds what one backtracking regex is charged, and past it the pattern is refused
/// saying why. Its classes are ASCII, as the linear engine's are.
#[test]
fn backtracking_regexes_are_charged_per_stretch_up_to_the_construct_cap() {
    let at_cap = "(?=a)b".repeat(MAX_BACKTRACKING_CONSTRUCTS);
    let regex = Regex::compile(&at_cap).unwrap();
    assert_eq!(
        regex.memory(),
        (2 * MAX_BACKTRACKING_CONSTRUCTS + 1) * BACKTRACKING_CHARGE
    );
    let past = format!("{at_cap}(a)\\1");
    let err = Regex::compile(&past).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "has {} lookarounds",
            MAX_BACKTRACKING_CONSTRUCTS + 1
        )) && err.contains(&format!("at most {MAX_BACKTRACKING_CONSTRUCTS}")),
        "{err}"
    );
    let word = Regex::compile(r"^\w+(?=!)").unwrap();
    assert!(
        word.is_match("abc_1!") && !word.is_match("é!"),
        "\\w is ASCII"
    );
    // The classes that could match part of a character still compile, over bytes.
    let negated = Regex::compile(r"x.\W\D\S(?=y)").unwrap();
    assert!(negated.is_match("x-!a-y") && negated.is_match("xé!-y"));
}

/// Once the budget is spent, the regexes not reached keep their previous answers, the
/// one that spent it is named, and the next call starts after it.
#[test]
fn a_spent_budget_names_the_pattern_and_keeps_the_last_answers() {
    let patterns = ["a", "b", "c", "d"];
    let matchers = patterns
        .iter()
        .map(|p| Matcher::Regex(Field::Stdout, Regex::compile(p).unwrap()));
    let compiled = Compiled::build(matchers.zip(patterns)).unwrap();
    let state = Document::new(json!({}));
    let texts = Texts {
        stdout: Some("abcd"),
        ..Texts::default()
    };
    let previous = [false, true, false, true];
    let mut spent = Budget::of(Duration::from_nanos(1));
    let hit = compiled.hits(&patterns, &texts, &state, &mut spent, &previous);
    assert_eq!(hit, [true, true, false, true], "a matched; b, c, d kept");
    assert_eq!(
        spent.exhausted,
        Some(Exhausted {
            index: 0,
            skipped: 3
        })
    );
    let mut next = Budget::of(Duration::from_nanos(1));
    compiled.hits(&patterns, &texts, &state, &mut next, &previous);
    assert_eq!(
        next.exhausted.unwrap().index,
        1,
        "the next tick starts after it"
    );
    let mut ample = Budget::for_tick();
    let hit = compiled.hits(&patterns, &texts, &state, &mut ample, &[]);
    assert_eq!((hit, ample.exhausted), (vec![true; 4], None));
}

#[test]
fn a_runaway_backtracking_regex_does_not_match() {
    let regex = Regex::compile(r"(a+)+\1b").unwrap();
    assert!(!regex.is_match(&"a".repeat(10_000)));
}

#[test]
fn every_kind_matches_over_its_text() {
    let patterns = ["ECONN", "RESET", "^$", "ok", "$.features[*]", "$.nope"];
    let matchers = vec![
        Matcher::Contains(Field::Stdout),
        Matcher::Contains(Field::Stdout),
        Matcher::Regex(Field::Plan, Regex::compile("^$").unwrap()),
        Matcher::Contains(Field::FailureReason),
        Matcher::Path,
        Matcher::Path,
    ];
    let compiled = Compiled::build(matchers.into_iter().zip(patterns)).unwrap();
    let state = Document::new(json!({"features": [1]}));
    let texts = Texts {
        stdout: Some("npm ERR! ECONNRESET"),
        plan: None,
        failure_reason: Some("not"),
    };
    assert_eq!(compiled.matching(&patterns, &texts, &state), [0, 1, 2, 4]);
}
