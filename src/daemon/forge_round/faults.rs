//! The queue detectors (DESIGN §7) on a poll round, when the queue's facts changed (the
//! view, a remote answer) or a record is in flight (whether it is stranded changes with
//! the clock alone). They judge every live record, so they never run on a watcher's wake:
//! a burst of writes costs one run per poll interval. A queue fault is raised within
//! `poll_secs` of the round's answers.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::faults::learned_match::LearnedBudget;
use crate::faults::queue_facts::{QueueFacts, RepoFacts};
use crate::forge::PrRef;
use crate::record::Status;
use crate::store::StoredRecord;

use super::{PollPlan, pr_ref, states};
use crate::daemon::{Shared, stranded};

/// Lists what the detectors need of each repo with a live record (the states of queued
/// PRs discovery did not list, the lane locks), then runs them if anything changed.
pub fn run(shared: &Shared, poll: &PollPlan, cancel: &CancellationToken) {
    let every = Duration::from_secs(shared.config().reconcile_every_secs.max(1));
    let mut repo_facts: Vec<RepoFacts> = Vec::new();
    for (identity, live) in poll.repos.iter().filter(|(_, l)| !l.records.is_empty()) {
        if cancel.is_cancelled() {
            return;
        }
        let labelled: HashSet<u64> = shared
            .memory()
            .facts(identity, Vec::new())
            .labelled
            .unwrap_or_default()
            .iter()
            .map(|(n, _)| *n)
            .collect();
        // Queued PRs discovery did not list: is the PR closed? One shared listing says.
        let unlisted: Vec<PrRef<'_>> = live
            .records
            .iter()
            .filter(|s| {
                s.record.status == Status::Queued && !labelled.contains(&s.record.pr_number)
            })
            .map(|s| pr_ref(&s.record))
            .collect();
        states(shared, &live.repo, &unlisted, every);
        let due = shared.memory().locks_due(&live.repo, every);
        if due {
            let answer = shared.crew.locks.list(&live.repo.origin_url);
            shared.memory().locks_listed(&live.repo, answer);
        }
        let records = live.records.iter().map(|s| s.id.clone()).collect();
        repo_facts.push(shared.memory().facts(identity, records));
    }
    // The facts stay for a watch round that ends after this with the budget changed.
    shared.memory().last_poll = Some((repo_facts.clone(), poll.in_flight));
    detect(shared, poll.in_flight, &repo_facts);
}

/// The queue detectors over a copy of the view (a landing's record write never waits for
/// them on the view's lock), unless nothing they see changed since their last run. The
/// learned budget is what the last watch round found, read once no other run of them is
/// under way (a watch round runs beside the poll round): a budget read before a watch
/// round found it exhausted and filed after that round's own run would resolve the fault
/// while the budget is still exhausted.
pub(in crate::daemon) fn detect(shared: &Shared, in_flight: bool, repo_facts: &[RepoFacts]) {
    let _detecting = shared
        .queue_detecting
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let learned_budget = shared.memory().learned_budget.clone();
    let generation = shared.crew.records.view().generation();
    let fallbacks = shared.decisions().fallbacks().active();
    let seen = (
        generation,
        shared.memory().generation(),
        // Whether the budget ran out, not which pattern ran it out: one fault, not one a tick.
        serde_json::to_string(&(&fallbacks, learned_budget.is_some())).unwrap_or_default(),
    );
    if shared.memory().detected.as_ref() == Some(&seen) && !in_flight {
        return;
    }
    // Settled records (landed and proven, abandoned) can raise no queue fault: the
    // detectors see every other record.
    let (owned, unreadable, unreadable_unlisted) = {
        let view = shared.crew.records.view();
        let owned: Vec<StoredRecord> = view.active().cloned().collect();
        (owned, view.unreadable(), view.unreadable_unlisted())
    };
    let records: Vec<&StoredRecord> = owned.iter().collect();
    let now = crate::clock::now();
    let facts = QueueFacts {
        queue_dir: shared.crew.records.store().dir(),
        records: &records,
        unreadable: &unreadable,
        unreadable_unlisted,
        stranded: &|stored| {
            stranded::stranded_reason(&shared.crew, shared.config().lock_ttl(), stored, now)
        },
        repos: repo_facts,
        rule_fallbacks: &fallbacks,
        learned_budget: learned_budget.as_ref(),
    };
    // Counted by tests: how often the queue detectors run, and over how many records.
    tracing::debug!(live = records.len(), "queue detectors run");
    let report =
        crate::faults::watch::tick_queue(&shared.fault_dirs(), &shared.rules().current(), &facts);
    shared
        .crew
        .telemetry
        .halts_withheld("queue", report.withheld);
    // The facts count as detected only once their faults are filed: a sync skipped (the
    // queue run's lock held elsewhere) or failed runs again on the next round, though
    // nothing in the queue changed.
    shared.memory().detected = (!report.unsynced).then_some(seen);
}

/// The watch round: the detectors over the build-state runs, filing and resolving their
/// halt events. Whether the learned patterns ran out of their budget is a queue fact: when
/// it changed, the queue detectors run again here over the last poll round's facts
/// (LEARNED_BUDGET_EXHAUSTED filed or resolved as this round ends); before any poll round
/// read them, the next poll round's detectors read it.
pub fn watch_runs(shared: &Shared) {
    let runs = crate::faults::watch::tick_runs(&shared.fault_dirs(), &shared.rules().current());
    shared.crew.telemetry.halts_withheld("runs", runs.withheld);
    budget_found(shared, runs.learned_budget);
}

/// The end of a watch round that found `learned_budget`: kept for the queue detectors,
/// which run again now over the last poll round's facts when it changed.
fn budget_found(shared: &Shared, learned_budget: Option<LearnedBudget>) {
    let again = {
        let mut memory = shared.memory();
        let changed = memory.learned_budget.is_some() != learned_budget.is_some();
        memory.learned_budget = learned_budget;
        changed.then(|| memory.last_poll.clone()).flatten()
    };
    if let Some((repo_facts, in_flight)) = again {
        detect(shared, in_flight, &repo_facts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A poll round leaves its facts before a watch round finds the learned budget
    /// exhausted; the watch round runs the queue detectors again and files
    /// LEARNED_BUDGET_EXHAUSTED; the poll round's own detectors then run. The budget is
    /// still exhausted: the fault stays raised, no resolved marker is written for it (the
    /// poll round used to run them with the budget it read beside its facts, none, and
    /// resolved it: proven by this test before the fix).
    #[test]
    fn a_poll_round_beside_the_watch_round_does_not_resolve_an_exhausted_budget() {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("queue");
        std::fs::create_dir_all(&queue).unwrap();
        let config = crate::config::Config {
            forge: crate::config::ForgeKind::Git,
            faults_dir: Some(dir.path().join("faults")),
            build_state_dir: Some(dir.path().join("build-state")),
            ..Default::default()
        };
        let (allowlist, _) = crate::gates::Allowlist::build(Some(dir.path()), None, None);
        let shared = Shared::new(
            crate::store::QueueStore::new(&queue),
            allowlist,
            config,
            dir.path().join("berth"),
        )
        .unwrap();
        let budget = LearnedBudget {
            index: 3,
            category: "SLOW".into(),
            skipped: 10,
            budget_ms: 1000,
        };
        // The poll round leaves its facts, as `run` does, before the watch round ends.
        shared.memory().last_poll = Some((Vec::new(), true));
        budget_found(&shared, Some(budget));
        // The queue raises nothing else: its one event and its resolved marker, by name.
        let files = |prefix: &str| {
            let faults = shared.config().faults_dir_or_default();
            std::fs::read_dir(faults.join("pending-investigations"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count()
        };
        assert_eq!(files("berth-release-queue-PHASE_FAILED:"), 1);
        // The poll round's own detectors, after the watch round's; a record in flight, so
        // they run though nothing they see changed.
        detect(&shared, true, &[]);
        assert_eq!(
            files("berth-release-queue-RESOLVED-"),
            0,
            "the poll round resolved LEARNED_BUDGET_EXHAUSTED while the budget is still exhausted"
        );
    }
}

#[cfg(test)]
mod reviewb22;
