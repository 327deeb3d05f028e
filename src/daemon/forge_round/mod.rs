//! The forge's half of a tick: every question a tick asks the forge and `origin`, and what
//! is done with the answers, in one background round per concern ([`Concern`]): the
//! reconcile round (the shared listing of PR states for the records due for a re-check,
//! and what it proves), and the poll round (discovery, then the fault watch's listings and
//! the queue detectors, which read discovery's answer). The fault watch over the
//! build-state runs asks no forge, but it may spend a second on learned patterns (and
//! more on planted state), so it is a round of its own too, the watch round: no wake waits
//! for it, and a halt event never holds a landing, so nothing selected needs it first.
//! A tick plans the rounds whose
//! concern has none in flight ([`Round`], naming only repos and records that passed its
//! gates), and the main loop runs each as a task ([`task::Rounds`]) and hears its end as an
//! event. So a forge that overruns the poll interval is asked at most once at a time per
//! concern, never in a burst afterwards, and a hung discovery never holds up a re-check.
//!
//! A round takes the tick memory's lock only around its bookkeeping, never across a call:
//! a tick (a watcher's wake, the poll) reads and gates the queue and starts landings
//! whatever the forge is doing. The two rounds share each repo's listing of PR states
//! through the memory, which counts a listing as asked from the moment one of them asks, so
//! it is never asked twice at once. A landing never acts on what a round said: it asks the
//! forge itself before it lands ([`crate::forge::verify_claim`]).

mod discover;
mod faults;
mod reconcile;
pub mod task;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::forge::{ForgeRepo, MergeProof, PrRef};
use crate::record::Record;
use crate::store::StoredRecord;

use super::Shared;

/// The queue detectors of a poll round, for tests of what they file.
#[cfg(test)]
pub(super) use faults::detect as detect_queue_faults;
pub use reconcile::{Due, plan as plan_reconcile};

/// What a round is about; at most one round of each is in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Concern {
    Reconcile,
    Poll,
    /// The fault watch over the build-state runs.
    Watch,
}

/// Which concerns have no round in flight: what a tick may plan.
#[derive(Clone, Copy, Debug)]
pub struct Free {
    pub reconcile: bool,
    pub poll: bool,
    pub watch: bool,
}

impl Free {
    /// Nothing in flight (`--once`'s tick, a benchmark's).
    pub const ALL: Free = Free {
        reconcile: true,
        poll: true,
        watch: true,
    };
}

/// One round, as a tick planned it.
pub enum Round {
    /// Blocked records due for a re-check and landed ones not yet proven, by gated repo.
    Reconcile(Vec<Due>),
    /// A poll tick's discovery, the fault watch's listings and the queue detectors; a
    /// watcher's wake plans none.
    Poll(PollPlan),
    /// The detectors over the build-state runs ([`crate::faults::watch::tick_runs`]).
    Watch,
}

impl Round {
    pub fn concern(&self) -> Concern {
        match self {
            Round::Reconcile(_) => Concern::Reconcile,
            Round::Poll(_) => Concern::Poll,
            Round::Watch => Concern::Watch,
        }
    }

    /// Asks what the round is about and acts on the answers. A cancelled round stops before
    /// its next question.
    pub fn run(&self, shared: &Shared, cancel: &CancellationToken) -> Answered {
        let answered = match self {
            Round::Reconcile(due) => Answered {
                reconciled: reconcile::run(shared, due, cancel),
                ..Answered::default()
            },
            Round::Poll(poll) => {
                let discovered = discover::run(shared, &poll.repos, cancel);
                if !cancel.is_cancelled() {
                    faults::run(shared, poll, cancel);
                }
                Answered {
                    discovered,
                    ..Answered::default()
                }
            }
            Round::Watch => {
                faults::watch_runs(shared);
                Answered::default()
            }
        };
        if answered != Answered::default() {
            tracing::info!(concern = ?self.concern(), ?answered, "forge round");
        }
        answered
    }
}

/// What the poll round asks about.
pub struct PollPlan {
    /// The repos to discover, by identity (DESIGN §3 step 3), all gated by the tick.
    pub repos: BTreeMap<String, LiveRepo>,
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

/// What a round changed in the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answered {
    /// Records whose status the forge's answer changed (reconcile, audit).
    pub reconciled: usize,
    /// PRs found on the forge with no local record, now queued here.
    pub discovered: usize,
}

impl Answered {
    pub fn add(&mut self, other: Answered) {
        self.reconciled += other.reconciled;
        self.discovered += other.discovered;
    }
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
        let answer = shared.crew.forge.merge_proofs(repo, wanted);
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
