//! fancy-regex's lookbehind over an alternation misses a branch that is itself an
//! alternation of branches of unequal byte length (`(?<=a|(?:\t|\xC2\xA0))x` misses
//! U+00A0 `x`), which is what `\s` becomes in `javascript`; a lookbehind of one such
//! alternation alone is found. So a lookbehind over an alternation is split into one per
//! branch, non-capturing groups that are a whole branch flattened into it: `(?<=a|\s)` is
//! `(?:(?<=a)|(?<=\s))`, `(?<!a|\s)` is `(?:(?<!a)(?<!\s))`, as JavaScript reads them.

/// `pattern` with every lookbehind over an alternation split into one lookbehind per
/// branch. A group that does not close is left as it is for the engine to refuse.
///
/// What bounds its walks (`rewrite` runs it only on a pattern `groups_nest_within` passed,
/// whose tokens are these): it recurses once per lookbehind nested in another, and
/// `Groups::flat_branches` once per whole non-capturing branch nested in another, so
/// neither goes deeper than [`MAX_GROUP_NESTING`](super::MAX_GROUP_NESTING). It never
/// rescans: where each group closes is found in one walk before it starts, and each walk
/// after steps over a token once (the split over its range but the lookbehinds it hands to
/// itself, `flat_branches` over one group's top level), so a group left open costs nothing.
pub(super) fn split_lookbehinds(pattern: &str) -> String {
    let groups = Groups::of(pattern);
    let mut out = String::with_capacity(pattern.len());
    groups.split(0, pattern.len(), &mut out);
    out
}

/// A pattern and where each of its groups closes.
struct Groups<'a> {
    pattern: &'a str,
    /// The byte offset of each group's `(` and of its `)`.
    closes: std::collections::HashMap<usize, usize>,
}

impl<'a> Groups<'a> {
    /// One walk over `pattern`'s tokens; a `)` with no group open closes nothing.
    fn of(pattern: &'a str) -> Self {
        let (mut open, mut closes) = (Vec::new(), std::collections::HashMap::new());
        let mut at = 0;
        while at < pattern.len() {
            match pattern.as_bytes()[at] {
                b'(' => open.push(at),
                b')' => {
                    if let Some(opened) = open.pop() {
                        closes.insert(opened, at);
                    }
                }
                _ => {}
            }
            at = token_end(pattern, at);
        }
        Groups { pattern, closes }
    }

    /// Where the group opened at `open` closes, if it does.
    fn close(&self, open: usize) -> Option<usize> {
        self.closes.get(&open).copied()
    }

    /// Appends `pattern[start..end]` to `out`, its lookbehinds split.
    fn split(&self, start: usize, end: usize, out: &mut String) {
        let mut at = start;
        while at < end {
            let rest = &self.pattern[at..end];
            let negative = rest.starts_with("(?<!");
            if (negative || rest.starts_with("(?<="))
                && let Some(close) = self.close(at)
            {
                let branches = self.flat_branches(at + 4, close);
                if branches.len() > 1 {
                    let (opener, joiner) = if negative {
                        ("(?<!", "")
                    } else {
                        ("(?<=", "|")
                    };
                    out.push_str("(?:");
                    for (i, (from, to)) in branches.into_iter().enumerate() {
                        if i > 0 {
                            out.push_str(joiner);
                        }
                        out.push_str(opener);
                        self.split(from, to, out);
                        out.push(')');
                    }
                    out.push(')');
                } else {
                    out.push_str(&rest[..4]);
                    self.split(at + 4, close, out);
                    out.push(')');
                }
                at = close + 1;
                continue;
            }
            let next = token_end(self.pattern, at).min(end);
            out.push_str(&self.pattern[at..next]);
            at = next;
        }
    }

    /// The ranges of the branches of `pattern[start..end]`'s top-level alternation, a
    /// branch that is one whole non-capturing group replaced by that group's branches.
    fn flat_branches(&self, start: usize, end: usize) -> Vec<(usize, usize)> {
        let mut branches = Vec::new();
        let mut from = start;
        let mut at = start;
        loop {
            if at >= end || self.pattern.as_bytes()[at] == b'|' {
                let to = at.min(end);
                if self.pattern[from..to].starts_with("(?:") && self.close(from) == Some(to - 1) {
                    branches.extend(self.flat_branches(from + 3, to - 1));
                } else {
                    branches.push((from, to));
                }
                if at >= end {
                    return branches;
                }
                from = at + 1;
                at += 1;
            } else if self.pattern.as_bytes()[at] == b'(' {
                match self.close(at) {
                    Some(close) => at = close + 1,
                    None => return vec![(start, end)],
                }
            } else {
                at = token_end(self.pattern, at);
            }
        }
    }
}

/// The end of the token at `at`: an escape, a whole class (its first `]` ends it, as in
/// JavaScript: `[]`, `[^]`), or one character.
pub(super) fn token_end(pattern: &str, at: usize) -> usize {
    let rest = &pattern[at..];
    let mut chars = rest.char_indices();
    match chars.next() {
        Some((_, '\\')) => chars
            .next()
            .map_or(pattern.len(), |(i, c)| at + i + c.len_utf8()),
        Some((_, '[')) => {
            let mut escaped = false;
            for (i, c) in chars {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    ']' => return at + i + 1,
                    _ => {}
                }
            }
            pattern.len()
        }
        Some((_, c)) => at + c.len_utf8(),
        None => pattern.len(),
    }
    .max(at + 1)
    .min(pattern.len())
}
