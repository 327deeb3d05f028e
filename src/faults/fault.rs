//! A fault: what a detector (built-in or learned) says is wrong with a run or the queue.
//!
//! Faults come out of rules, so [`Fault::from_json`] is the gate every rule's return value
//! passes: a malformed map is that rule's error, never a fault with made-up fields.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Categories are upper-case identifiers (`HAND_MERGED_FEATURE`); they end up in halt
/// event messages and file listings, so they are kept short and plain.
pub const MAX_CATEGORY_LEN: usize = 64;
/// A description is a sentence for an investigator, not a log dump.
pub const MAX_DESCRIPTION_LEN: usize = 2048;

/// How urgent a fault is, as gstack spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Critical,
    High,
    Medium,
}

impl Severity {
    pub fn parse(text: &str) -> Option<Severity> {
        match text {
            "CRITICAL" => Some(Severity::Critical),
            "HIGH" => Some(Severity::High),
            "MEDIUM" => Some(Severity::Medium),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One fault, in the shape `berth detect --json` prints and gstack's detectors return.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    pub category: String,
    pub severity: Severity,
    pub description: String,
    #[serde(default)]
    pub source_files: Vec<String>,
    #[serde(default)]
    pub evidence: Map<String, Value>,
}

/// Whether `category` is a usable fault category: `[A-Z0-9_]+`, at most 64 characters.
pub fn valid_category(category: &str) -> bool {
    !category.is_empty()
        && category.len() <= MAX_CATEGORY_LEN
        && category
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Why a value is not a fault: the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FaultError {
    #[error("a fault must be a map, not {0}")]
    NotAMap(&'static str),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error(
        "field `category`: `{0}` is not an upper-case identifier of at most {MAX_CATEGORY_LEN} characters"
    )]
    Category(String),
    #[error("field `severity`: `{0}` is not CRITICAL, HIGH or MEDIUM")]
    Severity(String),
    #[error("field `description`: must be non-empty and at most {MAX_DESCRIPTION_LEN} bytes")]
    Description,
    /// An entry of `sourceFiles` is of this kind, not a string.
    #[error("field `sourceFiles`: every entry must be a string, not {0}")]
    SourceFile(&'static str),
    #[error("field `sourceFiles`: must be a list of strings, not {0}")]
    SourceFiles(&'static str),
    #[error("field `evidence`: must be a map or a list of [key, value] pairs, not {0}")]
    Evidence(&'static str),
    #[error(
        "field `evidence`: every entry of the list must be a [key, value] pair with a string key, not {0}"
    )]
    EvidencePair(Value),
    #[error("field `evidence`: key `{0}` is given twice")]
    EvidenceKeyTwice(String),
}

/// A text field of a JSON map that is missing or of another kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("field `{0}`: required")]
    Missing(String),
    #[error("field `{field}`: must be a string, not {found}")]
    NotText { field: String, found: &'static str },
    #[error("field `{0}`: must not be empty")]
    Empty(String),
}

impl Fault {
    /// Validates a fault as a rule returned it. The error names the field and the reason.
    pub fn from_json(value: &Value) -> Result<Fault, FaultError> {
        let Value::Object(map) = value else {
            return Err(FaultError::NotAMap(kind_of(value)));
        };
        let text = |field: &str| required_text(map, field);
        let category = text("category")?;
        if !valid_category(category) {
            return Err(FaultError::Category(category.to_owned()));
        }
        let severity = text("severity")?;
        let severity =
            Severity::parse(severity).ok_or_else(|| FaultError::Severity(severity.to_owned()))?;
        let description = text("description")?;
        if description.trim().is_empty() || description.len() > MAX_DESCRIPTION_LEN {
            return Err(FaultError::Description);
        }
        let source_files = match map.get("sourceFiles") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| FaultError::SourceFile(kind_of(item)))
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(FaultError::SourceFiles(kind_of(other))),
        };
        let evidence = match map.get("evidence") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(evidence)) => evidence.clone(),
            Some(Value::Array(pairs)) => evidence_in_order(pairs)?,
            Some(other) => return Err(FaultError::Evidence(kind_of(other))),
        };
        Ok(Fault {
            category: category.to_owned(),
            severity,
            description: description.to_owned(),
            source_files,
            evidence,
        })
    }

    /// detectors.md's detector fault id, `<category>:<phaseIndex or all>:<first sourceFile
    /// or *>`: how gstack's investigators group a detector's findings.
    pub fn detector_id(&self) -> String {
        let phase = match self.evidence.get("phaseIndex") {
            Some(Value::Number(n)) => n.to_string(),
            _ => "all".to_owned(),
        };
        let file = self.source_files.first().map_or("*", String::as_str);
        format!("{}:{phase}:{file}", self.category)
    }
}

/// Evidence given as `[[key, value], ...]`, its keys kept in that order. A Rhai map sorts
/// its keys, and gstack prints a detector's evidence in the order the detector wrote it
/// (`{phaseIndex, iterationCount}`), so a detector that cares about the order says it this
/// way. A key given twice is refused: a map could not hold both.
fn evidence_in_order(pairs: &[Value]) -> Result<Map<String, Value>, FaultError> {
    let mut evidence = Map::new();
    for pair in pairs {
        let (key, value) = match pair.as_array().map(Vec::as_slice) {
            Some([Value::String(key), value]) => (key, value),
            _ => return Err(FaultError::EvidencePair(pair.clone())),
        };
        if evidence.insert(key.clone(), value.clone()).is_some() {
            return Err(FaultError::EvidenceKeyTwice(key.clone()));
        }
    }
    Ok(evidence)
}

/// The string `field` of a JSON map, or an error naming the field and what it holds.
pub(crate) fn required_text<'a>(
    map: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a str, FieldError> {
    match map.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(FieldError::NotText {
            field: field.to_owned(),
            found: kind_of(other),
        }),
        None => Err(FieldError::Missing(field.to_owned())),
    }
}

/// "a string", "a number", ...: for messages about a value of the wrong kind.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validates_rule_output_naming_the_field() {
        let ok = json!({"category": "HAND_MERGED_FEATURE", "severity": "HIGH",
            "description": "d", "sourceFiles": ["/s.json"], "evidence": {"phaseIndex": 2}});
        let fault = Fault::from_json(&ok).unwrap();
        assert_eq!(fault.severity, Severity::High);
        assert_eq!(fault.detector_id(), "HAND_MERGED_FEATURE:2:/s.json");
        let bare = json!({"category": "X", "severity": "MEDIUM", "description": "d"});
        assert_eq!(Fault::from_json(&bare).unwrap().detector_id(), "X:all:*");

        for (bad, needle) in [
            (json!([1]), "must be a map"),
            (
                json!({"severity": "HIGH", "description": "d"}),
                "`category`: required",
            ),
            (
                json!({"category": "lower", "severity": "HIGH", "description": "d"}),
                "upper-case",
            ),
            (
                json!({"category": "X", "severity": "LOW", "description": "d"}),
                "`severity`",
            ),
            (
                json!({"category": "X", "severity": "HIGH", "description": " "}),
                "`description`",
            ),
            (
                json!({"category": "X", "severity": "HIGH", "description": "d", "sourceFiles": [1]}),
                "`sourceFiles`",
            ),
            (
                json!({"category": "X", "severity": "HIGH", "description": "d", "evidence": "e"}),
                "`evidence`",
            ),
            (
                json!({"category": "X", "severity": "HIGH", "description": "d", "evidence": [[1, 2]]}),
                "[key, value] pair",
            ),
            (
                json!({"category": "X", "severity": "HIGH", "description": "d", "evidence": [["a", 1], ["a", 2]]}),
                "`a` is given twice",
            ),
        ] {
            let err = Fault::from_json(&bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    /// Pairs keep the detector's order, which a Rhai map (sorted) cannot.
    #[test]
    fn evidence_pairs_keep_their_order() {
        let fault = Fault::from_json(&json!({"category": "X", "severity": "HIGH",
            "description": "d", "evidence": [["phaseIndex", 1], ["iterationCount", 5]]}))
        .unwrap();
        assert_eq!(fault.detector_id(), "X:1:*");
        assert_eq!(
            serde_json::to_string(&fault.evidence).unwrap(),
            r#"{"phaseIndex":1,"iterationCount":5}"#
        );
    }

    #[test]
    fn serializes_in_gstack_shape() {
        let fault = Fault {
            category: "X".into(),
            severity: Severity::Critical,
            description: "d".into(),
            source_files: vec![],
            evidence: Map::new(),
        };
        assert_eq!(
            serde_json::to_value(&fault).unwrap(),
            json!({"category": "X", "severity": "CRITICAL", "description": "d", "sourceFiles": [], "evidence": {}})
        );
    }
}
