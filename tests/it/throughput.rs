//! Lanes that share nothing land at once, and a lane that frees up is used at once, not
//! at the next poll (issue 18).

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{GitLane, World, berth_log, stop};

/// A landing command whose step for a PR in `meet` first leaves a mark, then waits
/// (bounded, 15 s) for the marks of every PR in `meet`, and notes in `<root>/trace`
/// whether it `met` them or ran `alone`; then it lands with [`World::land_script`].
fn meeting_config(world: &World, meet: &[u64], extra: &str) -> (PathBuf, PathBuf) {
    let marks = world.root.join("marks");
    fs::create_dir_all(&marks).unwrap();
    let trace = world.root.join("trace");
    let wanted: Vec<String> = meet.iter().map(u64::to_string).collect();
    let script = format!(
        "case \" {wanted} \" in *\" $3 \"*) \
           touch {marks}/$3; i=0; \
           while [ \"$(ls {marks} | wc -l)\" -lt {n} ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done; \
           if [ \"$(ls {marks} | wc -l)\" -ge {n} ]; then echo met $3 >> {trace}; else echo alone $3 >> {trace}; fi;; \
         esac; \
         exec {land} \"$1\" \"$2\" {ledger} \"$3\"",
        wanted = wanted.join(" "),
        marks = marks.display(),
        n = meet.len(),
        trace = trace.display(),
        land = world.land_script().display(),
        ledger = world.root.join("ledger").display(),
    );
    let config = world.config(&format!(
        "forge = \"git\"\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n{extra}"
    ));
    (config, trace)
}

fn trace_lines(trace: &std::path::Path) -> Vec<String> {
    let mut lines: Vec<String> = fs::read_to_string(trace)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// Two base branches of one repo whose records name the repo's own checkout (on `main`,
/// so both land in scratch worktrees).
fn two_bases(world: &World) -> GitLane<'_> {
    let lane = world.git_lane("widget", None);
    lane.push_base("rel-a");
    lane.push_base("rel-b");
    lane
}

/// The record's checkout is the repo itself, not on the feature branch: each landing runs
/// in a scratch worktree and needs no lock on that checkout, so the second lane starts
/// while the first lane's step still runs, and each step sees the other's mark.
#[test]
fn two_lanes_of_one_repo_land_while_each_others_step_is_still_running() {
    let world = World::new();
    let lane = two_bases(&world);
    let ids = [lane.queue(1, "rel-a"), lane.queue(2, "rel-b")];
    let (config, trace) = meeting_config(&world, &[1, 2], "max_lanes = 2\n");

    world.run_once(&config).success();

    for id in &ids {
        assert_eq!(world.read_record(id)["status"], "landed", "{id}");
    }
    assert_eq!(
        trace_lines(&trace),
        ["met 1", "met 2"],
        "each lane's step ran while the other's did"
    );
    let mut landed = world.ledger();
    landed.sort();
    assert_eq!(landed, [1, 2]);
}

/// `--watch` with a poll interval no test waits for: two lanes start together, and each
/// lane's next record starts as soon as its first one is done (the landing's end
/// dispatches it), so all four land with a single poll tick.
#[test]
fn a_finished_landing_dispatches_the_next_record_without_a_poll_tick() {
    let world = World::new();
    let lane = two_bases(&world);
    let ids = [
        lane.queue(1, "rel-a"),
        lane.queue(2, "rel-b"),
        lane.queue(3, "rel-a"),
        lane.queue(4, "rel-b"),
    ];
    let (config, trace) = meeting_config(&world, &[1, 2], "max_lanes = 2\npoll_secs = 3600\n");
    let daemon = world.spawn_run_debug("--watch", &config, &[]);
    let all_landed = world.wait_for(std::time::Duration::from_secs(60), || {
        ids.iter()
            .all(|id| world.read_record(id)["status"] == "landed")
    });
    stop(daemon);
    let log = berth_log(&world);
    assert!(all_landed, "not all landed: {log}");
    assert_eq!(trace_lines(&trace), ["met 1", "met 2"]);
    let mut landed = world.ledger();
    landed.sort();
    assert_eq!(landed, [1, 2, 3, 4]);
    assert!(
        !log.contains("lane skipped"),
        "a lane waited for another: {log}"
    );
}

/// A lane whose lock another host holds is tried again on a backoff, not at the next poll
/// (an hour away here): once the other host lets go, the record lands within a handful of
/// tries, and the waiting took a bounded number of them, not one per wake.
#[test]
fn a_lane_locked_by_another_host_lands_soon_after_it_lets_go() {
    use berth::lane_lock::{Acquire, Lane, LockClient, LockSettings};
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    let scratch = tempfile::tempdir().unwrap();
    let other_host = LockClient::new(
        &scratch.path().join("lane-lock"),
        LockSettings {
            ttl: std::time::Duration::from_secs(600),
            heartbeat_every: std::time::Duration::from_secs(60),
            remote_timeout: std::time::Duration::from_secs(5),
        },
    )
    .unwrap();
    let held = match other_host
        .acquire(
            &lane.remote_url,
            &Lane {
                repo_identity: berth::identity::repo_identity(&lane.clone).unwrap(),
                base_branch: "main".into(),
            },
            "elsewhere:4242:1",
            &lane.clone,
        )
        .unwrap()
    {
        Acquire::Acquired(held) => held,
        other => panic!("the other host did not get the lock: {other:?}"),
    };
    let config = world.git_forge_config("poll_secs = 3600\n");
    let daemon = world.spawn_watch(&config);
    let log = || berth_log(&world);
    let skips = || log().matches("lane skipped").count();
    assert!(
        world.wait_for(std::time::Duration::from_secs(30), || skips() >= 3),
        "the locked lane was not tried again: {}",
        log()
    );
    other_host.release(&held).unwrap();
    let landed = world.wait_for(std::time::Duration::from_secs(60), || {
        world.read_record(&id)["status"] == "landed"
    });
    stop(daemon);
    assert!(landed, "not landed after the other host let go: {}", log());
    assert_eq!(world.ledger(), [1]);
    // The waits double: tries over the test's bounded wait stay few.
    assert!(skips() <= 12, "{} tries: {}", skips(), log());
}

/// The checkout is made while the lane lock is taken, not after: with origin's writers'
/// lock held (so the lock's write waits for it, up to its 5 s), the landing's scratch
/// worktree is made while no lock ref is on origin yet; once the writers' lock is let go,
/// the lock is taken and the record lands.
#[test]
fn the_checkout_is_made_while_the_lane_lock_is_taken() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    let writers = lane.hold_writers_lock();
    let config = world.git_forge_config("poll_secs = 3600\n");
    let daemon = world.spawn_watch(&config);
    let scratch_made = world.wait_for(std::time::Duration::from_secs(30), || {
        fs::read_dir(world.berth_state().join("worktrees")).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("berth-"))
        })
    });
    let lock_refs_then = world.lock_refs(&lane.remote_url);
    drop(writers);
    let landed = world.wait_for(std::time::Duration::from_secs(60), || {
        world.read_record(&id)["status"] == "landed"
    });
    stop(daemon);
    let log = berth_log(&world);
    assert!(scratch_made, "no scratch worktree was made: {log}");
    assert_eq!(
        lock_refs_then,
        Vec::<String>::new(),
        "the checkout waited for the lane lock: {log}"
    );
    assert!(
        landed,
        "not landed once the writers' lock was let go: {log}"
    );
    assert_eq!(world.ledger(), [1]);
}

/// A `git` first on the daemon's `PATH` that logs every `update-ref` to `<hold>/writes` and
/// holds the first delete of a lock ref until `<hold>/go` exists (at most 6 s, under the
/// writer's 8 s alarm), then notes in `<hold>/let-go` who let it go, and fails that delete
/// when `go` says `fail`; anything else is the real `git`. Returns the directory to put
/// first on `PATH`.
fn hold_first_lock_delete(world: &World, hold: &std::path::Path) -> PathBuf {
    let bin = world.root.join("held-git-bin");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(hold).unwrap();
    let script = format!(
        "#!/bin/sh\n\
         hold={hold}\n\
         case \"$*\" in *update-ref*) echo \"$*\" >> \"$hold/writes\";; esac\n\
         case \"$*\" in *\"update-ref\"*\" -d refs/gstack/release-locks/\"*)\n\
           if mkdir \"$hold/held\" 2>/dev/null; then\n\
             end=$(( $(date +%s) + 6 ))\n\
             while [ ! -e \"$hold/go\" ] && [ \"$(date +%s)\" -lt \"$end\" ]; do sleep 0.02; done\n\
             if [ -e \"$hold/go\" ]; then echo test > \"$hold/let-go\"; else echo timeout > \"$hold/let-go\"; fi\n\
             if grep -q fail \"$hold/go\" 2>/dev/null; then exit 1; fi\n\
           fi;;\n\
         esac\n\
         PATH={path} exec git \"$@\"\n",
        hold = hold.display(),
        path = std::env::var("PATH").unwrap(),
    );
    let git = bin.join("git");
    fs::write(&git, script).unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&git)
        .status()
        .unwrap();
    bin
}

/// `run --watch` (debug log, polling hourly) with [`hold_first_lock_delete`]'s `git` first
/// on its `PATH`.
fn spawn_with_lock_deletes_held(world: &World, hold: &std::path::Path) -> std::process::Child {
    let config = world.git_forge_config("poll_secs = 3600\n");
    spawn_run_with_lock_deletes_held(world, hold, "--watch", &config)
}

/// `run <mode> --config <config>` (debug log) with [`hold_first_lock_delete`]'s `git` first
/// on its `PATH`.
fn spawn_run_with_lock_deletes_held(
    world: &World,
    hold: &std::path::Path,
    mode: &str,
    config: &std::path::Path,
) -> std::process::Child {
    let bin = hold_first_lock_delete(world, hold);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    world.spawn_run_debug(mode, config, &[("PATH", std::path::Path::new(&path))])
}

fn statuses(world: &World, ids: &[String; 2]) -> [Option<String>; 2] {
    ids.clone()
        .map(|id| world.read_record(&id)["status"].as_str().map(str::to_owned))
}

/// A lane with records for PRs 1 and 2 and a [`spawn_with_lock_deletes_held`] daemon
/// landing them, seen until its first lock release is held and the lane's next record
/// claimed (or not) while it is.
struct HeldRelease<'w> {
    lane: GitLane<'w>,
    ids: [String; 2],
    hold: PathBuf,
    daemon: std::process::Child,
    /// Whether the first lock delete was held.
    held: bool,
    /// Whether one record landed while the other (the lane's next) was claimed in the
    /// hold's first 5 s.
    next_claimed: bool,
}

impl<'w> HeldRelease<'w> {
    fn start(world: &'w World) -> Self {
        let lane = world.git_lane("widget", None);
        let ids = [lane.queue(1, "main"), lane.queue(2, "main")];
        let hold = world.root.join("hold");
        let daemon = spawn_with_lock_deletes_held(world, &hold);
        let held = world.wait_for(std::time::Duration::from_secs(60), || {
            hold.join("held").exists()
        });
        let next_claimed = world.wait_for(std::time::Duration::from_secs(5), || {
            let [a, b] = statuses(world, &ids);
            matches!(
                (a.as_deref(), b.as_deref()),
                (Some("landed"), Some("claiming")) | (Some("claiming"), Some("landed"))
            )
        });
        HeldRelease {
            lane,
            ids,
            hold,
            daemon,
            held,
            next_claimed,
        }
    }
}

/// No lock ref of any lane is left on `lane`'s origin.
fn assert_no_lock_left(lane: &GitLane<'_>, log: &str) {
    assert_eq!(
        lane.world.lock_refs(&lane.remote_url),
        Vec::<String>::new(),
        "{log}"
    );
}

/// `C` for each lock write that sets a ref, `D` for each delete, in the order they started.
fn lock_writes(hold: &std::path::Path) -> String {
    fs::read_to_string(hold.join("writes"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("refs/gstack/release-locks/"))
        .map(|l| if l.contains(" -d ") { 'D' } else { 'C' })
        .collect()
}

/// A landing's end frees its lane at once: with the first landing's lock release held (its
/// first `git update-ref -d`), the lane's next record is claimed, and its own lock is
/// written only once that release is let go and has deleted every ref of the old lock.
#[test]
fn a_lanes_next_record_is_claimed_while_its_previous_lock_is_still_being_released() {
    let world = World::new();
    let run = HeldRelease::start(&world);
    let statuses = || statuses(&world, &run.ids);
    let (writes_then, refs_then) = (
        lock_writes(&run.hold),
        world.lock_refs(&run.lane.remote_url),
    );
    let log_then = berth_log(&world);
    fs::write(run.hold.join("go"), "").unwrap();
    let all_landed = world.wait_for(std::time::Duration::from_secs(60), || {
        statuses().iter().all(|s| s.as_deref() == Some("landed"))
    });
    stop(run.daemon);
    let log = berth_log(&world);
    assert!(run.held, "no lock release was held: {log}");
    assert!(
        run.next_claimed,
        "the lane's next record was not claimed while its lock was released: {:?} {log}",
        statuses()
    );
    // Not freed by the release's budget running out (4 s): by its end alone.
    assert!(
        !log_then.contains("timed out; it expires on its TTL"),
        "the lane was freed only when its release timed out: {log_then}"
    );
    let refs_per_lock = writes_then.find('D').expect("the held delete was logged");
    assert!(
        refs_per_lock > 0,
        "no lock was written before the release: {writes_then}"
    );
    assert_eq!(
        writes_then,
        format!("{}D", "C".repeat(refs_per_lock)),
        "a lock write ran beside the held release"
    );
    assert_eq!(
        refs_then.len(),
        refs_per_lock,
        "the old lock was not still on origin"
    );
    assert_eq!(
        fs::read_to_string(run.hold.join("let-go")).unwrap().trim(),
        "test",
        "the release was not held until the test let it go: {log}"
    );
    assert!(all_landed, "not all landed: {log}");
    let one_lock = format!("{}{}", "C".repeat(refs_per_lock), "D".repeat(refs_per_lock));
    assert_eq!(
        lock_writes(&run.hold),
        one_lock.repeat(2),
        "the next lock was written before the old one was deleted"
    );
    assert_eq!(world.ledger(), [1, 2]);
    assert!(
        log.contains("waiting for the lane's previous lock release"),
        "{log}"
    );
}

/// SIGTERM while a landing's lock release is held and the lane's next record waits for
/// it: the daemon exits only once the release is done (counted in the shutdown's summary,
/// no lock left on origin), and the waiting record goes back to the queue unlocked.
#[test]
fn a_stopping_daemon_waits_for_the_lock_releases_in_flight() {
    let world = World::new();
    let mut run = HeldRelease::start(&world);
    kill(Pid::from_raw(run.daemon.id() as i32), Signal::SIGTERM).unwrap();
    fs::write(run.hold.join("go"), "").unwrap();
    let status = run.daemon.wait().unwrap();
    let log = berth_log(&world);
    assert!(run.held && run.next_claimed, "{log}");
    assert_eq!(status.code(), Some(143), "{log}");
    let mut ended: Vec<_> = statuses(&world, &run.ids).into_iter().flatten().collect();
    ended.sort();
    assert_eq!(ended, ["landed", "queued"], "{log}");
    assert_no_lock_left(&run.lane, &log);
    assert!(
        log.contains("signal SIGTERM: released 1 lock(s), 0 failed, 0 deferred"),
        "{log}"
    );
    assert_eq!(world.ledger(), [1]);
}

/// A daemon SIGKILLed while a landing's lock release is in flight, whose release then
/// fails (the lock is left on origin in the dead daemon's name): the next start takes the
/// lane over from the gone holder, as after any crash, and lands the lane's next record.
#[test]
fn a_lock_whose_release_a_killed_daemon_left_in_flight_is_recovered_at_the_next_start() {
    let world = World::new();
    let mut run = HeldRelease::start(&world);
    kill(Pid::from_raw(run.daemon.id() as i32), Signal::SIGKILL).unwrap();
    run.daemon.wait().unwrap();
    fs::write(run.hold.join("go"), "fail").unwrap();
    let left_on_origin = world.wait_for(std::time::Duration::from_secs(30), || {
        fs::read_to_string(run.hold.join("let-go")).is_ok()
    });
    let refs_left = world.lock_refs(&run.lane.remote_url);
    let config = world.git_forge_config("poll_secs = 3600\n");
    let restarted = world.spawn_watch(&config);
    let all_landed = world.wait_for(std::time::Duration::from_secs(60), || {
        statuses(&world, &run.ids)
            .iter()
            .all(|s| s.as_deref() == Some("landed"))
    });
    stop(restarted);
    let log = berth_log(&world);
    assert!(run.held && run.next_claimed && left_on_origin, "{log}");
    assert!(
        !refs_left.is_empty(),
        "the failed release left no lock: {log}"
    );
    assert!(all_landed, "{log}");
    assert_eq!(world.ledger(), [1, 2]);
    assert_no_lock_left(&run.lane, &log);
}

/// `run --once` whose landing is done while its lock release is still in flight: a SIGTERM
/// then is heard as at any other moment (exit 128 + 15), and the release still ends.
#[test]
fn a_once_run_signalled_while_its_release_is_in_flight_exits_as_signalled() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    let hold = world.root.join("hold");
    let config = world.git_forge_config("");
    let mut daemon = spawn_run_with_lock_deletes_held(&world, &hold, "--once", &config);
    let held = world.wait_for(Duration::from_secs(60), || hold.join("held").exists());
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    // Heard or not, the signal was delivered before the release is let go.
    std::thread::sleep(Duration::from_millis(300));
    fs::write(hold.join("go"), "").unwrap();
    let status = daemon.wait().unwrap();
    let log = berth_log(&world);
    assert!(held, "{log}");
    assert_eq!(world.read_record(&id)["status"], "landed", "{log}");
    assert_no_lock_left(&lane, &log);
    assert_eq!(status.code(), Some(143), "the SIGTERM was not heard: {log}");
}
