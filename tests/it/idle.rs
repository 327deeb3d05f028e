//! An idle daemon is quiet: reads never wake it, it asks the forge at most once per repo
//! per poll interval, and a refused rule edit is reported once (issue 9 §1).

use std::fs;
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{GhLane, World};

fn stop(mut daemon: Child) {
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads every file in `dir` a few times, as `berth status` or a producer would.
fn read_all(dir: &std::path::Path) {
    for _ in 0..5 {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            if entry.path().is_file() {
                let _ = fs::read(entry.path());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// PRs 40–43 of the widget repo, settled: three landed and proven, one blocked and just
/// checked (not due for a re-check for another 10 minutes).
fn settled_queue(gh: &GhLane) {
    let now = berth::clock::now_iso();
    for pr in 40..43 {
        gh.world
            .record(&gh.repo, pr)
            .set("repoIdentity", "github.com/acme/widget")
            .set("status", "landed")
            .set("lastGithubState", "MERGED")
            .set("lastGithubCheckedAt", now.as_str())
            .write();
    }
    gh.world
        .record(&gh.repo, 43)
        .set("repoIdentity", "github.com/acme/widget")
        .set("status", "blocked")
        .set("lastError", "land: exited 1")
        .set("lastGithubState", "OPEN")
        .set("lastGithubCheckedAt", now.as_str())
        .write();
}

#[test]
fn idle_watch_over_a_settled_queue_is_not_woken_by_reads() {
    let world = World::new();
    let gh = world.gh_lane();
    settled_queue(&gh);
    let config = gh.config(r#"["true"]"#, "poll_secs = 60\n");
    let daemon = world.spawn_berth(
        &["run", "--watch", "--config", config.to_str().unwrap()],
        &world.berth_state(),
        &[("GH_STANDIN_DIR", &gh.replies), ("GH_STANDIN_LOG", &gh.log)],
    );
    let status = world.berth_state().join("rules-status.json");
    wait_for("the daemon to start", || status.exists());
    // The first tick's calls (discovery, the fault watch's listing) come and stop.
    let mut seen = usize::MAX;
    wait_for("the first tick's forge calls", || {
        std::thread::sleep(Duration::from_millis(500));
        std::mem::replace(&mut seen, gh.calls().len()) == seen
    });
    // The daemon's own reads, and everyone else's, for a few seconds: no tick, no call.
    read_all(&world.queue);
    std::thread::sleep(Duration::from_secs(2));
    let calls = gh.calls();
    stop(daemon);
    assert_eq!(calls.len(), seen, "gh calls while idle: {calls:?}");
    assert!(calls.iter().all(|c| c[..2] == ["pr", "list"]), "{calls:?}");
}

#[test]
fn a_refused_rule_edit_is_reported_once_and_a_valid_one_reloads_once() {
    let world = World::new();
    world.write_rule(
        "policies/landing.rhai",
        include_str!("../../policies/landing.rhai"),
    );
    let daemon = crate::rules::spawn_watching(&world, &world.git_forge_config("poll_secs = 60\n"));
    let log = || fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default();
    let status = world.berth_state().join("rules-status.json");
    wait_for("the daemon's rules status", || status.exists());
    wait_for("the rules watch", || {
        log().contains("watching the rules root")
    });
    let wait = Duration::from_secs(20);
    let broken = berth::rules::write_and_await(
        &world.rules_root(),
        &world.berth_state(),
        "policies/landing.rhai",
        "fn admit(record, ctx) {\n",
        wait,
    )
    .unwrap();
    assert!(matches!(broken, berth::rules::ReloadSeen::Refused(_)));
    read_all(&world.rules_root().join("policies"));
    std::thread::sleep(Duration::from_millis(500));
    let refusals = log().matches("rule reload REFUSED").count();
    assert_eq!(refusals, 1, "{}", log());

    let fixed = berth::rules::write_and_await(
        &world.rules_root(),
        &world.berth_state(),
        "policies/landing.rhai",
        &include_str!("../../policies/landing.rhai").replace("no landing policy", "nothing"),
        wait,
    )
    .unwrap();
    assert!(matches!(fixed, berth::rules::ReloadSeen::Active(_)));
    read_all(&world.rules_root().join("policies"));
    std::thread::sleep(Duration::from_millis(500));
    stop(daemon);
    let log = log();
    assert_eq!(log.matches("rule reload REFUSED").count(), 1, "{log}");
    assert_eq!(
        log.matches("rule set reloaded and active").count(),
        1,
        "{log}"
    );
}
