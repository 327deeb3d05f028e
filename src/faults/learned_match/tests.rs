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
        Ok(Regex::Backtracking { .. })
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
    let last = RunAnswers {
        hit: vec![false, true, false, true],
        next: 0,
    };
    let mut spent = Budget::of(Duration::from_nanos(1));
    let now = compiled.hits(&patterns, &texts, &state, &mut spent, &last);
    assert_eq!(
        now.hit,
        [true, true, false, true],
        "a matched; b, c, d kept"
    );
    assert_eq!(
        spent.exhausted,
        Some(Exhausted {
            index: 0,
            skipped: 3
        })
    );
    let mut next = Budget::of(Duration::from_nanos(1));
    compiled.hits(&patterns, &texts, &state, &mut next, &now);
    assert_eq!(
        next.exhausted.unwrap().index,
        1,
        "the run's next pass starts after it"
    );
    let mut ample = Budget::for_tick();
    let none = RunAnswers::default();
    let now = compiled.hits(&patterns, &texts, &state, &mut ample, &none);
    assert_eq!((now.hit, ample.exhausted), (vec![true; 4], None));
}

#[test]
fn a_runaway_backtracking_regex_does_not_match() {
    let regex = Regex::compile(r"(?:a+(?=a*))+b").unwrap();
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
            matches!(regex, Regex::Backtracking { .. }) != backtracking
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

/// How `pattern` answers over `text` where JavaScript's `RegExp` (no flags, as gstack
/// builds them; `node -e 'console.log(/…/.test("…"))'`) answers `javascript`, or `None`
/// when they agree; a refusal is unlike.
fn unlike(pattern: &str, text: &str, javascript: bool) -> Option<String> {
    let berth = Regex::compile(pattern).map(|regex| regex.is_match(text));
    match berth {
        Ok(answer) if answer == javascript => None,
        Ok(answer) => Some(format!(
            "{pattern:?} over {text:?}: {answer} (JavaScript: {javascript})"
        )),
        Err(e) => Some(format!(
            "{pattern:?} refused: {e} (JavaScript over {text:?}: {javascript})"
        )),
    }
}

/// Fails naming every (pattern, text, JavaScript's answer) berth answers otherwise.
fn assert_like_javascript(cases: &[(&str, &str, bool)]) {
    let unlike: Vec<String> = cases
        .iter()
        .filter_map(|(pattern, text, javascript)| unlike(pattern, text, *javascript))
        .collect();
    assert!(unlike.is_empty(), "unlike JavaScript: {unlike:?}");
}

/// `[^+-]` is neither `+` nor `-`; the rewrite makes it `[^+-\x80-\xBF]`, a range from
/// `+` to 0x80 that takes out every digit and letter, so the learned fault never fires
/// (before 0b31b7e it matched `x5`, and `x[^\w-]` compiled).
#[test]
fn a_dash_ending_a_negated_class_stays_a_literal() {
    assert_like_javascript(&[
        (r"x[^+-]", "x5", true),
        (r"x[^ -]", "x5", true),
        (r"(?=x)x[^+-]", "x5", true),
        (r"x[^\w-]", "x+", true),
        (r"x[^\w-]", "x-", false),
        (r"x[^-a]", "x-", false),
    ]);
}

/// `[\s-z]` is white space, `-` or `z` (JavaScript reads a dash next to a class escape as
/// a literal); the rewrite makes it `[\t\n\x0B\x0C\r\x20-z]`, a range from space to `z`,
/// so the learned fault fires over any ASCII character (before 0b31b7e it was refused at
/// load).
#[test]
fn a_dash_after_white_space_in_a_class_stays_a_literal() {
    assert_like_javascript(&[
        (r"x[\s-z]", "x5", false),
        (r"x[\s-z]", "xA", false),
        (r"x[\s-z]", "x-", true),
        (r"(?=x)x[\s-z]", "x5", false),
        (r"x[a-\s]", "x-", true),
        (r"x[a-\s]", "xb", false),
        (r"x[^\s-z]", "x-", false),
    ]);
}

/// `len` bytes of pseudo-random `0`s and `1`s: a lazy DFA meets a new state at almost every byte.
fn random_bits(len: usize) -> String {
    let mut bits = String::with_capacity(len);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while bits.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bits.push(if x & 1 == 1 { '1' } else { '0' });
    }
    bits
}

/// `\s` is rewritten to JavaScript's white space, but inside a lookbehind's alternation
/// its branches past ASCII (two or three bytes against the other branch's one) are never
/// found: `(?<=a|\s)x` misses `x` after U+00A0 or U+3000, and `(?<!a|\s)x` fires there,
/// where gstack's `RegExp` answers the other way. fancy-regex's lookbehind over branches
/// of unequal byte length misses the longer one (`(?<=a|é)x` over `éx`, as before
/// 0b31b7e); `(?<=\s)x` alone, `(?<=a|.)x` and `(?<=a|\s)x` over an ASCII space agree.
#[test]
fn white_space_in_a_lookbehind_alternation_is_javascripts() {
    assert_like_javascript(&[
        (r"(?<=a|\s)x", "\u{a0}x", true),
        (r"(?<=a|\s)x", "\u{3000}x", true),
        (r"(?<!a|\s)x", "\u{a0}x", false),
        (r"(?<=a|é)x", "éx", true),
        (r"(?<=b|(?:a|\s))x", "\u{a0}x", true),
        (r"(?<!\s|b)x", "bx", false),
        (r"(?<=\(|\)|\|)x", "|x", true),
    ]);
}

/// In JavaScript `\xE9` is the character U+00E9 (`é`), so `[^\xE9]` takes any character
/// but `é`. The rewrite keeps `\xE9` as the byte 0xE9 while making the negated class take a
/// whole character, so `é` (0xC3 0xA9) is taken whole by a class meant to refuse it, and
/// the learned fault fires where gstack's does not (before 0b31b7e the class took one byte
/// and `x[^\xE9]y` missed `xéy`, as JavaScript does).
#[test]
fn a_negated_class_of_a_hex_escaped_character_refuses_that_character() {
    assert_like_javascript(&[
        (r"x[^\xe9]y", "x\u{e9}y", false),
        (r"x[^\xa0]y", "x\u{a0}y", false),
        (r"x[^\xe9]y", "xay", true),
        (r"x[^\xe9\xa0]y", "x\u{e8}y", true),
        (r"x[^\xe9\xa0]y", "x\u{a0}y", false),
        (r"x[\xe9a]y", "x\u{e9}y", true),
        (r"x\xe9+y", "x\u{e9}\u{e9}y", true),
    ]);
}

/// What the rewrite cannot give JavaScript's answer for is refused at load, never matched
/// otherwise: a class range past `\x7F` (JavaScript's characters, not bytes), and a
/// lookbehind branch that is a capturing group of alternatives (fancy-regex would miss
/// its longer ones, and splitting it would renumber the groups).
#[test]
fn what_the_rewrite_cannot_follow_is_refused_at_load() {
    assert!(matches!(
        Regex::compile(r"x[\x80-\xff]y"),
        Err(MatchError::WideRange)
    ));
    assert!(matches!(
        Regex::compile(r"x[a-\xe9]y"),
        Err(MatchError::WideRange)
    ));
    assert!(matches!(
        Regex::compile(r"(?<=a|(b|\s))x"),
        Err(MatchError::LookbehindGroupAlternation)
    ));
    assert!(Regex::compile(r"x[\xe9-]y").unwrap().is_match("x-y"));
}

/// A lookbehind over a sequence of `\s` and a character past ASCII (a literal or `\xHH`,
/// now written as a group of its bytes) or of two `\s` misses what JavaScript finds, even
/// an ASCII space after `é`: fancy-regex's variable-length lookbehind over such a sequence
/// misses (3565046 splits only alternations). `(?<=é\s)x` and `(?<=\sé)x` matched before
/// 3565046 wrote `é` as `(?:\xC3\xA9)` (at 31ca6dd: true over "é x", "é" U+00A0 "x" and
/// " éx"); now that learned fault never fires, and `(?<!\s\s)x` fires over U+00A0 and a
/// space before `x`.
#[test]
fn white_space_in_a_lookbehind_sequence_is_javascripts() {
    assert_like_javascript(&[
        (r"(?<=é\s)x", "\u{e9} x", true),
        (r"(?<=\xe9\s)x", "\u{e9} x", true),
        (r"(?<=\sé)x", " \u{e9}x", true),
        (r"(?<=é\s)x", "\u{e9}\u{a0}x", true),
        (r"(?<=\s\s)x", " \u{a0}x", true),
        (r"(?<=\s\s)x", "\u{a0}\u{a0}x", true),
        (r"(?<!\s\s)x", "\u{a0} x", false),
    ]);
}

/// In a class that is not negated, `\W`, `\D` and `\S` stay ASCII bytes, so they take one
/// byte of a character past ASCII where JavaScript takes the whole character: `x[\W]y`
/// never fires over "xéy" while `x\Wy` does (docs/faults.md leaves only a negated class's
/// escapes ASCII).
#[test]
fn a_class_escape_in_a_class_takes_a_whole_character() {
    assert_like_javascript(&[
        (r"x[\W]y", "x\u{e9}y", true),
        (r"x[\Wa]y", "x\u{e9}y", true),
        (r"x[\D]y", "x\u{e9}y", true),
        (r"x[\S]y", "x\u{e9}y", true),
        (r"x[\W][\W]y", "x\u{e9}y", false),
        (r"x[\W-a]y", "x-y", true),
        (r"x[\W-a]y", "xby", false),
        (r"(?=x)x[\W]y", "x\u{e9}y", true),
        (r"x[\D]y", "x5y", false),
        (r"x[^\W]y", "x\u{e9}y", false),
        (r"x[\S]y", "x\u{a0}y", false),
        (r"x[\S]y", "x\u{3000}y", false),
        (r"x[\S]y", "x\u{feff}y", false),
        (r"x[\S]y", "x\u{2029}y", false),
        (r"x[\S]y", "x\u{20ac}y", true),
        (r"x[\S]y", "x\u{1681}y", true),
    ]);
}

/// JavaScript (no flags) reads `&&`, `--`, `~~` and `[` inside a class as literals; the
/// regex crate reads them as set operations and nested classes, in the rewritten negated
/// class as in a plain one: `x[^a&&b]y` (neither `a`, `&` nor `b`) fires over "x&y" and
/// "xay", `x[^+--]y` (not `+` to `-`) over "x,y", and `x[+--]y`, `x[a&&b]y`, `x[[a]]y`
/// never fire where JavaScript's do.
#[test]
fn class_set_operators_are_javascript_literals() {
    assert_like_javascript(&[
        (r"x[^a&&b]y", "x&y", false),
        (r"x[^a&&b]y", "xay", false),
        (r"x[^+--]y", "x,y", false),
        (r"x[^a~~b]y", "x~y", false),
        (r"x[+--]y", "x,y", true),
        (r"x[a&&b]y", "x&y", true),
        (r"x[a~~b]y", "x~y", true),
        (r"x[[a]]y", "xa]y", true),
        (r"x[--a]y", "x0y", true),
        (r"x[a-z--]y", "x-y", true),
        (r"x[a-z--]y", "x0y", false),
        (r"x[\--a]y", "x0y", true),
    ]);
}

/// A character past ASCII inside a class, written as itself or as `\uHHHH`, is refused at
/// load ("Unicode not allowed here": the engines match bytes with Unicode off), where
/// JavaScript takes it as one character and docs/faults.md names no such refusal: a
/// French learned pattern `d[ée]faillance` never fires in berth. 3565046 writes such a
/// literal as its bytes outside a class, and adcd1e5 a `\xHH` inside one, but not this.
#[test]
fn a_class_of_a_character_past_ascii_is_taken_as_javascript_does() {
    assert_like_javascript(&[
        (r"d[ée]faillance", "d\u{e9}faillance", true),
        (r"x[^é]y", "xay", true),
        (r"x[^é]y", "x\u{e9}y", false),
        (r"x[\u00e9]y", "x\u{e9}y", true),
        (r"x[^\u00e9]y", "xay", true),
        (r"x[€]y", "x\u{20ac}y", true),
        (r"x[a\u20ac]y", "x\u{20ac}y", true),
        (r"x[^ж]y", "x\u{436}y", false),
        (r"x[^ж]y", "x\u{437}y", true),
        (r"x[^жé]y", "x\u{e9}y", false),
        (r"d[ée]faillance", "defaillance", true),
        (r"(?<=\u00e9)x", "\u{e9}x", true),
        (r"(?<=\u00e9+)x", "\u{e9}\u{e9}x", true),
        (r"x\u00e9y", "x\u{e9}y", true),
    ]);
    // A negated class cannot refuse a character of three bytes or more whole, and a range
    // past ASCII is JavaScript's characters, not bytes: both are refused at load.
    assert!(matches!(
        Regex::compile("x[^\u{20ac}]y"),
        Err(MatchError::WideNegatedClass)
    ));
    assert!(matches!(
        Regex::compile("x[\u{e9}-\u{ea}]y"),
        Err(MatchError::WideRange)
    ));
    assert!(matches!(
        Regex::compile(r"x[a-\u00e9]y"),
        Err(MatchError::WideRange)
    ));
}

/// A quantified character past ASCII in a lookbehind, now a quantified group of its bytes
/// (3565046 for a literal, adcd1e5 for `\xHH`), misses what JavaScript finds:
/// `(?<=é+)x` never fires over "ééx", nor does a branch `é+` or `é\s` of a split
/// lookbehind. At 31ca6dd `(?<=é+)x`, `(?<=a|é+)x` and `(?<=a|é\s)x` matched (as
/// `(?<=(?:ab)+)x` over "ababx" still does): a regression of 3565046.
#[test]
fn a_quantified_wide_character_in_a_lookbehind_is_javascripts() {
    assert_like_javascript(&[
        (r"(?<=é+)x", "\u{e9}\u{e9}x", true),
        (r"(?<=\xe9+)x", "\u{e9}\u{e9}x", true),
        (r"(?<=a|é+)x", "\u{e9}\u{e9}x", true),
        (r"(?<=a|é\s)x", "\u{e9} x", true),
    ]);
}

/// How long a pattern may be once rewritten, and what it is charged.
/// Compiles `pattern`, asserting the heap it held at once stays within what all compiled
/// learned regexes may hold; its charge, or why it was refused.
fn compile_within_budget(pattern: &str) -> Result<usize, MatchError> {
    crate::rules::memory::start();
    let compiled = Regex::compile(pattern).map(|regex| regex.memory());
    let peak = crate::rules::memory::stop();
    assert!(
        usize::try_from(peak).unwrap() <= COMPILED_BUDGET_BYTES,
        "compiling a {}-byte pattern held {peak} bytes at once ({compiled:?})",
        pattern.len()
    );
    compiled
}

/// The one warning of loading a learned file of `ECONN` (kept) and `pattern` (refused).
fn refused_after_one_kept(category: &str, pattern: &str) -> String {
    let entry = |category: &str, pattern: &str| {
        json!({"category": category, "severity": "HIGH", "description": "d",
               "matcherKind": "stdout_regex", "pattern": pattern})
    };
    let file = json!([entry("NET", "ECONN"), entry(category, pattern)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("learned-patterns.json");
    std::fs::write(&path, file.to_string()).unwrap();
    let mut set = crate::faults::learned::LearnedSet::load(&path).unwrap();
    assert_eq!(set.patterns.len(), 1, "{:?}", set.warnings);
    assert_eq!(set.warnings.len(), 1, "{:?}", set.warnings);
    set.warnings.remove(0)
}

mod rewritten_length;

/// Dashes next to a range or a class escape in a class.
mod class_dashes;

/// One class expanded whole before the cap is checked.
mod one_class;

/// A brace that is not a repetition, and a backreference to an unmatched group.
mod annex_b;
/// Review b30: word boundaries inside a lookbehind, `\k<1>` without named groups.
mod boundaries_and_numbered_names;
/// What a backtracking regex is charged: its build, its regexes, its kept text.
mod charges;
/// Review b32: the classes compiled one by one on the VM.
mod class_delegates;
/// Groups counted over the split's tokens: a `]` first ends its class, a `)` with none open.
mod empty_class_nesting;
/// An escape JavaScript reads as the character itself.
mod escapes;
/// Review b28: group syntax JavaScript lacks, named and repeated backreferences, guards.
mod javascript_syntax;
/// Review b34: a repetition of an alternation in a lookahead holding a lookbehind.
mod lookahead_repeat_branches;
/// Review b29: nested lookbehinds, backreferences after a repetition, escapes past ASCII.
mod lookbehind_nesting_and_escapes;
/// A whole character is not cut before a lookahead or a non-boundary.
mod part_characters;
/// Review b31: what a referenced group and a run between lookarounds compile.
mod referenced_group_delegates;
/// Review b33: what the VM compiles, read as the engine reads it.
mod vm_alternation_leaves;

/// Review b35: the lazy DFAs of the regexes a backtracking pattern compiles.
mod delegate_search_caches;
/// A tick's backtracking matches on one worker process, ended with the tick.
mod tick_worker;
/// Review b35: the branches and saved slots a search on the VM keeps open.
mod vm_backtrack_stack;
