//! The tick's questions to the rules (DESIGN §8): what the rules see of a record, a PR and
//! the daemon, the contract calls, and one decision-log line per answer. The answers are
//! plain values the tick acts on through the store; the rules never touch the store.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::config::Config;
use crate::forge::{QUEUE_LABEL, QueuedPr};
use crate::lane_lock::Lane;
use crate::queue_order::QueueOrder;
use crate::record::{Record, Status};
use crate::rules::contracts::discovery::{self, PrFacts};
use crate::rules::contracts::landing::{self, Admission, LandFacts, LandVerdict};
use crate::rules::decisions::Subject;
use crate::rules::{DecisionLog, Rules};
use crate::store::StoredRecord;

/// A record's extra field set by a `requeue` with a delay: `select` passes the record over
/// until this time. gstack keeps it as an unknown field; claiming the record removes it.
pub const NOT_BEFORE_FIELD: &str = "berthNotBefore";

/// How busy the queue is, for a rule's `ctx`.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueView {
    pub queued: usize,
    pub in_flight: usize,
}

impl QueueView {
    pub fn of<'a>(records: impl IntoIterator<Item = &'a StoredRecord>) -> QueueView {
        let mut view = QueueView::default();
        for stored in records {
            view.queued += usize::from(stored.record.status == Status::Queued);
            view.in_flight += usize::from(stored.record.status.is_in_flight());
        }
        view
    }
}

/// What the tick's questions to the rules need of the daemon: the rule set, the decision
/// log every answer is written to, the published order, and the settings a rule's `ctx`
/// shows. Nothing here reaches the queue or the forge.
/// Owned and cheap to clone, so a question can be asked on a blocking thread.
#[derive(Clone)]
pub struct Policy {
    pub rules: Rules,
    pub decisions: Arc<DecisionLog>,
    pub order: Arc<QueueOrder>,
    pub config: Arc<Config>,
    /// Which forge answers (`gh` or `git`), as `ctx.config.forge`.
    pub forge: &'static str,
}

/// The record as a rule sees it: the on-disk JSON (camelCase, unknown fields included)
/// plus its `id`.
pub fn record_value(id: &str, record: &Record) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("id".into(), json!(id));
    }
    value
}

/// `ctx`: the time, the lane (if the question is about one), the queue, the config.
pub fn ctx(policy: &Policy, lane: Option<&Lane>, view: QueueView) -> Value {
    let now = crate::clock::now();
    let config = &policy.config;
    json!({
        "now": crate::clock::iso(now),
        "nowEpoch": now.timestamp(),
        "lane": lane.map(|l| json!({"repoIdentity": l.repo_identity, "baseBranch": l.base_branch})),
        "queueDepth": view.queued,
        "inFlight": view.in_flight,
        "config": {
            "maxLanes": config.max_lanes,
            "pollSecs": config.poll_secs,
            "landTimeoutSecs": config.land_timeout_secs,
            "lockTtlSecs": config.lock_ttl_secs,
            "forge": policy.forge,
        },
    })
}

/// One decision-log line about record `id`.
fn log_about<T>(
    policy: &Policy,
    decided: &crate::rules::Decided<T>,
    id: &str,
    record: &Record,
    decision: &str,
    reason: &str,
) {
    let repo = record.identity_or_path();
    let subject = Subject {
        id,
        pr: record.pr_number,
        repo: &repo,
    };
    policy
        .decisions
        .decision(decided, Some(subject), decision, reason);
}

/// `accept_pr` for a PR the forge listed (and so already found labelled, same-repository
/// and with a valid marker).
pub fn accept_pr(policy: &Policy, identity: &str, id: &str, pr: &QueuedPr) -> bool {
    let facts = PrFacts {
        number: pr.number,
        labels: vec![QUEUE_LABEL.to_owned()],
        has_valid_marker: true,
        is_cross_repository: false,
        head_branch: pr.head_branch.clone(),
        base_branch: pr.base_branch.clone(),
        marker: pr.marker.fields().clone(),
        repo_identity: identity.to_owned(),
        url: pr.url.clone(),
    };
    let decided = discovery::accept_pr(&policy.rules.current(), &facts);
    let subject = Subject {
        id,
        pr: pr.number,
        repo: identity,
    };
    let answer = if decided.value.accept {
        "accept"
    } else {
        "reject"
    };
    policy
        .decisions
        .decision(&decided, Some(subject), answer, &decided.value.reason);
    decided.value.accept
}

/// `order` over the queued records: their indexes in the order the rule gives.
pub fn order(policy: &Policy, queued: &[&StoredRecord]) -> Vec<usize> {
    let candidates = queued
        .iter()
        .map(|s| record_value(&s.id, &s.record))
        .collect();
    let mut decided = discovery::order(&policy.rules.current(), candidates);
    match &decided.error {
        // Not per record: the order is one decision about the whole queue.
        Some(error) => {
            policy
                .decisions
                .decision(&decided, None, "built-in order", &error.to_string())
        }
        // Only a failure is logged (the order is asked every tick); a good answer ends it.
        None => policy.decisions.fallbacks().note(&decided, None, ""),
    }
    policy
        .decisions
        .remember_order(std::mem::take(&mut decided.args));
    policy.order.publish(decided.value.clone());
    decided
        .value
        .iter()
        .filter_map(|id| queued.iter().position(|s| &s.id == id))
        .collect()
}

/// Whether `select` must pass a record over because a `requeue` deferred it.
pub fn deferred(record: &Record, now: DateTime<Utc>) -> bool {
    record
        .extra
        .get_str(NOT_BEFORE_FIELD)
        .and_then(|at| crate::clock::parse_iso(&at))
        .is_some_and(|at| at > now)
}

/// `admit` for the head of a free lane.
pub fn admit(policy: &Policy, stored: &StoredRecord, lane: &Lane, view: QueueView) -> Admission {
    let decided = landing::admit(
        &policy.rules.current(),
        &record_value(&stored.id, &stored.record),
        &ctx(policy, Some(lane), view),
    );
    log_about(
        policy,
        &decided,
        &stored.id,
        &stored.record,
        decided.value.decision.as_str(),
        &decided.value.reason,
    );
    decided.value
}

/// Logs that `stored` was picked to land now, `position` in the rule's order.
pub fn selected(policy: &Policy, stored: &StoredRecord, position: usize, of: usize) {
    let decided = crate::rules::Decided {
        value: (),
        file: discovery::FILE,
        function: "order",
        ruleset: policy.rules.current().hash().to_owned(),
        error: None,
        args: Vec::new(),
    };
    let repo = stored.record.identity_or_path();
    let subject = Subject {
        id: &stored.id,
        pr: stored.record.pr_number,
        repo: &repo,
    };
    let reason = format!(
        "head of its lane, {} of {of} queued in rule order",
        position + 1
    );
    policy.decisions.selection(&decided, subject, &reason);
}

/// `on_land_result` for a finished land step; `view` the queue as the tick last read it.
pub fn on_land_result(
    policy: &Policy,
    view: QueueView,
    (id, record): (&str, &Record),
    lane: &Lane,
    facts: &LandFacts,
) -> LandVerdict {
    let decided = landing::on_land_result(
        &policy.rules.current(),
        &record_value(id, record),
        facts,
        &ctx(policy, Some(lane), view),
    );
    log_about(
        policy,
        &decided,
        id,
        record,
        decided.value.decision.as_str(),
        &decided.value.reason,
    );
    decided.value
}

/// `max_lanes`: how many landings may run at once.
pub fn max_lanes(policy: &Policy, view: QueueView) -> usize {
    let decided = landing::max_lanes(&policy.rules.current(), &ctx(policy, None, view));
    let reason = match &decided.error {
        Some(error) => format!("one lane: the max_lanes rule failed ({error})"),
        None => "lanes that may land at once".to_owned(),
    };
    policy
        .decisions
        .decision(&decided, None, &decided.value.to_string(), &reason);
    decided.value
}

/// When a record requeued by a rule may be picked again: after its delay, or after one
/// poll interval when it gave none (never at once: the same lane would be retried in a loop).
pub fn not_before(config: &Config, delay: Option<Duration>) -> String {
    let delay = delay.unwrap_or(Duration::from_secs(config.poll_secs.max(1)));
    let at = crate::clock::now()
        + chrono::Duration::from_std(delay).unwrap_or_else(|_| chrono::Duration::days(7));
    crate::clock::iso(at)
}
