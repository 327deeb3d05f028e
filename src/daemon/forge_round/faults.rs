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
    // What the last watch round found (it runs beside this round, not before it); the
    // facts stay for a watch round that ends after this read with the budget changed.
    let learned_budget = {
        let mut memory = shared.memory();
        memory.last_poll = Some((repo_facts.clone(), poll.in_flight));
        memory.learned_budget.clone()
    };
    detect(shared, poll.in_flight, &repo_facts, learned_budget);
}

/// The queue detectors over a copy of the view (a landing's record write never waits for
/// them on the view's lock), unless nothing they see changed since their last run.
fn detect(
    shared: &Shared,
    in_flight: bool,
    repo_facts: &[RepoFacts],
    learned_budget: Option<LearnedBudget>,
) {
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
    let again = {
        let mut memory = shared.memory();
        let changed = memory.learned_budget.is_some() != runs.learned_budget.is_some();
        memory.learned_budget = runs.learned_budget.clone();
        changed.then(|| memory.last_poll.clone()).flatten()
    };
    if let Some((repo_facts, in_flight)) = again {
        detect(shared, in_flight, &repo_facts, runs.learned_budget);
    }
}
