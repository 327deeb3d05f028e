//! A forge call in flight holds up nothing local (issue 17: "a tick over 2 × poll_secs still
//! reads a new record within one second of its write"). The `gh` stand-in holds
//! `gh pr list` on a gate file the test removes, so the call is provably in flight for as
//! long as each test needs; everything is counted (calls, ticks, statuses), and the only
//! time bound is the issue's one second.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::support::{GhLane, World, berth_log, stop, ticks};

const WAIT: Duration = Duration::from_secs(20);

/// `gh pr list` for `acme/<name>` (discovery) held until the test removes the gate.
struct HeldDiscovery {
    gate: PathBuf,
    waiting: PathBuf,
}

impl HeldDiscovery {
    fn hold(gh: &GhLane, name: &str) -> HeldDiscovery {
        let gate = gh.replies.join(format!("pr-list.acme.{name}.gate"));
        fs::write(&gate, "").unwrap();
        HeldDiscovery {
            waiting: gh.replies.join(format!("pr-list.acme.{name}.gate.waiting")),
            gate,
        }
    }

    fn release(&self) {
        fs::remove_file(&self.gate).unwrap();
    }
}

/// `run --watch` with `poll_secs = 1`, `repo` configured (so it is discovered with an
/// empty queue) and the metrics endpoint, once discovery is held in flight.
fn watch_while_discovery_hangs(gh: &GhLane, repo: &Path, held: &HeldDiscovery) -> Child {
    let daemon = watch(gh, repo);
    assert!(
        gh.world.wait_for(WAIT, || held.waiting.exists()),
        "discovery never reached gh:\n{}",
        berth_log(gh.world)
    );
    daemon
}

/// `run --watch` with `poll_secs = 1`, `repo` configured and the metrics endpoint.
fn watch(gh: &GhLane, repo: &Path) -> Child {
    let config = gh.config(
        r#"["true"]"#,
        &format!(
            "poll_secs = 1\nreconcile_every_secs = 3600\nrepos = [\"{}\"]\n",
            repo.display()
        ),
    );
    gh.world.spawn_berth(
        &crate::support::serving_metrics_args(&config),
        &gh.world.berth_state(),
        &[("GH_STANDIN_DIR", &gh.replies), ("GH_STANDIN_LOG", &gh.log)],
    )
}

/// `gh pr list` calls for discovery (not the `--state all` listing of PR states).
fn discoveries(gh: &GhLane) -> usize {
    gh.calls()
        .iter()
        .filter(|c| c[..2] == ["pr", "list"] && !c.contains(&"all".to_owned()))
        .count()
}

/// A record queued while discovery hangs is claimed within one second of its write, and
/// its landing asks the forge about its own PR while the discovery call is still held.
#[test]
fn a_record_written_while_discovery_hangs_is_claimed_within_a_second() {
    let world = World::new();
    let gh = world.gh_lane();
    let held = HeldDiscovery::hold(&gh, "widget");
    let daemon = watch_while_discovery_hangs(&gh, &gh.repo, &held);
    let id = gh.queue_pr_42();
    let read = world.wait_for(Duration::from_secs(1), || {
        world.read_record(&id)["status"] != "queued"
    });
    let status = world.read_record(&id)["status"].clone();
    let verified = world.wait_for(WAIT, || {
        gh.calls().iter().any(|c| c[..3] == ["pr", "view", "42"])
    });
    let still_held = held.gate.exists() && discoveries(&gh) == 1;
    held.release();
    stop(daemon);
    assert!(
        read,
        "not read within 1 s while discovery hung (status {status}):\n{}",
        berth_log(&world)
    );
    assert!(verified, "the landing never asked about PR #42");
    assert!(
        still_held,
        "the discovery call was not in flight throughout"
    );
}

/// Poll ticks go on while a forge call hangs for several poll intervals, and none of them
/// starts a second round of forge calls: one discovery call in flight, however many ticks
/// passed. Once it answers, its answer is applied (PR #42, listed by the stand-in, becomes
/// a local record) and rounds resume one per poll tick at most, never a burst for the
/// ticks missed.
#[test]
fn ticks_go_on_and_start_no_second_forge_round_while_one_hangs() {
    let world = World::new();
    let gh = world.gh_lane();
    let held = HeldDiscovery::hold(&gh, "widget");
    let daemon = watch_while_discovery_hangs(&gh, &gh.repo, &held);
    let first = world.wait_for(WAIT, || ticks(&world).is_some());
    let before = ticks(&world).unwrap_or_default();
    let went_on = world.wait_for(WAIT, || ticks(&world).is_some_and(|n| n >= before + 4.0));
    let during = discoveries(&gh);
    let still_held = held.waiting.exists() && held.gate.exists();
    held.release();
    let id = berth::safe_key::record_id("github.com/acme/widget", "main", 42);
    let discovered = world.wait_for(WAIT, || world.queue.join(format!("{id}.json")).exists());
    let (ticks_at, calls_at) = (ticks(&world).unwrap_or_default(), discoveries(&gh));
    world.wait_for(WAIT, || ticks(&world).is_some_and(|n| n >= ticks_at + 3.0));
    let (ticks_after, calls_after) = (ticks(&world).unwrap_or_default(), discoveries(&gh));
    stop(daemon);
    assert!(
        first && went_on,
        "ticks stopped while gh hung:\n{}",
        berth_log(&world)
    );
    assert!(still_held);
    assert_eq!(
        during, 1,
        "a second discovery started while one was in flight"
    );
    assert!(
        discovered,
        "the held answer was never applied:\n{}",
        berth_log(&world)
    );
    assert!(
        calls_after - calls_at <= (ticks_after - ticks_at) as usize + 1,
        "{} discovery calls in {} ticks after the answer",
        calls_after - calls_at,
        ticks_after - ticks_at
    );
}

/// Discovery and the re-check of blocked records are separate concerns: a blocked record
/// written while one repo's discovery hangs is re-checked (and, merged on GitHub, becomes
/// `landed`) without waiting for it.
#[test]
fn a_blocked_record_is_rechecked_while_another_repos_discovery_hangs() {
    let world = World::new();
    let gh = world.gh_lane();
    let repos = crate::idle::github_repos(&gh, &["a", "b"]);
    crate::idle::pr_2_of_b_merged(&gh);
    let held = HeldDiscovery::hold(&gh, "a");
    let daemon = watch_while_discovery_hangs(&gh, &repos[0], &held);
    let id = world
        .record(&repos[1], 2)
        .set("repoIdentity", "github.com/acme/b")
        .set("status", "blocked")
        .set("lastError", "land: exited 1")
        .write();
    let landed = world.wait_for(WAIT, || world.read_record(&id)["status"] == "landed");
    let still_held = held.gate.exists();
    held.release();
    stop(daemon);
    assert!(
        landed,
        "not re-checked while discovery hung: {}\n{}",
        world.read_record(&id),
        berth_log(&world)
    );
    assert!(still_held);
}

/// A stopping daemon never waits for a round's answer: SIGTERM while discovery is held
/// ends the daemon (143) before the call would have answered, and no second round was
/// started.
#[test]
fn sigterm_while_a_round_hangs_stops_without_it() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let world = World::new();
    let gh = world.gh_lane();
    let held = HeldDiscovery::hold(&gh, "widget");
    let mut daemon = watch_while_discovery_hangs(&gh, &gh.repo, &held);
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    let mut code = None;
    let exited = world.wait_for(WAIT, || {
        code = daemon.try_wait().unwrap().map(|s| s.code());
        code.is_some()
    });
    let still_held = held.gate.exists();
    held.release();
    if !exited {
        let _ = daemon.kill();
        let _ = daemon.wait();
    }
    assert!(exited && still_held, "the daemon waited for the round");
    assert_eq!(code, Some(Some(143)));
    assert_eq!(discoveries(&gh), 1);
}

/// Nothing berth starts outlives it (docs/security.md): SIGTERM while `gh` is held (a
/// GitHub outage during a deploy) kills and reaps the call's process group before berth
/// exits, instead of abandoning the round's thread, which alone would have ended `gh` at
/// its timeout, with the runtime.
#[test]
fn a_forge_call_in_flight_does_not_outlive_a_stopped_daemon() {
    let world = World::new();
    let gh = world.gh_lane();
    let held = HeldDiscovery::hold(&gh, "widget");
    let daemon = watch_while_discovery_hangs(&gh, &gh.repo, &held);
    let started = std::time::Instant::now();
    stop(daemon);
    let stopped_in = started.elapsed();
    // Killed processes of the call's group may take a moment to leave /proc; one held
    // for ever does not.
    let mut left = Vec::new();
    let gone = world.wait_for(Duration::from_secs(10), || {
        left = processes_with_env("GH_STANDIN_DIR", &gh.replies);
        left.is_empty()
    });
    // Lets any survivor end.
    held.release();
    assert!(
        gone,
        "berth exited {stopped_in:?} after SIGTERM; 10 s later its gh call still runs: {left:?}"
    );
}

/// A crash is recovered by the next start: a SIGKILLed daemon cannot end its `gh` call in
/// flight, so the next daemon on its berth dir finds the call by its mark and kills it
/// before its first tick, while the new daemon's own held call runs on.
#[test]
fn the_next_start_ends_the_gh_call_a_sigkilled_daemon_left_running() {
    let world = World::new();
    let gh = world.gh_lane();
    let held = HeldDiscovery::hold(&gh, "widget");
    let mut daemon = watch_while_discovery_hangs(&gh, &gh.repo, &held);
    let left: Vec<i32> = processes_with_env("GH_STANDIN_DIR", &gh.replies)
        .iter()
        .map(|p| p.split(' ').next().unwrap().parse().unwrap())
        .collect();
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let calls_before = discoveries(&gh);
    let next = watch(&gh, &gh.repo);
    let mut running = Vec::new();
    let ended = world.wait_for(WAIT, || {
        running = left.iter().copied().filter(|&pid| runs(pid)).collect();
        running.is_empty()
    });
    let asked_again = world.wait_for(WAIT, || discoveries(&gh) > calls_before);
    held.release();
    stop(next);
    assert!(!left.is_empty(), "no gh call was held");
    assert!(
        ended,
        "the killed daemon's gh call still runs after the next start: {running:?}\n{}",
        berth_log(&world)
    );
    assert!(asked_again, "the next daemon never asked gh itself");
}

/// Whether `pid` runs (exists and is no zombie).
fn runs(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        !state.starts_with('Z') && !state.starts_with('X')
    })
}

/// The processes (pid and command line) whose environment holds `key=value`.
fn processes_with_env(key: &str, value: &Path) -> Vec<String> {
    let wanted = format!("{key}={}", value.display()).into_bytes();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            let environ = fs::read(e.path().join("environ")).ok()?;
            environ
                .split(|b| *b == 0)
                .any(|v| v == wanted.as_slice())
                .then(|| {
                    let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
                    format!(
                        "{} {}",
                        e.file_name().to_string_lossy(),
                        String::from_utf8_lossy(&cmdline).replace('\0', " ")
                    )
                })
        })
        .collect()
}
