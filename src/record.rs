//! The queue record: one JSON file per queued PR, shared with the gstack producers.
//!
//! Parsing is strict about the fields berth relies on and lenient about everything else:
//! unknown fields are carried through every rewrite untouched, so a newer producer's data
//! is never lost by an older daemon.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::forge_state::{GithubState, PrState};
use serde_json::{Map, Value};

mod extra;

pub use extra::Extra;

/// Where a record is in its life. The serialized names are the gstack ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Claiming,
    Landing,
    DriftRepairing,
    Landed,
    Blocked,
    Abandoned,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Queued,
        Status::Claiming,
        Status::Landing,
        Status::DriftRepairing,
        Status::Landed,
        Status::Blocked,
        Status::Abandoned,
    ];

    /// The statuses a daemon holds a record in while it works on it.
    pub const IN_FLIGHT: [Status; 3] = [Status::Claiming, Status::Landing, Status::DriftRepairing];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Claiming => "claiming",
            Status::Landing => "landing",
            Status::DriftRepairing => "drift_repairing",
            Status::Landed => "landed",
            Status::Blocked => "blocked",
            Status::Abandoned => "abandoned",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_in_flight(self) -> bool {
        Status::IN_FLIGHT.contains(&self)
    }

    /// The state machine of DESIGN §2. Same-status writes are always allowed.
    pub fn can_move_to(self, to: Status) -> bool {
        use Status::*;
        if self == to {
            return true;
        }
        matches!(
            (self, to),
            (Queued, Claiming | Blocked | Abandoned)
                | (Claiming, Queued | Landing | Blocked | Abandoned)
                | (Landing, Queued | DriftRepairing | Landed | Blocked)
                | (DriftRepairing, Queued | Landing | Blocked)
                | (Blocked, Queued | Landed | Abandoned)
                | (Landed, Blocked)
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A queue record. Field names serialize in camelCase, exactly as gstack writes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub run_id: String,
    pub repo_path: String,
    pub base_branch: String,
    pub feature_branch: String,
    pub pr_number: u64,
    pub version: String,
    pub living_plan_path: String,
    pub worktree_path: String,
    pub queued_at: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_plan_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_github_checked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_github_state: Option<GithubState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// berth's own bookkeeping: which daemon process holds the record in flight
    /// (`<host>:<pid>`). gstack ignores it and keeps it as an unknown field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    /// Every field this version of berth does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Why a JSON value is not a usable record: names the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

#[derive(Clone, Copy)]
enum Kind {
    String,
    Timestamp,
    PositiveInteger,
    Count,
    Status,
}

const REQUIRED: [(&str, Kind); 10] = [
    ("runId", Kind::String),
    ("repoPath", Kind::String),
    ("baseBranch", Kind::String),
    ("featureBranch", Kind::String),
    ("prNumber", Kind::PositiveInteger),
    ("version", Kind::String),
    ("livingPlanPath", Kind::String),
    ("worktreePath", Kind::String),
    ("queuedAt", Kind::Timestamp),
    ("status", Kind::Status),
];

const OPTIONAL: [(&str, Kind); 10] = [
    ("repoIdentity", Kind::String),
    ("prUrl", Kind::String),
    ("sourcePlanPath", Kind::String),
    ("lastError", Kind::String),
    ("lastUpdatedAt", Kind::String),
    ("lastGithubCheckedAt", Kind::String),
    ("lastGithubState", Kind::String),
    ("reconciledAt", Kind::String),
    ("retries", Kind::Count),
    ("claimedBy", Kind::String),
];

impl Record {
    /// A fresh `queued` record for one PR, queued now, its worktree the repo itself;
    /// callers fill in what else they know.
    pub fn queued(
        repo_path: &str,
        base_branch: &str,
        feature_branch: &str,
        pr_number: u64,
    ) -> Record {
        Record {
            run_id: String::new(),
            repo_path: repo_path.to_owned(),
            base_branch: base_branch.to_owned(),
            feature_branch: feature_branch.to_owned(),
            pr_number,
            version: String::new(),
            living_plan_path: String::new(),
            worktree_path: repo_path.to_owned(),
            queued_at: crate::clock::now_iso(),
            status: Status::Queued,
            repo_identity: None,
            pr_url: None,
            source_plan_path: None,
            last_error: None,
            last_updated_at: None,
            last_github_checked_at: None,
            last_github_state: None,
            reconciled_at: None,
            retries: None,
            claimed_by: None,
            extra: Extra::default(),
        }
    }

    /// Validates a parsed JSON document field by field, then builds the record.
    pub fn from_json(value: Value) -> Result<Record, FieldError> {
        let Value::Object(mut map) = value else {
            return Err(FieldError {
                field: "(top level)",
                reason: format!("expected a JSON object, found {}", type_name(&value)),
            });
        };
        for (field, kind) in REQUIRED {
            match map.get(field) {
                None | Some(Value::Null) => {
                    return Err(FieldError {
                        field,
                        reason: "required field is missing".into(),
                    });
                }
                Some(v) => check_kind(field, kind, v)?,
            }
        }
        for (field, kind) in OPTIONAL {
            match map.get(field) {
                // An explicit null reads as absent; dropping it on rewrite loses nothing.
                Some(Value::Null) => {
                    map.remove(field);
                }
                Some(v) => check_kind(field, kind, v)?,
                None => {}
            }
        }
        // The unknown fields go straight to text, never through serde's buffering of a
        // flattened map (a second and third copy of the parsed tree).
        let (known, unknown): (Map<String, Value>, Map<String, Value>) =
            map.into_iter().partition(|(field, _)| is_known(field));
        let mut record: Record =
            serde_json::from_value(Value::Object(known)).map_err(|e| FieldError {
                field: "(record)",
                reason: e.to_string(),
            })?;
        record.extra = Extra::from_map(unknown);
        Ok(record)
    }

    /// Pretty JSON (2 spaces) plus a trailing newline, as gstack writes records. An
    /// unknown field's value is emitted as the compact text it is kept as.
    pub fn to_pretty_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self)
            .expect("a record is plain strings, numbers and maps: serializing cannot fail");
        text.push('\n');
        text
    }

    /// Compact JSON plus a trailing newline: the form of a record too large pretty.
    pub fn to_compact_json(&self) -> String {
        let mut text = serde_json::to_string(self)
            .expect("a record is plain strings, numbers and maps: serializing cannot fail");
        text.push('\n');
        text
    }

    /// Landed and proven merged, or abandoned: nothing will ever be done with it, so a
    /// tick never looks at it.
    pub fn is_settled(&self) -> bool {
        self.status == Status::Abandoned
            || self.status == Status::Landed
                && self.last_github_state == Some(GithubState::Pr(PrState::Merged))
    }

    /// The lane key used before the repo identity is known: the identity if present,
    /// else `path:<repoPath>` as gstack does for legacy records.
    pub fn identity_or_path(&self) -> String {
        self.repo_identity
            .clone()
            .unwrap_or_else(|| format!("path:{}", self.repo_path))
    }

    /// The id this record's file should carry (`<repoKey>-<base>-pr-<n>`).
    pub fn expected_id(&self) -> String {
        self.id_under(&self.identity_or_path())
    }

    /// The id of this record filed under the repo identity `identity`.
    pub fn id_under(&self, identity: &str) -> String {
        crate::safe_key::record_id(identity, &self.base_branch, self.pr_number)
    }
}

/// Whether `field` is one of the record's own fields (the rest are [`Extra`]).
fn is_known(field: &str) -> bool {
    REQUIRED
        .iter()
        .chain(&OPTIONAL)
        .any(|(name, _)| *name == field)
}

fn check_kind(field: &'static str, kind: Kind, value: &Value) -> Result<(), FieldError> {
    let fail = |reason: String| Err(FieldError { field, reason });
    match kind {
        Kind::String => match value {
            Value::String(_) => Ok(()),
            other => fail(format!("expected a string, found {}", type_name(other))),
        },
        Kind::Timestamp => match value {
            Value::String(s) if crate::clock::parse_iso(s).is_some() => Ok(()),
            Value::String(s) => fail(format!("`{s}` is not an ISO-8601 timestamp")),
            other => fail(format!(
                "expected an ISO-8601 string, found {}",
                type_name(other)
            )),
        },
        Kind::PositiveInteger => match value.as_u64() {
            Some(n) if n > 0 => Ok(()),
            _ => fail(format!(
                "expected a positive integer, found {}",
                describe(value)
            )),
        },
        Kind::Count => match value.as_u64() {
            Some(n) if n <= u64::from(u32::MAX) => Ok(()),
            _ => fail(format!(
                "expected a non-negative integer, found {}",
                describe(value)
            )),
        },
        Kind::Status => match value {
            Value::String(s) if Status::parse(s).is_some() => Ok(()),
            Value::String(s) => fail(format!(
                "unknown status `{s}` (expected one of: {})",
                Status::ALL.map(Status::as_str).join(", ")
            )),
            other => fail(format!("expected a string, found {}", type_name(other))),
        },
    }
}

/// "null", "a number", …: how a JSON value's kind reads in a message.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string \"{s}\""),
        other => type_name(other).to_owned(),
    }
}

/// Test support: a record as a store's and its readers' tests queue it.
#[cfg(test)]
pub(crate) mod sample {
    use super::Record;
    use serde_json::{Value, json};

    /// A `status` record of PR `pr` (run `run-1`, `main` ← `feat/a` of
    /// `github.com/acme/widget` at `/r`), as JSON.
    pub fn json(pr: u64, status: &str) -> Value {
        json!({
            "runId": "run-1", "repoPath": "/r", "baseBranch": "main", "featureBranch": "feat/a",
            "prNumber": pr, "version": "1.0.0", "livingPlanPath": "/r/PLAN.md",
            "worktreePath": "/r", "queuedAt": "2026-05-17T08:37:01.000Z", "status": status,
            "repoIdentity": "github.com/acme/widget"
        })
    }

    /// [`json`], queued, as a [`Record`].
    pub fn queued(pr: u64) -> Record {
        Record::from_json(json(pr, "queued")).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "runId": "run-1",
            "repoPath": "/home/u/code/widget",
            "baseBranch": "main",
            "featureBranch": "feat/x",
            "prNumber": 42,
            "version": "1.2.3",
            "livingPlanPath": "/home/u/code/widget/PLAN.md",
            "worktreePath": "/home/u/code/widget",
            "queuedAt": "2026-05-17T08:37:01.000Z",
            "status": "queued",
            "producerNote": {"kept": [1, 2, 3]}
        })
    }

    #[test]
    fn every_pair_of_the_transition_table() {
        use Status::*;
        let allowed: &[(Status, &[Status])] = &[
            (Queued, &[Claiming, Blocked, Abandoned]),
            (Claiming, &[Queued, Landing, Blocked, Abandoned]),
            (Landing, &[Queued, DriftRepairing, Landed, Blocked]),
            (DriftRepairing, &[Queued, Landing, Blocked]),
            (Blocked, &[Queued, Landed, Abandoned]),
            (Landed, &[Blocked]),
            (Abandoned, &[]),
        ];
        for (from, tos) in allowed {
            for to in Status::ALL {
                let expect = *from == to || tos.contains(&to);
                assert_eq!(from.can_move_to(to), expect, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let record = Record::from_json(sample()).unwrap();
        let text = record.to_pretty_json();
        assert!(text.ends_with("}\n"));
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["producerNote"], json!({"kept": [1, 2, 3]}));
        assert_eq!(back["prNumber"], json!(42));
        assert!(text.contains("\n  \"runId\": \"run-1\""));
    }

    #[test]
    fn names_the_field_and_the_reason() {
        let cases = [
            ("prNumber", json!("42"), "expected a positive integer"),
            ("prNumber", json!(4.5), "expected a positive integer"),
            ("status", json!("merged"), "unknown status `merged`"),
            (
                "queuedAt",
                json!("last tuesday"),
                "not an ISO-8601 timestamp",
            ),
            ("runId", json!(7), "expected a string, found a number"),
            ("retries", json!(-1), "non-negative integer"),
        ];
        for (field, bad, reason) in cases {
            let mut v = sample();
            v[field] = bad;
            let err = Record::from_json(v).unwrap_err();
            assert_eq!(err.field, field);
            assert!(err.reason.contains(reason), "{field}: {}", err.reason);
        }
        let mut v = sample();
        v.as_object_mut().unwrap().remove("worktreePath");
        let err = Record::from_json(v).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `worktreePath`: required field is missing"
        );
        assert_eq!(
            Record::from_json(json!([1])).unwrap_err().field,
            "(top level)"
        );
    }

    #[test]
    fn legacy_records_key_by_path() {
        let record = Record::from_json(sample()).unwrap();
        assert_eq!(record.identity_or_path(), "path:/home/u/code/widget");
        assert_eq!(record.expected_id(), "path-home-u-code-widget-main-pr-42");
    }
}
