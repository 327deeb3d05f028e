//! `state_jsonpath`: the small path language of learned patterns (DESIGN §7), with the
//! results of gstack's original evaluator.
//!
//! This is deliberately not RFC 9535 JSONPath: investigators' existing patterns were written
//! against the TypeScript evaluator, whose quirks (JavaScript truthiness, `[*]` on an object
//! yielding the object itself, `==` comparing with strings only) decide whether they match.
//! The grammar is tiny, so it is parsed by hand into borrowed steps and evaluated without
//! recursion over a compact form of the document ([`tree`]): a hostile pattern costs at most
//! `pattern length × document size`, never stack.
//!
//! Grammar: `$` then any of `.field`, `['field']`, `["field"]`, `[*]`,
//! `[?(ATOM && ATOM ...)]`, where a field is `[A-Za-z_][A-Za-z0-9_]*` after a dot and any
//! text without quotes inside brackets, and an ATOM is `@.f`, `!@.f`, `@.f == 'lit'`,
//! `@.f != 'lit'` (either quote). Anything else is outside the grammar and matches nothing.
//!
//! Field lookup is on own keys, plus the two things JavaScript's property access gives
//! that gstack's patterns use: a list's `length` (and a string's, inside a filter) and a
//! list's canonical index written as a name (`['0']`). Every other inherited property —
//! `constructor`, `__proto__`, `toString`, `hasOwnProperty`, ... — is refused (matches
//! nothing): they resolve to functions in JavaScript, which no pattern means to match.

pub(crate) mod footprint;
mod tree;

use std::borrow::Cow;

use serde_json::Value;

use tree::Tree;

/// Patterns longer than this are refused: a learned pattern is a line, not a program.
pub const MAX_PATTERN_BYTES: usize = 4096;

/// Why a pattern cannot be used. Evaluation turns any of these into "no match"; learned
/// pattern validation reports them so an investigator learns why a pattern never fires.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("pattern is {len} bytes, over the {MAX_PATTERN_BYTES}-byte limit")]
    TooLong { len: usize },
    #[error("outside the state_jsonpath grammar at byte {at}: {reason}")]
    Grammar { at: usize, reason: &'static str },
}

/// A parsed pattern; it borrows its names and literals from the pattern text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatePath<'p> {
    steps: Vec<Step<'p>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step<'p> {
    Field(&'p str),
    Wildcard,
    Filter(Vec<Atom<'p>>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Atom<'p> {
    Truthy(&'p str),
    Falsy(&'p str),
    Equals(&'p str, &'p str),
    NotEquals(&'p str, &'p str),
}

/// Evaluates `pattern` against `doc`; a pattern outside the grammar (or too long) yields
/// an empty list, never an error. A learned pattern matches when the list is non-empty.
///
/// This builds the compact form of `doc` for one query; a document queried many times
/// belongs in a [`Document`].
pub fn state_jsonpath<'v>(doc: &'v Value, pattern: &str) -> Vec<Cow<'v, Value>> {
    match StatePath::parse(pattern) {
        Ok(path) => Tree::build(doc).select(doc, &path),
        Err(_) => Vec::new(),
    }
}

/// A parsed state together with the compact form queries run on: built once per state
/// file, queried by every detector and learned pattern.
#[derive(Debug)]
pub struct Document {
    value: Value,
    tree: Tree,
    /// [`Document::heap_bytes`], measured once.
    heap_bytes: usize,
}

impl Document {
    pub fn new(value: Value) -> Document {
        let bytes = footprint::heap_bytes(&value);
        Document::counted(value, bytes)
    }

    /// [`Document::new`] for a value whose heap is known: `value_bytes`, as counted by the
    /// parse that built it ([`crate::faults::parse_budget`]).
    pub fn counted(value: Value, value_bytes: usize) -> Document {
        let tree = Tree::build(&value);
        let heap_bytes = value_bytes.saturating_add(tree.heap_bytes());
        Document {
            value,
            tree,
            heap_bytes,
        }
    }

    /// What the document keeps on the heap, the value and its compact form: an upper bound
    /// of the blocks glibc hands out for them.
    pub fn heap_bytes(&self) -> usize {
        self.heap_bytes
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Every value `path` selects, in document order: the document's own values, and
    /// numbers for the `length`s it asked for.
    pub fn select(&self, path: &StatePath<'_>) -> Vec<Cow<'_, Value>> {
        self.tree.select(&self.value, path)
    }

    /// [`Document::select`], given up (`None`) once `until` has passed (the clock is read
    /// between steps, every few thousand items looked at).
    pub fn select_until(
        &self,
        path: &StatePath<'_>,
        until: std::time::Instant,
    ) -> Option<Vec<Cow<'_, Value>>> {
        self.tree.select_until(&self.value, path, Some(until))
    }

    /// [`state_jsonpath`] on this document, without rebuilding its compact form.
    pub fn query(&self, pattern: &str) -> Vec<Cow<'_, Value>> {
        match StatePath::parse(pattern) {
            Ok(path) => self.select(&path),
            Err(_) => Vec::new(),
        }
    }
}

impl<'p> StatePath<'p> {
    /// Parses `pattern`, or says where and why it leaves the grammar.
    ///
    /// Tokens are gstack's: `.` then an identifier, or a bracket that runs to its balanced
    /// `]` (quotes are not respected, so a `]` inside a literal ends the bracket, as in
    /// gstack) and holds exactly `*`, `'name'`, `"name"` or `?(expr)`. Inside a filter the
    /// expression is split at every `&&` (again whatever the quotes). gstack evaluates an
    /// atom it does not recognise as false and any other bracket content as "no result";
    /// both make the whole pattern match nothing, which is what a parse error does here.
    pub fn parse(pattern: &'p str) -> Result<StatePath<'p>, PathError> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(PathError::TooLong { len: pattern.len() });
        }
        if !pattern.starts_with('$') {
            return Err(grammar(0, "a pattern must start with `$`"));
        }
        let bytes = pattern.as_bytes();
        let mut steps = Vec::new();
        let mut at = 1;
        while at < bytes.len() {
            match bytes[at] {
                b'.' => {
                    let name = identifier(&pattern[at + 1..]).ok_or_else(|| {
                        grammar(
                            at + 1,
                            "`.` must be followed by a name ([A-Za-z_][A-Za-z0-9_]*)",
                        )
                    })?;
                    steps.push(Step::Field(name));
                    at += 1 + name.len();
                }
                b'[' => {
                    let end = closing_bracket(bytes, at)
                        .ok_or_else(|| grammar(at, "`[` has no matching `]`"))?;
                    steps.push(bracket(&pattern[at + 1..end], at + 1)?);
                    at = end + 1;
                }
                _ => {
                    return Err(grammar(
                        at,
                        "expected `.field` or `[...]` (whitespace and `..` are not allowed between steps)",
                    ));
                }
            }
        }
        Ok(StatePath { steps })
    }
}

fn grammar(at: usize, reason: &'static str) -> PathError {
    PathError::Grammar { at, reason }
}

/// The identifier `[A-Za-z_][A-Za-z0-9_]*` at the start of `text`, if any.
fn identifier(text: &str) -> Option<&str> {
    let first = *text.as_bytes().first()?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let len = text
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    Some(&text[..len])
}

/// The index of the `]` that closes the `[` at `open`, counting nested brackets.
fn closing_bracket(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The step a bracket's content (`at` its offset in the pattern) stands for.
fn bracket(content: &str, at: usize) -> Result<Step<'_>, PathError> {
    if content == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(name) = quoted(content) {
        return Ok(Step::Field(name));
    }
    if let Some(expr) = content
        .strip_prefix("?(")
        .and_then(|rest| rest.strip_suffix(')'))
        .filter(|expr| !expr.is_empty())
    {
        return expr
            .split("&&")
            .map(|atom| {
                parse_atom(atom.trim_matches(SPACE)).ok_or_else(|| {
                    grammar(
                        at,
                        "a filter joins `@.f`, `!@.f`, `@.f == 'x'`, `@.f != 'x'` with `&&` only",
                    )
                })
            })
            .collect::<Result<_, _>>()
            .map(Step::Filter);
    }
    Err(grammar(
        at,
        "a bracket holds `*`, `'name'`, `\"name\"` or `?(...)` (indexes and slices are not supported)",
    ))
}

const SPACE: &[char] = &[' ', '\t', '\n', '\r'];

/// `'text'` or `"text"`: the text between one kind of quote, holding neither quote.
fn quoted(text: &str) -> Option<&str> {
    let quote = text.chars().next().filter(|q| matches!(q, '\'' | '"'))?;
    let inner = text.strip_prefix(quote)?.strip_suffix(quote)?;
    (!inner.is_empty() && !inner.contains(['\'', '"'])).then_some(inner)
}

/// One atom of a filter, or `None` if gstack would not recognise it (evaluating it false).
fn parse_atom(atom: &str) -> Option<Atom<'_>> {
    if let Some(rest) = atom.strip_prefix("!@.") {
        let field = identifier(rest)?;
        return (field.len() == rest.len()).then_some(Atom::Falsy(field));
    }
    let rest = atom.strip_prefix("@.")?;
    let field = identifier(rest)?;
    let rest = rest[field.len()..].trim_start_matches(SPACE);
    if rest.is_empty() {
        return Some(Atom::Truthy(field));
    }
    let (equals, rest) = if let Some(rest) = rest.strip_prefix("==") {
        (true, rest)
    } else {
        (false, rest.strip_prefix("!=")?)
    };
    let literal = rest.trim_start_matches(SPACE);
    let quote = literal.chars().next().filter(|q| matches!(q, '\'' | '"'))?;
    let inner = literal.strip_prefix(quote)?.strip_suffix(quote)?;
    if inner.contains(quote) {
        return None;
    }
    Some(if equals {
        Atom::Equals(field, inner)
    } else {
        Atom::NotEquals(field, inner)
    })
}

#[cfg(test)]
mod tests;
