//! Adversarial review (review1): writes the watchers must not miss (issue 9 §1: "a real
//! write must never be missed"). Each test names the way of writing it tries.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::World;

const WAIT: Duration = Duration::from_secs(15);
const LANDING: &str = include_str!("../../policies/landing.rhai");

fn stop(mut daemon: Child) {
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
}

fn log(world: &World) -> String {
    fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default()
}

/// `run --watch --rules-root <root>` with poll_secs = 60, without `World::rules_root`
/// (which recreates `rules/` and `policies/`), once the rules watch is up.
fn spawn_watching(world: &World, root: &Path) -> Child {
    let config = world.git_forge_config("poll_secs = 60\n");
    let args = [
        "run",
        "--watch",
        "--config",
        config.to_str().unwrap(),
        "--rules-root",
        root.to_str().unwrap(),
    ];
    let daemon = world.spawn_berth(&args, &world.berth_state(), &[]);
    let deadline = Instant::now() + WAIT;
    while !log(world).contains("watching the rules root") {
        assert!(Instant::now() < deadline, "no rules watch:\n{}", log(world));
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

/// Whether the daemon reported a reload (swapped in or refused) of the files now under
/// `root` within [`WAIT`].
fn reload_seen(world: &World, root: &Path) -> bool {
    let expected = berth::rules::SourceSet::load(Some(root))
        .unwrap()
        .hash()
        .to_owned();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = berth::rules::RulesStatus::read(&world.berth_state())
            && (status.active_hash == expected
                || status.last_reload.hash.as_deref() == Some(expected.as_str()))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn variant(reason: &str) -> String {
    let text = LANDING.replace("no landing policy holds it back", reason);
    assert_ne!(text, LANDING);
    text
}

/// `rm -rf policies && mkdir policies && $EDITOR policies/landing.rhai` (or a `git checkout`
/// that replaces the directory): the new directory is never watched, so the first write
/// is seen only through its parent's create event and every later edit is missed.
#[test]
fn review1_edits_under_a_deleted_and_recreated_rules_dir_still_reload() {
    let world = World::new();
    let root = world.rules_root();
    world.write_rule("policies/landing.rhai", LANDING);
    let daemon = spawn_watching(&world, &root);

    fs::remove_dir_all(root.join("policies")).unwrap();
    fs::create_dir(root.join("policies")).unwrap();
    fs::write(root.join("policies/landing.rhai"), variant("first")).unwrap();
    let first = reload_seen(&world, &root);
    std::thread::sleep(Duration::from_millis(300));
    fs::write(root.join("policies/landing.rhai"), variant("second")).unwrap();
    let second = reload_seen(&world, &root);
    stop(daemon);
    assert!(first, "the recreated dir's first file was not reloaded");
    assert!(
        second,
        "an edit inside the recreated policies/ was never reloaded:\n{}",
        log(&world)
    );
}

/// A rules root without `policies/` at start (only rule overrides), then the operator adds
/// a landing policy and later edits it: the later edit is never reloaded.
#[test]
fn review1_edits_under_a_policies_dir_created_after_start_reload() {
    let world = World::new();
    let root = world.rules_root();
    fs::remove_dir(root.join("policies")).unwrap();
    let daemon = spawn_watching(&world, &root);

    fs::create_dir(root.join("policies")).unwrap();
    fs::write(root.join("policies/landing.rhai"), variant("first")).unwrap();
    let first = reload_seen(&world, &root);
    std::thread::sleep(Duration::from_millis(300));
    fs::write(root.join("policies/landing.rhai"), variant("second")).unwrap();
    let second = reload_seen(&world, &root);
    stop(daemon);
    assert!(first, "the new policies/ dir was not reloaded");
    assert!(
        second,
        "an edit inside policies/ created after start was never reloaded:\n{}",
        log(&world)
    );
}

/// A directory of rules moved in whole (`mv ~/team-rules.d rules/`): its name has a dot,
/// so the watch drops the rename as "not a rule file", and nothing reloads.
#[test]
fn review1_a_dotted_rules_subdirectory_moved_in_is_reloaded() {
    let world = World::new();
    let root = world.rules_root();
    let daemon = spawn_watching(&world, &root);

    let outside = world.root.join("team-rules.d");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("extra.rhai"), "fn helper( {\n").unwrap();
    fs::rename(&outside, root.join("rules/team-rules.d")).unwrap();
    let seen = reload_seen(&world, &root);
    stop(daemon);
    assert!(
        seen,
        "a rules subdirectory moved in was never loaded:\n{}",
        log(&world)
    );
}

/// A rule file edited through a hard link outside the rules root (inotify reports the
/// write only on the path it was made through). The rules watcher has no poll, so the
/// running set and the files on disk disagree for ever.
#[test]
fn review1_a_rule_written_through_a_hard_link_is_reloaded() {
    let world = World::new();
    let root = world.rules_root();
    let rule = world.write_rule("policies/landing.rhai", LANDING);
    let link = world.root.join("landing-link.rhai");
    fs::hard_link(&rule, &link).unwrap();
    let daemon = spawn_watching(&world, &root);

    fs::write(&link, variant("through a link")).unwrap();
    let seen = reload_seen(&world, &root);
    stop(daemon);
    assert!(
        seen,
        "an edit through a hard link was never reloaded:\n{}",
        log(&world)
    );
}

/// The queue dir removed and made again (an operator's cleanup, a producer's `mkdir -p`):
/// the watch on the old directory is gone, so a record queued afterwards waits for the
/// poll interval (here 60 s) instead of waking the daemon.
#[test]
fn review1_a_record_in_a_recreated_queue_dir_wakes_the_watch() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let config = world.git_forge_config("poll_secs = 60\n");
    let daemon = world.spawn_berth(
        &["run", "--watch", "--config", config.to_str().unwrap()],
        &world.berth_state(),
        &[],
    );
    let status = world.berth_state().join("rules-status.json");
    let deadline = Instant::now() + WAIT;
    while !status.exists() {
        assert!(Instant::now() < deadline, "no start:\n{}", log(&world));
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    fs::remove_dir_all(&world.queue).unwrap();
    fs::create_dir(&world.queue).unwrap();
    fs::set_permissions(&world.queue, fs::Permissions::from_mode(0o700)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    lane.queue(1, "main");
    let deadline = Instant::now() + WAIT;
    while world.ledger().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let ledger = world.ledger();
    stop(daemon);
    assert_eq!(
        ledger,
        [1],
        "a record queued in the recreated queue dir was not seen within {WAIT:?}:\n{}",
        log(&world)
    );
}

/// `max_lanes = 65` in the config (or `--max-lanes 65`) is accepted, and the shipped
/// `max_lanes` rule answers it; the contract caps lanes at 64, so with no rule edited at
/// all the daemon reports the shipped rule as failing (RULE_FAILING, one lane), while
/// `berth rules check` on the same set says ok. The config should be refused at load (or
/// capped) with a clear error instead.
#[test]
fn review1_a_config_max_lanes_over_the_cap_does_not_make_the_shipped_rule_fail() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    lane.queue(1, "main");
    let config = world.git_forge_config("max_lanes = 65\n");
    let out = world
        .berth_daemon()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let refused = !out.status.success() && stderr.contains("max_lanes");
    let fallbacks = berth::rules::fallbacks::read(&world.berth_state()).unwrap();
    assert!(
        refused || fallbacks.iter().all(|f| f.function != "max_lanes"),
        "the shipped max_lanes rule fails closed on a config value: {fallbacks:#?}\n{stderr}"
    );
}

/// An `accept_pr` that fails for a listed PR fails closed (not accepted), and the fallback
/// is listed with the id the record would have had. `berth status` shows a fallback only
/// on a record's row (none exists: the PR was not accepted) or as a `rule failing:` line
/// for questions about no record, so it prints nothing about it (DESIGN §8 / issue 10:
/// the fallback must be visible in `berth status` while it lasts).
#[test]
fn review1_a_failing_accept_pr_is_visible_in_status() {
    let world = World::new();
    let gh = world.gh_lane();
    // Discovery asks the forge about repos that have records.
    world
        .record(&gh.repo, 40)
        .set("repoIdentity", "github.com/acme/widget")
        .set("status", "landed")
        .set("lastGithubState", "MERGED")
        .write();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/gh");
    fs::copy(
        fixtures.join("pr-list.acme.widget.json"),
        gh.replies.join("pr-list.acme.widget.json"),
    )
    .unwrap();
    let config = gh.config(r#"["true"]"#, "");
    world.write_rule(
        "rules/discovery.rhai",
        &include_str!("../../rules/discovery.rhai").replace(
            "    #{ accept: true, reason: \"labelled, valid marker, same repository\" }",
            "    if pr.headBranch == \"feat/login\" { throw \"cannot decide\"; }\n    \
             #{ accept: true, reason: \"labelled, valid marker, same repository\" }",
        ),
    );
    gh.berth()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .arg("--rules-root")
        .arg(world.rules_root())
        .output()
        .unwrap();
    let fallbacks = berth::rules::fallbacks::read(&world.berth_state()).unwrap();
    assert!(
        fallbacks.iter().any(|f| f.function == "accept_pr"),
        "precondition: accept_pr failed closed: {fallbacks:#?}"
    );
    let out = world.berth_daemon().arg("status").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("accept_pr"),
        "status never says the accept_pr rule is failing:\n{stdout}"
    );
}

/// `rules check` calls `accept_pr` with a built-in PR that "has a valid marker" but whose
/// `marker` is empty, unlike every PR the daemon asks about (the forge listing only passes
/// PRs with a valid marker, and `marker` holds its fields). A rule that reads the marker
/// (`pr.marker.version`) is refused by `rules check`, and so by daemon start and hot
/// reload, though it answers every real PR.
#[test]
fn review1_rules_check_accepts_an_accept_pr_that_reads_the_marker() {
    let world = World::new();
    world.write_rule(
        "rules/discovery.rhai",
        &include_str!("../../rules/discovery.rhai").replace(
            "    #{ accept: true, reason: \"labelled, valid marker, same repository\" }",
            "    if pr.marker.version.starts_with(\"0.\") {\n        \
             return #{ accept: false, reason: \"pre-release versions wait\" };\n    }\n    \
             #{ accept: true, reason: \"labelled, valid marker, same repository\" }",
        ),
    );
    let out = world
        .berth()
        .args(["rules", "check"])
        .arg(world.rules_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "refused:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The built-in samples' `ctx.config.forge` is `"github"`, a value the daemon never
/// passes (it passes its forge's name, `"gh"` or `"git"`). A `max_lanes` that answers per
/// forge, for the two forges there are, is refused by `rules check` (and so by daemon start
/// and hot reload), though it answers every question the daemon can ask.
#[test]
fn review1_rules_check_accepts_a_rule_that_answers_per_forge() {
    let world = World::new();
    world.write_rule(
        "policies/landing.rhai",
        &LANDING.replace(
            "fn max_lanes(ctx) {\n    ctx.config.maxLanes\n}",
            "fn max_lanes(ctx) {\n    switch ctx.config.forge { \"gh\" => 2, \"git\" => 1 }\n}",
        ),
    );
    assert!(
        fs::read_to_string(world.rules_root().join("policies/landing.rhai"))
            .unwrap()
            .contains("switch")
    );
    let out = world
        .berth()
        .args(["rules", "check"])
        .arg(world.rules_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "refused:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A producer that writes a record in place and keeps its descriptor open (a long-lived
/// writer, or one that truncates and rewrites without closing): the kernel reports only
/// `MODIFY`, which the watch drops on purpose, so the record waits for the poll interval
/// (60 s here) instead of waking the daemon.
#[test]
fn review1_a_record_written_without_close_wakes_the_watch() {
    use std::io::Write;
    let world = World::new();
    let lane = world.git_lane("widget", None);
    // The record is made first (a create wakes the watch), then rewritten in place.
    let id = lane.queue(1, "main");
    let path = world.queue.join(format!("{id}.json"));
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("\"queued\"", "\"abandoned\"")).unwrap();
    let config = world.git_forge_config("poll_secs = 60\n");
    let daemon = world.spawn_berth(
        &["run", "--watch", "--config", config.to_str().unwrap()],
        &world.berth_state(),
        &[],
    );
    let status = world.berth_state().join("rules-status.json");
    let deadline = Instant::now() + WAIT;
    while !status.exists() {
        assert!(Instant::now() < deadline, "no start:\n{}", log(&world));
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    // Back to queued: truncate and rewrite through one descriptor, left open.
    let mut file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(0).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.flush().unwrap();
    let deadline = Instant::now() + WAIT;
    while world.ledger().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let ledger = world.ledger();
    drop(file);
    stop(daemon);
    assert_eq!(
        ledger,
        [1],
        "a record rewritten without close was not seen within {WAIT:?}:\n{}",
        log(&world)
    );
}

/// A rule's error message is kept whole: an `admit` that throws a 3 MiB string (under the
/// 4 MiB string limit) fails closed as it should, but the message is copied into the log
/// on every call, into the decision log, and twice into `rule-fallbacks.json`, which then
/// passes the 4 MiB cap `berth status` reads it under: the record's row no longer says why
/// it waits (the fallback becomes invisible) and one tick writes megabytes of log.
#[test]
fn review1_a_huge_rule_error_stays_visible_and_bounded() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    lane.queue(1, "main");
    world.write_rule(
        "policies/landing.rhai",
        &LANDING.replace(
            "    #{ decision: \"go\", reason: \"no landing policy holds it back\" }",
            "    if ctx.config.forge == \"git\" {\n        \
             let s = \"xxx\";\n        while s.len() < 3000000 { s += s; }\n        \
             throw s;\n    }\n    \
             #{ decision: \"go\", reason: \"no landing policy holds it back\" }",
        ),
    );
    let config = world.git_forge_config("");
    let out = world
        .berth_daemon()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .arg("--rules-root")
        .arg(world.rules_root())
        .output()
        .unwrap();
    let logged = out.stderr.len();
    let status = world.berth_daemon().arg("status").output().unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(
        stdout.contains("the admit rule failed"),
        "status does not say why the record waits (the run logged {logged} bytes):\n{}\n{}",
        &stdout[..stdout.len().min(2000)],
        &stderr[..stderr.len().min(2000)]
    );
    assert!(
        logged < 256 * 1024,
        "one `run --once` logged {logged} bytes"
    );
}

/// A refusal is remembered by the files' hash, and a save that leaves the hash alone is
/// "still refused" without a rebuild. But a refusal need not come from the text: a rule
/// test or sample that ran out of its 250 ms on a loaded machine, or one that depends on
/// the clock. Saving the same files again (the operator's way to say "try again") never
/// retries: the set stays refused until its text changes.
#[test]
fn review1_resaving_a_set_refused_for_a_passing_reason_retries_it() {
    let world = World::new();
    world.write_rule("policies/landing.rhai", LANDING);
    let root = world.rules_root();
    let daemon = spawn_watching(&world, &root);
    let until = berth::clock::now().timestamp() + 3;
    let flaky = LANDING.replace(
        "fn max_lanes(ctx) {\n    ctx.config.maxLanes",
        &format!(
            "fn max_lanes(ctx) {{\n    if now_epoch() < {until} {{ let n = 0; loop {{ n += 1; }} }}\n    ctx.config.maxLanes"
        ),
    );
    assert_ne!(flaky, LANDING);
    let first = berth::rules::write_and_await(
        &root,
        &world.berth_state(),
        "policies/landing.rhai",
        &flaky,
        WAIT,
    );
    while berth::clock::now().timestamp() <= until {
        std::thread::sleep(Duration::from_millis(100));
    }
    // The same text saved again, now that it would pass.
    let again = berth::rules::write_and_await(
        &root,
        &world.berth_state(),
        "policies/landing.rhai",
        &flaky,
        Duration::from_secs(5),
    );
    stop(daemon);
    assert!(
        matches!(first, Ok(berth::rules::ReloadSeen::Refused(_))),
        "precondition: refused while the sample times out: {first:?}"
    );
    assert!(
        matches!(again, Ok(berth::rules::ReloadSeen::Active(_))),
        "re-saving the same files never retried the refused set: {again:?}\n{}",
        log(&world)
    );
}
