//! What the first landing would make on need (the forge's repository, a lock scratch
//! repository, the scratch worktrees' directory) is made when the daemon first sees a
//! queued record pass its gates, before that record is due; a daemon with an empty queue
//! makes none of it (it never starts libgit2, and keeps its idle memory). The repo's first
//! scratch worktree is made then too, and its first landing runs in it.

use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::World;

/// What a landing of a local origin makes on its first need, each present or not.
fn made(state: &Path) -> [bool; 3] {
    let lock_repos = fs::read_dir(state.join("lock-scratch.git")).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .count()
    });
    [
        state.join("forge-local-seen.git/HEAD").exists(),
        lock_repos > 0,
        state.join("worktrees").is_dir(),
    ]
}

#[test]
fn the_first_gated_record_warms_up_what_its_landing_needs_before_it_is_due() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let feature = lane.push_feature("feat/pr-1", "main");
    let id = world
        .record(&lane.clone, 1)
        .set("featureBranch", feature)
        .set("berthNotBefore", "2999-01-01T00:00:00.000Z")
        .write();
    let config = world.git_forge_config("poll_secs = 3600\n");
    let state = world.berth_state();
    let mut daemon = world.spawn_watch(&config);
    let warmed = world.wait_for(Duration::from_secs(30), || made(&state) == [true; 3]);
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
    assert!(warmed, "made before the landing: {:?}", made(&state));
    assert_eq!(world.read_record(&id)["status"], "queued", "it was not due");
    assert!(world.ledger().is_empty());
}

#[test]
fn a_daemon_with_an_empty_queue_warms_up_nothing() {
    let world = World::new();
    let config = world.git_forge_config("poll_secs = 3600\n");
    let state = world.berth_state();
    let mut daemon = world.spawn_watch(&config);
    let ticked = world.wait_for(Duration::from_secs(30), || {
        state.join("daemon-health.json").exists()
    });
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
    assert!(ticked, "the daemon never ticked");
    assert_eq!(made(&state), [false; 3]);
}

/// berth's scratch worktrees present under the berth dir.
fn scratch_worktrees(state: &Path) -> Vec<std::path::PathBuf> {
    fs::read_dir(state.join("worktrees")).map_or_else(
        |_| Vec::new(),
        |d| d.filter_map(Result::ok).map(|e| e.path()).collect(),
    )
}

#[test]
fn a_repos_first_landing_runs_in_the_scratch_worktree_made_ahead() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let early = lane.push_feature("feat/pr-1", "main");
    world
        .record(&lane.clone, 1)
        .set("featureBranch", early)
        .set("berthNotBefore", "2999-01-01T00:00:00.000Z")
        .write();
    let trace = world.root.join("trace");
    let script = format!(
        "pwd -P >> {trace}; exec {land} \"$1\" \"$2\" {ledger} \"$3\"",
        trace = trace.display(),
        land = world.land_script().display(),
        ledger = world.root.join("ledger").display(),
    );
    let config = world.config(&format!(
        "forge = \"git\"\npoll_secs = 3600\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n"
    ));
    let state = world.berth_state();
    let mut daemon = world.spawn_watch(&config);
    let made = world.wait_for(Duration::from_secs(30), || {
        scratch_worktrees(&state).len() == 1
    });
    let ahead: Vec<String> = scratch_worktrees(&state)
        .iter()
        .filter_map(|p| fs::canonicalize(p).ok())
        .map(|p| p.display().to_string())
        .collect();
    let id = lane.queue(2, "main");
    let landed = world.wait_for(Duration::from_secs(60), || {
        world.read_record(&id)["status"] == "landed"
    });
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
    assert!(made, "no scratch worktree made before a landing: {ahead:?}");
    assert!(landed, "PR 2 did not land");
    let ran_in: Vec<String> = fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        ran_in, ahead,
        "the first landing made no worktree of its own"
    );
    assert!(scratch_worktrees(&state).is_empty(), "removed at stop");
}

/// berth's lock scratch repositories present under the berth dir.
fn lock_scratch_repos(state: &Path) -> usize {
    fs::read_dir(state.join("lock-scratch.git")).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.path().join("HEAD").exists())
            .count()
    })
}

#[test]
fn a_first_landing_due_at_once_locks_through_the_scratch_repository_made_ahead() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let config = world.git_forge_config("poll_secs = 3600\n");
    let state = world.berth_state();
    let mut daemon = world.spawn_watch(&config);
    let ticked = world.wait_for(Duration::from_secs(30), || {
        state.join("daemon-health.json").exists()
    });
    // Due at once: the landing's lock meets the warm-up still making its repository.
    let id = lane.queue(1, "main");
    let landed = world.wait_for(Duration::from_secs(60), || {
        world.read_record(&id)["status"] == "landed"
    });
    let repos = lock_scratch_repos(&state);
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
    assert!(ticked && landed, "PR 1 did not land");
    assert_eq!(repos, 1, "the lock made no scratch repository of its own");
}
