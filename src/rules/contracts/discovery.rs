//! `rules/discovery.rhai`: which forge PRs count as queued, and the order in which queued
//! records are considered.
//!
//! ```rhai
//! fn accept_pr(pr)        // -> #{accept: bool, reason: string}
//! fn order(candidates)    // -> array of the candidates' ids, each exactly once
//! ```
//! `pr`: `#{number, labels, hasValidMarker, isCrossRepository, headBranch, baseBranch,
//! marker, repoIdentity, url}`. A candidate is a queued record (camelCase, as on disk) plus
//! its `id`. The forge has already dropped unlabelled, fork and marker-less PRs: a rule can
//! only narrow discovery, and every gate still applies to what it accepts.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{AnswerError, Decided, decide, object, reason};
use crate::forge::QUEUE_LABEL;
use crate::rules::set::RuleSet;
use crate::rules::spec::{Invalid, Requirement};

pub const FILE: &str = "rules/discovery.rhai";

pub const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        file: FILE,
        function: "accept_pr",
        arity: 1,
        validate: Some(validate_acceptance),
    },
    Requirement {
        file: FILE,
        function: "order",
        arity: 1,
        validate: Some(validate_order),
    },
];

/// What a rule sees of a PR found on the forge.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrFacts {
    pub number: u64,
    pub labels: Vec<String>,
    pub has_valid_marker: bool,
    pub is_cross_repository: bool,
    pub head_branch: String,
    pub base_branch: String,
    /// The marker's JSON fields.
    pub marker: Map<String, Value>,
    pub repo_identity: String,
    pub url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acceptance {
    pub accept: bool,
    pub reason: String,
}

/// Asks `accept_pr` (the shipped rule is [`default_accept`]). A failed or invalid answer
/// does not accept the PR this tick (fails closed); it is asked again on the next.
pub fn accept_pr(set: &RuleSet, pr: &PrFacts) -> Decided<Acceptance> {
    let arg = serde_json::to_value(pr).unwrap_or(Value::Null);
    decide(
        set,
        FILE,
        "accept_pr",
        vec![arg],
        parse_acceptance,
        |error, _| Acceptance {
            accept: false,
            reason: format!("not accepted this tick: the accept_pr rule failed ({error})"),
        },
    )
}

/// DESIGN §3.3: label present, valid marker, not from a fork.
pub fn default_accept(pr: &PrFacts) -> Acceptance {
    let (accept, reason) = if !pr.labels.iter().any(|l| l == QUEUE_LABEL) {
        (false, format!("no `{QUEUE_LABEL}` label"))
    } else if !pr.has_valid_marker {
        (false, "no valid queue marker in the PR body".to_owned())
    } else if pr.is_cross_repository {
        (false, "the PR comes from a fork".to_owned())
    } else {
        (true, "labelled, valid marker, same repository".to_owned())
    };
    Acceptance { accept, reason }
}

fn parse_acceptance(_args: &[Value], result: &Value) -> Result<Acceptance, AnswerError> {
    let map = object(result)?;
    let accept = match map.get("accept") {
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(AnswerError::Accept(other.clone())),
        None => return Err(AnswerError::Missing("accept")),
    };
    Ok(Acceptance {
        accept,
        reason: reason(result, !accept)?,
    })
}

fn validate_acceptance(args: &[Value], result: &Value) -> Result<(), Invalid> {
    parse_acceptance(args, result).map(drop).map_err(Into::into)
}

/// Asks `order` for the order of `candidates` (queued records with their `id`); the
/// default is oldest `queuedAt` first, then PR number.
pub fn order(set: &RuleSet, candidates: Vec<Value>) -> Decided<Vec<String>> {
    let args = vec![Value::Array(candidates)];
    decide(set, FILE, "order", args, parse_order, |_, args| {
        default_order(args[0].as_array().map_or(&[], Vec::as_slice))
    })
}

/// DESIGN §3.5: oldest first (an unreadable time sorts first, as "stale"), then PR number;
/// stable for the rest.
pub fn default_order(candidates: &[Value]) -> Vec<String> {
    let mut sorted: Vec<&Value> = candidates.iter().collect();
    let at = |c: &Value| {
        c.get("queuedAt")
            .and_then(Value::as_str)
            .and_then(crate::clock::parse_iso)
    };
    let pr = |c: &Value| c.get("prNumber").and_then(Value::as_u64);
    sorted.sort_by(|a, b| at(a).cmp(&at(b)).then(pr(a).cmp(&pr(b))));
    sorted
        .into_iter()
        .filter_map(id_of)
        .map(str::to_owned)
        .collect()
}

fn id_of(candidate: &Value) -> Option<&str> {
    candidate.get("id").and_then(Value::as_str)
}

fn parse_order(args: &[Value], result: &Value) -> Result<Vec<String>, AnswerError> {
    let expected: Vec<&str> = args
        .first()
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(id_of).collect())
        .unwrap_or_default();
    let Some(items) = result.as_array() else {
        return Err(AnswerError::NotIds(result.clone()));
    };
    let mut seen = HashSet::new();
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let Some(id) = item.as_str() else {
            return Err(AnswerError::NotAnId(item.clone()));
        };
        if !expected.contains(&id) {
            return Err(AnswerError::NotACandidate(id.to_owned()));
        }
        if !seen.insert(id) {
            return Err(AnswerError::Twice(id.to_owned()));
        }
        ids.push(id.to_owned());
    }
    if ids.len() != expected.len() {
        let missing = expected
            .iter()
            .filter(|id| !seen.contains(*id))
            .map(|id| (*id).to_owned())
            .collect();
        return Err(AnswerError::Unlisted(missing));
    }
    Ok(ids)
}

fn validate_order(args: &[Value], result: &Value) -> Result<(), Invalid> {
    parse_order(args, result).map(drop).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pr(labels: &[&str], marker: bool, fork: bool) -> PrFacts {
        PrFacts {
            number: 7,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            has_valid_marker: marker,
            is_cross_repository: fork,
            head_branch: "feat/x".into(),
            base_branch: "main".into(),
            marker: Map::new(),
            repo_identity: "github.com/acme/widget".into(),
            url: None,
        }
    }

    #[test]
    fn the_default_acceptance_is_label_marker_and_no_fork() {
        assert!(default_accept(&pr(&[QUEUE_LABEL], true, false)).accept);
        assert!(!default_accept(&pr(&["other"], true, false)).accept);
        assert!(!default_accept(&pr(&[QUEUE_LABEL], false, false)).accept);
        let fork = default_accept(&pr(&[QUEUE_LABEL], true, true));
        assert!(!fork.accept);
        assert!(fork.reason.contains("fork"));
    }

    #[test]
    fn the_default_order_is_oldest_then_pr_number() {
        let c = |id: &str, at: &str, n: u64| json!({"id": id, "queuedAt": at, "prNumber": n});
        let candidates = [
            c("late", "2026-01-02T00:00:00Z", 1),
            c("b", "2026-01-01T00:00:00.000Z", 9),
            c("a", "2026-01-01T01:00:00+01:00", 3),
        ];
        assert_eq!(default_order(&candidates), ["a", "b", "late"]);
    }

    #[test]
    fn order_results_must_be_a_permutation() {
        let args = [json!([{"id": "a"}, {"id": "b"}])];
        assert!(parse_order(&args, &json!(["b", "a"])).is_ok());
        for (bad, why) in [
            (json!(["a"]), "missing b"),
            (json!(["a", "a"]), "appears twice"),
            (json!(["a", "b", "c"]), "not one of the candidates"),
            (json!(["a", 2]), "strings"),
            (json!("a,b"), "expected an array"),
        ] {
            let err = parse_order(&args, &bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn acceptance_needs_a_boolean_and_a_reason_to_reject() {
        assert!(parse_acceptance(&[], &json!({"accept": true, "reason": ""})).is_ok());
        assert!(parse_acceptance(&[], &json!({"accept": false, "reason": " "})).is_err());
        assert!(parse_acceptance(&[], &json!({"accept": "yes", "reason": "x"})).is_err());
        assert!(parse_acceptance(&[], &json!([1, 2])).is_err());
    }
}
