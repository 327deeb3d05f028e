//! Review b33 (issue 17's done-when review of 4870750): classes compiled one by one on the
//! VM inside an alternation branch that holds no lookaround, where the alternation itself
//! is hard (a sibling branch holds one) and is compiled on the VM.

use super::class_delegates::{classes, one_match_within_charge as within_charge};

/// A hard repetition compiles its body on the VM (`compile_repeat`: `hard | info.hard`);
/// the body is an alternation whose first branch is a lookahead, so the second branch, a
/// run of 1,830 distinct classes, is compiled in hard mode, class by class.
/// `leaves_on_the_vm` counts only sequences holding a hard child and referenced groups, so
/// this branch (a sequence with no hard child, under an alternation) counts nothing.
#[test]
fn classes_in_an_easy_branch_of_a_repeated_hard_alternation_compile_within_their_charge() {
    let pattern = format!("(?:(?=b)|{})+c", classes());
    within_charge(&pattern, &format!("{}c", "a".repeat(1830)));
}

/// The same branch between two lookaheads: the middle child is a hard alternation, visited
/// on the VM, and its easy branch with it.
#[test]
fn classes_in_an_easy_branch_between_lookarounds_compile_within_their_charge() {
    let pattern = format!("(?=a)(?:(?=b)|{})(?=c)c", classes());
    within_charge(&pattern, &format!("{}c", "a".repeat(1830)));
}

/// `width` takes `x{0}` as fixed (0 bytes) whatever `x` is, but fancy-regex's analysis
/// does not (`const_size = child.const_size && lo == hi`): a `(?:b+){0}` first in a
/// sequence ends the batched prefix at once, so every class after it, up to the lookahead,
/// is visited on the VM one by one, while `leaves_on_the_vm` takes the whole leading run
/// as fixed and counts none of it. Without the `{0}` the same classes are one delegate,
/// refused at load past the 8 KiB compiled-size limit: split, they walk around it too.
#[test]
fn classes_after_a_zero_repetition_before_a_lookaround_compile_within_their_charge() {
    let pattern = format!("(?:b+){{0}}{}(?=c)c", fixed_classes());
    within_charge(&pattern, &format!("{}c", "a".repeat(1830)));
}

/// 1,830 distinct single classes `[axy]`, each of one byte.
fn fixed_classes() -> String {
    classes().replace("+?", "")
}

/// `leaves_on_the_vm` takes a capture group a backreference names as easy (`mark_hard`
/// only), where fancy-regex's analysis marks it hard: in `(a)[…][…]…\1c` the classes lie
/// between the sequence's first and last hard child and are visited on the VM one by one,
/// but `leaves_on_the_vm` sees them in a leading run of fixed width and counts none.
#[test]
fn classes_between_a_referenced_group_and_its_backreference_compile_within_their_charge() {
    let pattern = format!(r"(a){}\1c", fixed_classes());
    within_charge(&pattern, &format!("a{}ac", "a".repeat(1830)));
}
