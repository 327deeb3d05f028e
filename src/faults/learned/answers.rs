//! Each run's last answers to the learned patterns, kept for the patterns a tick's budget
//! leaves out: forgotten only with the run, and carried over to the set of a rewritten file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::LearnedSet;

impl LearnedSet {
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
    /// bound stays one answer per pattern per listed run.
    pub(super) fn carry_answers_from(&mut self, old: &LearnedSet) {
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
        answers.extend(old_answers.iter().map(|(run, last)| {
            let carried = from
                .iter()
                .map(|at| at.and_then(|at| last.get(at).copied()).unwrap_or(false))
                .collect();
            (run.clone(), carried)
        }));
    }
}
