//! Rule tests: `x.tests.json` beside `x.rhai`, a JSON list of cases
//! `{"name"?, "function", "args": [...], "expect": ...}` or `{..., "expectError": "text"}`.
//!
//! A case passes when the call succeeds, the result passes the function's contract
//! validator (if it has one), and `expect` matches: an object matches when every key it
//! lists matches (extra keys in the result are fine, so a case can ignore the wording of a
//! `reason`); anything else must be equal. `expectError` passes when the call fails (or is
//! refused by the validator) with a message containing the text.
//!
//! Hot reload runs every test of the new set before swapping it in; `berth rules test`
//! runs the same cases and prints them.

use serde::Deserialize;
use serde_json::Value;

use super::case_result::CaseResult;
use super::error::{LoadError, Location};
use super::set::RuleSet;
use super::source::SourceFile;
use super::spec::RuleSpec;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Case {
    #[serde(default)]
    name: Option<String>,
    function: String,
    args: Vec<Value>,
    #[serde(default)]
    expect: Option<Value>,
    #[serde(default)]
    expect_error: Option<String>,
}

/// Parses a test file; its JSON errors carry line and column.
pub(crate) fn parse(file: &SourceFile) -> Result<Vec<Case>, LoadError> {
    let cases: Vec<Case> = serde_json::from_str(&file.text).map_err(|e| LoadError::BadTests {
        at: Location {
            file: file.name.clone(),
            line: Some(e.line()),
            col: Some(e.column()),
        },
        message: e.to_string(),
    })?;
    for (i, case) in cases.iter().enumerate() {
        if case.expect.is_some() == case.expect_error.is_some() {
            return Err(LoadError::BadTests {
                at: Location::file(&file.name),
                message: format!(
                    "case #{}: give exactly one of `expect` and `expectError`",
                    i + 1
                ),
            });
        }
    }
    Ok(cases)
}

/// Runs the cases of `tests_file` against `rule_file` of `set`.
pub(crate) fn run(
    set: &RuleSet,
    spec: &RuleSpec,
    tests_file: &str,
    rule_file: &str,
    cases: Vec<Case>,
) -> Vec<CaseResult> {
    cases
        .into_iter()
        .enumerate()
        .map(|(i, case)| {
            let failure = judge(set, spec, rule_file, &case);
            CaseResult {
                tests_file: tests_file.to_owned(),
                rule_file: rule_file.to_owned(),
                index: i + 1,
                name: case.name,
                function: case.function,
                failure,
            }
        })
        .collect()
}

fn judge(set: &RuleSet, spec: &RuleSpec, rule_file: &str, case: &Case) -> Option<String> {
    let outcome = set
        .call_json(rule_file, &case.function, &case.args)
        .map_err(|e| e.to_string())
        .and_then(|got| match spec.validator(rule_file, &case.function) {
            Some(validate) => validate(&case.args, &got)
                .map(|()| got)
                .map_err(|reason| format!("invalid return value: {reason}")),
            None => Ok(got),
        });
    match (outcome, &case.expect, &case.expect_error) {
        (Ok(got), Some(expect), _) if matches(expect, &got) => None,
        (Ok(got), Some(expect), _) => Some(format!("expected {expect}, got {got}")),
        (Ok(got), None, Some(text)) => {
            Some(format!("expected an error containing `{text}`, got {got}"))
        }
        (Err(error), _, Some(text)) if error.contains(text.as_str()) => None,
        (Err(error), _, _) => Some(error),
        (Ok(_), None, None) => Some("case has neither `expect` nor `expectError`".into()),
    }
}

/// `expect` matches `got`: objects by the keys `expect` lists, recursively; everything
/// else by equality.
fn matches(expect: &Value, got: &Value) -> bool {
    match (expect, got) {
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .all(|(key, value)| have.get(key).is_some_and(|h| matches(value, h))),
        _ => expect == got,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_match_by_the_keys_the_case_lists() {
        let got = json!({"decision": "wait", "reason": "freeze", "extra": [1]});
        assert!(matches(&json!({"decision": "wait"}), &got));
        assert!(!matches(&json!({"decision": "go"}), &got));
        assert!(!matches(&json!({"missing": null}), &got));
        assert!(matches(&json!(["b", "a"]), &json!(["b", "a"])));
        assert!(!matches(&json!(["a", "b"]), &json!(["b", "a"])));
    }

    #[test]
    fn malformed_test_files_name_the_line() {
        let file = SourceFile {
            name: "policies/landing.tests.json".into(),
            text: "[\n  {\"function\": \"admit\", \"args\": [], \"expect\": 1,}\n]".into(),
            overridden: true,
        };
        let err = parse(&file).unwrap_err().to_string();
        assert!(err.starts_with("policies/landing.tests.json:2:"), "{err}");
        let file = SourceFile {
            text: r#"[{"function": "admit", "args": []}]"#.into(),
            ..file
        };
        let err = parse(&file).unwrap_err().to_string();
        assert!(
            err.contains("exactly one of `expect` and `expectError`"),
            "{err}"
        );
    }
}
