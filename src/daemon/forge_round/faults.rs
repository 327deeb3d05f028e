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
    detect(shared, poll.in_flight, &repo_facts);
}

/// A poll round's queue detectors over its facts, once no other run of them is under way
/// (a watch round runs beside the poll round). The facts stay for a watch round that ends
/// after this with the budget changed; kept only once the turn is taken, so a watch round
/// that runs after this one runs over these facts, never over older ones it took before
/// (its run, the last to file, would resolve a fault these raise).
pub(in crate::daemon) fn detect(shared: &Shared, in_flight: bool, repo_facts: &[RepoFacts]) {
    let _detecting = turn(shared);
    shared.memory().last_poll = Some((repo_facts.to_vec(), in_flight));
    run_detectors(shared, in_flight, repo_facts);
}

/// The turn of one run of the queue detectors: the poll and the watch round's runs file
/// one after the other, each over what it read inside its turn.
fn turn(shared: &Shared) -> std::sync::MutexGuard<'_, ()> {
    shared
        .queue_detecting
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The queue detectors over a copy of the view (a landing's record write never waits for
/// them on the view's lock), unless nothing they see changed since their last run; called
/// within a turn. The learned budget is what the last watch round found, read in the turn:
/// a budget read before a watch round found it exhausted and filed after that round's own
/// run would resolve the fault while the budget is still exhausted.
fn run_detectors(shared: &Shared, in_flight: bool, repo_facts: &[RepoFacts]) {
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
/// which run again now over the last poll round's facts when it changed. Those facts are
/// read once the turn is taken, as the budget is: a poll round that leaves newer ones and
/// runs first must not be followed by a run over the ones it replaced.
fn budget_found(shared: &Shared, learned_budget: Option<LearnedBudget>) {
    let changed = {
        let mut memory = shared.memory();
        let changed = memory.learned_budget.is_some() != learned_budget.is_some();
        memory.learned_budget = learned_budget;
        changed
    };
    if !changed {
        return;
    }
    let _detecting = turn(shared);
    let last_poll = shared.memory().last_poll.clone();
    if let Some((repo_facts, in_flight)) = last_poll {
        run_detectors(shared, in_flight, &repo_facts);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A daemon's shared state over a git forge, its queue, faults and build-state dirs in
    /// `dir`.
    fn shared_in(dir: &std::path::Path) -> Shared {
        let queue = dir.join("queue");
        std::fs::create_dir_all(&queue).unwrap();
        let config = crate::config::Config {
            forge: crate::config::ForgeKind::Git,
            faults_dir: Some(dir.join("faults")),
            build_state_dir: Some(dir.join("build-state")),
            ..Default::default()
        };
        let (allowlist, _) = crate::gates::Allowlist::build(Some(dir), None, None);
        Shared::new(
            crate::store::QueueStore::new(&queue),
            allowlist,
            config,
            dir.join("berth"),
        )
        .unwrap()
    }

    /// A learned pattern that ran out of its matching budget.
    fn exhausted() -> LearnedBudget {
        LearnedBudget {
            index: 3,
            category: "SLOW".into(),
            skipped: 10,
            budget_ms: 1000,
        }
    }

    /// The events and resolved markers filed in `shared`'s faults dir, by file name.
    fn filed(shared: &Shared) -> Vec<(String, serde_json::Value)> {
        let pending = shared
            .config()
            .faults_dir_or_default()
            .join("pending-investigations");
        std::fs::read_dir(pending)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| {
                let text = std::fs::read(e.path()).unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                (name, serde_json::from_slice(&text).unwrap_or_default())
            })
            .collect()
    }

    /// How many of `files` are named with `prefix`.
    fn named(files: &[(String, serde_json::Value)], prefix: &str) -> usize {
        files.iter().filter(|(n, _)| n.starts_with(prefix)).count()
    }

    /// A poll round leaves its facts before a watch round finds the learned budget
    /// exhausted; the watch round runs the queue detectors again and files
    /// LEARNED_BUDGET_EXHAUSTED; the poll round's own detectors then run. The budget is
    /// still exhausted: the fault stays raised, no resolved marker is written for it (the
    /// poll round used to run them with the budget it read beside its facts, none, and
    /// resolved it: proven by this test before the fix).
    #[test]
    fn a_poll_round_beside_the_watch_round_does_not_resolve_an_exhausted_budget() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared_in(dir.path());
        // The poll round leaves its facts, as `run` does, before the watch round ends.
        shared.memory().last_poll = Some((Vec::new(), true));
        budget_found(&shared, Some(exhausted()));
        // The queue raises nothing else: its one event and its resolved marker, by name.
        assert_eq!(
            named(&filed(&shared), "berth-release-queue-PHASE_FAILED:"),
            1
        );
        // The poll round's own detectors, after the watch round's; a record in flight, so
        // they run though nothing they see changed.
        detect(&shared, true, &[]);
        assert_eq!(
            named(&filed(&shared), "berth-release-queue-RESOLVED-"),
            0,
            "the poll round resolved LEARNED_BUDGET_EXHAUSTED while the budget is still exhausted"
        );
    }

    /// The poll round's facts say PR #7 carries the label with no local record
    /// (QUEUE_REMOTE_DISAGREE, filed by its run); a watch round whose budget changed waits
    /// for its turn while the poll round runs. It must run over those facts, not the older
    /// ones the poll round replaced (nothing labelled): run last, it would write a resolved
    /// marker for a fault the newest facts raise, filed again a poll later. Which round
    /// reads the budget first does not matter: each order ends with the watch round's run.
    /// (It took the facts before its turn, and did resolve the fault: proven by this test
    /// before the fix.)
    #[test]
    fn a_watch_round_runs_the_queue_detectors_over_the_newest_poll_facts() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared_in(dir.path());
        let newer = vec![RepoFacts {
            identity: "example.org/widget".into(),
            labelled: Some(vec![(7, "main".into())]),
            states: HashMap::new(),
            locks: Vec::new(),
            records: Vec::new(),
        }];
        // The poll round before: nothing labelled.
        shared.memory().last_poll = Some((Vec::new(), true));
        let memory = shared.memory();
        std::thread::scope(|s| {
            // The poll round's detectors take the turn first (and wait for the memory).
            let poll = s.spawn(|| detect(&shared, true, &newer));
            while shared.queue_detecting.try_lock().is_ok() {
                std::thread::yield_now();
            }
            // The watch round finds the budget changed and waits for its turn.
            let watch = s.spawn(|| budget_found(&shared, Some(exhausted())));
            drop(memory);
            poll.join().unwrap();
            watch.join().unwrap();
        });
        let files = filed(&shared);
        let disagree: Vec<&str> = files
            .iter()
            .filter(|(_, event)| {
                event["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("[QUEUE_REMOTE_DISAGREE] "))
            })
            .filter_map(|(_, event)| event["faultId"].as_str())
            .collect();
        assert_eq!(
            disagree.len(),
            1,
            "the poll round filed its fault: {files:?}"
        );
        let resolved: Vec<&String> = files
            .iter()
            .map(|(name, _)| name)
            .filter(|name| name.contains("RESOLVED-") && name.contains(disagree[0]))
            .collect();
        assert!(
            resolved.is_empty(),
            "a run over older facts resolved QUEUE_REMOTE_DISAGREE, which the newest facts raise: {resolved:?}"
        );
    }
}
