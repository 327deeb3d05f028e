//! Writes the watchers must not miss (issue 9 §1: "a real write must never be missed").
//! Each test names the way of writing it tries.

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

/// `run --watch --rules-root <root>` with `poll_secs`, without `World::rules_root`
/// (which recreates `rules/` and `policies/`), once the rules watch is up.
fn spawn_watching(world: &World, root: &Path, poll_secs: u64) -> Child {
    let config = world.git_forge_config(&format!("poll_secs = {poll_secs}\n"));
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

/// `run --watch` (git forge, poll_secs = 60, no rules root), once it has started.
fn spawn_queue_watch(world: &World) -> Child {
    let config = world.git_forge_config("poll_secs = 60\n");
    let daemon = world.spawn_watch(&config);
    let status = world.berth_state().join("rules-status.json");
    let deadline = Instant::now() + WAIT;
    while !status.exists() {
        assert!(Instant::now() < deadline, "no start:\n{}", log(world));
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

/// The PRs landed, once one has or [`WAIT`] has passed.
fn ledger_within_wait(world: &World) -> Vec<u64> {
    let deadline = Instant::now() + WAIT;
    while world.ledger().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    world.ledger()
}

fn variant(reason: &str) -> String {
    let text = LANDING.replace("no landing policy holds it back", reason);
    assert_ne!(text, LANDING);
    text
}

/// `rm -rf policies && mkdir policies && $EDITOR policies/landing.rhai` (or a `git checkout`
/// that replaces the directory): the new directory is watched as soon as it appears, so
/// its first file and every later edit reload.
#[test]
fn edits_under_a_deleted_and_recreated_rules_dir_still_reload() {
    let world = World::new();
    let root = world.rules_root();
    world.write_rule("policies/landing.rhai", LANDING);
    let daemon = spawn_watching(&world, &root, 60);

    fs::remove_dir_all(root.join("policies")).unwrap();
    fs::create_dir(root.join("policies")).unwrap();
    write_then_edit_landing(&world, &root, daemon);
}

/// Writes `policies/landing.rhai` under the (new) `policies/`, then edits it, and asserts
/// that the daemon reloaded both.
fn write_then_edit_landing(world: &World, root: &Path, daemon: Child) {
    fs::write(root.join("policies/landing.rhai"), variant("first")).unwrap();
    let first = reload_seen(world, root);
    std::thread::sleep(Duration::from_millis(300));
    fs::write(root.join("policies/landing.rhai"), variant("second")).unwrap();
    let second = reload_seen(world, root);
    stop(daemon);
    assert!(first, "the new dir's first file was not reloaded");
    assert!(
        second,
        "an edit inside the new policies/ was never reloaded:\n{}",
        log(world)
    );
}

/// A rules root without `policies/` at start (only rule overrides), then the operator adds
/// a landing policy and later edits it: both the new file and the later edit reload.
#[test]
fn edits_under_a_policies_dir_created_after_start_reload() {
    let world = World::new();
    let root = world.rules_root();
    fs::remove_dir(root.join("policies")).unwrap();
    let daemon = spawn_watching(&world, &root, 60);

    fs::create_dir(root.join("policies")).unwrap();
    write_then_edit_landing(&world, &root, daemon);
}

/// A directory of rules moved in whole (`mv ~/team-rules.d rules/`): a dot in a directory's
/// name does not make its rename "not a rule file"; the set reloads.
#[test]
fn a_dotted_rules_subdirectory_moved_in_is_reloaded() {
    let world = World::new();
    let root = world.rules_root();
    let daemon = spawn_watching(&world, &root, 60);

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

/// A rule file edited through a hard link outside the rules root: inotify reports the
/// write only on the path it was made through, so no watch hears it. The poll tick's
/// backstop (the rule files' hash against the active set's) reloads it within one poll
/// interval (here 1 s; the test waits 15).
#[test]
fn a_rule_written_through_a_hard_link_is_reloaded_by_the_poll() {
    let world = World::new();
    let root = world.rules_root();
    let rule = world.write_rule("policies/landing.rhai", LANDING);
    let link = world.root.join("landing-link.rhai");
    fs::hard_link(&rule, &link).unwrap();
    let daemon = spawn_watching(&world, &root, 1);

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
/// the watch on the old directory ended with it; the parent's watch sees the new one, the
/// watch is re-added, and a record queued afterwards wakes the daemon well before the poll
/// interval (here 60 s).
#[test]
fn a_record_in_a_recreated_queue_dir_wakes_the_watch() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let daemon = spawn_queue_watch(&world);
    std::thread::sleep(Duration::from_millis(500));
    fs::remove_dir_all(&world.queue).unwrap();
    fs::create_dir(&world.queue).unwrap();
    fs::set_permissions(&world.queue, fs::Permissions::from_mode(0o700)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    lane.queue(1, "main");
    let ledger = ledger_within_wait(&world);
    stop(daemon);
    assert_eq!(
        ledger,
        [1],
        "a record queued in the recreated queue dir was not seen within {WAIT:?}:\n{}",
        log(&world)
    );
}

/// A producer that writes a record in place and keeps its descriptor open (a long-lived
/// writer, or one that truncates and rewrites without closing): the kernel reports only
/// `MODIFY`, which the queue watch counts as a write, so the record wakes the daemon well
/// before the poll interval (60 s here).
#[test]
fn a_record_written_without_close_wakes_the_watch() {
    use std::io::Write;
    let world = World::new();
    let lane = world.git_lane("widget", None);
    // The record is made first (a create wakes the watch), then rewritten in place.
    let id = lane.queue(1, "main");
    let path = world.queue.join(format!("{id}.json"));
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("\"queued\"", "\"abandoned\"")).unwrap();
    let daemon = spawn_queue_watch(&world);
    std::thread::sleep(Duration::from_secs(1));
    // Back to queued: truncate and rewrite through one descriptor, left open.
    let mut file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(0).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.flush().unwrap();
    let ledger = ledger_within_wait(&world);
    drop(file);
    stop(daemon);
    assert_eq!(
        ledger,
        [1],
        "a record rewritten without close was not seen within {WAIT:?}:\n{}",
        log(&world)
    );
}

/// A refusal is remembered by the files' hash, and a save that leaves the hash alone is
/// "still refused" without a rebuild, unless the refusal need not come from the text: a
/// rule test or sample that ran out of its 250 ms (a loaded machine, or here the clock).
/// Saving the same files again (the operator's way to say "try again") retries it.
#[test]
fn resaving_a_set_refused_for_a_passing_reason_retries_it() {
    let world = World::new();
    world.write_rule("policies/landing.rhai", LANDING);
    let root = world.rules_root();
    let daemon = spawn_watching(&world, &root, 60);
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

/// A tick slower than twice `poll_secs` (every discovery call to `gh` hangs 2.5 s with
/// `poll_secs = 1`) makes the poll win every race with the watcher's debounce; the write is
/// still read by the next tick or the one after, not by the next full sweep (an hour
/// away here). Counted in ticks (`berth_ticks_total`), not timed.
#[test]
fn a_write_during_slow_ticks_is_read_by_the_next_tick() {
    use crate::support::{sample, scrape, served_addr};
    let world = World::new();
    let lane = world.gh_lane();
    fs::write(lane.replies.join("pr-list.acme.widget.sleep"), "2.5").unwrap();
    let config = lane.config(
        "[\"true\"]",
        &format!(
            "poll_secs = 1\nreconcile_every_secs = 3600\nrepos = [\"{}\"]\n",
            lane.repo.display()
        ),
    );
    let daemon = world.spawn_berth(
        &crate::support::serving_metrics_args(&config),
        &world.berth_state(),
        &[
            ("GH_STANDIN_DIR", &lane.replies),
            ("GH_STANDIN_LOG", &lane.log),
        ],
    );
    let ticks = || {
        let addr = served_addr(&world)?;
        sample(&scrape(&addr), "berth_ticks_total")
    };
    assert!(
        world.wait_for(WAIT, || ticks().is_some_and(|n| n >= 2.0)),
        "{}",
        log(&world)
    );
    // A record for a repo outside the allowlist: the first tick that reads it blocks it at
    // the gates, without asking the forge about it.
    let before = ticks().unwrap();
    let id = world
        .record(&world.root.join("elsewhere"), 7)
        .set("repoIdentity", "github.com/evil/repo")
        .write();
    let mut read_by = None;
    let read = world.wait_for(Duration::from_secs(60), || {
        let blocked = world.read_record(&id)["status"] == "blocked";
        if blocked {
            read_by = ticks();
        }
        blocked
    });
    stop(daemon);
    assert!(read, "the write was never read: {}", log(&world));
    let read_by = read_by.unwrap();
    assert!(
        read_by - before <= 3.0,
        "read after {} ticks (ticks {before} -> {read_by})",
        read_by - before
    );
}
