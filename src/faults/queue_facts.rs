//! The facts the release-queue detectors judge: the records (with the core's verdict on
//! who owns each in-flight one), the files that are not records, the lane locks on each
//! repo's origin, and where the forge disagrees with the queue.
//!
//! Rules see no file system, process table or network, and this module sees none either:
//! the daemon hands it what it already knows (its queue view, the forge listings it shares
//! with reconcile and discovery, the lock listings it fetched) and it only turns them into
//! the detectors' input. How often the remote facts are refreshed is the daemon's business.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::{Value, json};

use crate::forge::PrState;
use crate::lane_lock::{ListedLock, LockListing};
use crate::record::Status;
use crate::store::{StoredRecord, Unreadable};

/// What the daemon knows of one gated repository with a live record.
#[derive(Debug, Clone, Default)]
pub struct RepoFacts {
    pub identity: String,
    /// `(number, base branch)` of every labelled PR discovery listed; `None` if that
    /// listing failed or has not been made.
    pub labelled: Option<Vec<(u64, String)>>,
    /// PR number → state, from the shared listing.
    pub states: HashMap<u64, PrState>,
    /// Lane locks on the repository's origin.
    pub locks: Vec<LockListing>,
    /// The ids of this repository's live records.
    pub records: Vec<String>,
}

/// Everything the queue detectors are given.
pub struct QueueFacts<'a> {
    pub queue_dir: &'a Path,
    pub records: &'a [&'a StoredRecord],
    pub unreadable: &'a [Unreadable],
    /// Unreadable files left out of `unreadable` (names not UTF-8 past the view's cap):
    /// counted in `unreadableCount`.
    pub unreadable_unlisted: usize,
    /// Why an in-flight record is stranded, as the daemon judges it before a reclaim
    /// ([`crate::ownership::stranded_reason`], and its own landings are never stranded).
    pub stranded: &'a dyn Fn(&StoredRecord) -> Option<String>,
    pub repos: &'a [RepoFacts],
    /// RULE_FAILING: the landing and discovery questions failing closed right now.
    pub rule_fallbacks: &'a [crate::rules::fallbacks::Fallback],
    /// LEARNED_BUDGET_EXHAUSTED: the learned pattern that used up the latest tick's
    /// matching budget.
    pub learned_budget: Option<&'a super::learned_match::LearnedBudget>,
}

/// The input map of `rules/detectors/queue/*.rhai`.
pub fn gather(facts: &QueueFacts<'_>) -> Value {
    let records: Vec<Value> = facts
        .records
        .iter()
        .map(|stored| {
            let r = &stored.record;
            json!({
                "id": stored.id,
                "file": stored.path.display().to_string(),
                "status": r.status.as_str(),
                "prNumber": r.pr_number,
                "repo": r.identity_or_path(),
                "baseBranch": r.base_branch,
                "lastGithubState": r.last_github_state,
                "lastError": r.last_error,
                "stranded": (facts.stranded)(stored),
            })
        })
        .collect();
    let by_id: HashMap<&str, &StoredRecord> =
        facts.records.iter().map(|s| (s.id.as_str(), *s)).collect();
    let known: HashSet<&str> = by_id.keys().copied().collect();
    let mut locks = Vec::new();
    let mut labelled_without_record = Vec::new();
    let mut closed_queued = Vec::new();
    for repo in facts.repos {
        let identity = &repo.identity;
        locks.extend(repo.locks.iter().map(|lock| lock_fact(identity, lock)));
        let Some(labelled) = &repo.labelled else {
            continue;
        };
        for (number, base) in labelled {
            let id = crate::safe_key::record_id(identity, base, *number);
            if !known.contains(id.as_str()) {
                labelled_without_record
                    .push(json!({"repo": identity, "prNumber": number, "id": id}));
            }
        }
        let listed: HashSet<u64> = labelled.iter().map(|(n, _)| *n).collect();
        for s in repo
            .records
            .iter()
            .filter_map(|id| by_id.get(id.as_str()))
            .filter(|s| s.record.status == Status::Queued && !listed.contains(&s.record.pr_number))
        {
            if let Some(PrState::Closed) = repo.states.get(&s.record.pr_number) {
                closed_queued.push(json!({
                    "id": s.id, "file": s.path.display().to_string(), "repo": identity,
                    "prNumber": s.record.pr_number, "state": "closed",
                }));
            }
        }
    }
    json!({
        "queueDir": facts.queue_dir.display().to_string(),
        "records": records,
        "unreadable": facts.unreadable,
        "unreadableUnlisted": facts.unreadable_unlisted,
        "locks": locks,
        "remote": {"labelledWithoutRecord": labelled_without_record, "closedQueued": closed_queued},
        "ruleFallbacks": facts.rule_fallbacks,
        "learnedBudget": facts.learned_budget,
    })
}

fn lock_fact(identity: &str, lock: &LockListing) -> Value {
    let (state, payload) = match &lock.state {
        // Not expired yet; the next acquire takes it over.
        ListedLock::Live(p) | ListedLock::HolderGone { payload: p, .. } => ("live", Some(p)),
        ListedLock::Expired(p) => ("expired", Some(p)),
        ListedLock::Unreadable { .. } => ("unreadable", None),
    };
    json!({
        "ref": lock.ref_name,
        "repo": identity,
        "state": state,
        "expiresAt": payload.map(|p| p.expires_at.clone()),
        "ownerId": payload.map(|p| p.owner_id.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(pr: u64, status: &str) -> StoredRecord {
        let record =
            crate::record::Record::from_json(crate::record::sample::json(pr, status)).unwrap();
        let id = record.expected_id();
        StoredRecord {
            path: format!("/q/{id}.json").into(),
            id,
            record,
            changed_at: None,
        }
    }

    #[test]
    fn remote_facts_come_from_what_the_daemon_hands_over() {
        let (open, closed) = (stored(1, "queued"), stored(2, "queued"));
        let records = [&open, &closed];
        let repo = RepoFacts {
            identity: "github.com/acme/widget".into(),
            labelled: Some(vec![(1, "main".into()), (9, "main".into())]),
            states: [(2, PrState::Closed)].into(),
            locks: Vec::new(),
            records: vec![open.id.clone(), closed.id.clone()],
        };
        let facts = QueueFacts {
            queue_dir: Path::new("/q"),
            records: &records,
            unreadable: &[],
            unreadable_unlisted: 0,
            stranded: &|_| None,
            repos: &[repo],
            rule_fallbacks: &[],
            learned_budget: None,
        };
        let input = gather(&facts);
        let remote = &input["remote"];
        assert_eq!(remote["labelledWithoutRecord"][0]["prNumber"], 9);
        assert_eq!(remote["labelledWithoutRecord"].as_array().unwrap().len(), 1);
        assert_eq!(remote["closedQueued"][0]["id"], closed.id.as_str());
        assert_eq!(input["records"].as_array().unwrap().len(), 2);
    }

    /// The daemon's view keeps only the first names that are not UTF-8 and counts the rest:
    /// UNREADABLE_RECORD's count says them all.
    #[test]
    fn unreadable_files_the_view_only_counted_are_in_the_count() {
        let listed = [Unreadable {
            file: "\u{fffd}1".into(),
            reason: "file name is not UTF-8".into(),
        }];
        let facts = QueueFacts {
            queue_dir: Path::new("/q"),
            records: &[],
            unreadable: &listed,
            unreadable_unlisted: 400,
            stranded: &|_| None,
            repos: &[],
            rule_fallbacks: &[],
            learned_budget: None,
        };
        let rules = crate::rules::Rules::embedded().unwrap();
        let detection = super::super::detect::detect_queue(&rules.current(), &gather(&facts));
        let described: Vec<&str> = detection
            .faults
            .iter()
            .map(|f| f.description.as_str())
            .collect();
        assert!(
            described.iter().any(|d| d.starts_with("401 files")),
            "{described:?}"
        );
    }
}
