//! `state_jsonpath`: the small path language of learned patterns (DESIGN §7), with the
//! results of gstack's original evaluator.
//!
//! This is deliberately not RFC 9535 JSONPath: investigators' existing patterns were written
//! against the TypeScript evaluator, whose quirks (JavaScript truthiness, `[*]` on an object
//! yielding the object itself, `==` comparing with strings only) decide whether they match.
//! The grammar is tiny, so it is parsed by hand into borrowed steps and evaluated without
//! recursion: a hostile pattern costs at most `pattern length × document size`, never stack.
//!
//! Grammar: `$` then any of `.field`, `['field']`, `[*]`, `[?(ATOM && ATOM ...)]`, where an
//! ATOM is `@.f`, `!@.f`, `@.f == 'lit'`, `@.f != 'lit'` (either quote). Anything else is
//! outside the grammar and matches nothing.

use serde_json::{Map, Value};

/// Patterns longer than this are refused: a learned pattern is a line, not a program.
pub const MAX_PATTERN_BYTES: usize = 4096;

/// Maps up to this size are searched linearly: faster than hashing for the handful of keys
/// a feature or phase object has, and it is the hot loop of every filter.
const LINEAR_LOOKUP_MAX: usize = 16;

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
pub fn state_jsonpath<'v>(doc: &'v Value, pattern: &str) -> Vec<&'v Value> {
    match StatePath::parse(pattern) {
        Ok(path) => path.evaluate(doc),
        Err(_) => Vec::new(),
    }
}

impl<'p> StatePath<'p> {
    /// Parses `pattern`, or says where and why it leaves the grammar.
    pub fn parse(pattern: &'p str) -> Result<StatePath<'p>, PathError> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(PathError::TooLong { len: pattern.len() });
        }
        let mut cursor = Cursor {
            text: pattern,
            at: 0,
        };
        if !cursor.eat("$") {
            return Err(cursor.error("a pattern must start with `$`"));
        }
        let mut steps = Vec::new();
        while !cursor.done() {
            if cursor.eat(".") {
                steps.push(Step::Field(cursor.name()?));
            } else if cursor.eat("[*]") {
                steps.push(Step::Wildcard);
            } else if cursor.eat("['") {
                let name = cursor.until('\'')?;
                if !cursor.eat("]") {
                    return Err(cursor.error("expected `]` after a quoted field name"));
                }
                steps.push(Step::Field(name));
            } else if cursor.eat("[?(") {
                steps.push(Step::Filter(cursor.filter()?));
            } else {
                return Err(cursor.error(
                    "expected `.field`, `['field']`, `[*]` or `[?(...)]` (indexes, slices and `..` are not supported)",
                ));
            }
        }
        Ok(StatePath { steps })
    }

    /// Every value the path selects, in document order.
    pub fn evaluate<'v>(&self, doc: &'v Value) -> Vec<&'v Value> {
        let mut current: Vec<&'v Value> = vec![doc];
        let mut next: Vec<&'v Value> = Vec::new();
        for step in &self.steps {
            next.clear();
            match step {
                Step::Field(name) => {
                    next.extend(current.iter().filter_map(|v| own_field(v, name)));
                }
                Step::Wildcard => {
                    for value in &current {
                        match value {
                            Value::Array(items) => next.extend(items.iter()),
                            // gstack's evaluator spread arrays and kept anything else as is.
                            other => next.push(other),
                        }
                    }
                }
                Step::Filter(atoms) => {
                    for value in &current {
                        match value {
                            Value::Array(items) => {
                                next.extend(items.iter().filter(|item| holds(atoms, item)));
                            }
                            // A single value is filtered as a one-element list.
                            other if holds(atoms, other) => next.push(other),
                            _ => {}
                        }
                    }
                }
            }
            std::mem::swap(&mut current, &mut next);
            if current.is_empty() {
                break;
            }
        }
        current
    }
}

/// An object's own field; arrays and scalars have none (no `length`, no prototype).
fn own_field<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    let Value::Object(map) = value else {
        return None;
    };
    lookup(map, name)
}

fn lookup<'v>(map: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    if map.len() <= LINEAR_LOOKUP_MAX {
        map.iter().find(|(k, _)| k.as_str() == name).map(|(_, v)| v)
    } else {
        map.get(name)
    }
}

fn holds(atoms: &[Atom<'_>], item: &Value) -> bool {
    atoms.iter().all(|atom| match atom {
        Atom::Truthy(f) => truthy(own_field(item, f)),
        Atom::Falsy(f) => !truthy(own_field(item, f)),
        Atom::Equals(f, lit) => string_equals(own_field(item, f), lit),
        Atom::NotEquals(f, lit) => !string_equals(own_field(item, f), lit),
    })
}

/// JavaScript truthiness: missing, null, false, 0, NaN and "" are falsy; `[]` and `{}` are not.
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(_) | Value::Object(_)) => true,
    }
}

/// `===` against a string literal: a number never equals `'26'`.
fn string_equals(value: Option<&Value>, literal: &str) -> bool {
    matches!(value, Some(Value::String(s)) if s == literal)
}

struct Cursor<'p> {
    text: &'p str,
    at: usize,
}

impl<'p> Cursor<'p> {
    fn rest(&self) -> &'p str {
        &self.text[self.at..]
    }

    fn done(&self) -> bool {
        self.at >= self.text.len()
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start_matches([' ', '\t']).len();
    }

    fn error(&self, reason: &'static str) -> PathError {
        PathError::Grammar {
            at: self.at,
            reason,
        }
    }

    /// A field name after `.` or `@.`: letters, digits, `_` and `-`.
    fn name(&mut self) -> Result<&'p str, PathError> {
        let rest = self.rest();
        let len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
            .count();
        if len == 0 {
            return Err(self.error("expected a field name"));
        }
        self.at += len;
        Ok(&rest[..len])
    }

    /// Text up to (not including) `quote`, which is consumed; no escapes.
    fn until(&mut self, quote: char) -> Result<&'p str, PathError> {
        let rest = self.rest();
        let Some(end) = rest.find(quote) else {
            return Err(self.error("unterminated quote"));
        };
        self.at += end + quote.len_utf8();
        Ok(&rest[..end])
    }

    /// The atoms of `[?(` ... `)]`, the opening already consumed.
    fn filter(&mut self) -> Result<Vec<Atom<'p>>, PathError> {
        let mut atoms = Vec::new();
        loop {
            self.skip_spaces();
            atoms.push(self.atom()?);
            self.skip_spaces();
            if self.eat("&&") {
                continue;
            }
            if self.eat(")]") {
                return Ok(atoms);
            }
            return Err(self.error(
                "expected `&&` or `)]` (only `@.f`, `!@.f`, `@.f == 'x'`, `@.f != 'x'` joined by `&&`)",
            ));
        }
    }

    fn atom(&mut self) -> Result<Atom<'p>, PathError> {
        let negated = self.eat("!");
        if !self.eat("@.") {
            return Err(self.error("an atom starts with `@.` or `!@.`"));
        }
        let field = self.name()?;
        if negated {
            return Ok(Atom::Falsy(field));
        }
        let before = self.at;
        self.skip_spaces();
        let equals = if self.eat("==") {
            true
        } else if self.eat("!=") {
            false
        } else {
            self.at = before;
            return Ok(Atom::Truthy(field));
        };
        self.skip_spaces();
        let literal = if self.eat("'") {
            self.until('\'')?
        } else if self.eat("\"") {
            self.until('"')?
        } else {
            return Err(self.error("`==` and `!=` compare with a quoted string only"));
        };
        Ok(if equals {
            Atom::Equals(field, literal)
        } else {
            Atom::NotEquals(field, literal)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_fixture_case_matches() {
        let text = include_str!("../../fixtures/jsonpath-cases.json");
        let fixture: Value = serde_json::from_str(text).unwrap();
        let doc = &fixture["document"];
        let cases = fixture["cases"].as_array().unwrap();
        assert!(cases.len() >= 20);
        for case in cases {
            let path = case["path"].as_str().unwrap();
            let expect: Vec<&Value> = match &case["expect"] {
                Value::String(s) if s == "document" => vec![doc],
                Value::Array(items) => items.iter().collect(),
                other => panic!("bad expect {other}"),
            };
            assert_eq!(
                state_jsonpath(doc, path),
                expect,
                "{path}: {}",
                case["note"]
            );
        }
    }

    #[test]
    fn outside_the_grammar_is_reported_with_a_position() {
        for bad in [
            "features",
            "$..number",
            "$.features[0]",
            "$.a[?(@.x || @.y)]",
            "$.a[?(@.owner.name)]",
            "$.a[?(!@.x == 'y')]",
            "$.a[?(@.x == 3)]",
            "$.a['x",
            "$.a[?(@.x == 'y'",
            "$.",
        ] {
            let err = StatePath::parse(bad).unwrap_err();
            assert!(matches!(err, PathError::Grammar { .. }), "{bad}: {err}");
            assert!(state_jsonpath(&json!({"a": [{"x": "y"}]}), bad).is_empty());
        }
    }

    #[test]
    fn long_patterns_are_refused() {
        let long = format!("$.{}", "a".repeat(MAX_PATTERN_BYTES));
        assert_eq!(
            StatePath::parse(&long).unwrap_err(),
            PathError::TooLong {
                len: MAX_PATTERN_BYTES + 2
            }
        );
        let fits = format!("$.{}", "a".repeat(MAX_PATTERN_BYTES - 2));
        assert!(StatePath::parse(&fits).is_ok());
    }

    #[test]
    fn literals_may_hold_operators_and_spaces_are_tolerated_around_them() {
        let doc = json!({"a": [{"x": "p)]&&q"}, {"x": "z"}]});
        let hits = state_jsonpath(&doc, "$.a[?( @.x  ==  \"p)]&&q\" )].x");
        assert_eq!(hits, vec![&json!("p)]&&q")]);
        assert_eq!(
            state_jsonpath(&doc, "$['a'][?(@.x != 'z')]").len(),
            1,
            "bracket and dot names are the same field"
        );
    }

    #[test]
    fn javascript_truthiness() {
        let doc = json!({"a": [
            {"v": 0}, {"v": 0.0}, {"v": ""}, {"v": null}, {"v": false}, {},
            {"v": []}, {"v": {}}, {"v": -1}, {"v": "0"}, {"v": true}
        ]});
        assert_eq!(state_jsonpath(&doc, "$.a[?(@.v)]").len(), 5);
        assert_eq!(state_jsonpath(&doc, "$.a[?(!@.v)]").len(), 6);
    }

    #[test]
    fn large_objects_use_hashed_lookup_with_the_same_answer() {
        let mut map = Map::new();
        for i in 0..100 {
            map.insert(format!("k{i}"), json!(i));
        }
        let doc = Value::Object(map);
        assert_eq!(state_jsonpath(&doc, "$.k99"), vec![&json!(99)]);
        assert!(state_jsonpath(&doc, "$.k100").is_empty());
    }
}
