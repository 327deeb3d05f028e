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
        let expect: Vec<Value> = match &case["expect"] {
            Value::String(s) if s == "document" => vec![doc.clone()],
            Value::Array(items) => items.clone(),
            other => panic!("bad expect {other}"),
        };
        assert_eq!(
            owned(state_jsonpath(doc, path)),
            expect,
            "{path}: {}",
            case["note"]
        );
    }
}

fn owned(found: Vec<Cow<'_, Value>>) -> Vec<Value> {
    found.into_iter().map(Cow::into_owned).collect()
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
        "$.0",
        "$.a-b",
        "$ .a",
        "$.a[ * ]",
        "$['']",
        "$['a\"b']",
        "$['x\"]",
        "$.a[?()]",
        "$.a[?(@.x == 'y' z)]",
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
fn brackets_and_filters_split_as_gstack_splits_them() {
    let doc = json!({"a": [{"x": "p"}, {"x": "z"}], "a b": 1, "o": {"x": [2]}});
    // Spaces around operators and inside the parentheses are tolerated.
    let hits = state_jsonpath(&doc, "$.a[?( @.x  ==  \"p\" )].x");
    assert_eq!(owned(hits), [json!("p")]);
    // Double-quoted and single-quoted brackets name the same field as a dot.
    assert_eq!(owned(state_jsonpath(&doc, "$[\"a b\"]")), [json!(1)]);
    assert_eq!(owned(state_jsonpath(&doc, "$.o[\"x\"]")), [json!([2])]);
    assert_eq!(
        state_jsonpath(&doc, "$['a'][?(@.x != 'z')]").len(),
        1,
        "bracket and dot names are the same field"
    );
    // Quotes are not respected: a `]` or `&&` inside a literal breaks the pattern.
    let doc = json!({"a": [{"x": "p)]q"}, {"x": "p&&q"}, {"x": "p)q"}]});
    assert!(StatePath::parse("$.a[?(@.x == 'p)]q')]").is_err());
    assert!(state_jsonpath(&doc, "$.a[?(@.x == 'p&&q')]").is_empty());
    assert_eq!(
        owned(state_jsonpath(&doc, "$.a[?(@.x == 'p)q')].x")),
        [json!("p)q")],
        "a `)` is fine"
    );
    // A bracket runs to its balanced `]`.
    let doc = json!({"a[b]c": 3});
    assert_eq!(owned(state_jsonpath(&doc, "$['a[b]c']")), [json!(3)]);
}

#[test]
fn lengths_and_indexes_of_lists_as_javascript_reads_them() {
    let doc = json!({
        "features": [{"n": "1", "tags": []}, {"n": "", "tags": ["x"]}, {"n": "3"}],
        "s": "abc",
        "o": {"length": 7, "0": "zero"}
    });
    assert_eq!(owned(state_jsonpath(&doc, "$.features.length")), [json!(3)]);
    assert_eq!(
        owned(state_jsonpath(&doc, "$['features']['length']")),
        [json!(3)]
    );
    assert_eq!(
        owned(state_jsonpath(&doc, "$.features['0'].n")),
        [json!("1")]
    );
    assert_eq!(
        owned(state_jsonpath(&doc, "$.features[\"2\"].n")),
        [json!("3")]
    );
    for none in [
        "$.features['3']",
        "$.features['01']",
        "$.features['-1']",
        "$.features['1.0']",
    ] {
        assert!(state_jsonpath(&doc, none).is_empty(), "{none}");
    }
    // A string has no fields on a dot step (gstack reads fields of objects only)...
    assert!(state_jsonpath(&doc, "$.s.length").is_empty());
    // ...but a filter reads a string's or a list's length like any field.
    assert_eq!(
        owned(state_jsonpath(&doc, "$.features[*].n[?(@.length)]")),
        [json!("1"), json!("3")]
    );
    assert_eq!(
        owned(state_jsonpath(&doc, "$.features[*].tags[*][?(@.length)]")),
        [json!("x")]
    );
    assert_eq!(
        state_jsonpath(&doc, "$.features[*].n[?(!@.length)]").len(),
        1
    );
    assert!(
        state_jsonpath(&doc, "$.features[*].n[?(@.length == '1')]").is_empty(),
        "a number"
    );
    // An object's own `length` and `0` are plain members.
    assert_eq!(owned(state_jsonpath(&doc, "$.o.length")), [json!(7)]);
    assert_eq!(owned(state_jsonpath(&doc, "$.o['0']")), [json!("zero")]);
    // A length is a number: a wildcard keeps it, a filter finds no field on it.
    assert_eq!(
        owned(state_jsonpath(&doc, "$.features.length[*]")),
        [json!(3)]
    );
    assert_eq!(
        owned(state_jsonpath(&doc, "$.features.length[?(!@.x)]")),
        [json!(3)]
    );
    assert!(state_jsonpath(&doc, "$.features.length.x").is_empty());
}

#[test]
fn inherited_properties_other_than_length_are_refused() {
    let doc = json!({"x": {"a": 1}, "l": [1], "s": "t", "f": [{"a": 1}]});
    for refused in [
        "$.x.constructor",
        "$.x.__proto__",
        "$.x.toString",
        "$.x.hasOwnProperty",
        "$.l.constructor",
        "$.l.toString",
        "$.l.map",
        "$['x']['__proto__']",
        "$.f[?(@.constructor)]",
        "$.f[?(@.toString)]",
        "$.f[?(@.__proto__)]",
    ] {
        assert!(state_jsonpath(&doc, refused).is_empty(), "{refused}");
    }
    assert_eq!(state_jsonpath(&doc, "$.f[?(!@.constructor)]").len(), 1);
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
    assert_eq!(owned(state_jsonpath(&doc, "$.k99")), [json!(99)]);
    assert_eq!(owned(state_jsonpath(&doc, "$.k0")), [json!(0)]);
    assert!(state_jsonpath(&doc, "$.k100").is_empty());
    assert_eq!(
        owned(state_jsonpath(&doc, "$[?(@.k42 && !@.k0)].k7")),
        [json!(7)]
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
fn direct_reading(doc: &Value, path: &StatePath<'_>) -> Vec<Value> {
    let spread = |v: Value| match v {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut current = vec![doc.clone()];
    for step in &path.steps {
        current = current
            .into_iter()
            .flat_map(|v| match step {
                Step::Field(name) => direct_field(&v, name).into_iter().collect(),
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

fn direct_field(v: &Value, name: &str) -> Option<Value> {
    match v {
        Value::Object(m) => m.get(name).cloned(),
        Value::Array(items) if name == "length" => Some(json!(items.len())),
        Value::Array(items) if name == "0" || !name.starts_with('0') => {
            items.get(name.parse::<usize>().ok()?).cloned()
        }
        _ => None,
    }
}

fn direct_atom(item: &Value, atom: &Atom<'_>) -> bool {
    let field = |name: &str| match item {
        Value::Object(m) => m.get(name).cloned(),
        Value::String(s) if name == "length" => Some(json!(s.chars().count())),
        Value::Array(items) if name == "length" => Some(json!(items.len())),
        _ => None,
    };
    let truthy = |name: &str| match field(name).as_ref() {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    match *atom {
        Atom::Truthy(f) => truthy(f),
        Atom::Falsy(f) => !truthy(f),
        Atom::Equals(f, lit) => field(f).as_ref().and_then(Value::as_str) == Some(lit),
        Atom::NotEquals(f, lit) => field(f).as_ref().and_then(Value::as_str) != Some(lit),
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
            ".length",
            "['0']",
            "[\"1\"]",
            "[?(@.length)]",
            "[?(!@.length)]",
        ][..],
    );
    proptest::collection::vec(step, 0..5).prop_map(|steps| format!("${}", steps.concat()))
}

proptest! {
    #[test]
    fn compact_evaluation_agrees_with_reading_the_value(doc in documents(), pattern in patterns()) {
        let path = StatePath::parse(&pattern).unwrap();
        let expected = direct_reading(&doc, &path);
        prop_assert_eq!(owned(state_jsonpath(&doc, &pattern)), expected.clone());
        let document = Document::new(doc.clone());
        prop_assert_eq!(owned(document.query(&pattern)), expected);
    }
}
