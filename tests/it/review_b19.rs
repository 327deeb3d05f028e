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
