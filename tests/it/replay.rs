//! `berth rules replay` and `berth rules capture` over a history a real daemon recorded:
//! real repos, real landings, and a rule edit in the middle of the run.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use predicates::prelude::*;
use serde_json::Value;

use crate::support::World;

const SHIPPED_LANDING: &str = include_str!("../../policies/landing.rhai");
const GO: &str = "    #{ decision: \"go\", reason: \"no landing policy holds it back\" }";

/// A rules root of its own holding `landing` as its landing policy.
fn candidate(world: &World, name: &str, landing: &str) -> PathBuf {
    let root = world.root.join(name);
    fs::create_dir_all(root.join("policies")).unwrap();
    fs::write(root.join("policies/landing.rhai"), landing).unwrap();
    root
}

fn replay(world: &World, root: &Path) -> assert_cmd::assert::Assert {
    world
        .berth_daemon()
        .args(["rules", "replay", "--rules-root", root.to_str().unwrap()])
        .assert()
}

/// Lands PR 1 (widget, main), then edits the policy's wording (a new rule set that decides
/// the same), then lands PR 2 (gadget, release) and PR 3 (widget, main).
fn recorded_history(world: &World) {
    let widget = world.git_lane("widget", None);
    let gadget = world.git_lane("gadget", None);
    gadget.push_base("release");
    let config = world.git_forge_config("poll_secs = 1\n");
    world.write_rule("policies/landing.rhai", SHIPPED_LANDING);
    let mut daemon = world.spawn_watching(&config);
    let landed = |id: &str| {
        assert!(
            world.wait_for(Duration::from_secs(60), || world.read_record(id)["status"]
                == "landed"),
            "{id} did not land: {}",
            world.read_record(id)
        );
    };
    landed(&widget.queue(1, "main"));
    let reworded =
        SHIPPED_LANDING.replace("no landing policy holds it back", "nothing holds it back");
    assert_ne!(reworded, SHIPPED_LANDING);
    let seen = berth::rules::write_and_await(
        &world.rules_root(),
        &world.berth_state(),
        "policies/landing.rhai",
        &reworded,
        Duration::from_secs(20),
    )
    .unwrap();
    assert!(
        matches!(seen, berth::rules::ReloadSeen::Active(_)),
        "{seen:?}"
    );
    landed(&gadget.queue(2, "release"));
    landed(&widget.queue(3, "main"));
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(daemon.wait().unwrap().code(), Some(143));
}

#[test]
fn replay_finds_no_change_under_the_old_rules_and_exactly_the_held_prs_under_a_freeze() {
    let world = World::new();
    recorded_history(&world);
    let decisions = world.decisions();
    let rulesets: std::collections::BTreeSet<&str> = decisions
        .iter()
        .filter(|d| d["function"] == "admit")
        .filter_map(|d| d["ruleset"].as_str())
        .collect();
    assert_eq!(
        rulesets.len(),
        2,
        "the edit in the middle made a second rule set"
    );

    // The rule set the run started with decides every recorded question the same.
    let old = candidate(&world, "old-rules", SHIPPED_LANDING);
    replay(&world, &old)
        .success()
        .stdout(predicate::str::contains("0 not replayable"))
        .stdout(predicate::str::is_match(r"admit\s+3\s+0\s+0").unwrap())
        .stdout(predicate::str::is_match(r"order\s+3\s+0\s+0").unwrap());

    // A freeze of `main` would have held PRs 1 and 3, and nothing else.
    let freeze = SHIPPED_LANDING.replace(
        GO,
        "    if record.baseBranch == \"main\" {\n        \
         return #{ decision: \"wait\", reason: \"main is frozen\" };\n    }\n    \
         #{ decision: \"go\", reason: \"not frozen\" }",
    );
    assert_ne!(freeze, SHIPPED_LANDING);
    let frozen = candidate(&world, "freeze", &freeze);
    let out = world
        .berth_daemon()
        .args([
            "rules",
            "replay",
            "--json",
            "--rules-root",
            frozen.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["functions"]["admit"]["differ"], 2, "{doc:#}");
    assert_eq!(doc["functions"]["admit"]["same"], 1, "{doc:#}");
    let held: Vec<u64> = doc["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["recorded"]["decision"], "go");
            assert_eq!(d["candidate"]["decision"], "wait");
            assert_eq!(d["candidate"]["reason"], "main is frozen");
            d["pr"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(held, [1, 3]);
    // Held to the end of the history: how long is a lower bound.
    let waits: Vec<(u64, bool)> = doc["waits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["pr"].as_u64().unwrap(), w["candidateGo"].is_null()))
        .collect();
    assert_eq!(waits, [(1, true), (3, true)]);
    replay(&world, &frozen)
        .code(1)
        .stdout(predicate::str::contains("admit PR #1"))
        .stdout(predicate::str::contains("candidate: wait — main is frozen"))
        .stdout(predicate::str::contains("still held at the end"));
}

#[test]
fn a_captured_decision_is_a_rule_test_that_passes() {
    let world = World::new();
    recorded_history(&world);
    let root = candidate(&world, "captured", SHIPPED_LANDING);
    world
        .berth_daemon()
        .args(["rules", "capture", "2", "--into", root.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("to policies/landing.tests.json"));
    let cases: Vec<Value> = serde_json::from_str(
        &fs::read_to_string(root.join("policies/landing.tests.json")).unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = cases.iter().filter_map(|c| c["name"].as_str()).collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("captured: admit #2 → go")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("captured: on_land_result #2 → landed")),
        "{names:?}"
    );
    world
        .berth_daemon()
        .args(["rules", "test", root.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("captured: admit #2"));
    // Captured again: nothing is added twice.
    world
        .berth_daemon()
        .args(["rules", "capture", "2", "--into", root.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("added 0 case(s)"));
    // The captured case guards the behaviour: a policy that would block PR 2 fails it.
    let blocking = SHIPPED_LANDING.replace(GO, "    #{ decision: \"block\", reason: \"no\" }");
    fs::write(root.join("policies/landing.rhai"), blocking).unwrap();
    world
        .berth_daemon()
        .args(["rules", "test", root.to_str().unwrap()])
        .assert()
        .code(1);
}
