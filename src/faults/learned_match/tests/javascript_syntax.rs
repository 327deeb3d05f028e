//! Review b28 (issue 17's done-when review of 67be671 and 436852c): group syntax
//! JavaScript lacks refused (subroutine calls, conditionals, `(?x)` comments), named and
//! repeated backreferences, what the guards cost.

use super::*;

/// The guards the rewrite adds (`(?![\x80-\xBF])` before `(?<!` and after `\B`) are
/// subtracted from the construct count by their text, but text is not a construct: in an
/// `(?x)` comment the rewritten `\B`s are counted off and parse to nothing, so each hides
/// one real lookaround from [`MAX_BACKTRACKING_CONSTRUCTS`]. 17 lookaheads in sequence
/// behind one hidden `\B` compile; 60 nested lookaheads behind 50 compile as one delegate.
#[test]
fn a_guard_written_in_a_comment_does_not_hide_a_construct() {
    let in_sequence = format!("(?x)#\\B\n{}a", "(?=a)".repeat(17));
    let nested = format!(
        "(?x)#{}\n{}a{}",
        r"\B".repeat(50),
        "(?=".repeat(60),
        ")".repeat(60)
    );
    for pattern in [&in_sequence, &nested] {
        let refused = Regex::compile(pattern);
        assert!(
            matches!(refused, Err(MatchError::GroupSyntax(0))),
            "{pattern:?}: {refused:?}"
        );
    }
    let compiled: Vec<(usize, String)> = [in_sequence, nested]
        .iter()
        .filter_map(|pattern| {
            let regex = Regex::compile(pattern).ok()?;
            let Regex::Backtracking {
                pattern: rewritten, ..
            } = &regex
            else {
                return None;
            };
            let tree = fancy_regex::Expr::parse_tree(rewritten).ok()?;
            Some((lookarounds(&tree.expr), pattern.clone()))
        })
        .filter(|(count, _)| *count > MAX_BACKTRACKING_CONSTRUCTS)
        .collect();
    assert!(
        compiled.is_empty(),
        "compiled with more than {MAX_BACKTRACKING_CONSTRUCTS} lookarounds: {compiled:?}"
    );
}

/// The lookarounds the engine parsed from `expr`.
fn lookarounds(expr: &fancy_regex::Expr) -> usize {
    let mut count = 0;
    let mut left = vec![expr];
    while let Some(expr) = left.pop() {
        count += usize::from(matches!(expr, fancy_regex::Expr::LookAround(..)));
        left.extend(expr.children_iter());
    }
    count
}

/// 436852c makes a numbered backreference to a group that took no part empty, as in
/// JavaScript, but a named one (`\k<q>`, ES2018) is passed to fancy-regex as it is, which
/// fails it. node: `/version=(?<q>["'])?\d+\k<q>/.test("version=3")` true,
/// `/(?<q>['"])?v\k<q>/.test("v")` true; berth: false.
#[test]
fn a_named_backreference_to_a_group_that_took_no_part_is_empty() {
    assert_like_javascript(&[
        (r#"version=(?<q>["'])?\d+\k<q>"#, "version=3", true),
        (r#"version=(?<q>["'])?\d+\k<q>"#, "version='3'", true),
        (r#"(?<q>['"])?v\k<q>"#, "v", true),
    ]);
}

/// JavaScript clears a quantified group's captures at each repetition, so a backreference
/// to a group that took part in an earlier repetition only is empty; fancy-regex keeps the
/// earlier capture, which no rewrite asks about. node: `/^(?:(a)|b\1)+$/.test("ab")` true,
/// berth false. Such a pattern is refused, naming why, and so is one whose reference
/// comes after the repetition (review b29): a group outside every repetition is taken.
#[test]
fn a_backreference_into_the_repetition_of_its_group_is_refused() {
    for pattern in [
        r"^(?:(a)|b\1)+$",
        r"^(?:(\w)=|;\1)+$",
        r"(?:(?<q>x)\k<q>)*",
        r"^(a)+\1$",
    ] {
        let refused = Regex::compile(pattern);
        assert!(
            matches!(refused, Err(MatchError::BackreferenceInRepetition)),
            "{pattern}: {refused:?}"
        );
    }
    assert_like_javascript(&[(r"^(a)?b\1$", "bb", false), (r"^(a)?b\1$", "aba", true)]);
}

/// A negative lookbehind or `\B` compiles three regexes, its guard against looking from
/// inside a character one of them, as docs/limits.md counts them (it said two): 10 in
/// sequence fit [`MAX_BACKTRACKING_DELEGATES`], 11 are refused naming how many regexes.
#[test]
fn negative_lookbehinds_in_sequence_compile_as_the_docs_count_them() {
    for unit in ["x(?<!a)", r"x\B"] {
        let at_cap = format!("{}x", unit.repeat(10));
        let regex = Regex::compile(&at_cap).unwrap();
        assert!(
            matches!(regex, Regex::Backtracking { regexes, .. } if regexes == 3 * 10 + 1),
            "{at_cap}: {regex:?}"
        );
        let past = format!("{}x", unit.repeat(11));
        let refused = Regex::compile(&past);
        assert!(
            matches!(refused, Err(MatchError::TooManyDelegates(34))),
            "{past}: {refused:?}"
        );
    }
}

/// `(?P>name)` is a subroutine call to fancy-regex (the rewrite passes it as written; 436852c
/// made `\g<…>` a `g`), and fancy-regex compiles each call by inlining the group it calls,
/// its delegates with it, recursing up to 19 deep. `delegates` counts the group once: a
/// chain of eight doubling calls (16 constructs, in the cap) compiles 511 regexes, charged
/// one. The recursive `(?<r>[ab]c(?P>r)?(?P>r)?)` (26 bytes, charged 32,793 bytes) compiles
/// ~1,000,000 delegates: 2.6 GB peak and 2.8 s a match in a release build, at load and at
/// every match (a backtracking regex is built again for each), past the 32 MiB budget and
/// the 1 s tick budget.
/// Now refused as JavaScript refuses it, with every other group syntax it lacks.
#[test]
fn a_subroutine_call_is_charged_for_the_regexes_it_compiles() {
    let mut chain = String::from("(?<g1>[ab]c)");
    for k in 1..=8 {
        chain.push_str(&format!("(?<g{}>(?P>g{k})(?P>g{k}))", k + 1));
    }
    for pattern in [
        chain.as_str(),
        "(?<r>[ab]c(?P>r)?(?P>r)?)",
        "(?<r>a(?&r)?)",
        "(a(?1)?)",
        "(a(?R)?)",
        "(?>a+)b",
        "(?i)err",
    ] {
        let refused = Regex::compile(pattern);
        assert!(
            matches!(refused, Err(MatchError::GroupSyntax(_))),
            "{pattern}: {refused:?}"
        );
    }
}

/// 436852c stops counting conditionals (`Conditional`, `BackrefExistsCondition`) so the one
/// it wraps around a backreference is not charged, but a conditional the pattern itself
/// writes (a SyntaxError in JavaScript; [`MAX_BACKTRACKING_CONSTRUCTS`] names conditionals
/// among what it counts) is then counted by nobody: `(a)` and 40 `(?(1))` compile, 0
/// constructs counted.
#[test]
fn a_conditional_written_in_the_pattern_is_refused() {
    let pattern = format!("(a){}b", "(?(1))".repeat(40));
    let compiled = Regex::compile(&pattern);
    assert!(
        compiled.is_err(),
        "{pattern}: compiled with 40 conditionals ({:?})",
        compiled.map(|regex| regex.memory())
    );
}
