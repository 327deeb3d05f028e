//! The backtracking engine (`fancy-regex`) for the patterns the linear one cannot take,
//! and what each is charged: fancy-regex compiles every stretch of the pattern that needs
//! no backtracking as a regex of its own (a delegate), so a pattern holds one compiled
//! regex per delegate, not per lookaround, and builds them all again at each match. What
//! a build holds is measured at load and the regexes counted in the program it built;
//! the pattern's own stretches are counted first, to refuse most patterns past the cap
//! before building them.

use fancy_regex::{Expr, LookAround};

use super::javascript::NOT_INSIDE_A_CHARACTER;

use super::{
    BACKTRACK_LIMIT, MAX_BACKTRACKING_CONSTRUCTS, MAX_BACKTRACKING_DELEGATES, MatchError,
    REGEX_CACHE_BYTES, REGEX_SIZE_LIMIT, Regex, meta, needs_backtracking,
};

/// The rewritten `pattern` for the backtracking engine (lookaround, backreferences), with
/// the linear engine's complaint (`None` when it was not asked: a backreference) for
/// anything else it refuses. It matches bytes with ASCII classes, as the linear engine
/// does.
pub(super) fn compile(
    pattern: String,
    linear_error: Option<Box<meta::BuildError>>,
) -> Result<Regex, MatchError> {
    let (constructs, delegates, nested) =
        fancy_regex::Expr::parse_tree(&pattern).map_or((0, 0, false), |tree| {
            (
                constructs(&tree.expr),
                delegates(&tree.expr),
                nested_lookbehind_alternation(&tree.expr),
            )
        });
    if nested {
        return Err(MatchError::LookbehindGroupAlternation);
    }
    if let Ok(tree) = fancy_regex::Expr::parse_tree(&pattern) {
        if backreference_into_its_repetition(&tree.expr) {
            return Err(MatchError::BackreferenceInRepetition);
        }
        if lookaround_in_a_lookbehind(&tree.expr) {
            return Err(MatchError::LookaroundInLookbehind);
        }
    }
    // As written: the rewrite's guards against looking from inside a character are not
    // the pattern's.
    let constructs = constructs.saturating_sub(pattern.matches(NOT_INSIDE_A_CHARACTER).count());
    if constructs > MAX_BACKTRACKING_CONSTRUCTS {
        return Err(MatchError::TooManyBacktrackingConstructs(constructs));
    }
    if delegates > MAX_BACKTRACKING_DELEGATES {
        return Err(MatchError::TooManyDelegates(delegates));
    }
    // Its compiled regexes are counted in the program it built. (A match builds it again,
    // on the worker.)
    let compiled = build(&pattern)
        .map(|regex| compiled_regexes(&regex))
        .map_err(|fancy_error| {
            // Only lookaround and backreferences need the backtracking engine; for any other
            // syntax error the linear engine's message is the useful one.
            match linear_error {
                Some(linear_error) if !needs_backtracking(&linear_error) => {
                    MatchError::Linear(linear_error)
                }
                _ => MatchError::Backtracking(Box::new(fancy_error)),
            }
        })?;
    if compiled > MAX_BACKTRACKING_DELEGATES {
        return Err(MatchError::TooManyDelegates(compiled));
    }
    // Only the pattern is kept: the regex is built again for each match (`build`).
    Ok(Regex::Backtracking {
        pattern: pattern.into_boxed_str(),
        regexes: delegates.max(compiled),
    })
}

/// How many regexes the engine compiled for `regex`, read from its program (the
/// instructions that each run one: a delegate, forwards or backwards, an absent
/// repeater, a seek, a variable-length lookbehind's reverse DFA), or one for a pattern
/// it runs whole. Counted in what was built, not re-derived from the pattern: two
/// readings of fancy-regex's compiler each missed a case (a repetition of branches in a
/// lookahead compiled one regex a branch; every pattern on the VM one for capture group
/// 0), each an undercount of what a match holds.
fn compiled_regexes(regex: &fancy_regex::Regex) -> usize {
    /// `debug_print` lists the program one instruction a line (`  7: Delegate(…)`, the
    /// pattern inside escaped), or a wrapped pattern on one line.
    struct Program<'a>(&'a fancy_regex::Regex);
    impl std::fmt::Display for Program<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.debug_print(f)
        }
    }
    const COMPILING: [&str; 5] = [
        "Delegate(",
        "BackwardsDelegate(",
        "AbsentRepeater(",
        "Seek(",
        "HardVariableLookbehind(",
    ];
    let program = Program(regex).to_string();
    if program.starts_with("wrapped Regex") {
        return 1;
    }
    program
        .lines()
        .filter_map(|line| line.split_once(": ").map(|(_, insn)| insn))
        .filter(|insn| COMPILING.iter().any(|kind| insn.starts_with(kind)))
        .count()
}

/// The backtracking regex of the rewritten `pattern`, built afresh for every match: its
/// delegates live in an `Arc` every clone shares, each with a pool that keeps its search
/// caches (a 256 KiB lazy DFA and more) for as long as the regex lives, so a regex kept
/// between matches would hold ~250 KB per delegate against its 32 KiB charge.
pub(super) fn build(pattern: &str) -> Result<fancy_regex::Regex, fancy_regex::Error> {
    fancy_regex::RegexBuilder::new(pattern)
        .bytes_mode(fancy_regex::BytesMode::Ascii)
        .unicode_mode(false)
        .backtrack_limit(BACKTRACK_LIMIT)
        .delegate_size_limit(REGEX_SIZE_LIMIT)
        .delegate_dfa_size_limit(REGEX_CACHE_BYTES)
        .build()
}

/// Whether only the backtracking engine runs `expr` itself (not counting its children).
fn backtracking_node(expr: &Expr) -> bool {
    !matches!(
        expr,
        Expr::Empty
            | Expr::Any { .. }
            | Expr::Assertion(_)
            | Expr::GeneralNewline { .. }
            | Expr::Literal { .. }
            | Expr::LiteralBytes { .. }
            | Expr::Concat(_)
            | Expr::Alt(_)
            | Expr::Group(_)
            | Expr::Repeat { .. }
            | Expr::Delegate { .. }
    )
}

/// How many nodes of `expr` only the backtracking engine runs (lookarounds,
/// backreferences, atomic groups, `\K`), as written: the conditional the rewrite puts
/// around a backreference (did its group take part?) is not counted, JavaScript having
/// no conditionals of its own.
fn constructs(expr: &Expr) -> usize {
    let mut count = 0;
    let mut left = vec![expr];
    while let Some(expr) = left.pop() {
        let own = matches!(
            expr,
            Expr::Conditional { .. } | Expr::BackrefExistsCondition { .. }
        );
        count += usize::from(backtracking_node(expr) && !own);
        left.extend(expr.children_iter());
    }
    count
}

/// At most how many regexes fancy-regex compiles for `expr`: one for every child that
/// needs no backtracking of a node that does (each branch of an alternation holding a
/// lookaround, each run of them in a sequence around one, the inside of a lookaround), and for
/// a lookbehind over an alternation one per branch. What it compiles on its VM is counted
/// by the branches it delegates from there ([`branches_on_the_vm`]): a capture group a backreference names,
/// and in a sequence what lies between its first and last hard child. (Its search is the
/// backtracking VM itself: the seek regex it could compile for the whole pattern is off by
/// default.)
fn delegates(expr: &Expr) -> usize {
    let mut hard = std::collections::HashMap::new();
    mark_hard(expr, &mut hard);
    let referenced = referenced_groups(expr);
    let is_hard = |e: &Expr| {
        hard.get(&std::ptr::from_ref(e)).copied().unwrap_or(false)
            || referenced.contains(&std::ptr::from_ref(e))
    };
    let mut count = 0;
    let mut left = vec![expr];
    while let Some(expr) = left.pop() {
        if !is_hard(expr) {
            continue;
        }
        if let Expr::Group(inside) = expr
            && !hard
                .get(&std::ptr::from_ref(expr))
                .copied()
                .unwrap_or(false)
        {
            count += 1 + branches_on_the_vm(inside);
            continue;
        }
        let behind = matches!(
            expr,
            Expr::LookAround(_, LookAround::LookBehind | LookAround::LookBehindNeg)
        );
        // In a sequence, the easy children between two hard ones are one stretch, and
        // between its first and last hard child each alternation branch one more (the
        // VM compiles them).
        let children: Vec<&Expr> = expr.children_iter().collect();
        let hard_at: Vec<usize> = (0..children.len())
            .filter(|&i| is_hard(children[i]))
            .collect();
        let sequence = matches!(expr, Expr::Concat(_));
        let between = match (sequence, hard_at.first(), hard_at.last()) {
            (true, Some(&first), Some(&last)) => first..last,
            _ => 0..0,
        };
        let mut after_easy = false;
        for (i, child) in children.into_iter().enumerate() {
            if is_hard(child) {
                left.push(child);
                after_easy = false;
                continue;
            }
            if between.contains(&i) {
                count += branches_on_the_vm(child);
            }
            if !(sequence && after_easy) {
                count += match child {
                    Expr::Alt(branches) if behind => branches.len(),
                    _ => 1,
                };
            }
            after_easy = true;
        }
    }
    count
}

/// The regexes more than one that fancy-regex delegates for `expr` compiled on its VM:
/// each branch of an alternation there starts a stretch of its own.
fn branches_on_the_vm(expr: &Expr) -> usize {
    let own = match expr {
        Expr::Alt(branches) => branches.len() - 1,
        _ => 0,
    };
    own + expr.children_iter().map(branches_on_the_vm).sum::<usize>()
}

/// The capture groups a backreference names: fancy-regex compiles each on its VM.
fn referenced_groups(expr: &Expr) -> Vec<*const Expr> {
    let mut groups = Vec::new();
    let mut named = Vec::new();
    let mut left = vec![expr];
    while let Some(expr) = left.pop() {
        if matches!(expr, Expr::Group(_)) {
            groups.push(std::ptr::from_ref(expr));
        }
        if let Expr::Backref { group, .. } = expr {
            named.push(*group);
        }
        let children: Vec<&Expr> = expr.children_iter().collect();
        left.extend(children.into_iter().rev());
    }
    named
        .into_iter()
        .filter_map(|group| groups.get(group.checked_sub(1)?).copied())
        .collect()
}

/// Records for every node of `expr` whether it or a node under it needs backtracking;
/// returns it for `expr`.
fn mark_hard(expr: &Expr, hard: &mut std::collections::HashMap<*const Expr, bool>) -> bool {
    let mut any = backtracking_node(expr);
    for child in expr.children_iter() {
        any |= mark_hard(child, hard);
    }
    hard.insert(std::ptr::from_ref(expr), any);
    any
}

/// Whether a lookbehind in `expr` is over an alternation with a branch that is a capturing
/// group of alternatives: fancy-regex misses that group's longer alternatives
/// (`(?<=a|(b|\s))x` over U+00A0 `x`). `lookbehind` splits the other alternations; a
/// capturing group cannot be split without renumbering the groups after it.
fn nested_lookbehind_alternation(expr: &Expr) -> bool {
    let mut left = vec![expr];
    while let Some(expr) = left.pop() {
        if let Expr::LookAround(body, LookAround::LookBehind | LookAround::LookBehindNeg) = expr
            && let Expr::Alt(branches) = ungrouped(body)
            && branches
                .iter()
                .any(|branch| matches!(ungrouped(branch), Expr::Alt(_)))
        {
            return true;
        }
        left.extend(expr.children_iter());
    }
    false
}

/// `expr` inside any capturing groups around it.
fn ungrouped(mut expr: &Expr) -> &Expr {
    while let Expr::Group(inner) = expr {
        expr = inner;
    }
    expr
}

/// Whether a backreference names a group inside a repetition (`+`, `*`, `{2,}`…):
/// JavaScript empties a repeated group's capture at each repetition, so the reference,
/// inside the repetition or after it, is empty after one the group took no part in, where
/// fancy-regex keeps the earlier capture (`^(?:(a)|b\1)+$` and `^(?:(a)|b)+\1$` over `ab`).
/// Two walks of the tree.
fn backreference_into_its_repetition(expr: &Expr) -> bool {
    // Capture groups are numbered in the order they open: a depth-first walk's, left first;
    // those under a repetition are noted as they are met.
    let (mut number, mut repeated) = (0, Vec::new());
    let mut left = vec![(expr, false)];
    while let Some((expr, in_repetition)) = left.pop() {
        if matches!(expr, Expr::Group(_)) {
            number += 1;
            if in_repetition {
                repeated.push(number);
            }
        }
        let repeats = in_repetition || matches!(expr, Expr::Repeat { hi, .. } if *hi > 1);
        let children: Vec<&Expr> = expr.children_iter().collect();
        left.extend(children.into_iter().rev().map(|child| (child, repeats)));
    }
    let mut left = vec![expr];
    while let Some(expr) = left.pop() {
        if let Expr::Backref { group, .. } = expr
            && repeated.contains(group)
        {
            return true;
        }
        left.extend(expr.children_iter());
    }
    false
}

/// Whether a lookaround or a word boundary sits inside a lookbehind: fancy-regex compiles
/// a lookbehind whose inside holds one twice (reverse delegates split at each, then the
/// inside again in case they fail), so each level of nesting doubles what it compiles (16
/// levels, 100 bytes: 230 MB and 0.5 s a match), and 100 `a+\b` in one lookbehind held
/// six times their charge, past what [`delegates`] counts. JavaScript would take them;
/// `(?<=\bERR )` is refused with them (write `\bERR (?=…)` or match the word outside).
fn lookaround_in_a_lookbehind(expr: &Expr) -> bool {
    let mut left = vec![(expr, false)];
    while let Some((expr, behind)) = left.pop() {
        if behind
            && matches!(
                expr,
                Expr::Assertion(
                    fancy_regex::Assertion::WordBoundary | fancy_regex::Assertion::NotWordBoundary
                )
            )
        {
            return true;
        }
        if let Expr::LookAround(_, kind) = expr {
            if behind {
                return true;
            }
            let into = matches!(kind, LookAround::LookBehind | LookAround::LookBehindNeg);
            left.extend(expr.children_iter().map(|child| (child, into)));
            continue;
        }
        left.extend(expr.children_iter().map(|child| (child, behind)));
    }
    false
}
