//! Review b30 (issue 17's done-when review of 6bc4a26, 366ffac, 436852c and 67be671).

use super::*;

/// fancy-regex takes a word boundary inside a lookbehind as hard (its reverse DFA cannot run
/// one), so a variable-length lookbehind holding `\b`s compiles one reverse delegate for
/// each stretch between them, then a seek DFA and the whole inside again as a fallback.
/// `delegates` counts the inside as one regex (an assertion is not a backtracking node)
/// and `constructs` counts none, so 16 lookbehinds of 100 `a+\b` each (6.5 KB) are charged
/// 33 regexes while each match compiles well over a thousand: 6.2 MB held at once against
/// a 1,055,072-byte charge (43 ms a match, debug). 6bc4a26 refused the doubling a lookaround
/// inside a lookbehind causes; this is the same walk around the delegate cap with no
/// lookaround in it.
#[test]
fn word_boundaries_in_a_lookbehind_compile_within_their_charge() {
    let pattern = format!("(?<={})x", r"a+\b".repeat(100)).repeat(16);
    super::lookbehind_nesting_and_escapes::one_match_holds_no_more_than_its_charge(
        &pattern, "aaax",
    );
}

/// JavaScript with no flags reads `\k` as the letter in a pattern without named groups
/// (Annex B), so `(a)\k<1>` is `a`, `k<1>`. 6bc4a26 reads `\k<name>` by identifier
/// characters, digits included, and fancy-regex reads `\k<1>` (and `\k<01>`) as a
/// backreference to group 1: berth fires on `aa` and misses `ak<1>`. node:
/// `/(a)\k<1>/` over `ak<1>` true and over `aa` false, `/(\w)\k<1>/` over `xx` false,
/// `/(?=(a))\k<1>/` over `ak<1>` false, `/(a)\k<01>/` over `ak<01>` true.
#[test]
fn a_named_reference_by_number_is_the_letter_without_named_groups() {
    let cases = [
        (r"(a)\k<1>", "ak<1>", true),
        (r"(a)\k<1>", "aa", false),
        (r"(\w)\k<1>", "xx", false),
        (r"(?=(a))\k<1>", "ak<1>", false),
        (r"(a)\k<01>", "ak<01>", true),
    ];
    let unlike: Vec<_> = cases
        .iter()
        .filter(|(pattern, _, _)| Regex::compile(pattern).is_ok())
        .filter_map(|(pattern, text, javascript)| unlike(pattern, text, *javascript))
        .collect();
    assert!(unlike.is_empty(), "unlike JavaScript: {unlike:?}");
}
