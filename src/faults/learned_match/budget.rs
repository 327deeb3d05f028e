//! The time the learned regexes of one tick have left, and the worker their backtracking
//! matches run on for that tick.

use std::time::Duration;

use super::TICK_BUDGET;
use super::worker::Worker;

/// The pattern that used up a tick's [`TICK_BUDGET`], by its position among the set's
/// patterns, and how many regex matches were left out after it that tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exhausted {
    pub index: usize,
    pub skipped: usize,
}

/// The time the learned regexes of one tick have left, and the worker process their
/// backtracking matches run on (started at the first, ended when the budget is dropped).
#[derive(Debug)]
pub struct Budget {
    limit: Option<Duration>,
    spent: Duration,
    /// Set by the first pattern that ran it out.
    pub exhausted: Option<Exhausted>,
    /// The patterns (positions among the set's) whose match the worker died of, past its
    /// memory limit, each once.
    pub died: Vec<usize>,
    pub worker: Worker,
}

impl Budget {
    /// One tick's: [`TICK_BUDGET`].
    pub fn for_tick() -> Budget {
        Budget::of(TICK_BUDGET)
    }

    pub fn of(limit: Duration) -> Budget {
        Budget::within(Some(limit))
    }

    /// No limit (one-off commands: `berth detect`); each backtracking match is still
    /// stopped at [`TICK_BUDGET`].
    pub fn unlimited() -> Budget {
        Budget::within(None)
    }

    fn within(limit: Option<Duration>) -> Budget {
        Budget {
            limit,
            spent: Duration::ZERO,
            exhausted: None,
            died: Vec::new(),
            worker: Worker::default(),
        }
    }

    /// Notes that the worker died of pattern `index`'s match.
    pub(super) fn died_of(&mut self, index: usize) {
        if !self.died.contains(&index) {
            self.died.push(index);
        }
    }

    pub(super) fn over(&self) -> bool {
        self.limit.is_some_and(|limit| self.spent >= limit)
    }

    /// What is left of it; `None` without a limit.
    pub(super) fn left(&self) -> Option<Duration> {
        self.limit.map(|limit| limit.saturating_sub(self.spent))
    }

    /// Charges one match to the budget; true when it ran the budget out.
    pub(super) fn charge(&mut self, index: usize, took: Duration) -> bool {
        self.spent += took;
        if self.over() && self.exhausted.is_none() {
            self.exhausted = Some(Exhausted { index, skipped: 0 });
            return true;
        }
        false
    }

    pub(super) fn skipped(&mut self, count: usize) {
        if let Some(exhausted) = &mut self.exhausted {
            exhausted.skipped += count;
        }
    }
}

/// A learned pattern that used up a tick's matching budget ([`TICK_BUDGET`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LearnedBudget {
    /// Its index in `learned-patterns.json`.
    pub index: usize,
    pub category: String,
    /// Regex and path matches left out after it on that tick (they kept their last
    /// answers).
    pub skipped: usize,
    /// The budget, in milliseconds.
    pub budget_ms: u64,
}
