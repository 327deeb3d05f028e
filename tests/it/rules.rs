//! The rules engine through the real binary: misbehaving rules fall back without stopping
//! the tick, hot reload under `run --watch`, policy decisions the tick acts on, the rules
//! CLI and `explain`.

use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use predicates::prelude::*;
use serde_json::Value;

use crate::support::World;

const DEFAULT_LANDING: &str = include_str!("../../policies/landing.rhai");
const RELOAD_WAIT: Duration = Duration::from_secs(20);

/// `berth rules <verb> <root>`, asserted by the caller.
fn rules_cmd(
    world: &World,
    verb: &str,
    root: impl AsRef<std::path::Path>,
) -> assert_cmd::assert::Assert {
    world
        .berth()
        .args(["rules", verb])
        .arg(root.as_ref())
        .assert()
}

/// The decision lines about `record` made by `function`.
fn decisions_of(world: &World, record: &str, function: &str) -> Vec<Value> {
    world
        .decisions()
        .into_iter()
        .filter(|d| d["record"] == record && d["function"] == function)
        .collect()
}

/// The shipped landing policy with `admit`'s answer replaced by `answer`.
pub fn default_landing_answering(answer: &str) -> String {
    let shipped = "#{ decision: \"go\", reason: \"no landing policy holds it back\" }";
    assert!(DEFAULT_LANDING.contains(shipped));
    DEFAULT_LANDING.replace(shipped, answer)
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Rules that pass every built-in sample but fail on the live record (the forge is `git`
/// here, `github` in the samples): each question fails closed, alone, and visibly. The
/// record waits (status says why, the decision log has it, RULE_FAILING becomes a halt
/// event); once `admit` answers again it lands, `on_land_result`'s garbage taking the
/// facts-only verdict.
#[test]
fn misbehaving_rules_fail_closed_one_by_one_and_visibly() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    let config = world.git_forge_config("");
    let landing = |admit: &str| {
        format!(
            r#"
fn admit(record, ctx) {{ {admit} }}
fn on_land_result(record, result, ctx) {{
    if ctx.config.forge == "git" {{ return "garbage"; }}
    if result.succeeded && result.merged {{ return #{{ decision: "landed", reason: "" }}; }}
    #{{ decision: "blocked", reason: result.summary }}
}}
fn max_lanes(ctx) {{
    if ctx.config.forge == "git" {{ let s = "0123456789"; loop {{ s += s; }} }}
    1
}}
"#
        )
    };
    world.write_rule(
        "policies/landing.rhai",
        &landing(
            r#"if ctx.config.forge == "git" { let n = 0; loop { n += 1; } }
               #{ decision: "go", reason: "fine" }"#,
        ),
    );
    world.write_rule(
        "rules/discovery.rhai",
        r#"
fn accept_pr(pr) { #{ accept: true, reason: "fine" } }
fn dive(n) { dive(n + 1) }
fn order(candidates) {
    if candidates.len() > 0 && candidates[0].repoPath != "/home/dev/widget" { dive(0) }
    candidates.map(|c| c.id)
}
"#,
    );
    let run_once = || {
        world
            .berth_daemon()
            .args(["run", "--once", "--config", config.to_str().unwrap()])
            .arg("--rules-root")
            .arg(world.rules_root())
            .assert()
    };
    rules_cmd(&world, "check", world.rules_root()).success();
    let started = Instant::now();
    run_once();
    // The second tick sees the first tick's fallbacks in the queue facts.
    run_once();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let record = world.read_record(&id);
    assert_eq!(record["status"], "queued", "{record:#}");
    assert_eq!(world.ledger(), Vec::<u64>::new());

    let decisions = world.decisions();
    let failed = |function: &str, why: &str| {
        let line = decisions
            .iter()
            .find(|d| d["function"] == function)
            .unwrap_or_else(|| panic!("no `{function}` decision in {decisions:#?}"));
        assert_eq!(line["fallback"], true, "{line}");
        let error = line["error"].as_str().unwrap();
        assert!(error.contains(why), "{function}: {error}");
        line.clone()
    };
    let admit = failed("admit", "stopped after the 250 ms deadline");
    assert_eq!(admit["decision"], "wait");
    assert_eq!(admit["record"], id.as_str());
    assert_eq!(failed("max_lanes", "too large")["decision"], "1");
    failed("order", "Stack overflow");

    // `berth status`: the row says why the record waits; exit 1 (needs an operator).
    world
        .berth_daemon()
        .args(["status"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "wait: waiting: the admit rule failed (policies/landing.rhai: in `admit`: stopped after the 250 ms deadline)",
        ))
        .stdout(predicate::str::contains(
            "rule failing: policies/landing.rhai `max_lanes`: 1: one lane: the max_lanes rule failed",
        ));
    // RULE_FAILING: a halt event for the queue.
    let pending = world
        .home
        .join(".gstack/skill-faults/pending-investigations");
    let events: Vec<Value> = fs::read_dir(&pending)
        .unwrap()
        .map(|e| serde_json::from_slice(&fs::read(e.unwrap().path()).unwrap()).unwrap())
        .filter(|e: &Value| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("[RULE_FAILING] "))
        })
        .collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    let landing_event = events
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .contains("policies/landing.rhai")
        })
        .unwrap();
    assert!(
        landing_event["message"]
            .as_str()
            .unwrap()
            .contains("admit, max_lanes"),
        "{landing_event:#}"
    );

    // `admit` answers again: the record lands on the facts-only verdict.
    world.write_rule(
        "policies/landing.rhai",
        &landing(r#"#{ decision: "go", reason: "fine" }"#),
    );
    run_once().success();
    let record = world.read_record(&id);
    assert_eq!(record["status"], "landed", "{record:#}");
    assert_eq!(world.ledger(), [1]);
    let verdict = decisions_of(&world, &id, "on_land_result");
    assert_eq!(verdict[0]["decision"], "landed");
    assert_eq!(verdict[0]["fallback"], true);
    world
        .berth_daemon()
        .args(["explain", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("(record {id})")))
        .stdout(predicate::str::contains(
            "the rule failed (policies/landing.rhai: in `admit`: stopped after the 250 ms deadline)",
        ))
        .stdout(predicate::str::contains("status          queued -> claiming"))
        .stdout(predicate::str::contains("now: landed"));
}

/// issue 10 §1: `decision: "hold"` (a typo for "wait") used to fall back to `go` and land
/// the frozen PR, and `rules check` passed it. Now check refuses it on the built-in
/// samples, and a daemon given it refuses to start: nothing lands.
#[test]
fn an_answer_outside_the_contract_is_refused_before_it_goes_live() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    let config = world.git_forge_config("");
    world.write_rule(
        "policies/landing.rhai",
        &default_landing_answering(r#"#{ decision: "hold", reason: "release freeze" }"#),
    );
    rules_cmd(&world, "check", world.rules_root())
        .failure()
        .stdout(predicate::str::contains(
            "policies/landing.rhai: `admit` on the built-in sample \"head of a free lane\": invalid return value",
        ))
        .stdout(predicate::str::contains("not \"hold\""));
    world
        .berth_daemon()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .arg("--rules-root")
        .arg(world.rules_root())
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "`decision` must be \"go\", \"wait\" or \"block\", not \"hold\"",
        ));
    assert_eq!(world.read_record(&id)["status"], "queued");
    assert_eq!(world.ledger(), Vec::<u64>::new());
}

#[test]
fn admit_can_block_and_on_land_result_can_defer() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let denied = lane.queue(1, "main");
    let flaky = lane.queue(2, "main");
    let config = world.config("forge = \"git\"\nland_command = [\"false\"]\n");
    world.write_rule(
        "policies/landing.rhai",
        r#"
fn admit(record, ctx) {
    if record.prNumber == 1 {
        return #{ decision: "block", reason: "PR 1 is on the deny list" };
    }
    #{ decision: "go", reason: "not on the deny list" }
}
fn on_land_result(record, result, ctx) {
    if result.merged { return #{ decision: "landed", reason: result.summary }; }
    #{ decision: "requeue", reason: "flaky landing, try again later", delay_secs: 3600 }
}
fn max_lanes(ctx) { 1 }
"#,
    );
    let run_once = || {
        world
            .berth_daemon()
            .args(["run", "--once", "--config", config.to_str().unwrap()])
            .arg("--rules-root")
            .arg(world.rules_root())
            .assert()
            .success();
    };
    run_once();

    let blocked = world.read_record(&denied);
    assert_eq!(blocked["status"], "blocked");
    assert_eq!(blocked["lastError"], "policy: PR 1 is on the deny list");
    let deferred = world.read_record(&flaky);
    assert_eq!(deferred["status"], "queued", "{deferred:#}");
    let why = deferred["lastError"].as_str().unwrap();
    assert!(
        why.starts_with("flaky landing, try again later (log: "),
        "{why}"
    );
    let not_before = berth::clock::parse_iso(deferred["berthNotBefore"].as_str().unwrap()).unwrap();
    let ahead = (not_before - berth::clock::now()).num_seconds();
    assert!((3500..=3600).contains(&ahead), "{ahead}");

    // Deferred: the next tick leaves it alone.
    run_once();
    assert_eq!(world.read_record(&flaky), deferred);
    assert_eq!(decisions_of(&world, &flaky, "on_land_result").len(), 1);

    let repo = format!("path:{}", lane.clone.display());
    world
        .berth_daemon()
        .args(["explain", "2", "--repo", &repo])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("PR #2 of {repo}")));
    world
        .berth_daemon()
        .args(["explain", "2", "--repo", "github.com/acme/other"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "nothing recorded for PR #2 of github.com/acme/other",
        ));
    world
        .berth_daemon()
        .args(["explain", "2"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "requeue: flaky landing, try again later",
        ))
        .stdout(predicate::str::contains("landing -> queued"));
    world
        .berth_daemon()
        .args(["explain", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("block: PR 1 is on the deny list"))
        .stdout(predicate::str::contains(
            "queued -> blocked: policy: PR 1 is on the deny list",
        ));
}

/// `--once` that did nothing but block records by policy needs an operator: exit 1.
#[test]
fn once_exits_one_when_it_only_blocked_by_policy() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    let config = world.git_forge_config("");
    world.write_rule(
        "policies/landing.rhai",
        &default_landing_answering(r#"#{ decision: "block", reason: "nothing lands today" }"#),
    );
    world
        .berth_daemon()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .arg("--rules-root")
        .arg(world.rules_root())
        .assert()
        .code(1);
    assert_eq!(
        world.read_record(&id)["lastError"],
        "policy: nothing lands today"
    );
}

#[test]
fn rule_edits_take_effect_while_running_and_a_broken_edit_keeps_the_last_good_rules() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let config = world.git_forge_config("poll_secs = 1\n");
    world.write_rule("policies/landing.rhai", DEFAULT_LANDING);
    let mut daemon = world.spawn_watching(&config);
    let status_file = world.berth_state().join("rules-status.json");
    wait_for("the daemon's rules status", RELOAD_WAIT, || {
        status_file.exists()
    });
    let log = || fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default();

    // A freeze window over every hour of the day: nothing may land.
    let freeze = DEFAULT_LANDING.replace(
        "    #{ decision: \"go\", reason: \"no landing policy holds it back\" }",
        "    let hour = hour_utc(ctx.nowEpoch);\n    \
         if hour >= 0 && hour < 24 {\n        \
         return #{ decision: \"wait\", reason: \"release freeze, 00:00-24:00 UTC\" };\n    }\n    \
         #{ decision: \"go\", reason: \"outside the freeze\" }",
    );
    assert_ne!(freeze, DEFAULT_LANDING);
    let seen = berth::rules::write_and_await(
        &world.rules_root(),
        &world.berth_state(),
        "policies/landing.rhai",
        &freeze,
        RELOAD_WAIT,
    )
    .unwrap();
    let berth::rules::ReloadSeen::Active(frozen) = seen else {
        panic!("the freeze was refused: {seen:?}\n{}", log());
    };

    let id = lane.queue(1, "main");
    wait_for("the freeze to hold the record", RELOAD_WAIT, || {
        decisions_of(&world, &id, "admit")
            .iter()
            .any(|d| d["decision"] == "wait")
    });
    let waited = decisions_of(&world, &id, "admit");
    assert_eq!(waited[0]["reason"], "release freeze, 00:00-24:00 UTC");
    assert_eq!(waited[0]["ruleset"], frozen.as_str());
    assert_eq!(world.read_record(&id)["status"], "queued");

    // A broken edit: refused, reported with file:line:col, the freeze stays.
    let seen = berth::rules::write_and_await(
        &world.rules_root(),
        &world.berth_state(),
        "policies/landing.rhai",
        "fn admit(record, ctx) {\n    #{ decision: \"go\" \n",
        RELOAD_WAIT,
    )
    .unwrap();
    let berth::rules::ReloadSeen::Refused(error) = seen else {
        panic!("a broken edit was swapped in: {seen:?}");
    };
    assert!(error.starts_with("policies/landing.rhai:3:"), "{error}");
    world
        .berth_daemon()
        .arg("status")
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!(
            "rules: {} ({}), last reload: failed at ",
            &frozen[..12],
            world.rules_root().display()
        )))
        .stdout(predicate::str::contains(": policies/landing.rhai:3:"));
    // The refusal and where it is, on one timestamped line.
    assert!(
        log()
            .lines()
            .any(|l| l.contains("rule reload REFUSED") && l.contains("policies/landing.rhai:3:")),
        "{}",
        log()
    );
    // Ticks go on under the last good rules: still waiting, never admitted.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(world.read_record(&id)["status"], "queued");
    assert!(
        decisions_of(&world, &id, "admit")
            .iter()
            .all(|d| d["decision"] == "wait")
    );

    // Lifting the freeze lands the record on the next tick, no restart.
    let seen = berth::rules::write_and_await(
        &world.rules_root(),
        &world.berth_state(),
        "policies/landing.rhai",
        DEFAULT_LANDING,
        RELOAD_WAIT,
    )
    .unwrap();
    assert!(
        matches!(seen, berth::rules::ReloadSeen::Active(_)),
        "{seen:?}"
    );
    wait_for("the record to land", Duration::from_secs(30), || {
        world.read_record(&id)["status"] == "landed"
    });
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(daemon.wait().unwrap().code(), Some(143));
    world
        .berth_daemon()
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains("last reload: ok at "));
    world
        .berth_daemon()
        .args(["explain", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "wait: release freeze, 00:00-24:00 UTC",
        ))
        .stdout(predicate::str::contains(
            "go: no landing policy holds it back",
        ))
        .stdout(predicate::str::contains("landing -> landed"));
}

#[test]
fn rules_check_test_and_list_share_the_reload_pipeline() {
    let world = World::new();
    world
        .berth()
        .args(["rules", "check"])
        .env_remove("BERTH_RULES_ROOT")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("ok: rules "))
        .stdout(predicate::str::contains("(embedded defaults)"));
    world
        .berth()
        .args(["rules", "test"])
        .env_remove("BERTH_RULES_ROOT")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "ok    policies/landing.tests.json #1 (everything is admitted) `admit`",
        ))
        .stdout(predicate::str::contains(
            "ok    rules/discovery.tests.json #4 (oldest first, then the lower PR number) `order`",
        ))
        .stdout(predicate::str::contains(" 0 failed"));

    let root = world.rules_root();
    world.write_rule("policies/landing.rhai", DEFAULT_LANDING);
    world.write_rule(
        "policies/landing.tests.json",
        r#"[{"name": "wrong on purpose", "function": "max_lanes",
             "args": [{"config": {"maxLanes": 2}}], "expect": 5}]"#,
    );
    rules_cmd(&world, "test", &root)
        .code(1)
        .stdout(predicate::str::contains(
            "FAIL  policies/landing.tests.json #1 (wrong on purpose) `max_lanes`: expected 5, got 2",
        ))
        .stdout(predicate::str::contains("1 of "));
    rules_cmd(&world, "list", &root).code(1);
    fs::remove_file(root.join("policies/landing.tests.json")).unwrap();
    rules_cmd(&world, "list", &root)
        .success()
        .stdout(
            predicate::str::is_match(
                r"policies/landing\.rhai +override +admit/2 max_lanes/1 on_land_result/3",
            )
            .unwrap(),
        )
        .stdout(
            predicate::str::is_match(r"rules/discovery\.rhai +embedded +accept_pr/1 order/1")
                .unwrap(),
        );

    world.write_rule(
        "policies/landing.rhai",
        "fn admit(record, ctx) {\n    let x = ;\n}\n",
    );
    rules_cmd(&world, "check", &root)
        .code(1)
        .stdout(predicate::str::contains(
            "error: policies/landing.rhai:2:13: syntax error:",
        ))
        .stdout(predicate::str::contains("refused: 1 error(s)"));
    rules_cmd(&world, "check", world.root.join("no-such-dir"))
        .code(2)
        .stderr(predicate::str::contains("no-such-dir"));
    // A daemon refuses to start on rules that do not check.
    world
        .berth_daemon()
        .args(["run", "--once", "--forge", "git", "--rules-root"])
        .arg(&root)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("policies/landing.rhai:2:13"));
}

#[test]
fn eval_imports_files_and_processes_are_out_of_a_rules_reach() {
    let world = World::new();
    let root = world.rules_root();
    for (body, why) in [
        (r#"eval("40 + 2")"#, "reserved keyword 'eval' is disabled"),
        (
            r#"import "/etc/passwd" as secrets; 1"#,
            "'import' is a reserved keyword",
        ),
    ] {
        world.write_rule("rules/probe.rhai", &format!("fn probe() {{ {body} }}\n"));
        rules_cmd(&world, "check", &root)
            .code(1)
            .stdout(predicate::str::contains("error: rules/probe.rhai:1:"))
            .stdout(predicate::str::contains(why));
    }
    let canary = world.root.join("CANARY");
    world.write_rule(
        "rules/probe.rhai",
        &format!(
            r#"
fn read() {{ open("/etc/passwd") }}
fn write() {{ write_file("{canary}", "x") }}
fn run() {{ system("touch {canary}") }}
fn spawn_it() {{ exec("/bin/sh", ["-c", "touch {canary}"]) }}
"#,
            canary = canary.display()
        ),
    );
    world.write_rule(
        "rules/probe.tests.json",
        r#"[
  {"function": "read", "args": [], "expectError": "Function not found: open"},
  {"function": "write", "args": [], "expectError": "Function not found: write_file"},
  {"function": "run", "args": [], "expectError": "Function not found: system"},
  {"function": "spawn_it", "args": [], "expectError": "Function not found: exec"}
]"#,
    );
    rules_cmd(&world, "test", &root)
        .success()
        .stdout(predicate::str::contains("ok    rules/probe.tests.json #4"));
    assert!(!canary.exists());
}

#[test]
fn the_discovery_rule_narrows_what_the_forge_lists() {
    let world = World::new();
    let gh = world.gh_lane();
    world
        .record(&gh.repo, 42)
        .set("repoIdentity", "github.com/acme/widget")
        .set("status", "landed")
        .set("lastGithubState", "MERGED")
        .write();
    // The forge lists two valid PRs: #41 (feat/login) and a copy of it as #48 (feat/docs).
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/gh");
    let listed: Vec<Value> = serde_json::from_str(
        &fs::read_to_string(fixtures.join("pr-list.acme.widget.json")).unwrap(),
    )
    .unwrap();
    let login = listed.iter().find(|p| p["number"] == 41).unwrap().clone();
    let mut docs = login.clone();
    docs["number"] = 48.into();
    docs["headRefName"] = "feat/docs".into();
    docs["body"] = login["body"]
        .as_str()
        .unwrap()
        .replace("\"prNumber\": 41", "\"prNumber\": 48")
        .replace("feat/login", "feat/docs")
        .into();
    fs::write(
        gh.replies.join("pr-list.acme.widget.json"),
        serde_json::to_string(&vec![login, docs]).unwrap(),
    )
    .unwrap();
    // GitHub has no answer for #48's claim check here: it stays queued.
    fs::remove_file(gh.replies.join("pr-view.acme.widget.48.json")).unwrap();
    // The repo's only record is settled: it is discovered because it is configured.
    let config = gh.config(
        r#"["true"]"#,
        &format!("repos = [{:?}]\n", gh.repo.to_str().unwrap()),
    );
    world.write_rule(
        "rules/discovery.rhai",
        &include_str!("../../rules/discovery.rhai").replace(
            "    #{ accept: true, reason: \"labelled, valid marker, same repository\" }",
            "    if pr.headBranch.starts_with(\"feat/login\") {\n        \
             return #{ accept: false, reason: \"login changes go through the security queue\" };\n    }\n    \
             #{ accept: true, reason: \"labelled, valid marker, same repository\" }",
        ),
    );
    gh.berth()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .arg("--rules-root")
        .arg(world.rules_root())
        .assert()
        // #48 is recorded with the local repo's paths (never the marker's); GitHub has no
        // answer for its claim check here, so it waits in the queue.
        .success();

    assert!(
        !world
            .queue
            .join("github.com-acme-widget-main-pr-41.json")
            .exists()
    );
    let docs = world.read_record("github.com-acme-widget-main-pr-48");
    assert_eq!(docs["featureBranch"], "feat/docs");
    assert_eq!(docs["status"], "queued");
    let rejected = decisions_of(&world, "github.com-acme-widget-main-pr-41", "accept_pr");
    assert_eq!(rejected.len(), 1, "{rejected:#?}");
    assert_eq!(rejected[0]["decision"], "reject");
    assert_eq!(
        rejected[0]["reason"],
        "login changes go through the security queue"
    );
    assert_eq!(
        decisions_of(&world, "github.com-acme-widget-main-pr-48", "accept_pr")[0]["decision"],
        "accept"
    );
}

/// `rules check --json` and `rules test --json`: one document a script can read, per file
/// and per test case, with the text's exit codes (0 accepted, 1 refused).
#[test]
fn rules_check_and_test_json_name_each_file_and_case() {
    let world = World::new();
    let root = world.rules_root();
    world.write_rule("policies/landing.rhai", DEFAULT_LANDING);
    let row = |doc: &Value, list: &str, key: &str, value: &str| -> Option<Value> {
        doc[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[key] == value)
            .cloned()
    };
    // `berth rules <verb> --json ROOT`, its exit code checked, its document parsed.
    let judged = |verb: &str, code: i32| -> Value {
        let out = world
            .berth()
            .args(["rules", verb, "--json"])
            .arg(&root)
            .assert()
            .code(code);
        serde_json::from_slice(&out.get_output().stdout).expect("one JSON document")
    };
    let doc = judged("check", 0);
    assert_eq!(doc["command"], "check");
    assert_eq!(doc["accepted"], true);
    let landing =
        row(&doc, "files", "file", "policies/landing.rhai").expect("the overridden file has a row");
    assert_eq!(landing["result"], "ok");
    let tests = doc["tests"].as_array().unwrap();
    assert!(!tests.is_empty());
    assert!(
        tests
            .iter()
            .all(|t| t["result"] == "pass" && t["error"].is_null())
    );

    world.write_rule(
        "policies/landing.tests.json",
        r#"[{"name": "wrong on purpose", "function": "max_lanes",
             "args": [{"config": {"maxLanes": 2}}], "expect": 5}]"#,
    );
    let doc = judged("test", 1);
    assert_eq!(doc["command"], "test");
    assert_eq!(doc["accepted"], false);
    let case =
        row(&doc, "tests", "name", "wrong on purpose").expect("the failing case is listed by name");
    assert_eq!(case["result"], "fail");
    assert_eq!(case["file"], "policies/landing.tests.json");
    assert_eq!(case["function"], "max_lanes");
    assert!(
        case["error"]
            .as_str()
            .unwrap()
            .contains("expected 5, got 2")
    );
    let tests_file = row(&doc, "files", "file", "policies/landing.tests.json").unwrap();
    assert_eq!(tests_file["result"], "error");

    world.write_rule(
        "policies/landing.rhai",
        "fn admit(record, ctx) {\n    let x = ;\n}\n",
    );
    let doc = judged("check", 1);
    let landing = row(&doc, "files", "file", "policies/landing.rhai").unwrap();
    assert_eq!(landing["result"], "error");
    assert!(
        landing["errors"][0]
            .as_str()
            .unwrap()
            .contains("policies/landing.rhai:2:13: syntax error")
    );
}
