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
//! Grammar: `$` then any of `.field`, `['field']`, `[*]`, `[?(ATOM && ATOM ...)]`, where an
//! ATOM is `@.f`, `!@.f`, `@.f == 'lit'`, `@.f != 'lit'` (either quote). Anything else is
//! outside the grammar and matches nothing.

mod tree;

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
pub fn state_jsonpath<'v>(doc: &'v Value, pattern: &str) -> Vec<&'v Value> {
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
}

impl Document {
    pub fn new(value: Value) -> Document {
        let tree = Tree::build(&value);
        Document { value, tree }
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Every value `path` selects, in document order.
    pub fn select(&self, path: &StatePath<'_>) -> Vec<&Value> {
        self.tree.select(&self.value, path)
    }

    /// [`state_jsonpath`] on this document, without rebuilding its compact form.
    pub fn query(&self, pattern: &str) -> Vec<&Value> {
        match StatePath::parse(pattern) {
            Ok(path) => self.select(&path),
            Err(_) => Vec::new(),
        }
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
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn every_fixture_case_matches() {
        let text = include_str!("../../../fixtures/jsonpath-cases.json");
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
    fn every_member_of_a_large_object_is_found() {
        let doc = Value::Object((0..100).map(|i| (format!("k{i}"), json!(i))).collect());
        assert_eq!(state_jsonpath(&doc, "$.k99"), vec![&json!(99)]);
        assert_eq!(state_jsonpath(&doc, "$.k0"), vec![&json!(0)]);
        assert!(state_jsonpath(&doc, "$.k100").is_empty());
        assert_eq!(
            state_jsonpath(&doc, "$[?(@.k42 && !@.k0)].k7"),
            vec![&json!(7)]
        );
        assert!(state_jsonpath(&doc, "$[?(@.k42 && @.k100)]").is_empty());
    }

    #[test]
    fn keys_and_strings_with_the_same_text_stay_apart() {
        let doc = json!({"a": [{"status": "x", "x": "status"}, {"x": 1}]});
        assert_eq!(state_jsonpath(&doc, "$.a[?(@.x == 'status')]").len(), 1);
        assert!(state_jsonpath(&doc, "$.a[?(@.status == 'status')]").is_empty());
        assert!(state_jsonpath(&doc, "$.a[?(@.x == 'nowhere')]").is_empty());
        assert_eq!(state_jsonpath(&doc, "$.a[?(@.x != 'nowhere')]").len(), 2);
        assert_eq!(state_jsonpath(&doc, "$.a[?(!@.nowhere)].x").len(), 2);
        assert!(state_jsonpath(&doc, "$.a[?(@.nowhere != 'x')].x").len() == 2);
    }

    #[test]
    fn a_document_answers_many_queries_like_single_ones() {
        let text = include_str!("../../../fixtures/hand-merged-feature-state.json");
        let value: Value = serde_json::from_str(text).unwrap();
        let document = Document::new(value.clone());
        assert_eq!(document.value(), &value);
        for pattern in [
            "$.features[?(@.status == 'committed' && !@.completedAt && @.mergeSha && @.prNumber)]",
            "$.features[*].number",
            "$.phases[*][?(@.status)]",
            "$",
            "$..x",
        ] {
            assert_eq!(
                document.query(pattern),
                state_jsonpath(&value, pattern),
                "{pattern}"
            );
        }
        assert_eq!(
            document.query("$.features[?(@.status == 'committed' && !@.completedAt && @.mergeSha && @.prNumber)]").len(),
            1
        );
    }

    /// The grammar read directly off the `Value`, as the TypeScript evaluator did: the
    /// oracle the compact evaluation must agree with.
    fn direct_reading<'v>(doc: &'v Value, path: &StatePath<'_>) -> Vec<&'v Value> {
        let spread = |v: &'v Value| match v {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        let mut current = vec![doc];
        for step in &path.steps {
            current = current
                .into_iter()
                .flat_map(|v| match step {
                    Step::Field(name) => v
                        .as_object()
                        .and_then(|m| m.get(*name))
                        .into_iter()
                        .collect(),
                    Step::Wildcard => spread(v),
                    Step::Filter(atoms) => spread(v)
                        .into_iter()
                        .filter(|item| atoms.iter().all(|atom| direct_atom(item, atom)))
                        .collect(),
                })
                .collect();
        }
        current
    }

    fn direct_atom(item: &Value, atom: &Atom<'_>) -> bool {
        let field = |name: &str| item.as_object().and_then(|m| m.get(name));
        let truthy = |name: &str| match field(name) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        };
        match *atom {
            Atom::Truthy(f) => truthy(f),
            Atom::Falsy(f) => !truthy(f),
            Atom::Equals(f, lit) => field(f).and_then(Value::as_str) == Some(lit),
            Atom::NotEquals(f, lit) => field(f).and_then(Value::as_str) != Some(lit),
        }
    }

    const WORDS: [&str; 5] = ["", "x", "status", "a", "committed"];
    const KEYS: [&str; 24] = [
        "a", "b", "status", "x", "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "k10",
        "k11", "k12", "k13", "k14", "k15", "k16", "k17", "k18", "k19",
    ];

    fn documents() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-1i64..3).prop_map(Value::from),
            Just(json!(0.5)),
            proptest::sample::select(&WORDS[..]).prop_map(Value::from),
        ];
        let object = |keys: &'static [&'static str], member, sizes| {
            proptest::collection::vec((proptest::sample::select(keys), member), sizes).prop_map(
                |members: Vec<(&str, Value)>| {
                    Value::Object(
                        members
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect(),
                    )
                },
            )
        };
        leaf.clone().prop_recursive(4, 64, 5, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                object(&KEYS[..4], inner.boxed(), 0..5),
                // Past the width where members are also indexed by key.
                object(&KEYS[..], leaf.clone().boxed(), 17..40),
            ]
        })
    }

    fn patterns() -> impl Strategy<Value = String> {
        let step = proptest::sample::select(
            &[
                ".a",
                ".status",
                "['x']",
                "[*]",
                "[?(@.status == 'x')]",
                "[?(@.x != 'status' && !@.a)]",
                "[?(@.b)]",
                "[?(@.a == '')]",
                "[?(!@.status && @.x)]",
            ][..],
        );
        proptest::collection::vec(step, 0..5).prop_map(|steps| format!("${}", steps.concat()))
    }

    proptest! {
        #[test]
        fn compact_evaluation_agrees_with_reading_the_value(doc in documents(), pattern in patterns()) {
            let path = StatePath::parse(&pattern).unwrap();
            let expected = direct_reading(&doc, &path);
            prop_assert_eq!(state_jsonpath(&doc, &pattern), expected.clone());
            let document = Document::new(doc.clone());
            prop_assert_eq!(document.query(&pattern), expected);
        }
    }
}
