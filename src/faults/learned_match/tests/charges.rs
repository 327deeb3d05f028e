//! What a compiled learned regex is charged against the memory budget.

use super::*;

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
    // each branch of an alternation holding it is one more (a backreference's branch two:
    // it is asked whether its group took part). Each is charged too the rewritten
    // pattern it keeps.
    for (pattern, regexes, rewritten) in [
        ("ECONN(?=RESET)", 2, 0),
        ("ECONN(?=RESET)!", 3, 0),
        (
            "(a)(?:x[ab]|y[ab]|z[ab]|ECONN(?=RESET)|\\1)b",
            8,
            "(?:(?(1)\\1|))".len() - "\\1".len(),
        ),
    ] {
        assert_eq!(
            Regex::compile(pattern).unwrap().memory(),
            regexes * BACKTRACKING_CHARGE + pattern.len() + rewritten,
            "{pattern}"
        );
    }
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
        (2 * MAX_BACKTRACKING_CONSTRUCTS + 1) * BACKTRACKING_CHARGE + at_cap.len()
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
/// A backtracking regex's delegates are fancy-regex `meta::Regex`es inside an `Arc<Prog>`
/// that `is_match`'s clone shares, so each keeps its lazy-DFA cache (and the rest of its
/// search caches) in its own pool after the match, for as long as the file's version is
/// loaded: ~500 KB for a pattern charged 64 KiB. A file of them that the load admits under
/// the 32 MiB budget holds several times it after one tick (docs/limits.md: "256 KiB
/// lazy-DFA cache, dropped after each match"): 512 of them, the most the budget admits,
/// held 261,740,544 bytes (measured; the test takes eight to stay quick).
#[test]
fn backtracking_regexes_hold_no_more_than_they_are_charged_after_matching() {
    let pattern = r"(?=[01])[01]*1[01]{20}x";
    let charge = Regex::compile(pattern).unwrap().memory();
    let count = 8;
    let patterns = vec![pattern; count];
    let text = random_bits(BACKTRACKING_WINDOW_BYTES);
    let texts = Texts {
        stdout: Some(&text),
        ..Texts::default()
    };
    let state = Document::new(json!({}));
    crate::rules::memory::start();
    let compiled = Compiled::build(patterns.iter().map(|p| {
        (
            Matcher::Regex(Field::Stdout, Regex::compile(p).unwrap()),
            *p,
        )
    }))
    .unwrap();
    let after_load = crate::rules::memory::live();
    let hit = compiled.matching(&patterns, &texts, &state);
    let after_tick = crate::rules::memory::live();
    crate::rules::memory::stop();
    assert!(hit.is_empty());
    assert!(
        after_tick <= (count * charge) as isize,
        "{count} patterns charged {} bytes against the {COMPILED_BUDGET_BYTES}-byte budget \
         hold {after_load} bytes loaded and {after_tick} after one match each",
        count * charge
    );
}
