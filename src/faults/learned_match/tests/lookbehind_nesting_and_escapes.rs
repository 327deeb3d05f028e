//! Review b29 (issue 17's done-when review of 366ffac, 436852c and 67be671).

use super::*;

/// 366ffac refuses a backreference inside a repetition of its group, and takes one after
/// it, but JavaScript empties a repeated group's captures at each repetition, so after a
/// repetition whose last pass missed the group the backreference is empty; fancy-regex
/// keeps the capture of an earlier pass (the conditional the rewrite asks says it took
/// part). node: `/^(?:(a)|b)+\1$/` over `ab` true and over `aba` false, `/^(?:(a)|b)*c\1$/`
/// over `abc` true, `/^(?:(a)|b){2}\1$/` over `ab` true, and with an optional group
/// `/^(?:(a)?x)+\1$/` over `axx` true; berth answered the opposite to each.
#[test]
fn a_backreference_after_a_repetition_its_group_missed_last_is_empty() {
    let cases = [
        (r"^(?:(a)|b)+\1$", "ab", true),
        (r"^(?:(a)|b)+\1$", "aba", false),
        (r"^(?:(a)|b)*c\1$", "abc", true),
        (r"^(?:(a)|b){2}\1$", "ab", true),
        (r"^(?:(?<q>a)|b)+\k<q>$", "ab", true),
        (r"^(?:(a)?x)+\1$", "axx", true),
    ];
    assert_like_javascript_or_refused(&cases);
}

/// JavaScript with no flags reads `\x` and `\u` not followed by their hex digits as the
/// letter itself (Annex B), so `\x{41}` is `x` forty-one times and `[\u{20}]` one of `u`,
/// `{`, `2`, `0`, `}`; the rewrite passes both as written (`wide_escape` finds no digits)
/// and the regex crate reads them as the code points U+0041 and U+0020 (`\u{…}` outside a
/// class is known; in a class, and `\x{…}` anywhere, are not). node: `/a\x{2}/` over `axx`
/// true and over `a\x02` false, `/a[\u{20}]b/` over `a}b` true and over `a b` false,
/// `/a[\x{41}]/` over `a{` true; berth answered the opposite to each.
#[test]
fn a_hex_escape_without_its_digits_is_the_letter_before_a_brace() {
    let cases = [
        (r"a\x{2}", "axx", true),
        (r"a\x{2}", "a\u{2}", false),
        (r"a[\u{20}]b", "a}b", true),
        (r"a[\u{20}]b", "a b", false),
        (r"a[\x{41}]", "a{", true),
    ];
    assert_like_javascript_or_refused(&cases);
}

/// Fails naming every (pattern, text, JavaScript's answer) berth compiles and answers
/// otherwise: refusing a pattern at load is as good as reading it as JavaScript does.
#[track_caller]
fn assert_like_javascript_or_refused(cases: &[(&str, &str, bool)]) {
    let unlike: Vec<_> = cases
        .iter()
        .filter(|(pattern, _, _)| Regex::compile(pattern).is_ok())
        .filter_map(|(pattern, text, javascript)| unlike(pattern, text, *javascript))
        .collect();
    assert!(unlike.is_empty(), "unlike JavaScript: {unlike:?}");
}

/// JavaScript reads an escaped character past ASCII as the character (`\’` is `’`), and
/// 436852c's identity escapes take only ASCII letters, `<` and `>`: `\’` is passed as
/// written, which the linear engine refuses, so the pattern goes to the backtracking engine
/// as the character, not the bytes the rewrite makes of one written bare. Its lookbehind
/// then steps back one byte for it (what `utf8_bytes` fixed for `(?<=é)x`), and the whole
/// pattern reads only the window's last 4 KiB though it has no lookaround. node:
/// `/(?<=\é)x/` over `éx` true, `/(?<=d\’)erreur/` over `d’erreur` true, `/can\’t connect/`
/// over a 5 KB stdout tail holding it first true; berth: false to each (bare `can’t connect`
/// matches that tail).
#[test]
fn an_escaped_character_past_ascii_is_the_character() {
    let tail = format!(
        "ERROR: can’t connect\n{}{}",
        "retrying\n".repeat(100),
        "x".repeat(4500)
    );
    assert!(Regex::compile("can’t connect").unwrap().is_match(&tail));
    assert_like_javascript_or_refused(&[
        (r"(?<=\é)x", "éx", true),
        (r"(?<=d\’)erreur", "d’erreur", true),
        (r"can\’t connect", &tail, true),
    ]);
}

/// fancy-regex compiles a variable-length lookbehind whose inside is a lookbehind then an
/// easy stretch of no fixed length (`(?<=(?<=a)b+)`) twice: its reverse delegates with the
/// inner lookbehind, then again whole as a hard lookbehind (a seek DFA and the inside once
/// more) for when the reverse check fails. Nested, that doubles at each level: 14 of them
/// (100 bytes, 14 of the 16 constructs, 16 regexes counted and charged 491,620 bytes)
/// compile 2^14 times over, and a backtracking regex is built again at every match. In a
/// release build 16 deep (at the construct cap) took 0.5 s and 230 MB to compile, and as
/// much at each match; 14 deep 0.1 s and 60 MB.
#[test]
fn nested_variable_lookbehinds_compile_within_their_charge() {
    let mut pattern = String::from("a");
    for _ in 0..14 {
        pattern = format!("(?<={pattern})b+");
    }
    pattern.push('c');
    one_match_holds_no_more_than_its_charge(&pattern, "abbc");
}

/// Unless `pattern` is refused, one match of it over `text` holds at once no more than it
/// is charged in the daemon, and a backtracking one is answered by its worker, within the
/// memory limit the kernel holds the worker to. (Compiling it at load is held to the whole
/// budget.)
pub(super) fn one_match_holds_no_more_than_its_charge(pattern: &str, text: &str) {
    let Ok(charge) = compile_within_budget(pattern) else {
        return;
    };
    let regex = Regex::compile(pattern).unwrap();
    let mut worker = worker::Worker::default();
    crate::rules::memory::start();
    // What is tested is memory: a deadline no loaded machine reaches, where the tick's
    // 1 s (the default) once killed a worker that waited for a CPU.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let answer = regex.answer(text, &mut worker, Some(until));
    let peak = crate::rules::memory::stop();
    assert!(
        usize::try_from(peak).unwrap() <= charge,
        "one match ({answer:?}) held {peak} bytes at once in the daemon, charged {charge}"
    );
    if matches!(regex, Regex::Backtracking { .. }) {
        assert_eq!(
            (worker.counts.started, worker.counts.answered),
            (1, 1),
            "one worker answers the match within its {} bytes ({answer:?})",
            worker::WORKER_MEMORY_BYTES
        );
    }
}
