//! Each run's last answers to the learned patterns, kept for the patterns a tick's budget
//! leaves out: forgotten only with the run, and carried over to the set of a rewritten file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::LearnedSet;
use crate::faults::learned_match::{Budget, RunAnswers};

impl LearnedSet {
    /// `runs` (sorted) in the order this tick's passes take them: from where the last
    /// tick's budget said ([`Budget::next_tick_starts`]).
    pub fn order_runs(&self, runs: &mut [PathBuf]) {
        let next_tick = self.next_tick.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(order) = &*next_tick {
            order.apply(runs);
        }
    }

    /// Keeps where the next tick's passes start, from the tick `budget` was spent on.
    pub fn end_tick(&self, budget: &Budget) {
        *self.next_tick.lock().unwrap_or_else(|e| e.into_inner()) = budget.next_tick_starts();
    }

    /// Forgets the last answers of every run of `dir` not in `runs` (its state file gone).
    /// Those of a run still there are never forgotten: a run would start again from "no
    /// match" for the patterns a budget leaves out, and clear its learned faults.
    pub fn keep_answers_of(&self, dir: &Path, runs: &HashSet<PathBuf>) {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers.retain(|run, _| run.parent() != Some(dir) || runs.contains(run));
    }

    /// Takes over `old`'s answers for the patterns this set still has. A rewrite of the
    /// file (gstack's hit counts, on every hit) makes a new set; starting it from "no
    /// match" would let the next budget cut clear a listed run's learned faults. A pattern
    /// is the same one when its matcher kind and pattern are: they alone make the answer
    /// (category and severity only name the fault it files). A pattern that is new starts
    /// from "no match"; one gone takes its answers with it. The runs are `old`'s, so the
    /// bound stays one answer per pattern per listed run. Where each run's next pass
    /// starts is carried to the same pattern (the first when it is gone), and where the
    /// next tick starts among the runs as it is.
    pub(super) fn carry_answers_from(&mut self, old: &LearnedSet) {
        let old_next_tick = old.next_tick.lock().unwrap_or_else(|e| e.into_inner());
        *self.next_tick.get_mut().unwrap_or_else(|e| e.into_inner()) = old_next_tick.clone();
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
