//! Each run's last answers to the learned patterns, kept for the patterns a tick's budget
//! leaves out: forgotten only with the run, and carried over to the set of a rewritten file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::LearnedSet;
use crate::faults::learned_match::{Budget, RunAnswers};

/// The order runs take their turns at a tick's first match (which always has the whole
/// tick, so the pattern a run's next pass starts at answers however slow the runs before
/// it): longest waiting first. A run waits from when it was first listed or last had a
/// tick's first match, so a new run joins at the back and the run just served goes there.
#[derive(Debug, Default)]
pub(super) struct Turns {
    /// Each listed run's place: the count of turns given out when it started waiting.
    waiting_since: HashMap<PathBuf, u64>,
    given: u64,
}

impl Turns {
    fn join(&mut self, run: &Path) {
        if !self.waiting_since.contains_key(run) {
            self.given += 1;
            self.waiting_since.insert(run.to_owned(), self.given);
        }
    }
}

impl LearnedSet {
    /// `runs` (sorted) in the order this tick's passes take them: the run that has waited
    /// longest for a tick's first match first, runs not seen before at the back (in name
    /// order among them).
    pub fn order_runs(&self, runs: &mut [PathBuf]) {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        for run in runs.iter() {
            turns.join(run);
        }
        // One lookup a run, not one a comparison: the fault watch lists every state file
        // each tick, up to 10,000.
        runs.sort_by_cached_key(|run| turns.waiting_since.get(run).copied());
    }

    /// Sends the run that had the first match of the tick `budget` was spent on to the back
    /// of the turns.
    pub fn end_tick(&self, budget: &Budget) {
        let Some(served) = budget.first_run() else {
            return;
        };
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        turns.waiting_since.remove(served);
        turns.join(served);
    }

    /// Forgets the last answers of every run of `dir` not in `runs` (its state file gone).
    /// Those of a run still there are never forgotten: a run would start again from "no
    /// match" for the patterns a budget leaves out, and clear its learned faults.
    pub fn keep_answers_of(&self, dir: &Path, runs: &HashSet<PathBuf>) {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers.retain(|run, _| run.parent() != Some(dir) || runs.contains(run));
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        turns
            .waiting_since
            .retain(|run, _| run.parent() != Some(dir) || runs.contains(run));
    }

    /// Takes over `old`'s answers for the patterns this set still has. A rewrite of the
    /// file (gstack's hit counts, on every hit) makes a new set; starting it from "no
    /// match" would let the next budget cut clear a listed run's learned faults. A pattern
    /// is the same one when its matcher kind and pattern are: they alone make the answer
    /// (category and severity only name the fault it files). A pattern that is new starts
    /// from "no match"; one gone takes its answers with it. The runs are `old`'s, so the
    /// bound stays one answer per pattern per listed run. Where each run's next pass
    /// starts is carried to the same pattern (the first when it is gone), and the runs'
    /// turns as they are.
    pub(super) fn carry_answers_from(&mut self, old: &LearnedSet) {
        let old_turns = old.turns.lock().unwrap_or_else(|e| e.into_inner());
        let turns = self.turns.get_mut().unwrap_or_else(|e| e.into_inner());
        turns.waiting_since.clone_from(&old_turns.waiting_since);
        turns.given = old_turns.given;
        drop(old_turns);
        let position: HashMap<(&str, &str), usize> = old
            .patterns
            .iter()
            .enumerate()
            .map(|(at, p)| ((p.matcher_kind.as_str(), p.pattern.as_str()), at))
            .collect();
        let from: Vec<Option<usize>> = self
            .patterns
            .iter()
            .map(|p| {
                position
                    .get(&(p.matcher_kind.as_str(), p.pattern.as_str()))
                    .copied()
            })
            .collect();
        if from.iter().all(Option::is_none) {
            return;
        }
        let old_answers = old.answers.lock().unwrap_or_else(|e| e.into_inner());
        let answers = self.answers.get_mut().unwrap_or_else(|e| e.into_inner());
        let compiled = &self.compiled;
        answers.extend(old_answers.iter().map(|(run, last)| {
            let hit = from
                .iter()
                .map(|at| at.and_then(|at| last.hit.get(at).copied()).unwrap_or(false))
                .collect();
            let next_pattern = old.compiled.pattern_at_turn(last.next);
            let next = from
                .iter()
                .position(|at| at.is_some() && *at == next_pattern)
                .and_then(|index| compiled.turn_of(index))
                .unwrap_or(0);
            (run.clone(), RunAnswers { hit, next })
        }));
    }
}
