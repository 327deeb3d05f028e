//! Review b27: `groups_nest_within` ends a class at its first `]`, where the split
//! (`token_end`), the rewrite and both engines read a `]` first in a class (`[]`, `[^]`) as
//! one of its characters. So `[]))]` is a class to the split but two closing groups to the
//! nesting check, which lets groups it never sees open or closed reach the split.

use super::*;

/// `(?<=` 64 times, then `[]` and 64 `)` the check counts as closes but the split reads as
/// one class: `blocks` of them nest `64 × blocks` lookbehinds the split sees, each closed by
/// the `)` after the `a` (the check ignores closes at depth 0).
fn hidden_nesting(blocks: usize) -> String {
    let block = format!(
        "{}[]{}]",
        "(?<=".repeat(MAX_GROUP_NESTING),
        ")".repeat(MAX_GROUP_NESTING)
    );
    format!(
        "{}a{}",
        block.repeat(blocks),
        ")".repeat(MAX_GROUP_NESTING * blocks)
    )
}

/// `Regex::compile` on a thread with room for the split's recursion, so that a pattern that
/// reaches it deep fails this test instead of aborting the test binary.
fn compile_on_a_big_stack(pattern: String) -> Result<(), String> {
    std::thread::Builder::new()
        .stack_size(256 * 1024 * 1024)
        .spawn(move || {
            Regex::compile(&pattern)
                .map(|_| ())
                .map_err(|e| format!("{e:?}"))
        })
        .unwrap()
        .join()
        .unwrap()
}

/// 2,560 lookbehinds nested under the 16 KiB cap: the nesting check sees them 64 deep at
/// most and lets them through, and the split recurses once per lookbehind. On the
/// `learned-compile` thread's 2 MiB stack that overflows and aborts the daemon (debug
/// build; the test below shows it in the daemon). They should be refused as nested.
#[test]
fn an_empty_class_does_not_hide_nesting_from_the_check() {
    let pattern = hidden_nesting(40);
    assert!(pattern.len() <= MAX_REWRITTEN_BYTES, "{}", pattern.len());
    let refused = compile_on_a_big_stack(pattern.clone());
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.starts_with("GroupNesting")),
        "a {}-byte pattern of {} nested lookbehinds behind `[]`: {refused:?}",
        pattern.len(),
        MAX_GROUP_NESTING * 40
    );
}

/// `(?<=[])]` repeated: every group closed to the check (`[]` a class, then `)`), none to
/// the split (`[])]` one class), which scans the rest of the pattern for each lookbehind's
/// end: 2,048 scans of up to 16 KiB (0.8 s a pattern in a debug build, the square of its
/// length; an 8 MiB learned file holds 512), what f844f81 refused unclosed groups to stop.
#[test]
fn an_empty_class_does_not_hide_an_unclosed_group_from_the_check() {
    let pattern = "(?<=[])]".repeat(MAX_REWRITTEN_BYTES / 8);
    let refused = compile_on_a_big_stack(pattern.clone());
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.starts_with("GroupNesting")),
        "a {}-byte pattern of unclosed lookbehinds behind `[]`: {refused:?}",
        pattern.len()
    );
}
