//! reviewb19: learned hit counts the daemon's fault watch loses where gstack keeps them.

use std::fs;

use berth::faults::halt_store::HaltStore;
use berth::faults::learned::LearnedSet;
use berth::faults::watch::watch_runs;
use berth::rules::Rules;
use serde_json::{Value, json};

use crate::faults::{fixture_path, hit_count};
use crate::support::World;

/// gstack's `persistHitCounts` counts every detector call that raised a fault; berth's
/// daemon counts "when a fault is newly raised" (docs/faults.md). A run whose pending
/// files reached the per-run cap (200) has its new fault held back, not filed, and so not
/// counted; if it clears before the cap frees, the hit is never counted: the learned
/// entry of its category keeps `hitCount` 0 where gstack's monitor would have made it 1.
#[test]
fn a_fault_held_back_by_the_pending_cap_still_counts_its_learned_hit() {
    let world = World::new();
    let state_dir = world.root.join("build-state");
    fs::create_dir_all(&state_dir).unwrap();
    fs::copy(fixture_path(), state_dir.join("polis.json")).unwrap();
    let faults = world.root.join("skill-faults");
    let pending = faults.join("pending-investigations");
    fs::create_dir_all(&pending).unwrap();
    for n in 0..200u32 {
        fs::write(
            pending.join(format!("polis-mesh-lane-b-OLD:p{n}:{n:08x}.json")),
            "{}",
        )
        .unwrap();
    }
    // A learned entry of the fixture's built-in category: gstack bumps it (its T14).
    let learned_path = faults.join("learned-patterns.json");
    let entry = json!({"category": "HAND_MERGED_FEATURE", "severity": "MEDIUM",
        "description": "kept", "matcherKind": "stdout_regex", "pattern": "^never-matches$",
        "source": "test", "learnedAt": "2026-05-17T00:00:00.000Z", "hitCount": 0});
    fs::write(&learned_path, json!([entry]).to_string()).unwrap();
    let learned = LearnedSet::load(&learned_path).unwrap();
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let halts = HaltStore::new(&faults);
    let raised = watch_runs(&set, &state_dir, &halts, &learned);
    assert!(raised.emitted.is_empty(), "{raised:?}");
    assert!(raised.withheld > 0, "{raised:?}");
    let mut state: Value =
        serde_json::from_slice(&fs::read(state_dir.join("polis.json")).unwrap()).unwrap();
    state["features"][0]["completedAt"] = json!("2026-05-17T09:00:00.000Z");
    fs::write(state_dir.join("polis.json"), state.to_string()).unwrap();
    let cleared = watch_runs(&set, &state_dir, &halts, &learned);
    assert_eq!(
        hit_count(&learned_path),
        1,
        "a detector call raised HAND_MERGED_FEATURE once; passes {raised:?} then {cleared:?}"
    );
}

/// 9ee2655 moved the fault watch into a round that starts beside the poll round, whose
/// queue detectors read the learned budget "the last finished watch round left". `berth
/// run --once` has one tick: its poll round reads the budget before its only watch round
/// (which spends its 1 s) has finished, so `--once` never files LEARNED_BUDGET_EXHAUSTED,
/// though the pass ran out of budget (the log says so) and the commit says `--once` "files
/// and lands as before".
#[test]
fn run_once_files_learned_budget_exhausted_when_its_pass_runs_out() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let config = world.git_forge_config("");
    let faults = crate::learned_budget::plant_slow_patterns(&world);
    lane.queue(1, "main");
    let out = world
        .berth_daemon()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let log = format!(
        "{}{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout),
        crate::support::berth_log(&world)
    );
    assert!(
        log.contains("all learned regexes may take in one tick"),
        "the pass did not run out of budget: {log}"
    );
    let filed = fs::read_dir(faults.join("pending-investigations"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| fs::read(e.path()).ok())
        .filter_map(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .filter(|event| {
            event["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("[LEARNED_BUDGET_EXHAUSTED] "))
        })
        .count();
    assert_eq!(filed, 1, "LEARNED_BUDGET_EXHAUSTED events after run --once");
}
