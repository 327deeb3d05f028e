//! Two runs whose gstack safe run ids collide (`a_b` and `a/b` are both `a_b`) share
//! gstack's names: the second run's filing is held while the first's event is pending
//! there, said as a problem, and filed by the pass after it is acked; `faults list`,
//! `doctor` and `faults ack` tell the two runs' files apart by their whole run ids.

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
fn a_run_of_a_taken_safe_run_id_is_filed_once_the_other_runs_event_is_acked() {
    const ID: &str = "PHASE_FAILED:all:1fe2d874";
    let world = World::new();
    let state_dir = state_dir_of_colliding_runs(&world);
    let halts = HaltStore::new(world.home.join(".gstack/skill-faults"));
    let rules = Rules::embedded().unwrap();
    let tick = || watch_runs(&rules.current(), &state_dir, &halts, &LearnedSet::default());
    let first = tick();
    assert_eq!(first.emitted, [format!("a_b/{ID}")], "{first:?}");
    let held: Vec<&String> = first
        .problems
        .iter()
        .filter(|p| p.contains("held back"))
        .collect();
    assert_eq!(held.len(), 1, "{:?}", first.problems);
    assert!(
        held[0].contains("\"a/b\"") && held[0].contains("\"a_b\"'s"),
        "{held:?}"
    );
    let name = format!("a_b-{ID}.json");
    let pending = halts.dir().join("pending-investigations").join(&name);
    let processed = halts.dir().join("processed").join(&name);

    let faults = |args: &[&str]| faults_cli(&world, halts.dir(), args);
    let runs_listed = |expected: &[(&str, &str)]| {
        let (_, listing, _) = faults(&["list", "--json"]);
        let listing: Value = serde_json::from_str(&listing).unwrap();
        let mut runs: Vec<(String, String)> = listing["halts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["runId"].as_str().unwrap().to_owned(),
                    h["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        runs.sort();
        let mut expected: Vec<(String, String)> = expected
            .iter()
            .map(|&(r, s)| (r.to_owned(), s.to_owned()))
            .collect();
        expected.sort();
        assert_eq!(runs, expected, "{listing:#}");
    };
    runs_listed(&[("a_b", "pending")]);
    let doctor = doctor_stdout(&world, &world.git_forge_config(""));
    assert!(
        doctor
            .lines()
            .any(|l| l.starts_with("warn  halt events: 1 pending")
                && l.contains(&name)
                && l.contains("held filings (a name holds another run's event): 1 as of")
                && l.contains("\"a/b\"")),
        "a/b's raised fault, held, is not only a log line: {doctor}"
    );

    // a/b has no event to ack: a_b's, at the name, stays.
    let (code, out, err) = faults(&["ack", ID, "--run", "a/b"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("\"a_b\"'s"), "{err}");
    assert!(pending.exists() && !processed.exists());
    // A pass while it is pending files nothing over it.
    assert!(tick().emitted.is_empty());
    let (code, out, err) = faults(&["ack", ID]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(processed.exists() && !pending.exists());
    let (code, out, _) = faults(&["ack", ID, "--run", "a/b"]);
    assert_eq!(code, Some(2), "a_b's processed event is not a/b's: {out}");

    let filed = tick();
    assert_eq!(filed.emitted, [format!("a/b/{ID}")], "{filed:?}");
    assert!(
        !filed.problems.iter().any(|p| p.contains("held back")),
        "{filed:?}"
    );
    runs_listed(&[("a_b", "investigated"), ("a/b", "pending")]);
    let doctor = doctor_stdout(&world, &world.git_forge_config(""));
    assert!(!doctor.contains("held filings"), "{doctor}");
    let (code, out, err) = faults(&["ack", ID]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("of run a/b: moved"), "{out}");
}
