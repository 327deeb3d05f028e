//! The rewrite checks its cap only between characters and classes outside a class, so one
//! class (or one lookbehind's split) was expanded whole first: `\s` in a class becomes 20
//! bytes, copied into its alternatives and the output. The pattern as written is now
//! capped before the split and the rewrite run.

use super::*;

/// 2 MB of `\s` in one class (an 8 MiB learned file holds four): rewriting it held more
/// than all compiled learned regexes may, before the cap refused it.
#[test]
fn loading_one_long_class_holds_no_more_than_the_compiled_budget() {
    let pattern = format!("[{}]", r"\s".repeat(1_000_000));
    let compiled = compile_within_budget(&pattern);
    assert!(
        matches!(compiled, Err(MatchError::RewrittenTooLong(_))),
        "{compiled:?}"
    );
}

/// The lookbehind split runs before the rewrite and its cap: one lookbehind over 1,000,000
/// one-letter branches (2 MB) is split into a string per branch before anything counts.
#[test]
fn splitting_one_long_lookbehind_holds_no_more_than_the_compiled_budget() {
    let pattern = format!("(?<={}a)x", "a|".repeat(1_000_000));
    let _ = compile_within_budget(&pattern);
}
