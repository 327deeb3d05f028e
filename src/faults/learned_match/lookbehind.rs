//! fancy-regex's lookbehind over an alternation misses a branch that is itself an
//! alternation of branches of unequal byte length (`(?<=a|(?:\t|\xC2\xA0))x` misses
//! U+00A0 `x`), which is what `\s` becomes in `javascript`; a lookbehind of one such
//! alternation alone is found. So a lookbehind over an alternation is split into one per
//! branch, non-capturing groups that are a whole branch flattened into it: `(?<=a|\s)` is
//! `(?:(?<=a)|(?<=\s))`, `(?<!a|\s)` is `(?:(?<!a)(?<!\s))`, as JavaScript reads them.

/// `pattern` with every lookbehind over an alternation split into one lookbehind per
/// branch. A pattern whose groups do not close is left as it is for the engine to refuse.
pub(super) fn split_lookbehinds(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut at = 0;
    while at < pattern.len() {
        let rest = &pattern[at..];
        let negative = rest.starts_with("(?<!");
        if (negative || rest.starts_with("(?<="))
            && let Some(close) = group_end(pattern, at)
        {
            let body = &pattern[at + 4..close];
            let branches = flat_branches(body);
            if branches.len() > 1 {
                let (opener, joiner) = if negative {
                    ("(?<!", "")
                } else {
                    ("(?<=", "|")
                };
                let split: Vec<String> = branches
                    .iter()
                    .map(|branch| format!("{opener}{})", split_lookbehinds(branch)))
                    .collect();
                out.push_str(&format!("(?:{})", split.join(joiner)));
            } else {
                out.push_str(&format!("{}{})", &rest[..4], split_lookbehinds(body)));
            }
            at = close + 1;
            continue;
        }
        let next = token_end(pattern, at);
        out.push_str(&pattern[at..next]);
        at = next;
    }
    out
}

/// The branches of `body`'s top-level alternation, a branch that is one whole
/// non-capturing group replaced by that group's branches.
fn flat_branches(body: &str) -> Vec<&str> {
    let mut branches = Vec::new();
    let mut start = 0;
    let mut at = 0;
    loop {
        if at == body.len() || body[at..].starts_with('|') {
            let branch = &body[start..at];
            match branch.strip_prefix("(?:") {
                Some(inner) if group_end(body, start) == Some(at - 1) => {
                    branches.extend(flat_branches(&inner[..inner.len() - 1]));
                }
                _ => branches.push(branch),
            }
            if at == body.len() {
                return branches;
            }
            start = at + 1;
            at += 1;
        } else if body[at..].starts_with('(') {
            match group_end(body, at) {
                Some(close) => at = close + 1,
                None => return vec![body],
            }
        } else {
            at = token_end(body, at);
        }
    }
}

/// Where the group opened at `open` closes, skipping escapes and classes.
fn group_end(pattern: &str, open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut at = open;
    while at < pattern.len() {
        match pattern.as_bytes()[at] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(at);
                }
            }
            _ => {}
        }
        at = token_end(pattern, at);
    }
    None
}

/// The end of the token at `at`: an escape, a whole class (a `]` first in it is one of
/// its characters), or one character.
fn token_end(pattern: &str, at: usize) -> usize {
    let rest = &pattern[at..];
    let mut chars = rest.char_indices();
    match chars.next() {
        Some((_, '\\')) => chars
            .next()
            .map_or(pattern.len(), |(i, c)| at + i + c.len_utf8()),
        Some((_, '[')) => {
            let mut first = true;
            let mut escaped = false;
            for (i, c) in chars {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '^' if first && i == 1 => continue,
                    ']' if !first => return at + i + 1,
                    _ => {}
                }
                first = false;
            }
            pattern.len()
        }
        Some((_, c)) => at + c.len_utf8(),
        None => pattern.len(),
    }
    .max(at + 1)
    .min(pattern.len())
}
