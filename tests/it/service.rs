//! Running berth as a service: one daemon per berth dir, its health in `status`, metrics
//! scraped over HTTP, logs a service manager can keep.

use std::fs;
use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{World, sample, scrape, served_addr, spawn_serving_metrics, stop};

#[test]
fn one_daemon_per_berth_dir_health_in_status_and_metrics_over_http() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    // The landing waits for a go file, so the test can scrape while it holds the lane.
    let go = world.root.join("GO");
    let config = world.config(&format!(
        "forge = \"git\"\npoll_secs = 1\nland_command = [\"sh\", \"-c\", \"while [ ! -e {} ]; do sleep 0.05; done; exec {} \\\"$@\\\"\", \"land\", \"{{branch}}\", \"{{base}}\", \"{}\", \"{{pr}}\"]\n",
        go.display(),
        world.land_script().display(),
        world.root.join("ledger").display()
    ));
    let state = world.berth_state();
    let daemon = spawn_serving_metrics(&world, &config, &[]);
    let log_path = state.with_extension("log");
    let mut addr = String::new();
    assert!(
        world.wait_for(Duration::from_secs(30), || {
            let Some(served) = served_addr(&world) else {
                return false;
            };
            addr = served;
            world.read_record(&id)["status"] == "landing"
        }),
        "no landing started; log:\n{}",
        fs::read_to_string(&log_path).unwrap_or_default()
    );
    // The gauges are the last snapshot's: one taken while the record was still claiming
    // is replaced by the next, within a poll.
    let mut holding = String::new();
    assert!(
        world.wait_for(Duration::from_secs(30), || {
            holding = scrape(&addr);
            sample(&holding, "berth_records{status=\"landing\"}") == Some(1.0)
        }),
        "the metrics never showed the landing:\n{holding}"
    );
    assert!(
        holding.lines().any(
            |l| l.starts_with("berth_lane_lock_heartbeat_age_seconds{lane=\"")
                && l.contains(":main\"} ")
        ),
        "{holding}"
    );
    fs::write(&go, "").unwrap();
    assert!(
        world.wait_for(Duration::from_secs(30), || world.read_record(&id)["status"]
            == "landed"),
        "no landing; log:\n{}",
        fs::read_to_string(&log_path).unwrap_or_default()
    );

    // The startup line, as JSON, without escape codes (stderr is a file).
    let log = fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains('\u{1b}'), "ANSI codes in a log file:\n{log}");
    let startup: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every line is JSON"))
        .find(|v| v["message"] == "berth starting")
        .expect("a startup line");
    assert_eq!(startup["version"], berth::VERSION);
    assert_eq!(startup["forge"], "git");
    assert_eq!(startup["queue_dir"], world.queue.to_str().unwrap());
    assert_eq!(startup["poll_secs"], 1);
    assert_eq!(startup["rules_root"], "embedded defaults");
    assert_eq!(startup["rules_hash"].as_str().unwrap().len(), 64);
    assert!(startup["config"].as_str().unwrap().contains("(--config)"));

    // A second daemon on the same berth dir refuses, naming the first; so does --once.
    for mode in ["--watch", "--once"] {
        let out = world
            .berth_daemon()
            .args(["run", mode, "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("another berth daemon is running")
                && stderr.contains(&format!("pid {} (run --watch) since 20", daemon.id())),
            "{stderr}"
        );
    }

    // `status` shows the daemon, its last tick and the forge's last answer. The forge's
    // answers reach the health file with the tick after them (forge work runs beside the
    // ticks), so status is read until one is there.
    let mut text = String::new();
    let answered = world.wait_for(Duration::from_secs(30), || {
        let out = world
            .berth()
            .env("BERTH_DIR", &state)
            .arg("status")
            .output()
            .unwrap();
        text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .any(|l| l.contains("forge (git): last answer ") && l.ends_with(": ok"))
    });
    assert!(answered, "{text}");
    assert!(
        text.contains(&format!(
            "daemon: running, pid {} (run --watch) since 20",
            daemon.id()
        )),
        "{text}"
    );
    assert!(
        text.contains("last tick: 20") && text.contains(": ok: "),
        "{text}"
    );
    // Which call answered last depends on where the tick is when `status` reads; that one
    // did and that it said ok is what the operator needs.
    assert!(
        text.lines()
            .any(|l| l.contains("forge (git): last answer ") && l.ends_with(": ok")),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_slice(
        &world
            .berth()
            .env("BERTH_DIR", &state)
            .args(["status", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(json["daemon"]["running"], true);
    assert_eq!(json["daemon"]["pid"], daemon.id());
    assert_eq!(json["daemon"]["health"]["lastTick"]["ok"], true);

    // Metrics, scraped over HTTP from the running daemon.
    let metrics = scrape(&addr);
    assert_eq!(
        sample(&metrics, "berth_landings_total{outcome=\"landed\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "berth_records{status=\"landed\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "berth_ticks_total").unwrap() >= 1.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, "berth_tick_duration_seconds_count").unwrap() >= 1.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "berth_forge_calls_total{kind=\"merge_proof\",result=\"ok\"}"
        )
        .unwrap()
            >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "berth_rules_last_reload_ok"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "berth_rule_set{{hash=\"{}\",source=\"embedded defaults\"}} 1",
            startup["rules_hash"].as_str().unwrap()
        )),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "berth_halt_events_pending"),
        Some(0.0),
        "{metrics}"
    );
    // The lock is released: its lane is no longer reported.
    assert!(
        !metrics.contains("berth_lane_lock_heartbeat_age_seconds{"),
        "{metrics}"
    );

    stop(daemon);
    // Once it is gone, the berth dir is free again and `status` says so.
    let text = String::from_utf8(
        world
            .berth()
            .env("BERTH_DIR", &state)
            .arg("status")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(text.contains("daemon: not running on"), "{text}");
    assert!(text.contains("(the last daemon here, pid"), "{text}");
}

#[test]
fn a_queue_dir_that_does_not_exist_is_an_error_naming_it() {
    let world = World::new();
    let missing = world.root.join("no-such-queue");
    let out = world
        .berth()
        .args(["status", "--queue-dir", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("queue dir {}", missing.display())),
        "{stderr}"
    );
}

#[test]
fn a_closed_pipe_ends_status_quietly() {
    let world = World::new();
    let repo = world.repo("widget", "https://github.com/acme/widget.git");
    for pr in 1..=200 {
        world.record(&repo, pr).write();
    }
    let mut child = world
        .berth_std()
        .args(["status", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe, as `head -1` does.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 2];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = std::os::unix::process::ExitStatusExt::signal(&out.status)
        .map(|s| 128 + s)
        .or(out.status.code());
    assert!(matches!(code, Some(0) | Some(141)), "{code:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn rust_log_is_honoured_and_a_bad_filter_is_reported() {
    let world = World::new();
    let out = world
        .berth()
        .env("RUST_LOG", "berth=loud")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("RUST_LOG=\"berth=loud\" is not a valid log filter"),
        "{stderr}"
    );
    // BERTH_LOG wins over RUST_LOG.
    let out = world
        .berth()
        .env("RUST_LOG", "berth=loud")
        .env("BERTH_LOG", "warn")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // RUST_LOG=debug shows the tick, forge and lock debug lines of a run.
    let lane = world.git_lane("widget", None);
    lane.queue(1, "main");
    let config = world.git_forge_config("");
    let out = world
        .berth_daemon()
        .env("RUST_LOG", "debug")
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for needle in [
        "tick done",
        "forge call",
        "taking the lane lock",
        "acquired lane lock",
        "lane lock released",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} line:\n{stderr}");
    }
}

#[test]
fn the_user_config_file_is_found_without_a_flag() {
    let world = World::new();
    // The defaults' gh forge starts only where a `gh` can run; the queue is empty, so it
    // is never called.
    let stand_in = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gh-stand-in");
    let mut path = vec![stand_in];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(path).unwrap();
    let startup = |cmd: &mut assert_cmd::Command| -> serde_json::Value {
        let out = cmd
            .env("PATH", &path)
            .args(["run", "--once", "--log-format", "json"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "berth starting")
            .unwrap_or_else(|| panic!("no startup line: {stderr}"))
    };
    // Nothing there: the defaults, and the path that was looked at.
    let line = startup(&mut world.berth_daemon());
    assert_eq!(line["forge"], "gh");
    let default_path = world.home.join(".config/berth/config.toml");
    assert!(
        line["config"]
            .as_str()
            .unwrap()
            .contains(&format!("{} not present", default_path.display())),
        "{line}"
    );
    // ~/.config/berth/config.toml is read when present…
    fs::create_dir_all(default_path.parent().unwrap()).unwrap();
    fs::write(&default_path, "forge = \"git\"\npoll_secs = 7\n").unwrap();
    let line = startup(&mut world.berth_daemon());
    assert_eq!(
        (line["forge"].as_str(), line["poll_secs"].as_u64()),
        (Some("git"), Some(7))
    );
    assert!(
        line["config"]
            .as_str()
            .unwrap()
            .contains("found at the user config path"),
        "{line}"
    );
    // …$XDG_CONFIG_HOME moves it, and BERTH_CONFIG wins over both.
    let xdg = world.root.join("xdg");
    fs::create_dir_all(xdg.join("berth")).unwrap();
    fs::write(
        xdg.join("berth/config.toml"),
        "forge = \"git\"\npoll_secs = 9\n",
    )
    .unwrap();
    let line = startup(world.berth_daemon().env("XDG_CONFIG_HOME", &xdg));
    assert_eq!(line["poll_secs"], 9);
    let explicit = world.config("poll_secs = 11\n");
    let line = startup(
        world
            .berth_daemon()
            .env("XDG_CONFIG_HOME", &xdg)
            .env("BERTH_CONFIG", &explicit),
    );
    assert_eq!(
        (line["forge"].as_str(), line["poll_secs"].as_u64()),
        (Some("gh"), Some(11))
    );
    assert!(
        line["config"].as_str().unwrap().ends_with("(BERTH_CONFIG)"),
        "{line}"
    );
}

#[test]
fn doctor_prints_one_line_per_check_and_fails_while_unhealthy() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let config = world.git_forge_config("poll_secs = 1\n");
    // A record whose landing never finishes while the test looks, so it stays queued.
    let id = lane.queue(1, "main");
    let planted = world
        .record(&world.root.join("elsewhere"), 2)
        .set("repoIdentity", "github.com/evil/repo")
        .write();
    let state = world.berth_state();
    let doctor = || {
        let out = world
            .berth()
            .env("BERTH_DIR", &state)
            .env("BERTH_CONFIG", &config)
            .arg("doctor")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let (code, text) = doctor();
    assert_eq!(code, Some(1), "{text}");
    for line in [
        "ok    config: ",
        "ok    git: git version",
        "ok    gh: not needed (forge = \"git\")",
        &format!("ok    queue dir: {}", world.queue.display()),
        &format!("ok    record {id}: "),
        &format!("FAIL  record {planted}: "),
        "ok    rules: embedded defaults: ",
        "warn  service: not installed",
        &format!("FAIL  daemon: no daemon running on {}", state.display()),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "no {line:?} in:\n{text}"
        );
    }
    assert!(
        text.contains("lane locks of") && text.contains("none held"),
        "{text}"
    );
    assert!(text.ends_with("UNHEALTHY\n"), "{text}");

    // With the planted record gone and a daemon running, it is healthy.
    fs::remove_file(world.queue.join(format!("{planted}.json"))).unwrap();
    let daemon = world.spawn_watch(&config);
    assert!(world.wait_for(Duration::from_secs(30), || {
        fs::read_to_string(state.join("daemon-health.json")).is_ok_and(|t| t.contains("lastTick"))
    }));
    let (code, text) = doctor();
    stop(daemon);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok    daemon: running, pid ") && l.contains("last tick")),
        "{text}"
    );
    assert!(text.ends_with("HEALTHY\n"), "{text}");
}

#[test]
fn completions_and_config_show() {
    let world = World::new();
    let out = world
        .berth()
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(
        script.contains("complete -F _berth") && script.contains("doctor"),
        "{script}"
    );

    let config = world.config("forge = \"git\"\npoll_secs = 5\n");
    let out = world
        .berth()
        .env("BERTH_CONFIG", &config)
        .args(["config", "show", "--max-lanes", "3"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    let file = config.display().to_string();
    for line in [
        format!("# config file: {file} (BERTH_CONFIG)"),
        format!("forge = \"git\"  # {file}"),
        format!("poll_secs = 5  # {file}"),
        "max_lanes = 3  # --max-lanes".to_owned(),
        "lock_ttl_secs = 7200  # default".to_owned(),
        format!(
            "queue_dir = \"{}\"  # BERTH_QUEUE_DIR",
            world.queue.display()
        ),
        "rules_root = (none)  # default: the embedded rules".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
}

#[test]
fn explain_accepts_the_record_ids_retry_and_abandon_accept() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    world.run_once(&world.git_forge_config("")).success();
    let by_id = world
        .berth_daemon()
        .args(["explain", &id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&by_id.stdout);
    assert!(by_id.status.success(), "{text}");
    assert!(
        text.contains("PR #1 of ") && text.contains(&format!("(record {id})")),
        "{text}"
    );
    assert!(text.contains("-> landed"), "{text}");
    let by_pr = world
        .berth_daemon()
        .args(["explain", "1"])
        .output()
        .unwrap();
    assert_eq!(by_pr.stdout, by_id.stdout);
    let unknown = world
        .berth_daemon()
        .args(["explain", "no-such-record"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn rules_init_writes_the_embedded_set_which_then_passes_check_and_refuses_a_non_empty_dir() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new();
    let dir = world.root.join("my-rules");
    world
        .berth()
        .args(["rules", "init", dir.to_str().unwrap()])
        .assert()
        .success();
    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    for (name, contents) in berth::rules::embedded::FILES {
        assert_eq!(
            fs::read_to_string(dir.join(name)).unwrap(),
            *contents,
            "{name}"
        );
    }
    assert!(
        berth::rules::embedded::FILES
            .iter()
            .any(|(name, _)| name.ends_with(".tests.json"))
    );
    world
        .berth()
        .args(["rules", "check", dir.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicates::str::contains("ok: rules"));

    // A second init into the now non-empty root refuses, naming it, and changes nothing.
    let landing = dir.join("policies/landing.rhai");
    fs::write(&landing, "// mine\n").unwrap();
    world
        .berth()
        .args(["rules", "init", dir.to_str().unwrap()])
        .assert()
        .failure()
        .stderr(predicates::str::contains(dir.to_str().unwrap()))
        .stderr(predicates::str::contains("not empty"));
    assert_eq!(fs::read_to_string(&landing).unwrap(), "// mine\n");
}

/// `retry` resets the record's retries, yet the second landing must not append to (or
/// overwrite) the first one's log: each attempt has its own file, named in `lastError`.
#[test]
fn each_landing_attempt_writes_its_own_log_even_after_retry() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    let config = world
        .config("forge = \"git\"\nland_command = [\"sh\", \"-c\", \"echo failing; exit 3\"]\n");
    let logs = world.berth_state().join("logs").join(&id);
    let mut seen = Vec::new();
    for round in 0..2 {
        if round > 0 {
            world.berth().args(["retry", &id]).assert().success();
        }
        world.run_once(&config).code(1);
        let record = world.read_record(&id);
        assert_eq!(record["status"], "blocked");
        let why = record["lastError"].as_str().unwrap().to_owned();
        let mut files: Vec<String> = fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files.len(), round + 1, "{files:?}");
        let new = files.iter().find(|f| !seen.contains(*f)).unwrap().clone();
        assert!(why.contains(&new), "lastError {why:?} names {new}");
        let text = fs::read_to_string(logs.join(&new)).unwrap();
        assert_eq!(
            text.lines().filter(|l| *l == "failing").count(),
            1,
            "{text}"
        );
        seen.push(new);
    }
    assert_eq!(seen, ["attempt-1-land.log", "attempt-2-land.log"]);
}

#[test]
fn detect_no_count_leaves_learned_hit_counts_alone() {
    use crate::faults::{fixture_path, hit_count, learned_file};
    let world = World::new();
    let learned = learned_file(&world.root, "STILL_COMMITTED", "$.features[*]");
    let before = fs::read(&learned).unwrap();
    let detect = |extra: &[&str]| {
        world
            .berth()
            .args(["detect", "--json", "--learned"])
            .arg(&learned)
            .args(extra)
            .arg(fixture_path())
            .assert()
            .code(1)
            .stdout(predicates::str::contains(
                "[learned] feature still committed",
            ));
    };
    detect(&["--no-count"]);
    assert_eq!(hit_count(&learned), 0);
    assert_eq!(
        fs::read(&learned).unwrap(),
        before,
        "the file is not rewritten"
    );
    detect(&[]);
    assert_eq!(hit_count(&learned), 1);
}

#[test]
fn lock_status_json_is_one_document_with_the_facts_the_text_shows() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let ref_name = lane.hold_lock();
    let repo = lane.clone.to_str().unwrap();
    let out = world
        .berth_daemon()
        .args(["lock", "status", "--json", "--repo-path", repo])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).expect("one JSON document");
    let repos = doc["repos"].as_array().unwrap();
    assert_eq!(repos.len(), 1, "{doc:#}");
    assert_eq!(repos[0]["repo"], repo);
    assert_eq!(repos[0]["origin"], lane.remote_url.as_str());
    assert!(repos[0]["error"].is_null());
    let locks = repos[0]["locks"].as_array().unwrap();
    // gstack's lock and the one every spelling of this local repository shares.
    assert_eq!(locks.len(), 2, "{doc:#}");
    let lock = locks
        .iter()
        .find(|l| l["ref"] == ref_name.as_str())
        .unwrap();
    assert_eq!(lock["ref"], ref_name.as_str());
    assert_eq!(lock["state"], "live");
    assert_eq!(lock["holder"], "holder-host:42:7");
    assert!(lock["createdAt"].is_string() && lock["expiresAt"].is_string());
    assert_eq!(lock["sha"].as_str().unwrap().len(), 40);
    assert!(world.lock_refs(&lane.remote_url).contains(&ref_name));
}

/// A rule that errs on the live record fails closed, and `/metrics` counts it per rule file
/// and function: scraped over HTTP from a running daemon.
#[test]
fn a_failing_rule_counts_as_a_fallback_in_metrics() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    // Passes every built-in sample (forge `github`), errs on this daemon's (`git`).
    world.write_rule(
        "policies/landing.rhai",
        &crate::rules::default_landing_answering(
            r#"if ctx.config.forge == "git" { throw "admit is broken on purpose"; }
               #{ decision: "go", reason: "fine" }"#,
        ),
    );
    let config = world.git_forge_config("poll_secs = 1\n");
    let root = world.rules_root();
    let daemon = spawn_serving_metrics(&world, &config, &["--rules-root", root.to_str().unwrap()]);
    let log_path = world.berth_state().with_extension("log");
    let fallbacks = "berth_rule_fallbacks_total{rule=\"policies/landing.rhai\",function=\"admit\"}";
    let mut metrics = String::new();
    let counted = world.wait_for(Duration::from_secs(30), || {
        let Some(addr) = served_addr(&world) else {
            return false;
        };
        metrics = scrape(&addr);
        sample(&metrics, fallbacks).is_some_and(|n| n >= 1.0)
    });
    stop(daemon);
    assert!(
        counted,
        "no {fallbacks} >= 1 in:\n{metrics}\nlog:\n{}",
        fs::read_to_string(&log_path).unwrap_or_default()
    );
    // Failing closed: the record waits, untouched.
    assert_eq!(world.read_record(&id)["status"], "queued");
}

#[test]
fn a_plain_shutdown_logs_at_info_and_names_no_budget() {
    let world = World::new();
    let config = world.git_forge_config("poll_secs = 1\n");
    let state = world.berth_state();
    let daemon = world.spawn_watch(&config);
    assert!(world.wait_for(Duration::from_secs(30), || {
        fs::read_to_string(state.join("daemon-health.json")).is_ok_and(|t| t.contains("lastTick"))
    }));
    stop(daemon);
    let log = fs::read_to_string(state.with_extension("log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(" INFO ") && l.contains("signal SIGTERM: no lane lock to release")),
        "{log}"
    );
    assert!(!log.contains("budget exhausted"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains(" WARN ") || l.contains(" ERROR ")),
        "{log}"
    );
}
