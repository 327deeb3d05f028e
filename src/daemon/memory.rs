//! What the daemon remembers between ticks about the world outside the queue dir: what the
//! forge and `origin` last said about each repo, and when. This is what bounds forge calls
//! (DESIGN §3): discovery at most once per repo per poll interval; one shared listing of
//! PR states (reconcile, the landed audit and the queue detectors all read it) and one
//! lock listing per repo per `reconcile_every_secs`, each only when something asks. The
//! forge round (`forge_round`) asks through it and never holds its lock across a call: it
//! claims a listing as due, asks without the lock, then hands the answer in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::faults::queue_facts::RepoFacts;
use crate::forge::{ForgeError, ForgeRepo, MergeProof};
use crate::lane_lock::{LockError, LockListing};

#[derive(Default)]
pub struct TickMemory {
    repos: HashMap<String, RepoMemory>,
    /// Bumped whenever a remote answer arrived: the queue detectors re-run only then (or
    /// when the queue view changed).
    generation: u64,
    /// Repos to discover and records due for a re-check whose gate refused them, with
    /// the reason last reported: each reported once, forgotten when it passes the gate or
    /// goes away ([`TickMemory::prune_refusals`]).
    refused: HashMap<Refused, String>,
    /// The queue view and remote generations, and the active rule fallbacks, the queue
    /// detectors last ran on.
    pub detected: Option<(u64, u64, String)>,
    /// The learned pattern that used up the last fault watch's matching budget, if one did:
    /// a fact the queue detectors read (LEARNED_BUDGET_EXHAUSTED).
    pub learned_budget: Option<crate::faults::learned_match::LearnedBudget>,
    /// The facts the last poll round's queue detectors were given (its repos' facts,
    /// whether a record was in flight): a watch round that finds the budget changed runs
    /// the queue detectors again over them, so LEARNED_BUDGET_EXHAUSTED is filed when the
    /// round that ran out ends, not a poll later (and at all by `--once`, whose only poll
    /// round may read the budget before its only watch round ends). The watch round sets
    /// `learned_budget` before it takes its turn of the detectors and reads this in the
    /// turn; the poll round sets this in its turn, before its detectors read
    /// `learned_budget`: the later turn sees the other round's part, and runs over the
    /// newest facts.
    pub last_poll: Option<(Vec<crate::faults::queue_facts::RepoFacts>, bool)>,
    /// The queue view's generation when the last walk for due records found none, and
    /// the earliest time one comes due (`None`: none ever will without a change).
    nothing_due: Option<(u64, Option<chrono::DateTime<chrono::Utc>>)>,
}

/// What a gate refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Refused {
    /// A repo path to discover (configured, or a live record's).
    Root(String),
    /// A record due for a re-check, by id.
    Record(String),
}

#[derive(Default)]
struct RepoMemory {
    discovered_at: Option<Instant>,
    /// `(number, base)` of the labelled PRs discovery last listed; `None` if it failed.
    labelled: Option<Vec<(u64, String)>>,
    listed_at: Option<Instant>,
    proofs: HashMap<u64, MergeProof>,
    locks_at: Option<Instant>,
    locks: Vec<LockListing>,
}

/// Whether an answer fetched at `at` is older than `every`. A tenth of slack, so a poll
/// tick that comes a little early (the interval runs from the tick's start, the answer's
/// time from its end) still finds the last answer due.
fn stale(at: Option<Instant>, every: Duration) -> bool {
    at.is_none_or(|at| at.elapsed() >= every - every / 10)
}

impl TickMemory {
    /// Whether no record can be due for a re-check: the view is the one the last walk
    /// saw (`generation`), that walk found none due, and none has come due since.
    pub fn nothing_due(&self, generation: u64, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.nothing_due
            .is_some_and(|(seen, next)| seen == generation && next.is_none_or(|at| now < at))
    }

    /// What a walk for due records found in the view of `generation`.
    pub fn remember_next_due(
        &mut self,
        generation: u64,
        none_due: bool,
        next: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        self.nothing_due = none_due.then_some((generation, next));
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `identity` is due for discovery (never asked, or not within `every`).
    pub fn discovery_due(&self, identity: &str, every: Duration) -> bool {
        stale(
            self.repos.get(identity).and_then(|r| r.discovered_at),
            every,
        )
    }

    /// Records a discovery listing of `identity` (`None`: it failed).
    pub fn discovered(&mut self, identity: &str, labelled: Option<Vec<(u64, String)>>) {
        let memory = self.repos.entry(identity.to_owned()).or_default();
        memory.discovered_at = Some(Instant::now());
        memory.labelled = labelled;
        self.generation += 1;
    }

    /// Whether `identity`'s shared listing of PR states is to be asked of the forge now:
    /// something asks (`asked`) and the last listing is older than `every`. A `true`
    /// counts as asked from now on, so a listing is never asked twice at once.
    pub fn proofs_due(&mut self, identity: &str, asked: bool, every: Duration) -> bool {
        let memory = self.repos.entry(identity.to_owned()).or_default();
        let due = asked && stale(memory.listed_at, every);
        if due {
            memory.listed_at = Some(Instant::now());
        }
        due
    }

    /// The forge's answer to a listing [`TickMemory::proofs_due`] allowed.
    pub fn listed(
        &mut self,
        repo: &ForgeRepo,
        answer: Result<HashMap<u64, MergeProof>, ForgeError>,
    ) {
        let memory = self.repos.entry(repo.identity.clone()).or_default();
        match answer {
            Ok(proofs) => memory.proofs = proofs,
            // Kept: an old answer is still an answer; the next one is due in `every`.
            Err(e) => tracing::warn!(repo = %repo.identity, "PR states not listed: {e}"),
        }
        self.generation += 1;
    }

    /// The last listing of `identity`'s PR states.
    pub fn proofs(&self, identity: &str) -> HashMap<u64, MergeProof> {
        self.repos
            .get(identity)
            .map(|m| m.proofs.clone())
            .unwrap_or_default()
    }

    /// Whether the lane locks on `repo`'s origin are to be listed now (at most once per
    /// `every`); a `true` counts as listed from now on.
    pub fn locks_due(&mut self, repo: &ForgeRepo, every: Duration) -> bool {
        let memory = self.repos.entry(repo.identity.clone()).or_default();
        let due = !repo.origin_url.is_empty() && stale(memory.locks_at, every);
        if due {
            memory.locks_at = Some(Instant::now());
        }
        due
    }

    /// The answer to a lock listing [`TickMemory::locks_due`] allowed.
    pub fn locks_listed(&mut self, repo: &ForgeRepo, answer: Result<Vec<LockListing>, LockError>) {
        let memory = self.repos.entry(repo.identity.clone()).or_default();
        match answer {
            Ok(locks) => memory.locks = locks,
            Err(e) => {
                tracing::warn!(repo = %repo.identity, "fault watch: lock listing failed: {e}");
                memory.locks.clear();
            }
        }
        self.generation += 1;
    }

    /// What the queue detectors get to know about `identity`, whose live records are `ids`.
    pub fn facts(&self, identity: &str, records: Vec<String>) -> RepoFacts {
        let memory = self.repos.get(identity);
        RepoFacts {
            identity: identity.to_owned(),
            labelled: memory.and_then(|m| m.labelled.clone()),
            states: memory
                .map(|m| m.proofs.iter().map(|(n, p)| (*n, p.state)).collect())
                .unwrap_or_default(),
            locks: memory.map(|m| m.locks.clone()).unwrap_or_default(),
            records,
        }
    }

    /// Whether `reason` is news about `subject`: first refused, or for another reason
    /// than last reported. Each is logged once.
    pub fn first_refusal(&mut self, subject: Refused, reason: &str) -> bool {
        if self
            .refused
            .get(&subject)
            .is_some_and(|last| last == reason)
        {
            return false;
        }
        self.refused.insert(subject, reason.to_owned());
        true
    }

    /// `subject` passed its gate: a later refusal is news again.
    pub fn passed(&mut self, subject: &Refused) {
        self.refused.remove(subject);
    }

    /// Forgets the refusals of what went away (`still` says what is still there), so the
    /// memory holds at most one entry per live repo path and record.
    pub fn prune_refusals(&mut self, still: impl Fn(&Refused) -> bool) {
        self.refused.retain(|subject, _| still(subject));
    }

    /// How many refusals are remembered.
    #[cfg(test)]
    fn refusals(&self) -> usize {
        self.refused.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A month of one-minute ticks over records that come, are refused, and go: the
    /// refusal memory holds one entry per record still there, never the month's history.
    #[test]
    fn a_month_of_ticks_over_changing_records_keeps_the_refusals_bounded() {
        const TICKS: usize = 30 * 24 * 60;
        const PRESENT: usize = 50;
        let mut memory = TickMemory::default();
        let mut present: VecDeque<String> = VecDeque::new();
        let mut most = 0;
        for tick in 0..TICKS {
            let id = format!("r{tick}");
            present.push_back(id.clone());
            if present.len() > PRESENT {
                present.pop_front();
            }
            assert!(memory.first_refusal(Refused::Record(id.clone()), "not allowed"));
            assert!(!memory.first_refusal(Refused::Record(id), "not allowed"));
            memory.first_refusal(Refused::Root(format!("/repo{}", tick % 7)), "no origin");
            let roots: Vec<String> = (0..3).map(|n| format!("/repo{n}")).collect();
            memory.prune_refusals(|subject| match subject {
                Refused::Record(id) => present.contains(id),
                Refused::Root(path) => roots.contains(path),
            });
            most = most.max(memory.refusals());
        }
        assert!(most <= PRESENT + 3, "{most} refusals remembered");
    }

    /// A refusal that went away (the record passed its gate, or left) is news when it comes
    /// back, even for the same reason; a changed reason is news too.
    #[test]
    fn a_refusal_that_returns_after_going_away_is_news_again() {
        let mut memory = TickMemory::default();
        let record = || Refused::Record("a".into());
        assert!(memory.first_refusal(record(), "outside the allowed roots"));
        assert!(!memory.first_refusal(record(), "outside the allowed roots"));
        memory.passed(&record());
        assert!(memory.first_refusal(record(), "outside the allowed roots"));
        memory.prune_refusals(|_| false);
        assert!(memory.first_refusal(record(), "outside the allowed roots"));
        assert!(memory.first_refusal(record(), "no origin"));
        assert!(memory.first_refusal(record(), "outside the allowed roots"));
    }
}
