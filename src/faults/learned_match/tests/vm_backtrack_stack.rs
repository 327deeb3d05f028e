//! Review b35 (issue 17's done-when review of 05a74ee): a backtracking regex is charged
//! its build, measured at load, and 32 KiB for each regex it compiles; its search on the
//! VM keeps a backtrack branch (24 bytes) for every choice still open, and a saved slot
//! (16 bytes) for every capture or repeat count it overwrote, none of them charged. A
//! repetition on the VM over the 4 KiB window leaves one or more open per byte, up to
//! fancy-regex's 1,000,000-branch stack (24 MB).

use super::lookbehind_nesting_and_escapes::one_match_holds_no_more_than_its_charge;
use super::*;

/// `(?:a|(?=b)b)*c`, an investigator's "a run of `a` or `b` then `c`" with a lookahead in
/// it, runs its repetition on the VM: two branches open a byte over 4 KiB of `ab`. One
/// match held 264,423 bytes, charged 135,255.
#[test]
fn a_repetition_on_the_vm_holds_its_open_branches_within_the_charge() {
    one_match_holds_no_more_than_its_charge(r"(?:a|(?=b)b)*c", &"ab".repeat(2048));
}

/// Captures in the repetition add a saved slot for each: `(?:(a)|(?=b)(b))*c` held
/// 470,346 bytes, charged 147,357.
#[test]
fn captures_in_a_repetition_on_the_vm_are_within_the_charge() {
    one_match_holds_no_more_than_its_charge(r"(?:(a)|(?=b)(b))*c", &"ab".repeat(2048));
}

/// 300 empty-first alternations `(?:|z)` in a repeated body each leave a branch open at
/// every byte, and none is a regex: 1,812 bytes of pattern, charged 391,183, held
/// 25,318,408 bytes in one match (the engine's stack limit, past the whole 32 MiB budget's
/// three quarters).
#[test]
fn empty_branches_on_the_vm_hold_no_more_than_their_charge() {
    let pattern = format!("(?:{}(?=a)a)*c", "(?:|z)".repeat(300));
    one_match_holds_no_more_than_its_charge(&pattern, &"a".repeat(4096));
}

/// The tempered token, the usual way to say "a line without `timeout`": its repetition
/// runs on the VM, a branch open a byte over a 4 KiB line. One match held 224,120 bytes,
/// charged 168,406.
#[test]
fn a_line_without_a_word_holds_within_its_charge() {
    one_match_holds_no_more_than_its_charge(r"^(?:(?!timeout).)*$", &"x".repeat(4096));
}

/// A capture group after each empty-first alternation adds two saved slots per open
/// branch, and saved slots have no limit of their own: 300 `()(?:|z)` (2.4 KB, charged
/// 654,219) held 58,898,719 bytes in one match, past all the learned regexes' 32 MiB.
/// It now runs on a worker, which dies at its memory limit: the match does not match, and
/// the daemon holds no more than the budget.
#[test]
fn one_match_on_the_vm_holds_less_than_the_whole_budget() {
    let pattern = format!("(?:(?:|z){}(?=a)a)*c", "()(?:|z)".repeat(300));
    let regex = Regex::compile(&pattern).unwrap();
    let mut worker = worker::Worker::default();
    crate::rules::memory::start();
    let answer = regex.answer(&"a".repeat(4096), &mut worker, None);
    let peak = usize::try_from(crate::rules::memory::stop()).unwrap();
    assert!(
        peak <= COMPILED_BUDGET_BYTES,
        "one match ({answer:?}) held {peak} bytes, charged {}; all learned regexes may hold {COMPILED_BUDGET_BYTES}",
        regex.memory()
    );
    assert_eq!(
        answer,
        worker::Answer::Died,
        "the worker held the match to its {} bytes",
        worker::WORKER_MEMORY_BYTES
    );
}
