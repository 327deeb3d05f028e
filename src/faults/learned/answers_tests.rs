use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::LearnedSet;
use crate::faults::learned_match::{Budget, Texts};
use crate::faults::state_jsonpath::Document;

/// Past 1,024 runs a run's last answers are still kept, so a tick whose budget runs out
/// before a regex is reached does not clear that run's learned fault; a run whose state
/// file is gone is forgotten.
#[test]
fn a_budget_cut_keeps_each_runs_answer_however_many_runs_there_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("learned-patterns.json");
    let entry = json!([{"category": "BOOM", "severity": "HIGH", "description": "d",
        "matcherKind": "stdout_regex", "pattern": "bo+m", "source": "inv",
        "learnedAt": "2026-05-17T00:00:00Z", "hitCount": 0}]);
    std::fs::write(&path, entry.to_string()).unwrap();
    let set = LearnedSet::load(&path).unwrap();
    let texts = Texts {
        stdout: Some("boom"),
        plan: None,
        failure_reason: None,
    };
    let state = Document::new(json!({}));
    let runs: Vec<PathBuf> = (0..1100)
        .map(|n| dir.path().join(format!("run{n}.json")))
        .collect();
    for run in &runs {
        let matched = set.matching_within(Some(run), &texts, &state, &mut Budget::unlimited());
        assert_eq!(matched.len(), 1);
    }
    let spent = || Budget::of(Duration::ZERO);
    let cut = set.matching_within(Some(&runs[0]), &texts, &state, &mut spent());
    assert_eq!(cut.len(), 1, "the first run's answer was forgotten");
    let listed: HashSet<PathBuf> = runs[1..].iter().cloned().collect();
    set.keep_answers_of(dir.path(), &listed);
    let gone = set.matching_within(Some(&runs[0]), &texts, &state, &mut spent());
    assert!(gone.is_empty(), "a gone run's answer was kept");
}
