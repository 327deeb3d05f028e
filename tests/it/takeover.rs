//! A lane whose holder died is taken over only once nothing of the holder's landing runs:
//! a SIGKILLed daemon's step lives on for its guard's grace (longer, if it ignores
//! SIGTERM), and a daemon on another queue sharing the origin, whose reclaim never kills
//! that step, must not start a step of the lane before the dead daemon's step is dead.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::crash::running_in_group;
use crate::support::World;

/// The children of `parent` other than `except`: a daemon's step guards.
pub(crate) fn children_but(parent: i32, except: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let ppid = stat[close + 2..].split(' ').nth(1);
        if ppid == Some(parent.to_string().as_str()) && pid != except {
            found.push(pid);
        }
    }
    found
}

/// How many times the daemon logging to `log` has found the lane busy.
fn lane_skips(log: &Path) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .matches("lane skipped")
        .count()
}

/// Daemon A (its own queue) runs a step that ignores SIGTERM and holds a per-lane witness
/// `flock`; A is SIGKILLed and its step's guard held stopped (SIGSTOP) inside its grace, so
/// the step outlives A for as long as the test needs. Daemon B (another queue, the same origin, a long TTL)
/// keeps finding the lane busy rather than taking over A's lock, whose holder's process is
/// gone; once the guard runs again it stops the step, and only then does B land its PR,
/// its step never meeting A's in the witness.
#[test]
fn a_dead_daemons_lane_is_not_taken_over_while_its_step_still_runs() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id_a = lane.queue(31, "main");
    // Off `main`, as a producer's checkout is: the landing checks out `main` itself.
    let (queue_b, id_b) = lane.queue_for_second_daemon(32);

    let (witness, collided) = (world.root.join("witness"), world.root.join("collided"));
    let step_pid = world.root.join("step-a.pid");
    let take_witness = format!(
        "exec 9>>{witness}; if ! flock -n 9; then echo \"$3\" >> {collided}; exit 1; fi",
        witness = witness.display(),
        collided = collided.display(),
    );
    let stubborn = format!(
        "{take_witness}; trap '' TERM; echo $$ > {pid}; sleep 300",
        pid = step_pid.display()
    );
    let lands = format!("{take_witness}; {}", world.exec_land());
    let (config_a, config_b) = (
        world.step_config("a.toml", &stubborn),
        world.step_config("b.toml", &lands),
    );
    let (dir_a, dir_b) = (world.root.join("a"), world.root.join("b"));
    let run = |config: &Path| -> Vec<String> {
        ["run", "--watch", "--config", config.to_str().unwrap()]
            .map(str::to_owned)
            .to_vec()
    };
    let args_a = run(&config_a);
    let args_a: Vec<&str> = args_a.iter().map(String::as_str).collect();
    let mut daemon_a = world.spawn_berth(&args_a, &dir_a, &[]);
    let leader = world.step_pid(&step_pid, &mut daemon_a, &dir_a);
    let guards = children_but(daemon_a.id() as i32, leader);
    assert_eq!(guards.len(), 1, "one guard beside the step: {guards:?}");
    let guard = Pid::from_raw(guards[0]);

    let args_b = run(&config_b);
    let args_b: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let queue_env = [("BERTH_QUEUE_DIR", queue_b.as_path())];
    let mut daemon_b = world.spawn_berth(&args_b, &dir_b, &queue_env);
    let log_b = dir_b.with_extension("log");
    assert!(
        world.wait_for(Duration::from_secs(60), || lane_skips(&log_b) >= 1),
        "B never found the lane busy"
    );

    // The guard is stopped only once A is dead: stopped before, it would be resumed by
    // the kernel the moment A's death orphans its process group (SIGHUP, then SIGCONT).
    // A's death makes it send SIGTERM (ignored) and sleep its 2 s grace; it stays stopped
    // within that grace for as long as the test needs.
    daemon_a.kill().unwrap();
    daemon_a.wait().unwrap();
    kill(guard, Signal::SIGSTOP).unwrap();
    let skips = lane_skips(&log_b);
    // B looks at the lane at least every second (poll_secs): ten more looks with A's
    // step alive.
    let waited = world.wait_for(Duration::from_secs(60), || {
        collided.exists() || lane_skips(&log_b) >= skips + 10
    });
    let step_alive = !running_in_group(leader).is_empty();
    kill(guard, Signal::SIGCONT).unwrap();
    let landed = world.wait_for(Duration::from_secs(60), || {
        world.read_record_in(&queue_b, &id_b)["status"] == "landed"
    });
    kill(Pid::from_raw(daemon_b.id() as i32), Signal::SIGTERM).unwrap();
    daemon_b.wait().unwrap();
    let logs = fs::read_to_string(&log_b).unwrap_or_default();
    assert!(
        !collided.exists(),
        "B started a step of the lane while A's step still ran:\n{logs}"
    );
    assert!(waited && step_alive, "A's step ended early:\n{logs}");
    assert!(
        running_in_group(leader).is_empty(),
        "A's step outlived its guard"
    );
    assert!(
        landed,
        "{:#}\n{logs}",
        world.read_record_in(&queue_b, &id_b)
    );
    assert_eq!(world.ledger(), [32]);
    assert_eq!(world.read_record(&id_a)["status"], "landing");
}

/// A writer SIGKILLed mid-write leaves the lock ref's `.lock` file in a local origin, and
/// every later write of the ref fails while it exists. A fresh one (a live `git` may hold
/// it) fails the lock write with an error naming it; one older than berth's bound is a
/// dead writer's: it is removed (and logged), and the lane lands.
#[test]
fn a_ref_lock_file_left_by_a_dead_writer_does_not_wedge_the_lane() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(41, "main");
    let refs = Path::new(&lane.remote_url).join("refs/gstack/release-locks/+repo");
    fs::create_dir_all(&refs).unwrap();
    let leftover = refs.join("main.lock");
    fs::write(&leftover, "").unwrap();
    let config = world.git_forge_config("");

    let fresh = world.run_once(&config).get_output().clone();
    let said = String::from_utf8_lossy(&fresh.stderr);
    assert_eq!(world.read_record(&id)["status"], "queued", "{said}");
    assert!(said.contains(&leftover.display().to_string()), "{said}");
    assert!(leftover.exists(), "a fresh ref lock was removed");

    let age = berth::lane_lock::LEFTOVER_AGE.as_secs() + 60;
    let touched = std::process::Command::new("touch")
        .args(["-d", &format!("{age} seconds ago")])
        .arg(&leftover)
        .status()
        .unwrap();
    assert!(touched.success());
    let old = world.run_once(&config).get_output().clone();
    let said = String::from_utf8_lossy(&old.stderr);
    assert_eq!(world.read_record(&id)["status"], "landed", "{said}");
    assert!(
        said.contains("left by a writer that died mid-write"),
        "{said}"
    );
    assert!(!leftover.exists());
    assert_eq!(world.ledger(), [41]);
}

/// git makes a ref's `.lock` only as a regular file, so a directory or a symlink there is
/// no writer's: it was planted. Aged like a dead writer's leftover, it is cleared the same
/// way (a symlink removed, never followed; a directory moved whole out of `refs/`, nothing
/// in it lost) and the lane lands, where it used to stay wedged with nobody holding it.
#[test]
fn a_directory_or_symlink_planted_at_a_ref_lock_does_not_wedge_the_lane() {
    for (pr, kind) in [(61, "directory"), (62, "symlink")] {
        let world = World::new();
        let lane = world.git_lane("widget", None);
        let id = lane.queue(pr, "main");
        let origin = Path::new(&lane.remote_url);
        let refs = origin.join("refs/gstack/release-locks/+repo");
        fs::create_dir_all(&refs).unwrap();
        let planted = refs.join("main.lock");
        let target = world.root.join("not-followed");
        fs::write(&target, "keep").unwrap();
        if kind == "directory" {
            fs::create_dir(&planted).unwrap();
            fs::write(planted.join("evidence"), "kept").unwrap();
        } else {
            std::os::unix::fs::symlink(&target, &planted).unwrap();
        }
        let age = berth::lane_lock::LEFTOVER_AGE.as_secs() + 3600;
        let touched = std::process::Command::new("touch")
            .args(["-h", "-d", &format!("{age} seconds ago")])
            .arg(&planted)
            .status()
            .unwrap();
        assert!(touched.success());
        let out = world
            .run_once(&world.git_forge_config(""))
            .get_output()
            .clone();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            world.read_record(&id)["status"],
            "landed",
            "a {kind} planted at {} keeps the lane from landing; berth said:\n{said}",
            planted.display()
        );
        assert!(planted.symlink_metadata().is_err(), "{said}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        if kind == "directory" {
            let aside: Vec<_> = fs::read_dir(origin)
                .unwrap()
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("berth-set-aside-")
                })
                .collect();
            assert_eq!(aside.len(), 1, "{said}");
            let kept = aside[0].path().join("evidence");
            assert_eq!(fs::read_to_string(kept).unwrap(), "kept");
        }
    }
}

/// berth's writers' lock is its own aid: anything other than a file at its path (a
/// directory, planted or left by a tool) is written around, as a writers' lock berth may
/// not open is, with a warning naming it; it used to fail every lock write of every lane
/// of that origin.
#[test]
fn a_directory_planted_at_the_writers_lock_does_not_wedge_the_origins_lanes() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(64, "main");
    let planted = Path::new(&lane.remote_url).join("berth-lane-locks.lock");
    fs::create_dir(&planted).unwrap();
    let out = world
        .run_once(&world.git_forge_config(""))
        .get_output()
        .clone();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(world.read_record(&id)["status"], "landed", "{said}");
    assert!(said.contains(&planted.display().to_string()), "{said}");
}

/// A local origin written by two users: a service user's daemon, and an operator who once
/// ran a lock command there as root (or a second user of a group-shared bare repository).
/// berth's writers' lock file in the repository is then the first writer's; the other
/// user's daemon must still be able to take it, or it can never lock the lane again.
/// Needs root, to play both users.
#[test]
fn a_writers_lock_file_made_by_another_user_does_not_wedge_the_lane() {
    the_service_user_lands_after_a_root_operators_lock_write(51, |_| {});
}

/// The same two users, but the operator's root shell has a hardened umask (027, as CIS
/// benchmarks ask; sudo keeps the caller's), so the writers' lock file is 0640 root:root.
/// The service user can open it neither read-write nor read-only: it writes the lock ref
/// without it (still a compare-and-swap under the ref's own `.lock` file) and lands.
#[test]
fn a_writers_lock_the_daemon_user_cannot_open_does_not_wedge_the_lane() {
    the_service_user_lands_after_a_root_operators_lock_write(52, |writers| {
        // What the operator's umask 027 would have made it (0666 & !027).
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(writers, fs::Permissions::from_mode(0o640)).unwrap();
    });
}

/// An operator (root) takes and releases the lane's lock before the service user's
/// daemon runs, leaving berth's writers' lock file root's; everything else is the service
/// user's (nobody). `shape` then reshapes that file as the operator's shell would have, and
/// the service user's `run --once` must land PR `pr`. Skipped without root.
fn the_service_user_lands_after_a_root_operators_lock_write(pr: u64, shape: impl FnOnce(&Path)) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: playing two users needs root");
        return;
    }
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(pr, "main");
    let config = world.git_forge_config("");
    let operator = berth::lane_lock::LockClient::new(
        &world.root.join("operator"),
        berth::lane_lock::LockSettings::default(),
    )
    .unwrap();
    let lane_key = berth::lane_lock::Lane {
        repo_identity: berth::identity::repo_identity(&lane.clone).unwrap(),
        base_branch: "main".into(),
    };
    let Ok(berth::lane_lock::Acquire::Acquired(held)) =
        operator.acquire(&lane.remote_url, &lane_key, "operator:1:2", &lane.clone)
    else {
        panic!("the operator could not take the lock");
    };
    operator.release(&held).unwrap();
    let writers = Path::new(&lane.remote_url).join("berth-lane-locks.lock");
    assert!(
        writers.exists(),
        "the operator's write took no writers' lock"
    );
    chown(&["-R", "65534:65534"], &world.root);
    chown(&["0:0"], &writers);
    shape(&writers);

    let berth_dir = world.root.join("service");
    let mut daemon = world.spawn_berth_wrapped(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &["run", "--once", "--config", config.to_str().unwrap()],
        &berth_dir,
    );
    daemon.wait().unwrap();
    let log = fs::read_to_string(berth_dir.with_extension("log")).unwrap_or_default();
    assert_eq!(world.read_record(&id)["status"], "landed", "{log}");
    assert_eq!(world.ledger(), [pr]);
}

/// `chown args path`, which must succeed.
fn chown(args: &[&str], path: &Path) {
    let done = std::process::Command::new("chown")
        .args(args)
        .arg(path)
        .status()
        .unwrap();
    assert!(done.success());
}

/// Holds `file`'s `flock` from a `flock -o … sleep 600` process (only `flock` itself holds
/// it), once it holds it.
fn flock_holder(world: &World, file: &Path) -> std::process::Child {
    // Its own process group: `flock` forks the `sleep`, and [`end`] ends them both.
    let holder = std::process::Command::new("flock")
        .arg("-o")
        .arg(file)
        .args(["sleep", "600"])
        .process_group(0)
        .spawn()
        .unwrap();
    let free = || {
        std::process::Command::new("flock")
            .args(["-n", "-o"])
            .arg(file)
            .arg("true")
            .status()
            .unwrap()
            .success()
    };
    assert!(world.wait_for(Duration::from_secs(30), || !free()));
    holder
}

/// SIGKILLs `child` and its process group (a `flock` holder's `sleep`), and reaps it.
fn end(mut child: std::process::Child) {
    let _ = nix::sys::signal::killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
}

/// Dates `ref_lock` far older than any leftover age and any TTL, then runs `berth run
/// --once` (a 3 s TTL): its config, what it said, and the record `id`'s status and whether
/// `ref_lock` was still there after it.
fn run_once_over_an_old_ref_lock(
    world: &World,
    ref_lock: &Path,
    id: &str,
) -> (std::path::PathBuf, String, (serde_json::Value, bool)) {
    let age = berth::lane_lock::LEFTOVER_AGE.as_secs() + 60;
    assert!(
        std::process::Command::new("touch")
            .args(["-d", &format!("{age} seconds ago")])
            .arg(ref_lock)
            .status()
            .unwrap()
            .success()
    );
    let config = world.git_forge_config("lock_ttl_secs = 3\nheartbeat_secs = 1\n");
    let run = world.run_once(&config).get_output().clone();
    let said = String::from_utf8_lossy(&run.stderr).into_owned();
    let waited = (world.read_record(id)["status"].clone(), ref_lock.exists());
    (config, said, waited)
}

/// A process stopped while it holds a local origin's writers' lock and the lock ref's
/// `.lock` file (what a writer stopped mid-write holds) is no dead writer: continued, it
/// would rename whatever `<ref>.lock` then is over the ref, so nobody may remove that
/// file. The lane waits (nothing lands, the `.lock` stays) and the log names the holder,
/// says it is stopped and how to fix it; once the holder is gone the `.lock` is a
/// leftover and the lane lands.
#[test]
fn a_foreign_writer_stopped_mid_write_is_named_and_the_lane_waits_for_it() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(43, "main");
    let repo = Path::new(&lane.remote_url);
    let refs = repo.join("refs/gstack/release-locks/+repo");
    fs::create_dir_all(&refs).unwrap();
    let ref_lock = refs.join("main.lock");
    fs::write(&ref_lock, "").unwrap();
    let holder = flock_holder(&world, &repo.join("berth-lane-locks.lock"));
    let pid = holder.id();
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
    let (config, said, waited) = run_once_over_an_old_ref_lock(&world, &ref_lock, &id);
    end(holder);
    assert_eq!(waited.0, "queued", "{said}");
    assert!(waited.1, "the stopped writer's .lock was removed:\n{said}");
    assert!(
        said.contains(&format!("pid {pid} (flock, stopped)")),
        "{said}"
    );
    assert!(said.contains(&format!("kill -CONT {pid}")), "{said}");

    let run = world.run_once(&config).get_output().clone();
    let said = String::from_utf8_lossy(&run.stderr);
    assert_eq!(world.read_record(&id)["status"], "landed", "{said}");
    assert!(!ref_lock.exists());
}

/// A foreign `git` stopped while it holds the lock ref's `.lock` file (gstack's push, or
/// a `git -C <origin> update-ref`, stopped by SIGSTOP or a hung `reference-transaction`
/// hook) has closed that file, so no open file or `flock` names it; continued, it would
/// rename whatever `<ref>.lock` then is over the ref. However old the file, berth must not
/// remove it while that `git` may resume: the lane waits, the log names the process and
/// the fix, and once it is continued and done the lane lands.
#[test]
fn a_stopped_foreign_git_keeps_its_old_ref_lock_and_the_lane_lands_once_it_is_done() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(45, "main");
    let repo = Path::new(&lane.remote_url);
    let hook = repo.join("hooks/reference-transaction");
    fs::create_dir_all(hook.parent().unwrap()).unwrap();
    fs::write(
        &hook,
        "#!/bin/sh\n[ \"$1\" = prepared ] && kill -STOP $PPID\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    let git = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["update-ref", "-d", "refs/gstack/release-locks/+repo/main"])
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = git.id() as i32;
    let ref_lock = repo.join("refs/gstack/release-locks/+repo/main.lock");
    let stopped = world.wait_for(Duration::from_secs(60), || {
        ref_lock.exists() && berth::proc_scan::stat(pid).is_some_and(|stat| stat.is_stopped())
    });
    fs::remove_file(&hook).unwrap();
    if !stopped {
        end(git);
        panic!("the foreign git did not stop holding the ref's .lock");
    }
    let (config, said, waited) = run_once_over_an_old_ref_lock(&world, &ref_lock, &id);
    let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
    let mut git = git;
    let done = git.wait().unwrap();
    assert_eq!(waited.0, "queued", "{said}");
    assert!(waited.1, "the stopped git's .lock was removed:\n{said}");
    assert!(
        said.contains(&format!("pid {pid} (git, stopped, cwd ")),
        "{said}"
    );
    assert!(said.contains(&format!("kill -CONT {pid}")), "{said}");
    assert!(done.success(), "the continued git failed: {done}");

    let run = world.run_once(&config).get_output().clone();
    let said = String::from_utf8_lossy(&run.stderr);
    assert_eq!(world.read_record(&id)["status"], "landed", "{said}");
    assert!(!ref_lock.exists());
}

/// The session (`/proc/<pid>/stat` field 6) and parent of `pid`.
fn session_and_parent(pid: i32) -> Option<(i32, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split(' ');
    let parent = fields.nth(1)?.parse().ok()?;
    let session = fields.nth(1)?.parse().ok()?;
    Some((session, parent))
}

/// berth's own write of a local origin's lock ref is a child in a session of its own, so
/// berth stopped in the middle of it (Ctrl-Z, SIGSTOP) holds neither the writers' lock nor
/// the ref's `.lock` file: the write finishes while berth stays stopped, and the lane is
/// free again once its lock expires. The test holds the writers' lock so that the write
/// waits, stops berth while it does, lets go, and sees the write done and nothing left
/// locked, with berth still stopped.
#[test]
fn a_daemon_stopped_mid_write_holds_no_lock_on_the_origin() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    lane.queue(44, "main");
    let repo = Path::new(&lane.remote_url);
    let writers = repo.join("berth-lane-locks.lock");
    fs::write(&writers, "").unwrap();
    let holder = flock_holder(&world, &writers);
    let config = world.git_forge_config("lock_ttl_secs = 3\nheartbeat_secs = 1\n");
    let berth_dir = world.berth_state();
    let daemon = world.spawn_berth(
        &["run", "--once", "--config", config.to_str().unwrap()],
        &berth_dir,
        &[],
    );
    let berth = daemon.id() as i32;
    let (berth_session, _) = session_and_parent(berth).unwrap();
    let mut writer = None;
    let seen = world.wait_for(Duration::from_secs(60), || {
        writer = children_but(berth, 0).into_iter().find(|&pid| {
            session_and_parent(pid).is_some_and(|(session, _)| session != berth_session)
        });
        writer.is_some()
    });
    let log = || fs::read_to_string(berth_dir.with_extension("log")).unwrap_or_default();
    assert!(seen, "no writer child in a session of its own:\n{}", log());
    kill(Pid::from_raw(berth), Signal::SIGSTOP).unwrap();
    end(holder);
    let lock_ref = repo.join("refs/gstack/release-locks/+repo/main");
    let written = world.wait_for(Duration::from_secs(60), || {
        lock_ref.exists()
            && !lock_ref.with_extension("lock").exists()
            && std::process::Command::new("flock")
                .args(["-n", "-o"])
                .arg(&writers)
                .arg("true")
                .status()
                .unwrap()
                .success()
    });
    let stopped = session_and_parent(berth).is_some();
    let _ = kill(Pid::from_raw(berth), Signal::SIGCONT);
    end(daemon);
    assert!(stopped);
    assert!(
        written,
        "berth, stopped, kept its write of the lock ref from finishing:\n{}",
        log()
    );
}

/// A local reader holding origin's writers' `flock` and never letting go costs the lane
/// only the clearing of leftovers: after the 5 s wait the lock ref is written without it
/// (still a compare-and-swap under the ref's own `.lock` file) and the record lands.
#[test]
fn a_writers_lock_held_by_someone_else_past_the_wait_does_not_stop_the_write() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(53, "main");
    let writers = lane.hold_writers_lock();
    let config = world.git_forge_config("");
    let run = world.run_once(&config).get_output().clone();
    let said = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(world.read_record(&id)["status"], "landed", "{said}");
    drop(writers);
}
