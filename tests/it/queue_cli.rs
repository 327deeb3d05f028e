//! The operator's and producer's commands: enqueue, status, retry, abandon.

use predicates::prelude::*;
use serde_json::Value;

use crate::support::World;

fn status_json(world: &World) -> (Value, i32) {
    let out = world.berth().args(["status", "--json"]).output().unwrap();
    let code = out.status.code().unwrap();
    (
        serde_json::from_slice(&out.stdout).expect("status --json prints JSON"),
        code,
    )
}

#[test]
fn enqueue_status_retry_abandon_round_trip() {
    let world = World::new();
    let repo = world.repo("widget", "git@github.com:acme/widget.git");
    world
        .berth()
        .args([
            "enqueue",
            "--repo-path",
            repo.to_str().unwrap(),
            "--pr",
            "42",
        ])
        .args(["--feature-branch", "feat/x", "--version", "1.2.3"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "queued github.com-acme-widget-main-pr-42",
        ));

    let id = "github.com-acme-widget-main-pr-42";
    let record = world.read_record(id);
    assert_eq!(record["repoIdentity"], "github.com/acme/widget");
    assert_eq!(record["status"], "queued");
    assert_eq!(record["prNumber"], 42);

    world
        .berth()
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains("#42"))
        .stdout(predicate::str::contains("github.com/acme/widget"))
        .stdout(predicate::str::contains("queued"));

    // A queued record is not retryable; the error says why.
    world
        .berth()
        .args(["retry", "42"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "only blocked or stranded records can be retried",
        ));

    // Block it the way the daemon would (through the store), then retry.
    berth::store::QueueStore::new(&world.queue)
        .transition(
            berth::store::Move::new(
                id,
                berth::store::Expect::Any,
                berth::record::Status::Blocked,
            ),
            |r| {
                r.last_error = Some("landing failed".into());
                r.retries = Some(1);
            },
        )
        .unwrap();
    let (status, code) = status_json(&world);
    assert_eq!(code, 1, "a blocked record needs attention");
    assert_eq!(status["records"][0]["id"], id);
    assert_eq!(status["records"][0]["lastError"], "landing failed");

    world.berth().args(["retry", "42"]).assert().success();
    let record = world.read_record(id);
    assert_eq!(record["status"], "queued");
    assert_eq!(record["retries"], 0);

    world
        .berth()
        .args(["abandon", "42", "--reason", "superseded by #43"])
        .assert()
        .success();
    let record = world.read_record(id);
    assert_eq!(record["status"], "abandoned");
    assert_eq!(record["lastError"], "superseded by #43");

    // Abandoned is final: neither retry nor a second enqueue brings it back silently.
    world.berth().args(["retry", "42"]).assert().code(2);
    world
        .berth()
        .args([
            "enqueue",
            "--repo-path",
            repo.to_str().unwrap(),
            "--pr",
            "42",
        ])
        .args(["--feature-branch", "feat/x", "--version", "1.2.3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists (abandoned)"));
}

#[test]
fn ambiguous_pr_numbers_list_the_candidates() {
    let world = World::new();
    let a = world.repo("a", "https://github.com/acme/a.git");
    let b = world.repo("b", "https://github.com/acme/b.git");
    for repo in [&a, &b] {
        world
            .berth()
            .args([
                "enqueue",
                "--repo-path",
                repo.to_str().unwrap(),
                "--pr",
                "7",
            ])
            .args(["--feature-branch", "feat/y", "--version", "2.0.0"])
            .assert()
            .success();
    }
    world
        .berth()
        .args(["abandon", "7"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("matches 2 records"))
        .stderr(predicate::str::contains("github.com-acme-a-main-pr-7"))
        .stderr(predicate::str::contains("github.com-acme-b-main-pr-7"));
    world
        .berth()
        .args(["abandon", "7", "--repo", "github.com/acme/b"])
        .assert()
        .success();
    assert_eq!(
        world.read_record("github.com-acme-b-main-pr-7")["status"],
        "abandoned"
    );
    assert_eq!(
        world.read_record("github.com-acme-a-main-pr-7")["status"],
        "queued"
    );
}

#[test]
fn enqueue_refuses_what_the_gates_refuse_and_writes_nothing() {
    let world = World::new();
    let outside = world.root.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    world.run_git(&outside, &["init", "-q"]);
    world
        .berth()
        .args([
            "enqueue",
            "--repo-path",
            outside.to_str().unwrap(),
            "--pr",
            "1",
        ])
        .args(["--feature-branch", "feat/x", "--version", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "repoPath outside daemon allowlist: repoPath ",
        ))
        .stderr(predicate::str::contains("is outside the daemon allowlist"));
    let repo = world.repo("w", "git@github.com:acme/w.git");
    world
        .berth()
        .args([
            "enqueue",
            "--repo-path",
            repo.to_str().unwrap(),
            "--pr",
            "1",
        ])
        .args(["--feature-branch=--upload-pack=bad", "--version", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("featureBranch rejected: featureBranch \"--upload-pack=bad\" contains characters outside the safe subset"));
    assert!(world.queue_snapshot().is_empty());
}

#[test]
fn corrupt_files_are_reported_untouched_and_others_still_listed() {
    let world = World::new();
    let repo = world.repo("w", "git@github.com:acme/w.git");
    world
        .record(&repo, 5)
        .set("repoIdentity", "github.com/acme/w")
        .write();
    std::fs::write(world.queue.join("broken.json"), "{ not json").unwrap();
    world
        .record(&repo, 6)
        .remove("featureBranch")
        .file("no-branch")
        .write();
    world
        .record(&repo, 7)
        .set("prNumber", "seven")
        .file("string-pr")
        .write();
    let before = world.queue_snapshot();

    world
        .berth()
        .arg("status")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("#5"))
        .stdout(predicate::str::contains(
            "unreadable: broken.json: not valid JSON",
        ))
        .stdout(predicate::str::contains(
            "unreadable: no-branch.json: field `featureBranch`: required field is missing",
        ))
        .stdout(predicate::str::contains(
            "unreadable: string-pr.json: field `prNumber`: expected a positive integer",
        ));
    let (status, code) = status_json(&world);
    assert_eq!(code, 1);
    assert_eq!(status["records"].as_array().unwrap().len(), 1);
    let files: Vec<&str> = status["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["broken.json", "no-branch.json", "string-pr.json"]);
    assert_eq!(
        world.queue_snapshot(),
        before,
        "status must never rewrite a file"
    );
}

/// `retry` and `abandon` judge a stranded record by the configured lock TTL, as the daemons
/// do: a record of a silent foreign owner untouched for 10 minutes is still owned under the
/// default 2 h TTL (refused), and stranded under a configured 5 min one (retried).
#[test]
fn retry_and_abandon_judge_stranded_records_by_the_configured_ttl() {
    let world = World::new();
    let repo = world.repo("widget", "git@github.com:acme/widget.git");
    let ten_minutes_ago = berth::clock::iso(berth::clock::now() - chrono::Duration::minutes(10));
    let in_flight = |pr: u64| {
        world
            .record(&repo, pr)
            .set("status", "landing")
            .set("claimedBy", "other-host:1:1")
            .set("lastUpdatedAt", ten_minutes_ago.as_str())
            .write()
    };
    let (first, second) = (in_flight(1), in_flight(2));
    let short_ttl = world.config("lock_ttl_secs = 300\nheartbeat_secs = 60\n");
    for verb in ["retry", "abandon"] {
        world
            .berth()
            .args([verb, "1"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("still working on it"));
    }
    assert_eq!(world.read_record(&first)["status"], "landing");
    world
        .berth()
        .args(["retry", "1", "--config"])
        .arg(&short_ttl)
        .assert()
        .success();
    assert_eq!(world.read_record(&first)["status"], "queued");
    // The config is found as the daemons find it: BERTH_CONFIG too.
    world
        .berth()
        .args(["abandon", "2"])
        .env("BERTH_CONFIG", &short_ttl)
        .assert()
        .success();
    assert_eq!(world.read_record(&second)["status"], "abandoned");
}

#[test]
fn enqueue_resolves_a_relative_repo_path_to_its_real_path() {
    let world = World::new();
    let repo = world.repo("widget", "git@github.com:acme/widget.git");
    let enqueue = |cwd: &std::path::Path, path: &str, pr: &str| {
        world
            .berth()
            .current_dir(cwd)
            .args(["enqueue", "--repo-path", path, "--pr", pr])
            .args(["--feature-branch", "feat/x", "--version", "1"])
            .assert()
    };
    enqueue(&repo, ".", "7").success();
    let record = world.read_record("github.com-acme-widget-main-pr-7");
    assert_eq!(record["repoPath"], repo.to_str().unwrap());
    enqueue(&world.home, "code/./widget", "8").success();
    let record = world.read_record("github.com-acme-widget-main-pr-8");
    assert_eq!(record["repoPath"], repo.to_str().unwrap());
    enqueue(&world.home, "code/missing", "9")
        .code(2)
        .stderr(predicate::str::contains(
            "--repo-path code/missing cannot be resolved",
        ));
}

/// `enqueue`, `retry`, `abandon`, `explain`, `config show` and `rules list` each print one
/// JSON document with `--json`; `explain --jsonl` keeps the line-per-entry form.
#[test]
fn data_commands_print_one_json_document() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    lane.push_feature("feat/pr-1", "main");
    let config = world.git_forge_config("poll_secs = 7\n");
    let berth = |args: &[&str]| -> Value {
        let out = world
            .berth_daemon()
            .env("BERTH_CONFIG", &config)
            .args(args)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    };
    let queued = berth(&[
        "enqueue",
        "--repo-path",
        lane.clone.to_str().unwrap(),
        "--pr",
        "1",
        "--feature-branch",
        "feat/pr-1",
        "--version",
        "1",
        "--json",
    ]);
    let id = queued["id"].as_str().unwrap().to_owned();
    assert_eq!(queued["repoPath"], lane.clone.to_str().unwrap());
    assert!(
        queued["file"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{id}.json"))
    );

    berth::store::QueueStore::new(&world.queue)
        .transition(
            berth::store::Move::new(
                &id,
                berth::store::Expect::Any,
                berth::record::Status::Blocked,
            ),
            |r| r.last_error = Some("landing failed".into()),
        )
        .unwrap();
    let retried = berth(&["retry", "1", "--json"]);
    assert_eq!(
        retried,
        serde_json::json!({"id": id, "from": "blocked", "to": "queued"})
    );
    let abandoned = berth(&["abandon", "1", "--json"]);
    assert_eq!(abandoned["to"], "abandoned");

    let story = berth(&["explain", "1", "--json"]);
    assert_eq!(story["pr"], 1);
    let lines = story["lines"].as_array().unwrap();
    assert!(lines.len() >= 2, "{story:#}");
    let jsonl = world
        .berth_daemon()
        .args(["explain", "1", "--jsonl"])
        .output()
        .unwrap();
    let jsonl: Vec<Value> = String::from_utf8(jsonl.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(&jsonl, lines);

    let shown = berth(&["config", "show", "--json"]);
    assert_eq!(shown["settings"]["poll_secs"]["value"], 7);
    assert_eq!(
        shown["settings"]["poll_secs"]["from"],
        config.to_str().unwrap()
    );
    assert_eq!(shown["settings"]["max_lanes"]["from"], "default");
    assert_eq!(shown["settings"]["faults_dir"]["value"], Value::Null);

    let rules = berth(&["rules", "list", "--json"]);
    let files = rules["files"].as_array().unwrap();
    assert!(
        files.iter().any(|f| f["file"] == "policies/landing.rhai"
            && f["origin"] == "embedded"
            && f["functions"].as_array().is_some_and(|fs| !fs.is_empty())),
        "{rules:#}"
    );
}
