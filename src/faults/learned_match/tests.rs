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
    // Two regexes: before the lookahead, inside it; three with a stretch after it, and
    // each branch of an alternation holding it is one more.
    assert_eq!(
        Regex::compile("ECONN(?=RESET)").unwrap().memory(),
        2 * BACKTRACKING_CHARGE
    );
    assert_eq!(
        Regex::compile("ECONN(?=RESET)!").unwrap().memory(),
        3 * BACKTRACKING_CHARGE
    );
    assert_eq!(
        Regex::compile("(a)(?:x[ab]|y[ab]|z[ab]|ECONN(?=RESET)|\\1)b")
            .unwrap()
            .memory(),
        7 * BACKTRACKING_CHARGE
    );
}

/// Each lookaround (or backreference) is one more stretch compiled on its own: the cap on
/// them bounds what one backtracking regex is charged, and past it the pattern is refused
/// saying why. Its classes are ASCII, as the linear engine's are.
#[test]
fn backtracking_regexes_are_charged_per_stretch_up_to_the_construct_cap() {
    let at_cap = format!("a{}", "(?=a)b".repeat(MAX_BACKTRACKING_CONSTRUCTS));
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
    // Negated classes and `.` take whole characters, as in JavaScript.
    let negated = Regex::compile(r"x.\W\D\S(?=y)").unwrap();
    assert!(negated.is_match("x-!a-y") && negated.is_match("xé!-ay") && !negated.is_match("xé!-y"));
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

/// The (pattern, text) pairs berth answers unlike JavaScript's `RegExp` (no flags, as
/// gstack builds them; each expectation is what `node -e 'console.log(/…/.test("…"))'`
/// prints), or compiles for the other engine than `backtracking` says.
fn unlike_javascript(
    backtracking: bool,
    javascript_matches: &[(&str, &str)],
    javascript_misses: &[(&str, &str)],
) -> Vec<String> {
    let expected = javascript_matches
        .iter()
        .map(|case| (case, true))
        .chain(javascript_misses.iter().map(|case| (case, false)));
    expected
        .filter(|((pattern, text), javascript)| {
            let regex = Regex::compile(pattern).unwrap();
            matches!(regex, Regex::Backtracking(..)) != backtracking
                || regex.is_match(text) != *javascript
        })
        .map(|((pattern, text), javascript)| {
            format!("{pattern:?} over {text:?} (JavaScript: {javascript})")
        })
        .collect()
}

/// A backtracking regex takes `.` as one character and `\s` as JavaScript's white space
/// (French messages put U+00A0 before a colon), so its learned fault fires where gstack's
/// does; `\w`, `\d` and `\b` stay ASCII.
#[test]
fn backtracking_learned_regexes_match_non_ascii_text_as_javascript_does() {
    let unlike = unlike_javascript(
        true,
        &[
            (r"(?=ERR)ERR\sX", "ERR\u{a0}X"),
            (r"(?=a)a.b", "a\u{e9}b"),
            (r"(?<=Erreur)\s: disque", "Erreur\u{a0}: disque plein"),
            (r"(?=x)x[\s]y", "x\u{feff}y"),
            (r"(?=x)x\Wy", "x\u{e9}y"),
            (r"(?=x)x\S\Dy", "x\u{e9}\u{663}y"),
            (r"(?=f)\bfoo", "\u{e9}foo"),
        ],
        &[
            (r"(?=x)x\wy", "x\u{e9}y"),
            (r"(?=x)x\dy", "x\u{663}y"),
            (r"(?=x)x.y", "x\ny"),
            (r"(?=x)x\sy", "x\u{85}y"),
        ],
    );
    assert!(unlike.is_empty(), "unlike JavaScript: {unlike:?}");
}

/// The same for the linear engine, plus its ASCII `\b`: `é` is no word character.
#[test]
fn linear_learned_regexes_match_non_ascii_text_as_javascript_does() {
    // Thirty characters of two bytes: `.{30}` still fits the size limit.
    let thirty = format!("a{}b", "\u{e9}".repeat(30));
    let unlike = unlike_javascript(
        false,
        &[
            (r"ERR\sX", "ERR\u{a0}X"),
            (r"a.b", "a\u{e9}b"),
            (r"a[^x]b", "a\u{e9}b"),
            (r"x[\s]y", "x\u{feff}y"),
            (r"\bfoo", "\u{e9}foo"),
            (r"x\Wy", "x\u{e9}y"),
            (r"^a.{30}b$", &thirty),
        ],
        &[
            (r"x\wy", "x\u{e9}y"),
            (r"x\dy", "x\u{663}y"),
            (r"x.y", "x\ry"),
            (r"x\sy", "x\u{85}y"),
            (r"^a.{29}b$", &thirty),
        ],
    );
    assert!(unlike.is_empty(), "unlike JavaScript: {unlike:?}");
}
