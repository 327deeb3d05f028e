//! The learned-patterns world both benches measure (issue 9 §4): a 10,000-feature
//! orchestrator state (~2 MB), 10,000 learned patterns spread over the seven kinds, a
//! 2 MiB build log and a 2,000-section plan. Included by `faults.rs` and `tick.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use berth::faults::detect::{RunInput, detect_run};
use berth::faults::learned::LearnedSet;
use berth::rules::RuleSet;

pub const FEATURES: usize = 10_000;

/// A realistic state: most features committed and completed, some running, one in a
/// hundred hand-merged.
pub fn state_bytes() -> Vec<u8> {
    let features: Vec<Value> = (0..FEATURES)
        .map(|i| {
            let mut f = json!({
                "index": i,
                "number": (i + 1).to_string(),
                "name": format!("Feature {} of the generated bench plan", i + 1),
                "phaseIndexes": [i % 7, i % 7 + 1],
                "status": if i % 10 == 9 { "running" } else { "committed" },
                "branch": format!("feat/bench-{i}"),
            });
            if i % 10 != 9 {
                f["mergeSha"] = json!(format!("{:040x}", i * 7919 + 1));
                f["prNumber"] = json!(1000 + i);
                if i % 100 != 0 {
                    f["completedAt"] = json!("2026-05-17T08:37:01.000Z");
                }
            }
            f
        })
        .collect();
    let state = json!({
        "slug": "bench", "planFile": "/nonexistent/plan.md", "branch": "feat/bench",
        "phases": [{"index": 0, "status": "committed"}], "features": features,
        "completed": false,
    });
    serde_json::to_vec(&state).expect("state serializes")
}

/// As many as a learned file may hold beside the three that match the run (past
/// `MAX_PATTERNS` the rest of a file is skipped at load).
pub const LEARNED: usize = berth::faults::learned::MAX_PATTERNS - 3;

/// [`LEARNED`] patterns as investigators write them, spread evenly over the seven kinds: error
/// codes and messages for the texts, phase and top-level facts for the state, and one path
/// in a hundred a filter over every feature (each of those costs a scan of 10,000
/// features, ~0.15 ms). Three of them match the run.
pub fn learned_entries() -> Vec<Value> {
    (0..LEARNED)
        .map(|i| {
            let (kind, pattern) = match i % 7 {
                0 => ("stdout_contains", format!("E_WORKER_{i} crashed")),
                1 => ("stdout_regex", format!(r"ERR_[A-Z]+_{i}: \w+ failed after \d+ retries")),
                2 => ("failureReason_contains", format!("quota {i} exhausted")),
                3 => ("failureReason_regex", format!(r"^spec {i} (failed|timed out)")),
                4 => ("plan_contains", format!("<!-- blocker {i} -->")),
                5 => ("plan_regex", format!(r"## Feature {i}: .*\(blocked\)")),
                _ if i % 100 == 6 => (
                    "state_jsonpath",
                    format!("$.features[?(@.status == 'stuck-{i}' && @.prNumber)]"),
                ),
                _ => (
                    "state_jsonpath",
                    format!("$.phases[?(@.status == 'failed' && @.error == 'E{i}')]"),
                ),
            };
            json!({"category": format!("LEARNED_{i}"), "severity": "MEDIUM",
                   "description": format!("learned {i}"), "matcherKind": kind,
                   "pattern": pattern, "source": "bench", "hitCount": 0})
        })
        .chain([
            json!({"category": "NET_FLAKE", "severity": "MEDIUM", "description": "flake",
                   "matcherKind": "stdout_contains", "pattern": "ECONNRESET"}),
            json!({"category": "NET_RESET", "severity": "MEDIUM", "description": "reset",
                   "matcherKind": "stdout_regex", "pattern": "ECONN(?=RESET)"}),
            json!({"category": "STILL_RUNNING", "severity": "MEDIUM", "description": "running",
                   "matcherKind": "state_jsonpath", "pattern": "$.features[?(@.status == 'running')]"}),
        ])
        .collect()
}

/// A 2 MiB build log ending in a network error, and a plan of 2,000 feature sections.
pub fn run_texts(dir: &Path) -> (PathBuf, PathBuf) {
    let mut log = String::new();
    let mut i = 0;
    while log.len() < 2 * 1024 * 1024 {
        log.push_str(&format!(
            "[{i:>7}] compiling crate-{} v0.{}.0 (warnings: {})\n",
            i % 300,
            i % 17,
            i % 5
        ));
        i += 1;
    }
    log.push_str("npm ERR! code ECONNRESET\n");
    let plan: String = (1..=2000)
        .map(|n| format!("## Feature {n}: generated\nOrigin trace: x\nAcceptance: y\n- [x] done\n"))
        .collect();
    let (stdout, plan_path) = (dir.join("stdout.log"), dir.join("plan.md"));
    std::fs::write(&stdout, log).expect("log written");
    std::fs::write(&plan_path, plan).expect("plan written");
    (stdout, plan_path)
}

/// The learned pass alone: the median over `runs` of a detection run with `learned`
/// minus the same run without it.
pub fn learned_pass(set: &RuleSet, run: &RunInput, learned: &LearnedSet, runs: usize) -> Duration {
    let empty = LearnedSet::default();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(detect_run(set, run, &empty));
            let base = t.elapsed();
            let t = Instant::now();
            std::hint::black_box(detect_run(set, run, learned));
            t.elapsed().saturating_sub(base)
        })
        .collect();
    times.sort();
    times[runs / 2]
}

/// The patterns of [`learned_entries`] written to `dir` and loaded.
pub fn load_learned(dir: &Path) -> LearnedSet {
    let file = dir.join("learned-patterns.json");
    std::fs::write(&file, Value::Array(learned_entries()).to_string()).expect("patterns written");
    LearnedSet::load(&file).expect("patterns load")
}
