//! Faults: detectors as rules, learned patterns with hit counting across processes, halt
//! events as the daemon writes them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth::faults::detect::{RunInput, detect_run};
use berth::faults::halt::{Scope, fault_id};
use berth::faults::halt_store::HaltStore;
use berth::faults::learned::LearnedSet;
use berth::faults::state_jsonpath;
use berth::faults::watch::watch_runs;
use berth::rules::Rules;
use predicates::prelude::PredicateBooleanExt as _;
use serde_json::{Value, json};

use crate::support::World;

const FIXTURE: &str = "fixtures/hand-merged-feature-state.json";
const HAND_MERGED: &str =
    "Feature 1 carries mergeSha+prNumber but completedAt is missing. Likely a hand-merged PR.";

pub(crate) fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)
}

pub(crate) fn learned_file(dir: &Path, category: &str, pattern: &str) -> PathBuf {
    let path = dir.join("learned-patterns.json");
    let entries = json!([{
        "category": category, "severity": "MEDIUM", "description": "feature still committed",
        "matcherKind": "state_jsonpath", "pattern": pattern, "source": "test",
        "learnedAt": "2026-05-17T00:00:00.000Z", "hitCount": 0, "investigator": "kept"
    }]);
    fs::write(&path, serde_json::to_string_pretty(&entries).unwrap()).unwrap();
    path
}

/// `berth detect --json <args>` on a state with faults (exit 1), its faults parsed.
fn detect_json(world: &World, args: &[&std::ffi::OsStr]) -> Value {
    let out = world
        .berth()
        .args(["detect", "--json"])
        .args(args)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

/// `berth detect --json` on the fixture with a learned file and a stdout log.
fn detect_with_stdout(world: &World, learned: &Path, stdout: &Path) -> Value {
    let fixture = fixture_path();
    let args = [
        "--learned".as_ref(),
        learned.as_os_str(),
        "--stdout".as_ref(),
    ];
    detect_json(
        world,
        &[&args[..], &[stdout.as_os_str(), fixture.as_os_str()]].concat(),
    )
}

/// Marks the first feature of the fixture's state `polis.json` in `state_dir` completed:
/// its HAND_MERGED_FEATURE fault clears.
pub(crate) fn clear_hand_merge(state_dir: &Path) {
    let mut state: Value =
        serde_json::from_slice(&fs::read(state_dir.join("polis.json")).unwrap()).unwrap();
    state["features"][0]["completedAt"] = json!("2026-05-17T09:00:00.000Z");
    fs::write(state_dir.join("polis.json"), state.to_string()).unwrap();
}

pub(crate) fn hit_count(path: &Path) -> u64 {
    let entries: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    entries[0]["hitCount"].as_u64().unwrap()
}

#[test]
fn the_fixture_gives_exactly_the_hand_merged_fault() {
    let world = World::new();
    let faults = detect_json(&world, &[fixture_path().as_os_str()]);
    assert_eq!(faults.as_array().unwrap().len(), 1, "{faults:#}");
    let fault = &faults[0];
    assert_eq!(fault["category"], "HAND_MERGED_FEATURE");
    assert_eq!(fault["severity"], "HIGH");
    assert_eq!(fault["description"], HAND_MERGED);
    assert_eq!(fault["sourceFiles"], json!([]));
    assert_eq!(fault["evidence"], json!({}));
    let keys: Vec<&str> = fault
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "category",
            "severity",
            "description",
            "sourceFiles",
            "evidence"
        ]
    );
}

#[test]
fn a_clean_state_exits_zero_and_a_broken_one_two() {
    let world = World::new();
    let clean = world.root.join("clean.json");
    fs::write(
        &clean,
        r#"{"features": [{"status": "committed", "completedAt": "x"}]}"#,
    )
    .unwrap();
    world.berth().arg("detect").arg(&clean).assert().code(0);
    let broken = world.root.join("broken.json");
    fs::write(&broken, "{ nope").unwrap();
    let out = world.berth().arg("detect").arg(&broken).assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("broken.json") && stderr.contains("not valid JSON"),
        "{stderr}"
    );
}

#[test]
fn halt_ids_match_gstack() {
    assert_eq!(
        fault_id("PHASE_FAILED", &Scope::All, "phase 2 spec-flip failed"),
        "PHASE_FAILED:all:1bb478f0"
    );
}

#[test]
fn every_jsonpath_case_of_the_fixture() {
    let text = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jsonpath-cases.json"),
    )
    .unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let doc = &fixture["document"];
    for case in fixture["cases"].as_array().unwrap() {
        let path = case["path"].as_str().unwrap();
        let got: Vec<Value> = state_jsonpath(doc, path)
            .into_iter()
            .map(std::borrow::Cow::into_owned)
            .collect();
        let expect = match &case["expect"] {
            Value::String(s) if s == "document" => vec![doc.clone()],
            other => other.as_array().unwrap().clone(),
        };
        assert_eq!(got, expect, "{path} ({})", case["note"]);
    }
}

fn state_dir_with_fixture(world: &World) -> PathBuf {
    let dir = world.root.join("build-state");
    fs::create_dir_all(dir.join("release-queue")).unwrap();
    fs::copy(fixture_path(), dir.join("polis.json")).unwrap();
    fs::write(dir.join("plan-review-report.json"), r#"{"round": 1}"#).unwrap();
    dir
}

#[test]
fn ticks_emit_new_faults_once_and_resolve_cleared_ones_once() {
    let world = World::new();
    let state_dir = state_dir_with_fixture(&world);
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let learned = LearnedSet::default();

    let first = watch_runs(&set, &state_dir, &halts, &learned);
    assert_eq!(first.runs, 1);
    assert_eq!(
        first.emitted,
        ["polis-mesh-lane-b/PHASE_FAILED:all:1fe2d874"]
    );
    assert!(first.problems.is_empty(), "{:?}", first.problems);
    let pending = halts.pending_path("polis-mesh-lane-b", "PHASE_FAILED:all:1fe2d874");
    assert!(
        pending
            .ends_with("pending-investigations/polis-mesh-lane-b-PHASE_FAILED:all:1fe2d874.json")
    );
    let event: Value = serde_json::from_slice(&fs::read(&pending).unwrap()).unwrap();
    let state_file = state_dir.join("polis.json").display().to_string();
    assert_eq!(
        event,
        json!({
            "faultId": "PHASE_FAILED:all:1fe2d874",
            "runId": "polis-mesh-lane-b",
            "stateSlug": "polis",
            "kind": "PHASE_FAILED",
            "severity": "HIGH",
            "timestamp": event["timestamp"],
            "message": format!("[HAND_MERGED_FEATURE] {HAND_MERGED}"),
            "pointers": {"stateFile": state_file, "stdoutLog": "", "livingPlan": "", "worktreePath": ""},
            "snapshot": {"stdoutTail": ""}
        })
    );
    assert!(berth::clock::parse_iso(event["timestamp"].as_str().unwrap()).is_some());
    let written = fs::read(&pending).unwrap();

    let second = watch_runs(&set, &state_dir, &halts, &learned);
    assert!(
        second.emitted.is_empty() && second.resolved.is_empty(),
        "{second:?}"
    );
    assert_eq!(fs::read(&pending).unwrap(), written);

    clear_hand_merge(&state_dir);
    let cleared = watch_runs(&set, &state_dir, &halts, &learned);
    assert_eq!(
        cleared.resolved,
        ["polis-mesh-lane-b/PHASE_FAILED:all:1fe2d874"]
    );
    let again = watch_runs(&set, &state_dir, &halts, &learned);
    assert!(
        again.resolved.is_empty() && again.emitted.is_empty(),
        "{again:?}"
    );
    let marker_path = halts.resolved_path("polis-mesh-lane-b", "PHASE_FAILED:all:1fe2d874");
    assert!(marker_path.ends_with(
        "pending-investigations/polis-mesh-lane-b-RESOLVED-PHASE_FAILED:all:1fe2d874.json"
    ));
    let marker: Value = serde_json::from_slice(&fs::read(&marker_path).unwrap()).unwrap();
    assert_eq!(
        marker,
        json!({"event": "SKILL_FAULT_RESOLVED", "timestamp": marker["timestamp"],
               "runId": "polis-mesh-lane-b", "faultId": "PHASE_FAILED:all:1fe2d874"})
    );

    let listing = world
        .berth()
        .args(["faults", "list", "--json", "--faults-dir"])
        .arg(halts.dir())
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let listing: Value = serde_json::from_slice(&listing).unwrap();
    assert_eq!(listing["halts"][0]["status"], "resolved", "{listing:#}");
}

#[test]
fn the_daemon_tick_writes_halt_events_for_runs_and_the_queue() {
    let world = World::new();
    let build_state = world.home.join(".gstack/build-state");
    fs::copy(fixture_path(), build_state.join("polis.json")).unwrap();
    fs::write(world.queue.join("torn.json"), "{ not a record").unwrap();
    let code = world
        .berth_daemon()
        .args(["run", "--once", "--forge", "git"])
        .output()
        .unwrap()
        .status
        .code();
    assert!(matches!(code, Some(0 | 1)), "{code:?}");
    let pending = world
        .home
        .join(".gstack/skill-faults/pending-investigations");
    let mut names: Vec<String> = fs::read_dir(&pending)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("berth-release-queue-PHASE_FAILED:all:"))
    );
    assert!(names.contains(&"polis-mesh-lane-b-PHASE_FAILED:all:1fe2d874.json".to_owned()));
    let queue_event = names
        .iter()
        .find(|n| n.starts_with("berth-release-queue"))
        .unwrap();
    let event: Value =
        serde_json::from_slice(&fs::read(pending.join(queue_event)).unwrap()).unwrap();
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .starts_with("[UNREADABLE_RECORD] "),
        "{event:#}"
    );
    assert_eq!(
        event["pointers"]["stateFile"],
        world.queue.display().to_string()
    );
    assert_eq!(
        fs::read(world.queue.join("torn.json")).unwrap(),
        b"{ not a record"
    );
}

/// Real processes: 4 concurrent workers, each running `berth detect --learned` 50 times.
/// No hit is lost to a race: every run either counts its hit or says it gave up on the lock.
#[test]
fn concurrent_processes_count_every_hit() {
    let world = World::new();
    let learned = learned_file(
        &world.root,
        "STILL_COMMITTED",
        "$.features[?(@.status == 'committed')]",
    );
    let bin = assert_cmd::cargo::cargo_bin("berth");
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (bin, learned, home) = (bin.clone(), learned.clone(), world.home.clone());
            std::thread::spawn(move || {
                let mut gave_up = 0;
                for _ in 0..50 {
                    let out = Command::new(&bin)
                        .args(["detect", "--json", "--learned"])
                        .arg(&learned)
                        .arg(fixture_path())
                        .env("HOME", &home)
                        .env_remove("BERTH_RULES_ROOT")
                        .output()
                        .unwrap();
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    assert_eq!(out.status.code(), Some(1), "{stderr}");
                    let faults: Value = serde_json::from_slice(&out.stdout).unwrap();
                    assert_eq!(
                        faults[1]["description"],
                        "[learned] feature still committed"
                    );
                    // Waiting past the 5 s lock wait drops the hit, as gstack's writers do;
                    // only a loaded machine makes four short writers wait that long.
                    if stderr.contains("learned-pattern hits not counted")
                        && stderr.contains("gave up")
                    {
                        gave_up += 1;
                    }
                }
                gave_up
            })
        })
        .collect();
    let gave_up: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(gave_up < 20, "{gave_up} of 200 runs gave up on the lock");
    assert_eq!(hit_count(&learned), 200 - gave_up);
    let entries: Value = serde_json::from_slice(&fs::read(&learned).unwrap()).unwrap();
    assert_eq!(entries[0]["investigator"], "kept");
    assert!(entries[0]["lastHit"].is_string());
}

#[test]
fn a_stale_lock_from_a_dead_process_does_not_stop_counting() {
    let world = World::new();
    let learned = learned_file(&world.root, "STILL_COMMITTED", "$.features[*]");
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let lock = world.root.join("learned-patterns.json.lock");
    // gstack's format: the bare pid.
    fs::write(&lock, dead.to_string()).unwrap();
    world
        .berth()
        .args(["detect", "--learned"])
        .arg(&learned)
        .arg(fixture_path())
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .code(1);
    assert_eq!(hit_count(&learned), 1);
    assert!(
        !lock.exists(),
        "the stale lock was broken and ours released"
    );
}

/// gstack's T14: the built-in fault suppresses the learned one of its category, and the
/// learned entry's hit is still counted.
#[test]
fn a_learned_category_a_built_in_detector_raised_is_skipped_and_counted() {
    let world = World::new();
    let learned = learned_file(&world.root, "HAND_MERGED_FEATURE", "$.features[*]");
    let fixture = fixture_path();
    let faults = detect_json(
        &world,
        &[
            "--learned".as_ref(),
            learned.as_os_str(),
            fixture.as_os_str(),
        ],
    );
    assert_eq!(faults.as_array().unwrap().len(), 1);
    assert_eq!(faults[0]["description"], HAND_MERGED);
    assert_eq!(hit_count(&learned), 1);
}

#[test]
fn investigators_propose_promote_and_reject() {
    let world = World::new();
    let learned = world.root.join("sf/learned-patterns.json");
    let patterns = |args: &[&str]| {
        let mut cmd = world.berth();
        cmd.arg("patterns")
            .arg("--learned")
            .arg(&learned)
            .args(args);
        cmd
    };
    patterns(&[
        "propose",
        "--category",
        "NET_FLAKE",
        "--severity",
        "MEDIUM",
        "--kind",
        "stdout_contains",
        "--pattern",
        "ECONNRESET",
        "--description",
        "network flake",
    ])
    .assert()
    .code(0);
    let dup = patterns(&[
        "propose",
        "--category",
        "OTHER",
        "--severity",
        "HIGH",
        "--kind",
        "stdout_contains",
        "--pattern",
        "ECONNRESET",
        "--description",
        "same pattern",
    ])
    .assert()
    .code(2);
    assert!(String::from_utf8_lossy(&dup.get_output().stderr).contains("duplicates"));
    patterns(&[
        "propose",
        "--category",
        "NOISE",
        "--severity",
        "HIGH",
        "--kind",
        "plan_regex",
        "--pattern",
        "TODO",
        "--description",
        "noise",
    ])
    .assert()
    .code(0);
    patterns(&["promote", "NET_FLAKE"]).assert().code(0);
    patterns(&["reject", "NOISE", "--reason", "matches every plan"])
        .assert()
        .code(0);
    let listed = patterns(&["list", "--json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let listed: Value = serde_json::from_slice(&listed).unwrap();
    assert_eq!(listed["learned"][0]["category"], "NET_FLAKE");
    assert_eq!(listed["pending"], json!([]));
    let rejected = fs::read_to_string(world.root.join("sf/rejected-patterns.jsonl")).unwrap();
    assert!(
        rejected.contains("\"reason\":\"matches every plan\""),
        "{rejected}"
    );

    // The promoted pattern works: a stdout log with the text raises it.
    let stdout = world.root.join("out.log");
    fs::write(&stdout, "npm ERR! ECONNRESET\n").unwrap();
    let faults = detect_with_stdout(&world, &learned, &stdout);
    assert_eq!(faults[1]["category"], "NET_FLAKE");
    assert_eq!(faults[1]["description"], "[learned] network flake");
}

/// A planted registry key must never become a path: berth used to resolve every key that
/// did not fire, writing `resolved/<run>-<key>.json` wherever the key pointed.
#[test]
fn a_planted_registry_key_never_writes_outside_the_halt_dir() {
    let world = World::new();
    let repo = world.repo("w", "git@github.com:acme/w.git");
    let id = world
        .record(&repo, 5)
        .set("status", "landed")
        .set("lastGithubState", "MERGED")
        .write();
    let before = fs::read(world.queue.join(format!("{id}.json"))).unwrap();
    let halts = world.home.join(".gstack/skill-faults");
    fs::create_dir_all(halts.join("active-faults")).unwrap();
    fs::create_dir_all(halts.join("pending-investigations/berth-release-queue-RESOLVED-x"))
        .unwrap();
    let key = format!("x/../../../build-state/release-queue/{id}");
    let queue_dir = world.queue.display().to_string();
    let registry = json!({
        "runId": "berth-release-queue",
        "source": queue_dir,
        "updatedAt": "2026-11-24T00:00:00.000Z",
        "active": { "X:all:*": {"faultId": key, "firstDetectedAt": "2026-11-24T00:00:00.000Z"} }
    });
    let registry_path = berth::faults::registry::path(
        &halts.join("active-faults"),
        "berth-release-queue",
        &queue_dir,
    );
    fs::write(&registry_path, registry.to_string()).unwrap();
    let config = world.config("forge = \"git\"\nland_command = [\"true\"]\n");
    world.run_once(&config).success();
    assert_eq!(
        fs::read(world.queue.join(format!("{id}.json"))).unwrap(),
        before,
        "a queue record was overwritten"
    );
    let aside = fs::read_dir(halts.join("active-faults"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains(".unreadable-"));
    assert!(aside, "the planted registry was not moved aside");
}

/// A state file names its plan and stdout log; a FIFO there must not hang detection.
#[test]
fn a_fifo_named_by_a_state_file_does_not_hang_detection() {
    let world = World::new();
    let fifo = world.root.join("stdout.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut state: Value =
        serde_json::from_str(&fs::read_to_string(fixture_path()).unwrap()).unwrap();
    state["stdoutLog"] = json!(fifo.to_str().unwrap());
    state["planFile"] = json!(fifo.to_str().unwrap());
    let path = world.root.join("state.json");
    fs::write(&path, state.to_string()).unwrap();
    world
        .berth()
        .args(["detect", "--json"])
        .arg(&path)
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .code(1)
        .stdout(predicates::str::contains("HAND_MERGED_FEATURE"));
}

/// Loading as gstack's loader does: a lookahead regex, a lower-case category and a
/// duplicate category are kept and fire; a regex against a missing stdout log tests "".
#[test]
fn learned_patterns_load_and_fire_as_in_gstack() {
    let world = World::new();
    let stdout = world.root.join("out.log");
    fs::write(&stdout, "npm ERR! code ECONNRESET\n").unwrap();
    let learned = world.root.join("learned-patterns.json");
    let entry = |category: &str, kind: &str, pattern: &str| {
        json!({"category": category, "severity": "MEDIUM", "description": category,
               "matcherKind": kind, "pattern": pattern, "hitCount": 0})
    };
    let entries = json!([
        entry("NET_RESET", "stdout_regex", "ECONN(?=RESET)"),
        entry("net_lower", "stdout_contains", "ECONNRESET"),
        entry("NET_RESET", "stdout_contains", "npm ERR!"),
        entry("NO_REASON", "failureReason_regex", "^$"),
        entry("NOT_HERE", "stdout_contains", "EPIPE"),
    ]);
    fs::write(&learned, entries.to_string()).unwrap();
    let faults = detect_with_stdout(&world, &learned, &stdout);
    let fired: Vec<(&str, &str)> = faults
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["category"].as_str().unwrap(),
                f["description"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        fired,
        [
            ("HAND_MERGED_FEATURE", HAND_MERGED),
            ("NET_RESET", "[learned] NET_RESET"),
            ("net_lower", "[learned] net_lower"),
            ("NET_RESET", "[learned] NET_RESET"),
            ("NO_REASON", "[learned] NO_REASON"),
        ]
    );
    assert_eq!(faults[1]["sourceFiles"], json!([]));
    assert_eq!(faults[1]["evidence"], json!({}));
    let after: Value = serde_json::from_slice(&fs::read(&learned).unwrap()).unwrap();
    let counts: Vec<u64> = (0..5)
        .map(|i| after[i]["hitCount"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [1, 1, 1, 1, 0], "once per entry per call");
}

/// Runs `berth detect --learned <learned>` on the fixture, failing if it takes 20 s (on a
/// berth that opens the lock or pattern file plainly, it would hang for ever).
fn detect_within_timeout(world: &World, learned: &Path) -> std::process::Output {
    world
        .berth()
        .args(["detect", "--learned"])
        .arg(learned)
        .arg(fixture_path())
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .unwrap()
}

/// `berth detect` over `learned` ends in time with exit `code`, its stderr naming each
/// of `said`.
fn detect_refuses(world: &World, learned: &Path, code: i32, said: &[&str]) {
    let out = detect_within_timeout(world, learned);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(said.iter().all(|s| stderr.contains(s)), "{stderr}");
}

/// issue 10 item 4: a FIFO planted at the hit-count lock hung `berth detect`; a link to
/// /dev/zero there was read until memory ran out. Both are refused, naming the file, and
/// detection still reports its faults.
#[test]
fn a_fifo_or_a_dev_zero_link_at_the_lock_is_refused_without_hanging() {
    let world = World::new();
    let learned = learned_file(&world.root, "STILL_COMMITTED", "$.features[*]");
    let lock = world.root.join("learned-patterns.json.lock");
    nix::unistd::mkfifo(&lock, nix::sys::stat::Mode::S_IRWXU).unwrap();
    detect_refuses(
        &world,
        &learned,
        1,
        &["learned-patterns.json.lock", "a FIFO"],
    );
    assert_eq!(hit_count(&learned), 0);

    fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &lock).unwrap();
    detect_refuses(
        &world,
        &learned,
        1,
        &["learned-patterns.json.lock", "symbolic link"],
    );
}

/// The same at the patterns file itself: refused with an error naming it.
#[test]
fn a_fifo_or_a_dev_zero_link_as_the_patterns_file_is_refused_without_hanging() {
    let world = World::new();
    let learned = world.root.join("learned-patterns.json");
    nix::unistd::mkfifo(&learned, nix::sys::stat::Mode::S_IRWXU).unwrap();
    detect_refuses(&world, &learned, 2, &["learned-patterns.json", "a FIFO"]);
    fs::remove_file(&learned).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &learned).unwrap();
    detect_refuses(&world, &learned, 2, &["symbolic link"]);
}

/// The daemon's pass over the build-state dir with a FIFO at the lock: the tick finishes
/// (in a thread given 20 s) and the fault is still emitted.
#[test]
fn a_fifo_at_the_lock_does_not_hang_the_tick() {
    let world = World::new();
    let state_dir = state_dir_with_fixture(&world);
    let faults_dir = world.root.join("skill-faults");
    fs::create_dir_all(&faults_dir).unwrap();
    let learned = learned_file(&faults_dir, "STILL_COMMITTED", "$.features[*]");
    nix::unistd::mkfifo(
        &faults_dir.join("learned-patterns.json.lock"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rules = Rules::embedded().unwrap();
        let set = LearnedSet::load(&learned).unwrap();
        let report = watch_runs(
            &rules.current(),
            &state_dir,
            &HaltStore::new(&faults_dir),
            &set,
        );
        done.send(report).unwrap();
    });
    let report = finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the tick finished");
    assert_eq!(report.emitted.len(), 2, "{report:?}");
}

/// Parsed, a state costs up to ~110x its size: past 4 MiB it is refused unread.
#[test]
fn a_state_over_the_cap_is_refused_naming_the_limit() {
    let world = World::new();
    let path = world.root.join("huge.json");
    let items = vec!["[0]"; (4 * 1024 * 1024) / 4 + 1].join(",");
    fs::write(&path, format!("{{\"features\":[{items}]}}")).unwrap();
    world
        .berth()
        .arg("detect")
        .arg(&path)
        .assert()
        .code(2)
        .stderr(
            predicates::str::contains("huge.json")
                .and(predicates::str::contains("over the 4194304-byte limit")),
        );
}

/// A state dir holding `state` as `run.json`, plus `files` (name → text) beside it; the
/// state's `planFile`/`stdoutLog` name those files when `plan.md`/`out.log` are given.
fn run_dir(world: &World, name: &str, mut state: Value, files: &[(&str, &str)]) -> PathBuf {
    let dir = world.root.join(name);
    fs::create_dir_all(&dir).unwrap();
    for (file, text) in files {
        fs::write(dir.join(file), text).unwrap();
        let field = match *file {
            "plan.md" => "planFile",
            "out.log" => "stdoutLog",
            _ => continue,
        };
        state[field] = json!(dir.join(file).display().to_string());
    }
    fs::write(dir.join("run.json"), state.to_string()).unwrap();
    dir
}

/// The detected rows (not resolved markers) under `halts`' pending dir.
fn pending_events(halts: &HaltStore) -> Vec<Value> {
    let dir = halts.dir().join("pending-investigations");
    let mut names: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|path| serde_json::from_slice::<Value>(&fs::read(path).unwrap()).unwrap())
        .filter(|event| event.get("event").is_none())
        .collect()
}

/// `detect --json` prints a fault as gstack's `JSON.stringify(faults, null, 2)` does: the
/// detector's own key order, `{phaseIndex, iterationCount}`, not a Rhai map's sorted one.
#[test]
fn detect_json_keeps_the_detectors_evidence_order() {
    let world = World::new();
    let state = world.root.join("state.json");
    let phases = json!({"slug": "s", "phases": [{"index": 0, "codexReview": {"iterations": 5}}]});
    fs::write(&state, phases.to_string()).unwrap();
    let out = world
        .berth()
        .args(["detect", "--json", "--no-count"])
        .arg(&state)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let gstack = r#"[
  {
    "category": "CODEX_CONVERGENCE",
    "severity": "HIGH",
    "description": "Codex review did not converge after 5 iterations (limit 5).",
    "sourceFiles": [],
    "evidence": {
      "phaseIndex": 0,
      "iterationCount": 5
    }
  }
]
"#;
    assert_eq!(String::from_utf8(out).unwrap(), gstack);
}

/// Each built-in detector on the spec's values: the state in, gstack's exact description,
/// evidence, sourceFiles, detector id and halt id out (the halt ids computed independently:
/// sha256 of `PHASE_FAILED:<scope>:[CATEGORY] description`).
#[test]
fn every_detector_gives_gstacks_fault_and_halt_id() {
    let world = World::new();
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let phases = |phases: Value| json!({"slug": "s", "phases": phases});
    // (category, state, files beside it, description, evidence, sourceFiles[0] file, halt id)
    type Case<'a> = (
        &'a str,
        Value,
        Vec<(&'a str, &'a str)>,
        &'a str,
        Value,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "CODEX_CONVERGENCE",
            phases(json!([{"index": 0, "codexReview": {"iterations": 5}}])),
            vec![],
            "Codex review did not converge after 5 iterations (limit 5).",
            json!({"phaseIndex": 0, "iterationCount": 5}),
            "",
            "PHASE_FAILED:p0:2cf8d9e2",
        ),
        (
            "TEST_FIXER_LOOP",
            phases(json!([{"index": 0}, {"index": 1, "testFix": {"iterations": 6}}])),
            vec![],
            "Test-fix loop did not converge after 6 iterations (limit 5).",
            json!({"phaseIndex": 1, "iterationCount": 6}),
            "",
            "PHASE_FAILED:p1:e2dfe327",
        ),
        (
            "PREMATURE_COMPLETION",
            phases(json!([{"index": 0, "number": "1", "status": "failed"}])),
            vec![("plan.md", "# Plan\n### Phase 1\n- [x] **Implementation**\n")],
            "Phase 1 has checked task(s) but status is 'failed', not 'committed'.",
            json!({"phaseIndex": 0}),
            "plan.md",
            "PHASE_FAILED:p0:15033eff",
        ),
        (
            "PLAN_SYNTHESIS_INVALID",
            json!({"slug": "s"}),
            vec![(
                "plan.md",
                "<!-- gstack-synthesis-complete -->\n## Feature 1: A\nOrigin trace: x\n",
            )],
            "Feature block 1 is missing Acceptance:.",
            json!({}),
            "plan.md",
            "PHASE_FAILED:all:dae254e5",
        ),
        (
            "HAND_MERGED_FEATURE",
            serde_json::from_slice(&fs::read(fixture_path()).unwrap()).unwrap(),
            vec![],
            HAND_MERGED,
            json!({}),
            "",
            "PHASE_FAILED:all:1fe2d874",
        ),
        (
            "WORKTREE_LEAK",
            json!({"slug": "s", "completed": true, "worktreePath": "/"}),
            vec![],
            "Build is completed but worktree directory still exists at /.",
            json!({}),
            "",
            "PHASE_FAILED:all:ed660401",
        ),
        (
            "RED_SPEC_TRIVIAL",
            json!({"slug": "s", "failureReason": "spec passed trivially"}),
            vec![],
            "Tests passed trivially without implementation: spec passed trivially",
            json!({"stateValue": "spec passed trivially"}),
            "",
            "PHASE_FAILED:all:a14bd15d",
        ),
        (
            "PLAN_MUTATOR_MISMATCH",
            json!({"slug": "s", "failureReason": "line not found: - [ ] Phase 2"}),
            vec![],
            "Plan mutator could not locate expected content: line not found: - [ ] Phase 2",
            json!({}),
            "",
            "PHASE_FAILED:all:94d0ecc0",
        ),
        (
            "PLAN_REVIEW_STALEMATE",
            json!({"slug": "s"}),
            vec![(
                "plan-review-report.json",
                r#"{"round": 3, "objections": [{"severity": "HIGH"}, {"severity": "CRITICAL"}]}"#,
            )],
            "Plan review is stalled at round 3 with unresolved CRITICAL objections.",
            json!({"planReviewRound": 3}),
            "plan-review-report.json",
            "PHASE_FAILED:all:58d513bd",
        ),
        (
            "FEATURE_VERIFIER_SCOPE",
            json!({"slug": "s"}),
            vec![("out.log", "verifying\nVERIFICATION: GAPS\n")],
            "Feature verifier reported gaps in feature coverage.",
            json!({}),
            "out.log",
            "PHASE_FAILED:all:90e84de2",
        ),
    ];
    for (category, state, files, description, evidence, source, halt_id) in cases {
        let dir = run_dir(&world, category, state, &files);
        let run = RunInput::from_files(&dir.join("run.json"), None, None).unwrap();
        let detection = detect_run(&set, &run, &LearnedSet::default());
        assert!(detection.errors.is_empty(), "{:?}", detection.errors);
        let [fault] = detection.faults.as_slice() else {
            panic!("{category}: {:?}", detection.faults);
        };
        let source_files: Vec<String> = if source.is_empty() {
            vec![]
        } else {
            vec![dir.join(source).display().to_string()]
        };
        assert_eq!(
            serde_json::to_value(fault).unwrap(),
            json!({"category": category, "severity": fault.severity, "description": description,
                   "sourceFiles": source_files, "evidence": evidence}),
            "{category}"
        );
        let phase = evidence
            .get("phaseIndex")
            .map_or("all".to_owned(), Value::to_string);
        let src = source_files.first().map_or("*", String::as_str);
        assert_eq!(fault.detector_id(), format!("{category}:{phase}:{src}"));

        let halts = HaltStore::new(dir.join("skill-faults"));
        let report = watch_runs(&set, &dir, &halts, &LearnedSet::default());
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let events = pending_events(&halts);
        assert_eq!(events.len(), 1, "{category}");
        assert_eq!(events[0]["faultId"], halt_id, "{category}");
        assert_eq!(events[0]["message"], format!("[{category}] {description}"));
        assert!(
            halts
                .pending_path(events[0]["runId"].as_str().unwrap(), halt_id)
                .exists()
        );
    }
}

/// gstack's monitor files one halt event per detector id: two hand-merged features share
/// `HAND_MERGED_FEATURE:all:*`, so 6 faults become 5 events, and the second feature's
/// fault never becomes an event of its own while the first is raised.
#[test]
fn one_halt_event_per_detector_id() {
    let world = World::new();
    let mut state: Value = serde_json::from_slice(&fs::read(fixture_path()).unwrap()).unwrap();
    let mut second = state["features"][0].clone();
    second["number"] = json!("2");
    state["features"].as_array_mut().unwrap().push(second);
    state["phases"][0]["codexReview"] = json!({"iterations": 5});
    state["phases"][0]["testFix"] = json!({"iterations": 6});
    state["failureReason"] = json!("red spec passed trivially; no checkbox for phase 1");
    let dir = run_dir(&world, "run", state, &[]);
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let run = RunInput::from_files(&dir.join("run.json"), None, None).unwrap();
    assert_eq!(
        detect_run(&set, &run, &LearnedSet::default()).faults.len(),
        6
    );
    let halts = HaltStore::new(dir.join("skill-faults"));
    let report = watch_runs(&set, &dir, &halts, &LearnedSet::default());
    let mut ids: Vec<String> = pending_events(&halts)
        .iter()
        .map(|e| e["faultId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(report.emitted.len(), 5, "{report:?}");
    assert_eq!(
        ids,
        [
            "PHASE_FAILED:all:14f1e3a8",
            "PHASE_FAILED:all:1fe2d874",
            "PHASE_FAILED:all:635f7e54",
            "PHASE_FAILED:p0:10d5c5c8",
            "PHASE_FAILED:p0:2cf8d9e2"
        ]
    );
}

/// 10,000 junk files in the queue dir: the queue detectors still run and UNREADABLE_RECORD
/// is filed (it used to fail with "Size of object map too large", filing nothing), one
/// event per listed file and one saying how many there are in all.
#[test]
fn the_queue_detectors_work_with_10000_unreadable_files() {
    let world = World::new();
    for i in 0..10_000 {
        fs::write(world.queue.join(format!("junk-{i:05}.json")), "{ junk").unwrap();
    }
    let out = world
        .berth_daemon()
        .args(["run", "--once", "--forge", "git"])
        .env("BERTH_LOG", "error")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("too large"), "{stderr}");
    let halts = HaltStore::new(world.home.join(".gstack/skill-faults"));
    let events = pending_events(&halts);
    let listed = berth::faults::detect::MAX_UNREADABLE_LISTED;
    assert_eq!(events.len(), listed + 1, "{stderr}");
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("junk-00000.json")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("10000 files")),
        "{messages:?}"
    );
}

/// Two state files with one run id (issue 10): the clean one never resolves the other's
/// live fault, and the fault is resolved only when no file of the run has it any more.
#[test]
fn a_second_state_file_with_the_same_run_id_never_resolves_a_live_fault() {
    let world = World::new();
    let dir = state_dir_with_fixture(&world);
    let mut clean: Value = serde_json::from_slice(&fs::read(fixture_path()).unwrap()).unwrap();
    clean["features"][0]["completedAt"] = json!("2026-05-17T09:00:00.000Z");
    fs::write(dir.join("polis-copy.json"), clean.to_string()).unwrap();
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let tick = || watch_runs(&set, &dir, &halts, &LearnedSet::default());
    const ID: &str = "PHASE_FAILED:all:1fe2d874";
    let marker = halts.resolved_path("polis-mesh-lane-b", ID);

    let first = tick();
    assert_eq!(first.emitted, [format!("polis-mesh-lane-b/{ID}")]);
    for _ in 0..3 {
        let again = tick();
        assert!(
            again.emitted.is_empty() && again.resolved.is_empty(),
            "{again:?}"
        );
        assert!(!marker.exists(), "a clean copy resolved a live fault");
    }
    // Both files have it, then the first clears: still raised by the copy.
    let mut hand_merged: Value =
        serde_json::from_slice(&fs::read(fixture_path()).unwrap()).unwrap();
    fs::write(dir.join("polis-copy.json"), hand_merged.to_string()).unwrap();
    assert!(tick().emitted.is_empty(), "filed once for the run");
    hand_merged["features"][0]["completedAt"] = json!("2026-05-17T09:00:00.000Z");
    fs::write(dir.join("polis.json"), hand_merged.to_string()).unwrap();
    let cleared_in_one = tick();
    assert!(cleared_in_one.resolved.is_empty(), "{cleared_in_one:?}");
    assert!(!marker.exists());
    // The copy clears too: now it is resolved, once.
    fs::write(dir.join("polis-copy.json"), hand_merged.to_string()).unwrap();
    assert_eq!(tick().resolved, [format!("polis-mesh-lane-b/{ID}")]);
    assert!(marker.exists());
    assert!(tick().resolved.is_empty());
}

/// gstack filed the fault first with the same capture: berth refreshes it in place, no
/// recurrence. gstack's capture had another stdout tail: it is archived to
/// `collapsed/<id>-1.json` and the latest capture stays pending with `occurrences: 2`.
#[test]
fn a_capture_gstack_wrote_first_is_a_recurrence_only_when_the_tail_differs() {
    let world = World::new();
    let dir = state_dir_with_fixture(&world);
    let log = dir.join("out.log");
    let lines: String = (0..250).map(|i| format!("step {i}\n")).collect();
    fs::write(&log, &lines).unwrap();
    let mut state: Value = serde_json::from_slice(&fs::read(fixture_path()).unwrap()).unwrap();
    state["stdoutLog"] = json!(log.display().to_string());
    fs::write(dir.join("polis.json"), state.to_string()).unwrap();
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    const ID: &str = "PHASE_FAILED:all:1fe2d874";
    // The last 200 pieces of the log split on "\n", as gstack's buildHaltSnapshot cuts it.
    let pieces: Vec<&str> = lines.split('\n').collect();
    let tail = pieces[pieces.len() - 200..].join("\n");
    let gstack_event = |tail: &str| {
        json!({
            "faultId": ID, "runId": "polis-mesh-lane-b", "stateSlug": "polis",
            "kind": "PHASE_FAILED", "severity": "HIGH", "timestamp": "2026-05-17T08:40:00.000Z",
            "message": format!("[HAND_MERGED_FEATURE] {HAND_MERGED}"),
            "pointers": {"stateFile": "", "stdoutLog": "", "livingPlan": "", "worktreePath": ""},
            "snapshot": {"stdoutTail": tail, "worktreeHead": "d9845c1"}
        })
    };
    for (name, gstack_tail, recurred) in [
        ("same", tail.as_str(), false),
        ("other", "older log\n", true),
    ] {
        let halts = HaltStore::new(world.root.join(name));
        let pending = halts.pending_path("polis-mesh-lane-b", ID);
        fs::create_dir_all(pending.parent().unwrap()).unwrap();
        fs::write(&pending, gstack_event(gstack_tail).to_string()).unwrap();
        let report = watch_runs(&set, &dir, &halts, &LearnedSet::default());
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let event: Value = serde_json::from_slice(&fs::read(&pending).unwrap()).unwrap();
        assert_eq!(event["snapshot"]["stdoutTail"], tail.as_str(), "{name}");
        let archived = halts.collapsed_path("polis-mesh-lane-b", ID, 1);
        assert!(archived.ends_with(format!("collapsed/polis-mesh-lane-b-{ID}-1.json")));
        if recurred {
            assert_eq!(event["snapshot"]["occurrences"], 2);
            let earlier: Value = serde_json::from_slice(&fs::read(&archived).unwrap()).unwrap();
            assert_eq!(earlier, gstack_event(gstack_tail));
        } else {
            assert!(event["snapshot"].get("occurrences").is_none(), "{event:#}");
            assert!(
                !halts.dir().join("collapsed").exists(),
                "a phantom recurrence"
            );
        }
    }
}

#[test]
fn faults_ack_marks_an_event_investigated_as_gstack_does() {
    let world = World::new();
    let dir = state_dir_with_fixture(&world);
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let rules = Rules::embedded().unwrap();
    watch_runs(&rules.current(), &dir, &halts, &LearnedSet::default());
    let faults = |args: &[&str]| {
        let mut cmd = world.berth();
        cmd.arg("faults")
            .args(args)
            .arg("--faults-dir")
            .arg(halts.dir());
        cmd
    };
    const ID: &str = "PHASE_FAILED:all:1fe2d874";
    faults(&["ack", "PHASE_FAILED:all:00000000"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no pending halt event"));
    faults(&["ack", ID])
        .assert()
        .code(0)
        .stdout(predicates::str::contains("processed"));
    let processed = halts
        .dir()
        .join(format!("processed/polis-mesh-lane-b-{ID}.json"));
    assert!(processed.exists());
    assert!(!halts.pending_path("polis-mesh-lane-b", ID).exists());
    faults(&["ack", ID, "--run", "polis-mesh-lane-b"])
        .assert()
        .code(0)
        .stdout(predicates::str::contains("already investigated"));
    let listing = faults(&["list", "--json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let listing: Value = serde_json::from_slice(&listing).unwrap();
    assert_eq!(listing["halts"][0]["status"], "investigated", "{listing:#}");
}

/// A registry the system cannot read (here `EACCES`: the daemon runs without the
/// capability that lets root read a mode-000 file) is a read error, not a corrupt file: it
/// stays in place, nothing is filed again, and the tick says why.
#[test]
fn a_registry_the_system_cannot_read_is_left_in_place_and_reported() {
    let world = World::new();
    let build_state = world.home.join(".gstack/build-state");
    fs::copy(fixture_path(), build_state.join("polis.json")).unwrap();
    world
        .berth_daemon()
        .args(["run", "--once", "--forge", "git"])
        .output()
        .unwrap();
    let active = world.home.join(".gstack/skill-faults/active-faults");
    let names = || -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&active)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    };
    let before = names();
    assert_eq!(before.len(), 1, "{before:?}");
    let registry = active.join(&before[0]);
    let content = fs::read(&registry).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&registry, fs::Permissions::from_mode(0o000)).unwrap();

    let berth_dir = world.berth_state();
    let status = world
        .spawn_berth_wrapped(
            &["setpriv", "--bounding-set=-dac_override,-dac_read_search"],
            &["run", "--once", "--forge", "git"],
            &berth_dir,
        )
        .wait()
        .unwrap();
    assert!(matches!(status.code(), Some(0 | 1)), "{status:?}");
    assert_eq!(names(), before, "the registry was moved aside");
    fs::set_permissions(&registry, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::read(&registry).unwrap(), content);
    let log = fs::read_to_string(berth_dir.with_extension("log")).unwrap();
    assert!(
        log.contains("Permission denied") && log.contains("read again next tick"),
        "{log}"
    );
}

/// A run id starting with `.` would make a dot-file every listing skips: the event is
/// filed under `_…`, and the list, the pending gauge, `doctor` and `ack` all see it.
#[test]
fn a_run_id_starting_with_a_dot_files_an_event_everyone_sees() {
    use crate::support::{sample, scrape, served_addr, spawn_serving_metrics, stop};
    let world = World::new();
    let build_state = world.home.join(".gstack/build-state");
    let mut state: Value = serde_json::from_slice(&fs::read(fixture_path()).unwrap()).unwrap();
    state["launch"] = json!({"runId": ".sneaky"});
    fs::write(build_state.join("polis.json"), state.to_string()).unwrap();
    let config = world.git_forge_config("poll_secs = 1\n");
    let daemon = spawn_serving_metrics(&world, &config, &[]);
    let halts = HaltStore::new(world.home.join(".gstack/skill-faults"));
    let pending = halts.dir().join("pending-investigations");
    let mut metrics = String::new();
    let seen = world.wait_for(std::time::Duration::from_secs(30), || {
        let Some(addr) = served_addr(&world) else {
            return false;
        };
        metrics = scrape(&addr);
        sample(&metrics, "berth_halt_events_pending") == Some(1.0)
    });
    stop(daemon);
    assert!(seen, "{metrics}");
    let names: Vec<String> = fs::read_dir(&pending)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["_sneaky-PHASE_FAILED:all:1fe2d874.json"]);

    let faults = |args: &[&str]| {
        let (code, out, _) = crate::halt_collisions::faults_cli(&world, halts.dir(), args);
        (code, out)
    };
    let (code, listing) = faults(&["list", "--json"]);
    assert_eq!(code, Some(1), "a pending event needs attention");
    let listing: Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(listing["halts"][0]["runId"], ".sneaky", "{listing:#}");
    assert_eq!(listing["halts"][0]["status"], "pending", "{listing:#}");

    let doctor = crate::halt_collisions::doctor_stdout(&world, &config);
    assert!(
        doctor
            .lines()
            .any(|l| l.starts_with("warn  halt events: 1 pending") && l.contains("_sneaky-")),
        "{doctor}"
    );

    let (code, acked) = faults(&["ack", "PHASE_FAILED:all:1fe2d874"]);
    assert_eq!(code, Some(0), "{acked}");
    assert!(
        halts
            .dir()
            .join("processed/_sneaky-PHASE_FAILED:all:1fe2d874.json")
            .exists()
    );
}

/// `faults list`, `patterns list` and `detect` read the config's `faults_dir`, where the
/// daemon files its halt events and counts learned hits.
#[test]
fn fault_commands_read_the_configured_faults_dir() {
    let world = World::new();
    let faults_dir = world.root.join("configured-faults");
    fs::write(world.queue.join("torn.json"), "{ not a record").unwrap();
    let config = world.config(&format!(
        "forge = \"git\"\nfaults_dir = \"{}\"\n",
        faults_dir.display()
    ));
    let config = config.to_str().unwrap();
    let code = world
        .berth_daemon()
        .args(["run", "--once", "--config", config])
        .output()
        .unwrap()
        .status
        .code();
    assert!(matches!(code, Some(0 | 1)), "{code:?}");
    let list = world
        .berth()
        .args(["faults", "list", "--json", "--config", config])
        .output()
        .unwrap();
    assert_eq!(
        list.status.code(),
        Some(1),
        "a pending halt event needs attention"
    );
    let listing: Value = serde_json::from_slice(&list.stdout).unwrap();
    let halts = listing["halts"].as_array().unwrap();
    assert_eq!(halts.len(), 1, "{listing:#}");
    assert!(
        halts[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("[UNREADABLE_RECORD] "),
        "{listing:#}"
    );
    // Without the config, the default dir has none.
    world
        .berth()
        .args(["faults", "list"])
        .assert()
        .success()
        .stdout(predicates::str::contains("no halt events under"));

    world
        .berth()
        .args([
            "patterns",
            "--config",
            config,
            "propose",
            "--category",
            "STUCK",
        ])
        .args([
            "--severity",
            "HIGH",
            "--kind",
            "stdout_contains",
            "--pattern",
            "index.lock",
        ])
        .args(["--description", "git left its index lock behind"])
        .assert()
        .success();
    assert!(faults_dir.join("pending-patterns.jsonl").exists());
    world
        .berth()
        .args(["patterns", "promote", "STUCK", "--config", config])
        .assert()
        .success();
    assert!(
        fs::read_to_string(faults_dir.join("learned-patterns.json"))
            .unwrap()
            .contains("STUCK")
    );
    let state = world.root.join("state.json");
    fs::copy(fixture_path(), &state).unwrap();
    world
        .berth()
        .args([
            "detect",
            state.to_str().unwrap(),
            "--config",
            config,
            "--no-count",
        ])
        .assert()
        .code(1);
    assert!(
        !world
            .home
            .join(".gstack/skill-faults/learned-patterns.json")
            .exists()
    );
}

/// The fault watch parses a state file again only when it changed (device, inode, size,
/// mtime, ctime): ticks over an unchanged build-state dir parse nothing, and a tick after one
/// file changed parses that one.
#[test]
fn state_files_are_parsed_again_only_when_they_changed() {
    let world = World::new();
    let dir = state_dir_with_fixture(&world);
    fs::write(dir.join("other.json"), r#"{"slug": "other"}"#).unwrap();
    // A stamp younger than the racy window is never trusted: let both age past it.
    let age = || {
        std::thread::sleep(std::time::Duration::from_nanos(
            berth::file_stamp::RACY_NS as u64 + 20_000_000,
        ))
    };
    age();
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let tick = || watch_runs(&set, &dir, &halts, &LearnedSet::default());
    let first = tick();
    assert_eq!((first.runs, first.parsed), (2, 2), "{first:?}");
    for _ in 0..3 {
        let idle = tick();
        assert_eq!((idle.runs, idle.parsed), (2, 0), "{idle:?}");
    }
    fs::write(dir.join("other.json"), r#"{"slug": "changed"}"#).unwrap();
    age();
    let changed = tick();
    assert_eq!((changed.runs, changed.parsed), (2, 1), "{changed:?}");
    assert_eq!(tick().parsed, 0);
}

/// Scenario: whoever can write the faults dir sets a learned pattern's `hitCount` to
/// 18446744073709551615 (u64::MAX; gstack's own counts are JavaScript numbers, so only a
/// planted file holds it), and the pattern's category fires on a run. Counting the hit
/// computes `n + hits` unchecked: a debug build panics inside the fault-watch pass (the
/// daemon's tick), a release build wraps the count to 0 and writes that back.
#[test]
fn a_huge_planted_hit_count_is_counted_without_overflowing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("learned-patterns.json");
    fs::write(
        &path,
        r#"[{"category": "flaky_net", "matcherKind": "stdout_contains", "pattern": "ECONNRESET", "hitCount": 18446744073709551615}]"#,
    )
    .unwrap();
    let counted = std::panic::catch_unwind(|| {
        berth::faults::learned::record_hits_of_calls(&path, &[vec!["flaky_net"]])
    });
    let written: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert!(
        matches!(counted, Ok(Ok(()))),
        "counting a hit on a planted u64::MAX count panicked or failed: {:?}",
        counted.map(|r| r.map_err(|e| e.to_string()))
    );
    assert!(
        written[0]["hitCount"].as_f64().unwrap_or(0.0) >= 1.8e19,
        "the hit count went backwards: {}",
        written[0]["hitCount"]
    );
}

/// Scenario: the queue holds an unreadable record (`bad.json`), so the queue detectors
/// raise UNREADABLE_RECORD on the first poll round. At that moment another process holds
/// the queue run's lock in the faults dir (`active-faults/.berth-release-queue.lock`: a
/// second berth or gstack tool sharing the dir, or whoever can write it), so the round's
/// sync is skipped ("neither filed nor resolved this round; a later round syncs it once
/// the lock is free", docs/limits.md). The lock is then released. But the round recorded
/// the facts it ran on (`memory.detected`) before the sync failed, and later rounds over
/// the same facts return before running the detectors: the fault is never filed until
/// something else in the queue changes.
#[test]
fn a_queue_fault_skipped_while_its_run_lock_was_held_is_filed_once_the_lock_is_free() {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::PermissionsExt as _;
    let world = World::new();
    fs::write(world.queue.join("bad.json"), "{ torn").unwrap();
    let faults = world.home.join(".gstack/skill-faults");
    let active = faults.join("active-faults");
    fs::create_dir_all(&active).unwrap();
    for dir in [&faults, &active] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
    }
    let lock = fs::File::create(active.join(".berth-release-queue.lock")).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { nix::libc::flock(lock.as_raw_fd(), nix::libc::LOCK_EX) },
        0
    );
    let config = world.git_forge_config("poll_secs = 1\n");
    let berth_dir = world.berth_state();
    let daemon = world.spawn_berth(
        &["run", "--watch", "--config", config.to_str().unwrap()],
        &berth_dir,
        &[],
    );
    let log = || fs::read_to_string(berth_dir.with_extension("log")).unwrap_or_default();
    let skipped = world.wait_for(std::time::Duration::from_secs(60), || {
        log().contains(".berth-release-queue.lock")
    });
    drop(lock);
    let pending = faults.join("pending-investigations");
    let filed = || {
        fs::read_dir(&pending)
            .map(|d| {
                d.flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("berth-release-queue-")
                })
            })
            .unwrap_or(false)
    };
    let was_filed = skipped && world.wait_for(std::time::Duration::from_secs(20), filed);
    crate::support::stop(daemon);
    assert!(skipped, "the round never met the held lock: {}", log());
    assert!(
        was_filed,
        "the queue fault was not filed in 20 s (20 poll rounds) after the lock was freed: {}",
        log()
            .lines()
            .filter(|l| l.contains("fault") || l.contains("queue"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A state file names its own `stdoutLog`, and berth copies that file's tail into the halt
/// event it files. A root daemon is held to the state owner's reach: a root state file's
/// attachment is read only beneath the state's directory, so `/etc/shadow` named by a state
/// is withheld (the event says why) and none of it reaches the faults dir.
#[test]
fn a_log_named_by_a_root_state_file_outside_its_dir_is_withheld_not_copied_into_a_halt_event() {
    use berth::faults::learned::LearnedSet;
    let secret = std::path::Path::new("/etc/shadow");
    if !nix::unistd::geteuid().is_root() || !secret.is_file() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("build-state");
    let faults = dir.path().join("skill-faults");
    fs::create_dir_all(&state_dir).unwrap();
    fs::create_dir_all(&faults).unwrap();
    fs::write(
        state_dir.join("peek.json"),
        json!({"slug": "peek", "stdoutLog": secret}).to_string(),
    )
    .unwrap();
    let learned_path = faults.join("learned-patterns.json");
    let pattern = json!({"category": "PEEK", "severity": "MEDIUM", "description": "peek",
                         "matcherKind": "stdout_regex", "pattern": "root:"});
    fs::write(&learned_path, json!([pattern]).to_string()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let learned = LearnedSet::load(&learned_path).unwrap();
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let halts = HaltStore::new(&faults);
    let pass = watch_runs(&set, &state_dir, &halts, &learned);
    let first_line = fs::read_to_string(secret)
        .unwrap()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let leaked: Vec<String> = fs::read_dir(faults.join("pending-investigations"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter(|text| text.contains(&first_line))
        .collect();
    assert!(
        leaked.is_empty(),
        "the halt event filed in the faults dir carries /etc/shadow ({} bytes of events; pass {pass:?})",
        leaked.iter().map(String::len).sum::<usize>()
    );
}
