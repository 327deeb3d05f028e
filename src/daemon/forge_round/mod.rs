//! The forge's half of a tick: every question a tick asks the forge and `origin` (the
//! shared listing of PR states for reconcile and the landed audit, discovery, the fault
//! watch's listings) and what is done with the answers. A tick plans a round ([`Plan`],
//! naming only repos and records that passed its gates) and the main loop runs it as one
//! background task ([`task::RoundTask`]), hearing its end as an event. At most one round
//! is in flight: a poll tick that finds one still running plans none, so a forge that
//! overruns the poll interval is asked at most once at a time, never in a burst after.
//!
//! The round takes the tick memory's lock only around its bookkeeping, never across a
//! call: a tick (a watcher's wake, the poll) reads and gates the queue and starts landings
//! whatever the forge is doing. A landing never acts on what a round said: it asks the
//! forge itself before it lands ([`crate::forge::verify_claim`]).

mod discover;
mod faults;
mod reconcile;
pub mod task;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::faults::learned_match::LearnedBudget;
use crate::forge::{ForgeRepo, MergeProof, PrRef};
use crate::record::Record;
use crate::store::StoredRecord;

use super::Shared;

pub use reconcile::{Due, plan as plan_reconcile};

/// What one round is to ask, as a tick planned it.
#[derive(Default)]
pub struct Plan {
    /// Blocked records due for a re-check and landed ones not yet proven, by gated repo.
    pub reconcile: Vec<Due>,
    /// A poll tick's work (discovery, the fault watch's listings and the queue
    /// detectors); a watcher's wake plans none.
    pub poll: Option<PollPlan>,
}

/// The poll's part of a round.
pub struct PollPlan {
    /// The repos to discover, by identity (DESIGN §3 step 3), all gated by the tick.
    pub repos: BTreeMap<String, LiveRepo>,
    /// Whether this tick's learned patterns ran out of their budget (a queue fact).
    pub learned_budget: Option<LearnedBudget>,
    /// Whether a record was in flight: whether it is stranded changes with the clock
    /// alone, so the queue detectors run again even with no new fact.
    pub in_flight: bool,
}

/// A repo a round asks the forge about: gated, by the identity read from its origin.
pub struct LiveRepo {
    pub repo: ForgeRepo,
    /// The path its records (or the configuration) name; discovered records get it.
    pub repo_path: String,
    /// Its live (queued or in-flight) records.
    pub records: Vec<StoredRecord>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.reconcile.is_empty() && self.poll.is_none()
    }
}

/// What a round changed in the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answered {
    /// Records whose status the forge's answer changed (reconcile, audit).
    pub reconciled: usize,
    /// PRs found on the forge with no local record, now queued here.
    pub discovered: usize,
}

/// Runs `plan`: reconcile, then discovery, then the fault watch's listings and the queue
/// detectors. A cancelled round stops before its next question.
pub fn run(shared: &Shared, plan: &Plan, cancel: &CancellationToken) -> Answered {
    let mut answered = Answered {
        reconciled: reconcile::run(shared, &plan.reconcile, cancel),
        ..Answered::default()
    };
    if let Some(poll) = &plan.poll {
        answered.discovered = discover::run(shared, &poll.repos, cancel);
        if !cancel.is_cancelled() {
            faults::run(shared, poll, cancel);
        }
    }
    if answered != Answered::default() {
        tracing::info!(?answered, "forge round");
    }
    answered
}

/// The shared listing of `repo`'s PR states: asked of the forge when any of `wanted` is
/// asked for and the last listing is older than `every`, otherwise the last one.
fn states(
    shared: &Shared,
    repo: &ForgeRepo,
    wanted: &[PrRef<'_>],
    every: Duration,
) -> HashMap<u64, MergeProof> {
    let due = shared
        .memory()
        .proofs_due(&repo.identity, !wanted.is_empty(), every);
    if due {
        let answer = shared.forge.merge_proofs(repo, wanted);
        shared.memory().listed(repo, answer);
    }
    shared.memory().proofs(&repo.identity)
}

fn pr_ref(record: &Record) -> PrRef<'_> {
    PrRef {
        number: record.pr_number,
        feature_branch: &record.feature_branch,
        base_branch: &record.base_branch,
    }
}
