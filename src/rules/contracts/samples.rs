//! Built-in sample inputs for every contract function. `berth rules check`, `rules test`,
//! daemon start and hot reload call each function of a set with these (besides the set's
//! own `*.tests.json` cases) and refuse the set when an answer is outside the contract or
//! the call fails: a typo such as `#{decision: "hold"}` is found before the set goes live,
//! not by the first record it would have let through.
//!
//! The inputs have the shapes the daemon passes (`daemon::policy`): a record as on disk
//! plus its `id`, a PR's facts, a land step's facts, and `ctx` with and without a lane.

use serde_json::{Value, json};

use super::discovery::{self, PrFacts};
use super::landing::{self, LandFacts};
use crate::forge::QUEUE_LABEL;
use crate::forge_state::PrState;
use crate::rules::spec::Samples;

/// Every contract function berth itself asks.
pub const ALL: &[Samples] = &[
    Samples {
        file: discovery::FILE,
        function: "accept_pr",
        calls: accept_pr,
    },
    Samples {
        file: discovery::FILE,
        function: "order",
        calls: order,
    },
    Samples {
        file: landing::FILE,
        function: "admit",
        calls: admit,
    },
    Samples {
        file: landing::FILE,
        function: "on_land_result",
        calls: on_land_result,
    },
    Samples {
        file: landing::FILE,
        function: "max_lanes",
        calls: max_lanes,
    },
];

const REPO: &str = "github.com/acme/widget";

/// A record as a rule sees it: on-disk camelCase fields plus `id`.
fn record(pr: u64, status: &str, queued_at: &str) -> Value {
    json!({
        "id": format!("github.com-acme-widget-main-pr-{pr}"),
        "runId": format!("run-{pr}"),
        "repoPath": "/home/dev/widget",
        "baseBranch": "main",
        "featureBranch": format!("feat/change-{pr}"),
        "prNumber": pr,
        "version": "1.2.3",
        "livingPlanPath": "/home/dev/widget/PLAN.md",
        "worktreePath": "/home/dev/widget",
        "queuedAt": queued_at,
        "status": status,
        "repoIdentity": REPO,
        "prUrl": format!("https://github.com/acme/widget/pull/{pr}"),
    })
}

fn ctx(lane: bool, queued: usize, in_flight: usize) -> Value {
    json!({
        "now": "2026-05-17T08:00:00.000Z",
        "nowEpoch": 1_779_004_800,
        "lane": if lane { json!({"repoIdentity": REPO, "baseBranch": "main"}) } else { Value::Null },
        "queueDepth": queued,
        "inFlight": in_flight,
        "config": {"maxLanes": 2, "pollSecs": 30, "landTimeoutSecs": 1800,
                   "lockTtlSecs": 7200, "forge": "gh"},
    })
}

/// A PR as the daemon asks about it: the forge listing drops forks and PRs without a
/// valid marker before `accept_pr` is asked (`forge::gh`), so every PR a rule sees is
/// labelled, same-repository, and carries its marker's fields. A sample outside that would
/// refuse rules that answer every real question.
fn pr(labels: &[&str]) -> Value {
    let facts = PrFacts {
        number: 42,
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        has_valid_marker: true,
        is_cross_repository: false,
        head_branch: "feat/change-42".into(),
        base_branch: "main".into(),
        marker: marker_fields(),
        repo_identity: REPO.into(),
        url: Some("https://github.com/acme/widget/pull/42".into()),
    };
    serde_json::to_value(facts).unwrap_or(Value::Null)
}

/// A valid marker's fields, as a producer writes them in the PR body: the record's.
fn marker_fields() -> serde_json::Map<String, Value> {
    let mut fields = match record(42, "queued", "2026-05-17T07:00:00.000Z") {
        Value::Object(fields) => fields,
        _ => serde_json::Map::new(),
    };
    fields.remove("id");
    fields.remove("status");
    fields
}

fn accept_pr() -> Vec<(&'static str, Vec<Value>)> {
    vec![
        ("labelled PR with a valid marker", vec![pr(&[QUEUE_LABEL])]),
        (
            "labelled PR with another label too",
            vec![pr(&[QUEUE_LABEL, "needs-review"])],
        ),
    ]
}

fn order() -> Vec<(&'static str, Vec<Value>)> {
    let three = vec![
        record(3, "queued", "2026-05-17T07:00:00.000Z"),
        record(1, "queued", "2026-05-17T06:00:00.000Z"),
        record(2, "queued", "2026-05-17T06:00:00.000Z"),
    ];
    vec![
        ("three queued records", vec![Value::Array(three)]),
        (
            "one queued record",
            vec![json!([record(7, "queued", "2026-05-17T07:30:00.000Z")])],
        ),
    ]
}

fn admit() -> Vec<(&'static str, Vec<Value>)> {
    let mut retried = record(9, "queued", "2026-05-16T22:00:00.000Z");
    retried["retries"] = json!(1);
    retried["lastError"] = json!("landing command exited with status 1 (log: /l)");
    vec![
        (
            "head of a free lane",
            vec![
                record(7, "queued", "2026-05-17T07:30:00.000Z"),
                ctx(true, 1, 0),
            ],
        ),
        (
            "a retried record in a busy queue",
            vec![retried, ctx(true, 12, 2)],
        ),
    ]
}

fn facts(succeeded: bool, merged: bool, drift: bool, timed_out: bool) -> Value {
    let facts = LandFacts {
        succeeded,
        exit_code: if timed_out {
            None
        } else {
            Some(if succeeded { 0 } else { 1 })
        },
        timed_out,
        drift,
        merged,
        forge_state: Some(if merged {
            PrState::Merged
        } else {
            PrState::Open
        }),
        summary: "landing command exited with status 1 (log: /l)".into(),
        log_path: "/l".into(),
        retries: 0,
        attempt: 1,
    };
    serde_json::to_value(facts).unwrap_or(Value::Null)
}

fn on_land_result() -> Vec<(&'static str, Vec<Value>)> {
    let landing = || record(7, "landing", "2026-05-17T07:30:00.000Z");
    [
        ("exit 0 and merged", facts(true, true, false, false)),
        ("exit 0, not merged", facts(true, false, false, false)),
        ("failed", facts(false, false, false, false)),
        ("failed with drift", facts(false, false, true, false)),
        ("timed out", facts(false, false, false, true)),
    ]
    .into_iter()
    .map(|(name, facts)| (name, vec![landing(), facts, ctx(true, 1, 1)]))
    .collect()
}

fn max_lanes() -> Vec<(&'static str, Vec<Value>)> {
    vec![
        ("an idle queue", vec![ctx(false, 0, 0)]),
        ("a busy queue", vec![ctx(false, 12, 2)]),
    ]
}
