//! The landing's lease and fences: a paused daemon's step is stopped by its guard before
//! the lane lock expires; `{repo}`/`{worktree}` cannot be redirected by swapping a checkout
//! during the step; a land command fences its push with `berth lock check`.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::crash::{running_in_group, wait_for_pid};
use crate::support::{World, berth_log};
use crate::takeover::children_but;

/// The JSON payload of the lock commit `ref_name` points at in the bare repo `remote`.
fn lock_payload(world: &World, remote: &str, ref_name: &str) -> serde_json::Value {
    let message = world.run_git(
        &world.root,
        &["--git-dir", remote, "log", "-1", "--format=%B", ref_name],
    );
    let (_, body) = message.split_once("\n\n").expect("a lock commit message");
    serde_json::from_str(body).expect("a lock payload")
}

/// The pids `pgrep <args>` lists.
fn pgrep(args: &[&str]) -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|pid| pid.trim().parse().unwrap())
        .collect()
}

/// `pkill <args>`, which must signal something.
fn pkill(args: &[&str]) {
    let status = std::process::Command::new("pkill")
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "pkill {args:?} matched nothing");
}

fn millis(iso: &str) -> i64 {
    berth::clock::parse_iso(iso).unwrap().timestamp_millis()
}

/// Berth is stopped mid-landing as an operator would stop it, `pkill -STOP berth` (in the
/// daemon's own session here, so no other test's daemon is touched), with an 8 s TTL: no
/// heartbeat runs, yet the step's guard, which that command does not match, terminates
/// its process group before the lock it landed under expires. On SIGCONT the daemon finds
/// the step stopped by its lease and blocks the record with that reason; nothing was
/// landed.
#[test]
fn a_paused_daemons_landing_is_stopped_by_its_lease_before_the_lock_expires() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(6, "main");
    let (pid_file, killed_at) = (world.root.join("landing.pid"), world.root.join("killed-at"));
    let land = world.land_script();
    // The step records when SIGTERM reached it (ms since the epoch); left alone it would
    // sleep, then land.
    let script = format!(
        "trap 'date +%s%3N > {killed}; exit 143' TERM; sleep 300 & echo $$ > {pid}; wait; exec {land} \"$1\" \"$2\" {ledger} \"$3\"",
        killed = killed_at.display(),
        pid = pid_file.display(),
        land = land.display(),
        ledger = world.root.join("ledger").display(),
    );
    let config = world.config(&format!(
        "forge = \"git\"\npoll_secs = 3600\nheartbeat_secs = 1\nlock_ttl_secs = 8\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n"
    ));
    let args = ["run", "--watch", "--config", config.to_str().unwrap()];
    let mut daemon = world.spawn_berth_wrapped(&["setsid"], &args, &world.berth_state());
    let landing = wait_for_pid(&pid_file, &mut daemon);
    let session = daemon.id().to_string();
    // Sampled until it holds: a child berth forks to write a lock ref is in this session,
    // named berth, until it leaves for its own.
    let only_the_daemon = world.wait_for(Duration::from_secs(10), || {
        pgrep(&["-s", &session, "berth"]) == [daemon.id()]
    });
    let guard_by_cmdline = world.wait_for(Duration::from_secs(10), || {
        let guards = children_but(daemon.id() as i32, landing);
        let matched = pgrep(&["-f", "-s", &session, "berth"]);
        guards
            .iter()
            .any(|guard| matched.contains(&guard.unsigned_abs()))
    });
    // gstack's ref for the lane (berth also holds the repository's shared `+repo` lock).
    let refs = world.lock_refs(&lane.remote_url);
    let [ref_name] = &refs
        .iter()
        .filter(|r| !r.contains("/+repo/"))
        .collect::<Vec<_>>()[..]
    else {
        panic!("one gstack lock while landing: {refs:?}");
    };
    let berth = Pid::from_raw(daemon.id() as i32);

    pkill(&["-STOP", "-s", &session, "berth"]);
    let stopped = world.wait_for(Duration::from_secs(30), || {
        running_in_group(landing).is_empty()
    });
    // What the lock said while berth could not refresh it (it is still stopped).
    let payload = lock_payload(&world, &lane.remote_url, ref_name);
    pkill(&["-CONT", "-s", &session, "berth"]);
    if !stopped {
        let _ = daemon.kill();
        let _ = daemon.wait();
    }
    assert!(stopped, "the landing ran on while its daemon was stopped");
    assert!(
        only_the_daemon,
        "`pkill berth` matches more than the daemon"
    );
    assert!(guard_by_cmdline, "`pkill -f berth` misses the guard");
    let killed = fs::read_to_string(&killed_at).expect("the step was sent SIGTERM");
    let killed: i64 = killed.trim().parse().unwrap();
    let expires = millis(payload["expiresAt"].as_str().unwrap());
    assert!(
        killed < expires,
        "the step was stopped at {killed}, after its lock expired at {expires}"
    );

    let settled = world.wait_for(Duration::from_secs(30), || {
        world.read_record(&id)["status"] != "landing"
    });
    kill(berth, Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
    assert!(settled, "the record stayed in flight after SIGCONT");
    let record = world.read_record(&id);
    assert_eq!(record["status"], "blocked", "{record:#}");
    let why = record["lastError"].as_str().unwrap();
    assert!(why.contains("lease ran out"), "{why}");
    assert!(world.ledger().is_empty(), "landed after its lease ran out");
    assert!(!lane.merged("feat/pr-6", "main"));
}

/// The step swaps its checkout (and the repo) for symlinks to a directory outside the
/// allowed roots, then writes through `{worktree}` and `{repo}`: the writes land in the
/// directories the gate pinned, never in the symlinks' target, and the record is blocked.
#[test]
fn a_checkout_swapped_for_a_symlink_during_the_step_does_not_redirect_the_placeholders() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(6, "main");
    let outside = world.root.join("outside");
    fs::create_dir(&outside).unwrap();
    let named = world.root.join("worktree-name");
    let script = format!(
        "w=$(cd \"$1\" && pwd -P); r=$(cd \"$2\" && pwd -P); echo \"$w\" > {named}; \
         mv \"$w\" \"$w.moved\" && ln -s {outside} \"$w\"; \
         if [ \"$r\" != \"$w\" ]; then mv \"$r\" \"$r.moved\" && ln -s {outside} \"$r\"; fi; \
         touch \"$1/via-worktree\" \"$2/via-repo\"",
        named = named.display(),
        outside = outside.display(),
    );
    let config = world.config(&format!(
        "forge = \"git\"\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{worktree}}\", \"{{repo}}\"]\n"
    ));
    world.run_once(&config);

    let entries: Vec<_> = fs::read_dir(&outside).unwrap().flatten().collect();
    assert!(
        entries.is_empty(),
        "the step was redirected outside its checkout: {entries:?}"
    );
    let worktree = fs::read_to_string(&named).unwrap();
    let moved = PathBuf::from(format!("{}.moved", worktree.trim()));
    assert!(
        moved.join("via-worktree").exists(),
        "{{worktree}} did not lead to the pinned checkout"
    );
    let record = world.read_record(&id);
    assert_eq!(record["status"], "blocked", "{record:#}");
}

/// A land command that checks `berth lock check {lock_ref} --sha {lock_sha}` before it
/// lands: the check says the lock is live, and the PR lands.
#[test]
fn a_land_command_fences_its_push_with_lock_check() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(6, "main");
    let checked = world.root.join("checked");
    let script = format!(
        "{berth} lock check \"$1\" --sha \"$2\" --repo-path \"$3\" > {checked} && exec {land} \"$4\" \"$5\" {ledger} \"$6\"",
        berth = assert_cmd::cargo::cargo_bin("berth").display(),
        checked = checked.display(),
        land = world.land_script().display(),
        ledger = world.root.join("ledger").display(),
    );
    let config = world.config(&format!(
        "forge = \"git\"\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{lock_ref}}\", \"{{lock_sha}}\", \"{{repo}}\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n"
    ));
    world.run_once(&config).success();

    let said = fs::read_to_string(&checked).unwrap();
    assert!(said.contains(": live: held by "), "{said}");
    assert!(said.starts_with("refs/gstack/release-locks/"), "{said}");
    assert_eq!(world.read_record(&id)["status"], "landed");
    assert_eq!(world.ledger(), [6]);
}

/// Daemon A is stopped (SIGSTOP) mid-landing past the TTL: its lease stops its step, its
/// untouched record is stranded, and daemon B on the same queue claims it and lands it
/// under the expired lock. When A runs again its landing ends (stopped by its lease); the
/// verdict it writes must not land on B's claim, or B's landing loses its record (blocked
/// or queued under B, then landed twice).
#[test]
fn a_resumed_daemon_does_not_settle_a_record_another_daemon_claimed_since() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(7, "main");
    let (starts, go) = (world.root.join("starts"), world.root.join("go"));
    let script = format!(
        "echo $$ >> {starts}; while [ ! -e {go} ]; do sleep 0.1; done; exec {land} \"$1\" \"$2\" {ledger} \"$3\"",
        starts = starts.display(),
        go = go.display(),
        land = world.land_script().display(),
        ledger = world.root.join("ledger").display(),
    );
    let config = world.config(&format!(
        "forge = \"git\"\npoll_secs = 1\nheartbeat_secs = 1\nlock_ttl_secs = 6\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n"
    ));
    let args = ["run", "--watch", "--config", config.to_str().unwrap()];
    let steps = || {
        fs::read_to_string(&starts)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let (dir_a, dir_b) = (world.root.join("a"), world.root.join("b"));
    let mut daemon_a = world.spawn_berth(&args, &dir_a, &[]);
    assert!(
        world.wait_for(Duration::from_secs(90), || steps() == 1),
        "A's step never started"
    );
    let mut daemon_b = world.spawn_berth(&args, &dir_b, &[]);
    let a = Pid::from_raw(daemon_a.id() as i32);
    kill(a, Signal::SIGSTOP).unwrap();
    let b_landing = world.wait_for(Duration::from_secs(90), || steps() == 2);
    let b_claim = world.read_record(&id)["claimedBy"].clone();
    kill(a, Signal::SIGCONT).unwrap();
    let log_a = dir_a.with_extension("log");
    let a_ended = world.wait_for(Duration::from_secs(60), || {
        let log = fs::read_to_string(&log_a).unwrap_or_default();
        log.contains("PR #7: ") || log.contains("record moved")
    });
    let after_a = world.read_record(&id);
    fs::write(&go, "").unwrap();
    let settled = world.wait_for(Duration::from_secs(60), || {
        !matches!(
            world.read_record(&id)["status"].as_str(),
            Some("landing" | "claiming")
        )
    });
    for daemon in [&mut daemon_a, &mut daemon_b] {
        kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
        daemon.wait().unwrap();
    }
    let logs = format!(
        "{}\n----\n{}",
        fs::read_to_string(&log_a).unwrap_or_default(),
        fs::read_to_string(dir_b.with_extension("log")).unwrap_or_default()
    );
    assert!(b_landing, "B never landed the stranded record:\n{logs}");
    assert!(a_ended, "A's landing never ended:\n{logs}");
    assert_eq!(after_a["status"], "landing", "{after_a:#}\n{logs}");
    assert_eq!(after_a["claimedBy"], b_claim, "{after_a:#}\n{logs}");
    assert!(settled, "{logs}");
    assert_eq!(world.read_record(&id)["status"], "landed", "{logs}");
    assert_eq!(world.ledger(), [7]);
}

/// A lock TTL so long that `expiresAt` would fall past the last date berth's clock can
/// write is a configuration error naming the field, not a daemon that panics at its first
/// lock (and a heartbeat check that overflows).
#[test]
fn a_lock_ttl_past_the_calendar_is_refused_not_a_panic() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(8, "main");
    let config = world.git_forge_config("lock_ttl_secs = 10000000000000\n");
    let out = world.run_once(&config).get_output().clone();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("panicked"), "{said}");
    assert!(said.contains("lock_ttl_secs"), "{said}");
    assert_eq!(world.read_record(&id)["status"], "queued", "{said}");
}

/// A config from when berth took lane lock TTLs up to 365 days (6 h here, with a 7000 s
/// heartbeat) still starts, and says which file and field it lowered; the lock it holds
/// expires 2 h after its write, the longest a contending berth believes, so a paused
/// landing's lease ends before any contender may judge the lock expired.
#[test]
fn a_lock_ttl_above_two_hours_starts_held_as_two_hours_with_a_warning() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(9, "main");
    let payload = world.root.join("payload");
    let script = format!(
        "git --git-dir {remote} log -1 --format=%B \"$1\" > {payload} && exec {land} \"$2\" \"$3\" {ledger} \"$4\"",
        remote = lane.remote_url,
        payload = payload.display(),
        land = world.land_script().display(),
        ledger = world.root.join("ledger").display(),
    );
    let config = world.config(&format!(
        "forge = \"git\"\nlock_ttl_secs = 21600\nheartbeat_secs = 7000\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{lock_sha}}\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n"
    ));
    let out = world.run_once(&config).success().get_output().clone();

    let said = String::from_utf8_lossy(&out.stderr);
    let named = format!(
        "config {}: lock_ttl_secs (21600) is above 7200",
        config.display()
    );
    assert!(said.contains(&named), "{said}");
    assert!(
        said.contains("heartbeat_secs (7000) is above 3597"),
        "{said}"
    );
    assert_eq!(world.read_record(&id)["status"], "landed", "{said}");
    assert_eq!(world.ledger(), [9]);
    let message = fs::read_to_string(&payload).unwrap();
    let (_, body) = message.split_once("\n\n").expect("a lock commit message");
    let lock: serde_json::Value = serde_json::from_str(body).expect("a lock payload");
    let at = |field: &str| chrono::DateTime::parse_from_rfc3339(lock[field].as_str().unwrap());
    let held = at("expiresAt").unwrap() - at("createdAt").unwrap();
    assert_eq!(held, chrono::Duration::hours(2), "{lock:#}");
}

/// The lane lock is taken over on origin (gstack's live lock pushed over berth's) while
/// the landing's checkout is held up (the test holds the repository's worktree-admin lock,
/// which adding the scratch worktree waits for), and the heartbeat finds it lost; then the
/// checkout goes on. The step never starts, and the record is blocked in the lost-lock
/// verdict's words, saying the step never started.
#[test]
fn a_lock_lost_while_the_checkout_is_made_never_starts_the_step() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(6, "main");
    let repo = lane.clone.canonicalize().unwrap();
    let admin = world.queue.join(format!(
        ".worktree-admin-{}.lock",
        berth::safe_key::safe_key(&repo.to_string_lossy())
    ));
    let held_up = fs::File::create(&admin).unwrap();
    held_up.lock().unwrap();
    let ran = world.root.join("ran");
    let config = world.config(&format!(
        "forge = \"git\"\npoll_secs = 3600\nheartbeat_secs = 1\nlock_ttl_secs = 3\nland_command = [\"touch\", \"{}\"]\n",
        ran.display()
    ));
    let args = ["run", "--once", "--config", config.to_str().unwrap()];
    let mut daemon = world.spawn_berth(&args, &world.berth_state(), &[]);
    let log = || berth_log(&world);
    let gstacks_ref = || {
        world
            .lock_refs(&lane.remote_url)
            .into_iter()
            .find(|r| !r.contains("/+repo/"))
    };
    let taken = world.wait_for(Duration::from_secs(30), || gstacks_ref().is_some());
    if taken {
        let payload =
            crate::lane_lock::gstack_payload("gstack-pr-4", "main", chrono::Duration::hours(1));
        let body = serde_json::to_string_pretty(&payload).unwrap();
        crate::lane_lock::gstack_write_to(&lane.remote_url, &gstacks_ref().unwrap(), &body);
    }
    let lost = taken
        && world.wait_for(Duration::from_secs(8), || {
            log().contains("lane lock lost: the landing must stop")
        });
    drop(held_up);
    let ended = world.wait_for(Duration::from_secs(60), || {
        daemon.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = daemon.kill();
    }
    let _ = daemon.wait();
    assert!(
        taken && lost,
        "the lock was not lost during the checkout:\n{}",
        log()
    );
    assert!(ended, "the daemon did not finish:\n{}", log());
    assert!(!ran.exists(), "the step ran without its lock:\n{}", log());
    let record = world.read_record(&id);
    assert_eq!(record["status"], "blocked", "{record:#}");
    let why = record["lastError"].as_str().unwrap();
    assert!(
        why.starts_with(
            "release lock ownership lost during landing: release lock is no longer owned by this daemon; the land step was never started"
        ),
        "{why}"
    );
    let admin_locks: Vec<_> = fs::read_dir(&world.queue)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".worktree-admin-"))
        .collect();
    assert_eq!(admin_locks, [admin.file_name().unwrap().to_string_lossy()]);
}
