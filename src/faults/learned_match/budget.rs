//! The time the learned regexes of one tick have left, and the worker their backtracking
//! matches run on for that tick.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::TICK_BUDGET;
use super::worker::{WORKER_MEMORY_BYTES, Worker};

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
    /// The patterns whose match was stopped at its deadline (the worker killed), each once.
    pub killed: Vec<usize>,
    pub worker: Worker,
    /// The run (its state file) whose pass had the first match.
    first_run: Option<PathBuf>,
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
            killed: Vec::new(),
            worker: Worker::default(),
            first_run: None,
        }
    }

    /// Runs `pass`, one run's budgeted matching, noting `run` (its state file) when the
    /// pass had the first match.
    pub fn pass_on<T>(&mut self, run: &Path, pass: impl FnOnce(&mut Budget) -> T) -> T {
        let untouched = self.untouched();
        let answer = pass(self);
        if untouched && !self.untouched() {
            self.first_run = Some(run.to_owned());
        }
        answer
    }

    /// The run whose pass had this budget's first match, if one did.
    pub fn first_run(&self) -> Option<&Path> {
        self.first_run.as_deref()
    }

    /// Notes that the worker died of pattern `index`'s match.
    pub(super) fn died_of(&mut self, index: usize) {
        note_once(&mut self.died, index);
    }

    /// Notes that pattern `index`'s match was stopped at its deadline.
    pub(super) fn killed_at(&mut self, index: usize) {
        note_once(&mut self.killed, index);
    }

    /// Whether nothing has been charged to it yet.
    pub(super) fn untouched(&self) -> bool {
        self.spent.is_zero() && self.exhausted.is_none()
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

/// Why a learned pattern had no answer of its own on a pass: it does not match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// Its worker died of the match (past [`WORKER_MEMORY_BYTES`]).
    Died,
    /// Its match ran past its deadline and the worker was killed.
    Killed,
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswered::Died => write!(
                f,
                "one match needed more than the {WORKER_MEMORY_BYTES} bytes a backtracking match may hold (its worker died of it)"
            ),
            Unanswered::Killed => write!(
                f,
                "one match ran past its {} ms (its worker was killed)",
                TICK_BUDGET.as_millis()
            ),
        }
    }
}

impl Budget {
    /// The patterns (positions among the set's) that had no answer of their own, and why.
    pub fn unanswered(&self) -> impl Iterator<Item = (usize, Unanswered)> + '_ {
        let died = self.died.iter().map(|&at| (at, Unanswered::Died));
        died.chain(self.killed.iter().map(|&at| (at, Unanswered::Killed)))
    }
}

fn note_once(indices: &mut Vec<usize>, index: usize) {
    if !indices.contains(&index) {
        indices.push(index);
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
