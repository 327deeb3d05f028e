//! Two runs whose gstack safe run ids collide (`a_b` and `a/b` are both `a_b`) never share
//! a halt file: the second files under its own stem (`a_b~<16 hex>`), and `faults list`,
//! `doctor` and `faults ack` find both events.

use std::fs;
use std::path::{Path, PathBuf};

use berth::faults::halt_store::HaltStore;
use berth::faults::learned::LearnedSet;
use berth::faults::watch::watch_runs;
use berth::rules::Rules;
use serde_json::Value;

use crate::faults::fixture_path;
use crate::halt_files::state_dir_with_slug;
use crate::support::World;

/// `berth faults <args> --faults-dir <dir>`: its exit code, stdout and stderr.
pub(crate) fn faults_cli(
    world: &World,
    dir: &Path,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let out = world
        .berth()
        .arg("faults")
        .args(args)
        .arg("--faults-dir")
        .arg(dir)
        .output()
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

/// What `berth doctor` prints with the config file `config`.
pub(crate) fn doctor_stdout(world: &World, config: &Path) -> String {
    let doctor = world
        .berth()
        .env("BERTH_DIR", world.berth_state())
        .env("BERTH_CONFIG", config)
        .arg("doctor")
        .output()
        .unwrap();
    String::from_utf8(doctor.stdout).unwrap()
}

/// A build-state dir whose two state files raise one fault: `polis.json` of run `a_b` and
/// `z.json` (synced after it) of run `a/b`, both `a_b` as gstack's safe run id.
pub(crate) fn state_dir_of_colliding_runs(world: &World) -> PathBuf {
    let state_dir = state_dir_with_slug(world, "a_b");
    let mut other: Value = serde_json::from_slice(&fs::read(fixture_path()).unwrap()).unwrap();
    other["slug"] = Value::String("a/b".to_owned());
    fs::write(state_dir.join("z.json"), other.to_string()).unwrap();
    state_dir
}

#[test]
fn faults_list_doctor_and_ack_see_both_runs_of_one_safe_run_id() {
    const ID: &str = "PHASE_FAILED:all:1fe2d874";
    let world = World::new();
    let state_dir = state_dir_of_colliding_runs(&world);
    let halts = HaltStore::new(world.home.join(".gstack/skill-faults"));
    let rules = Rules::embedded().unwrap();
    let tick = watch_runs(&rules.current(), &state_dir, &halts, &LearnedSet::default());
    assert_eq!(tick.emitted.len(), 2, "{tick:?}");
    let pending = [halts.pending_path("a_b", ID), halts.pending_path("a/b", ID)];
    let names = pending
        .clone()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned());
    assert_eq!(names[0], format!("a_b-{ID}.json"));
    let own = names[1].strip_suffix(&format!("-{ID}.json")).unwrap();
    assert!(
        own.starts_with("a_b~") && own.len() == "a_b~".len() + 16,
        "{names:?}"
    );
    assert!(pending.iter().all(|p| p.exists()), "{pending:?}");

    let faults = |args: &[&str]| faults_cli(&world, halts.dir(), args);
    let runs_listed = |status: &str| {
        let (_, listing, _) = faults(&["list", "--json"]);
        let listing: Value = serde_json::from_str(&listing).unwrap();
        let runs: Vec<(&str, &str)> = listing["halts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["runId"].as_str().unwrap(), h["status"].as_str().unwrap()))
            .collect();
        assert_eq!(runs, [("a_b", status), ("a/b", status)], "{listing:#}");
    };
    runs_listed("pending");
    let doctor = doctor_stdout(&world, &world.git_forge_config(""));
    assert!(
        doctor
            .lines()
            .any(|l| l.starts_with("warn  halt events: 2 pending")
                && names.iter().all(|n| l.contains(n.as_str()))),
        "{doctor}"
    );

    let (code, _, err) = faults(&["ack", ID]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("several runs"), "{err}");
    let (code, out, err) = faults(&["ack", ID, "--run", "a/b"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let processed = halts.dir().join("processed");
    assert!(processed.join(&names[1]).exists() && !pending[1].exists());
    assert!(pending[0].exists(), "run a_b's event was moved for a/b");
    let (code, out, _) = faults(&["ack", ID, "--run", "a/b"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("already investigated"), "{out}");
    // Only a_b's is pending now: the ack needs no --run.
    let (code, out, err) = faults(&["ack", ID]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(processed.join(&names[0]).exists() && !pending[0].exists());
    runs_listed("investigated");
}
