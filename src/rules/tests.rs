//! The rules engine as a whole: the shipped set, misbehaving rules, the acceptance
//! pipeline and hot reload, in-process.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::contracts::{discovery, landing};
use super::*;

fn write(root: &Path, name: &str, text: &str) {
    let path = root.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn facts(succeeded: bool, merged: bool) -> landing::LandFacts {
    landing::LandFacts {
        succeeded,
        exit_code: Some(if succeeded { 0 } else { 2 }),
        timed_out: false,
        drift: false,
        merged,
        forge_state: Some(crate::forge_state::PrState::Open),
        summary: "landing command exited with status 2 (log: /l)".into(),
        log_path: "/l".into(),
        retries: 0,
        attempt: 1,
    }
}

fn ctx() -> Value {
    json!({"now": "2026-05-17T08:00:00.000Z", "nowEpoch": 1_779_004_800, "lane": null,
           "queueDepth": 1, "inFlight": 0, "config": {"maxLanes": 2}})
}

#[test]
fn the_shipped_set_loads_passes_its_tests_and_answers_like_the_defaults() {
    let built = Rules::check(None, &RuleSpec::standard()).expect("shipped rules are valid");
    assert!(built.cases.len() >= 10, "{}", built.cases.len());
    assert!(built.cases.iter().all(|c| c.passed()));
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    assert_eq!(set.hash(), SourceSet::load(None).unwrap().hash());
    assert_eq!(set.describe_source(), "embedded defaults");

    let admitted = landing::admit(&set, &json!({"id": "x"}), &ctx());
    assert_eq!(admitted.value.decision, landing::Admit::Go);
    assert!(!admitted.is_fallback());
    assert_eq!(landing::max_lanes(&set, &ctx()).value, 2);
    for f in [facts(true, true), facts(true, false), facts(false, false)] {
        let decided = landing::on_land_result(&set, &json!({}), &f, &ctx());
        assert!(!decided.is_fallback(), "{:?}", decided.error);
        assert_eq!(decided.value, landing::default_verdict(&f));
    }
    let candidates = vec![
        json!({"id": "b", "queuedAt": "2026-01-01T00:00:00.000Z", "prNumber": 2}),
        json!({"id": "a", "queuedAt": "2026-01-01T00:00:00.000Z", "prNumber": 1}),
        json!({"id": "c", "queuedAt": "2025-12-31T23:59:59.999Z", "prNumber": 3}),
    ];
    let ordered = discovery::order(&set, candidates.clone());
    assert!(!ordered.is_fallback(), "{:?}", ordered.error);
    assert_eq!(ordered.value, discovery::default_order(&candidates));
    assert_eq!(ordered.value, ["c", "a", "b"]);
    let label = crate::forge::QUEUE_LABEL.to_owned();
    for (labels, marker, fork) in [
        (vec![label.clone()], true, false),
        (vec![label.clone()], true, true),
        (vec![label], false, false),
        (vec!["other".to_owned()], true, false),
    ] {
        let pr = discovery::PrFacts {
            number: 5,
            labels,
            has_valid_marker: marker,
            is_cross_repository: fork,
            head_branch: "feat/x".into(),
            base_branch: "main".into(),
            marker: serde_json::Map::new(),
            repo_identity: "github.com/acme/w".into(),
            url: None,
        };
        let accepted = discovery::accept_pr(&set, &pr);
        assert!(!accepted.is_fallback(), "{:?}", accepted.error);
        assert_eq!(accepted.value, discovery::default_accept(&pr));
    }
}

/// A landing policy whose every function misbehaves differently, beside a discovery rule
/// that returns garbage: each call fails alone, within the deadline, with the default.
#[test]
fn each_misbehaving_rule_fails_alone_within_the_deadline() {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "policies/landing.rhai",
        r#"
fn admit(record, ctx) { let n = 0; loop { n += 1; } }
fn dive(n) { dive(n + 1) }
fn on_land_result(record, result, ctx) { dive(0) }
fn max_lanes(ctx) { let s = "0123456789"; while true { s += s; } s.len() }
"#,
    );
    write(
        root.path(),
        "rules/discovery.rhai",
        r#"
fn accept_pr(pr) { #{ accept: false, reason: "only rule that works" } }
fn order(candidates) { "garbage" }
"#,
    );
    // The built-in samples would refuse this set; a set that passes them can still fail on
    // a live input, which is what this test is about.
    let spec = RuleSpec {
        samples: &[],
        ..RuleSpec::standard()
    };
    let refused = Rules::check(Some(root.path()), &RuleSpec::standard()).unwrap_err();
    assert!(
        refused.to_string().contains("on the built-in sample"),
        "{refused}"
    );
    let rules = Rules::load_with(Some(root.path()), spec).expect("loaded without samples");
    let set = rules.current();
    let deadline = set_deadline();

    let started = Instant::now();
    let admitted = landing::admit(&set, &json!({}), &ctx());
    let took = started.elapsed();
    assert!(
        matches!(admitted.error, Some(RuleError::Timeout { .. })),
        "{:?}",
        admitted.error
    );
    // Fails closed: a broken admit holds the record back.
    assert_eq!(admitted.value.decision, landing::Admit::Wait);
    assert!(
        admitted
            .value
            .reason
            .starts_with("waiting: the admit rule failed"),
        "{}",
        admitted.value.reason
    );
    assert!(took < deadline * 3, "{took:?}");
    let at = admitted.error.unwrap().to_string();
    assert!(
        at.starts_with("policies/landing.rhai: in `admit`: stopped after"),
        "{at}"
    );

    let started = Instant::now();
    let f = facts(true, true);
    let verdict = landing::on_land_result(&set, &json!({}), &f, &ctx());
    assert!(
        started.elapsed() < deadline,
        "recursion must stop on the call-depth limit"
    );
    let why = verdict.error.expect("recursion fails").to_string();
    assert!(why.contains("Stack overflow"), "{why}");
    // rhai gives the call-depth error no position: the function names the place.
    assert!(
        why.starts_with("policies/landing.rhai: in `on_land_result`"),
        "{why}"
    );
    assert_eq!(verdict.value.decision, landing::LandDecision::Landed);

    let started = Instant::now();
    let lanes = landing::max_lanes(&set, &ctx());
    assert!(started.elapsed() < deadline);
    let why = lanes.error.expect("the string cap trips").to_string();
    assert!(why.contains("too large"), "{why}");
    assert_eq!(lanes.value, 1, "a broken max_lanes opens one lane");

    let candidates = vec![json!({"id": "a", "queuedAt": "2026-01-01T00:00:00Z", "prNumber": 1})];
    let ordered = discovery::order(&set, candidates);
    assert!(
        matches!(&ordered.error, Some(RuleError::Invalid { reason, .. }) if reason.contains("expected an array")),
        "{:?}",
        ordered.error
    );
    assert_eq!(ordered.value, ["a"]);

    // The one healthy function of the set still answers.
    let pr = discovery::PrFacts {
        number: 1,
        labels: vec![crate::forge::QUEUE_LABEL.into()],
        has_valid_marker: true,
        is_cross_repository: false,
        head_branch: "f".into(),
        base_branch: "main".into(),
        marker: serde_json::Map::new(),
        repo_identity: "github.com/acme/w".into(),
        url: None,
    };
    let accepted = discovery::accept_pr(&set, &pr);
    assert!(!accepted.is_fallback());
    assert_eq!(accepted.value.reason, "only rule that works");
}

fn set_deadline() -> Duration {
    RuleSpec::standard().limits.deadline
}

#[test]
fn rules_cannot_reach_eval_files_or_processes() {
    let root = tempfile::tempdir().unwrap();
    for (body, why) in [
        (r#"eval("1")"#, "disabled"),
        (r#"import "/etc/passwd" as p; 1"#, "reserved keyword"),
    ] {
        write(
            root.path(),
            "rules/probe.rhai",
            &format!("fn probe() {{ {body} }}"),
        );
        let err = Rules::check(Some(root.path()), &RuleSpec::standard())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("rules/probe.rhai:1:"), "{err}");
        assert!(err.contains(why), "{err}");
    }
    write(
        root.path(),
        "rules/probe.rhai",
        r#"
fn open_file() { open("/etc/passwd") }
fn read() { read_file("/etc/passwd") }
fn run() { system("touch /tmp/berth-pwned") }
fn start() { exec("sh") }
fn wait() { sleep(5) }
"#,
    );
    let rules = Rules::load(Some(root.path())).unwrap();
    let set = rules.current();
    for function in ["open_file", "read", "run", "start", "wait"] {
        let err = set
            .call_json("rules/probe.rhai", function, &[])
            .unwrap_err();
        assert!(
            matches!(&err, RuleError::Script { message, .. }
                if message.contains("Function not found") || message.contains("sleep is not available")),
            "{function}: {err}"
        );
    }
    assert_eq!(set.files_matching("rules/p*.rhai"), ["rules/probe.rhai"]);
    assert!(set.files_matching("rules/[").is_empty());
}

#[test]
fn check_reports_every_problem_with_its_place() {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "policies/landing.rhai",
        "fn admit(record, ctx) {\n    #{ decision: \"go\", reason: \"x\" \n}\n",
    );
    let failure = Rules::check(Some(root.path()), &RuleSpec::standard()).unwrap_err();
    let text = failure.to_string();
    assert!(
        text.starts_with("policies/landing.rhai:4:1: syntax error: "),
        "{text}"
    );
    assert_eq!(failure.hash.as_deref().map(str::len), Some(64));

    write(
        root.path(),
        "policies/landing.rhai",
        "fn admit(record) { #{decision: \"go\", reason: \"\"} }\nfn on_land_result(a, b, c) { 1 }\n",
    );
    let text = Rules::check(Some(root.path()), &RuleSpec::standard())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains(
            "policies/landing.rhai: missing `fn admit` with 2 parameter(s) (found `fn admit` with 1)"
        ),
        "{text}"
    );
    assert!(text.contains("missing `fn max_lanes` with 1"), "{text}");
}

#[test]
fn a_wrong_expectation_fails_the_set() {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "policies/landing.rhai",
        include_str!("../../policies/landing.rhai"),
    );
    write(
        root.path(),
        "policies/landing.tests.json",
        r#"[{"name": "wrong on purpose", "function": "max_lanes",
             "args": [{"config": {"maxLanes": 2}}], "expect": 3},
            {"function": "admit", "args": [{}, {}], "expect": {"decision": "go"}},
            {"function": "max_lanes", "args": [{"config": {"maxLanes": 0}}],
             "expectError": "from 1 to 64"}]"#,
    );
    let failure = Rules::check(Some(root.path()), &RuleSpec::standard()).unwrap_err();
    assert_eq!(failure.errors.len(), 1, "{failure}");
    assert_eq!(
        failure.to_string(),
        "policies/landing.tests.json: test #1 (wrong on purpose) `max_lanes`: expected 3, got 2"
    );
    let landing: Vec<bool> = failure
        .cases
        .iter()
        .filter(|c| c.tests_file == "policies/landing.tests.json")
        .map(|c| c.passed())
        .collect();
    assert_eq!(landing, [false, true, true]);
}

#[test]
fn reload_swaps_a_good_set_and_keeps_the_last_good_one_on_failure() {
    let root = tempfile::tempdir().unwrap();
    let rules = Rules::load(Some(root.path())).unwrap();
    let first = rules.current();
    assert!(matches!(rules.reload(), Ok(Reloaded::Unchanged(_))));

    let freeze = r#"
fn admit(record, ctx) { #{ decision: "wait", reason: "release freeze" } }
fn on_land_result(record, result, ctx) {
    if result.succeeded && result.merged { return #{ decision: "landed", reason: "" }; }
    #{ decision: "blocked", reason: result.summary }
}
fn max_lanes(ctx) { 1 }
"#;
    write(root.path(), "policies/landing.rhai", freeze);
    let Ok(Reloaded::Swapped(frozen)) = rules.reload() else {
        panic!("a valid edit is swapped in");
    };
    assert_ne!(frozen.hash(), first.hash());
    assert_eq!(
        landing::admit(&rules.current(), &json!({}), &ctx())
            .value
            .decision,
        landing::Admit::Wait
    );

    write(
        root.path(),
        "policies/landing.rhai",
        "fn admit(record, ctx) {",
    );
    let failure = rules.reload().unwrap_err();
    assert!(
        failure.headline().starts_with("policies/landing.rhai:1:"),
        "{failure}"
    );
    assert_eq!(
        rules.current().hash(),
        frozen.hash(),
        "the last good set stays"
    );
    // A decision taken with a set held before the swap keeps using that set.
    assert_eq!(
        landing::admit(&first, &json!({}), &ctx()).value.decision,
        landing::Admit::Go
    );
}

#[test]
fn the_watcher_reloads_rename_on_save_edits_and_reports_refusals() {
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "policies/landing.rhai",
        include_str!("../../policies/landing.rhai"),
    );
    let rules = Rules::load(Some(root.path())).unwrap();
    let status = RulesStatus::started(&rules.current());
    status.write(state.path()).unwrap();
    let _watcher = ReloadWatcher::start(rules.clone(), state.path().to_owned(), status).unwrap();

    let freeze = include_str!("../../policies/landing.rhai").replace(
        "#{ decision: \"go\", reason: \"no landing policy holds it back\" }",
        "#{ decision: \"wait\", reason: \"freeze\" }",
    );
    let save_landing = |text: &str| {
        write_and_await(
            root.path(),
            state.path(),
            "policies/landing.rhai",
            text,
            Duration::from_secs(10),
        )
        .unwrap()
    };
    let seen = save_landing(&freeze);
    assert_eq!(seen, ReloadSeen::Active(rules.current().hash().to_owned()));
    assert_eq!(
        landing::admit(&rules.current(), &json!({}), &ctx())
            .value
            .decision,
        landing::Admit::Wait
    );
    let active = rules.current().hash().to_owned();

    let seen = save_landing("fn admit(record, ctx) { #{ decision: ");
    let ReloadSeen::Refused(error) = seen else {
        panic!("a broken edit is refused: {seen:?}");
    };
    assert!(error.starts_with("policies/landing.rhai:1:"), "{error}");
    assert_eq!(rules.current().hash(), active);
    let status = RulesStatus::read(state.path()).unwrap().unwrap();
    assert!(status.line().contains("failed at"), "{}", status.line());
    assert_eq!(status.active_hash, active);

    // Putting the good file back clears the failure without a new set.
    let seen = save_landing(&freeze);
    assert_eq!(seen, ReloadSeen::Active(active));
    assert!(
        RulesStatus::read(state.path())
            .unwrap()
            .unwrap()
            .last_reload
            .ok
    );
}

/// The deadline is checked between operations only, so one native call could return after
/// it. A rule's native regex work is bounded (compiled size, text length: a pattern past
/// the size limit is an error at once), and an answer that still comes back after the
/// deadline is a timeout, never used.
#[test]
fn a_native_regex_call_cannot_outlive_the_rule_deadline() {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "rules/probe.rhai",
        r#"
fn huge() {
    let s = "01";
    while s.len() < 60000 { s += s; }
    regex_is_match(s, "[01]*1[01]{6000}x")
}
fn slow() {
    let s = "01";
    while s.len() < 32768 { s += s; }
    regex_is_match(s, "[01]*1[01]{100}x")
}
fn too_long() {
    let s = "01";
    while s.len() <= 65536 { s += s; }
    regex_is_match(s, "x")
}
"#,
    );
    let rules = Rules::load(Some(root.path())).unwrap();
    let set = rules.current();
    let deadline = set_deadline();
    let started = Instant::now();
    let outcome = set.call_json("rules/probe.rhai", "huge", &[]);
    let took = started.elapsed();
    assert!(
        took < deadline
            && outcome
                .as_ref()
                .is_err_and(|e| e.to_string().contains("regex")),
        "one rule call took {took:?} (deadline {deadline:?}) and answered {outcome:?}"
    );
    // The largest of that family under the size limit: an answer, or a timeout if it came
    // late (a loaded machine), never a late answer.
    let started = Instant::now();
    let outcome = set.call_json("rules/probe.rhai", "slow", &[]);
    let took = started.elapsed();
    assert!(
        outcome.is_err() || took < deadline + Duration::from_millis(5),
        "took {took:?} (deadline {deadline:?}) and answered {outcome:?}"
    );
    let err = set
        .call_json("rules/probe.rhai", "too_long", &[])
        .unwrap_err();
    assert!(err.to_string().contains("limit is 65536"), "{err}");
}
