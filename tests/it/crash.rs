//! A daemon killed mid-landing: its landing dies with it, and the next start recovers the
//! record and the lane at once (not after the lock TTL). Real daemons, real SIGKILL.

use std::fs;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{World, dead_owner};

/// Processes of process group `pgid` that still run (zombies run nothing).
pub fn running_in_group(pgid: i32) -> Vec<i32> {
    let mut running = Vec::new();
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
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            running.push(pid);
        }
    }
    running
}

/// Waits until `path` holds a pid; panics (killing `daemon`) after 20 s.
pub fn wait_for_pid(path: &Path, daemon: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse::<i32>()
        {
            return pid;
        }
        if Instant::now() > deadline {
            let _ = daemon.kill();
            let _ = daemon.wait();
            panic!("the landing never started");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_mid_landing_kills_the_landing_and_the_restart_lands_without_waiting_out_the_ttl() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(7, "main");
    let pid_file = world.root.join("landing.pid");
    // First run: a landing that sleeps, with a grandchild in its group, under the default
    // two-hour TTL.
    let sleeping = crate::daemon::sleeping_config(&world, "poll_secs = 3600\n");
    let mut daemon = world.spawn_berth(
        &["run", "--watch", "--config", sleeping.to_str().unwrap()],
        &world.berth_state(),
        &[],
    );
    let landing = wait_for_pid(&pid_file, &mut daemon);
    assert_eq!(world.read_record(&id)["status"], "landing");

    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    daemon.wait().unwrap();
    while !running_in_group(landing).is_empty() && killed.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        running_in_group(landing),
        Vec::<i32>::new(),
        "the landing's group outlived its daemon by 2 s"
    );
    assert_eq!(world.read_record(&id)["status"], "landing");
    // gstack's lock for the origin's spelling, and the one every spelling of this local
    // repository shares.
    assert_eq!(world.lock_refs(&lane.remote_url).len(), 2);
    // The holder is gone once its step's guard, which keeps the daemon's instance lock
    // held until the step's group is dead, has exited too.
    let lock_status = || {
        let status = world
            .berth()
            .args([
                "lock",
                "status",
                "--repo-path",
                lane.clone.to_str().unwrap(),
            ])
            .env("BERTH_DIR", world.root.join("cli-state"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&status.stdout).into_owned()
    };
    let gone = world.wait_for(Duration::from_secs(20), || {
        lock_status().contains("holder gone")
    });
    assert!(gone, "{}", lock_status());

    // The restart: reclaim puts the record back, the dead holder's live lock is taken over.
    let started = Instant::now();
    world.run_once(&world.git_forge_config("")).success();
    let record = world.read_record(&id);
    assert_eq!(record["status"], "landed", "{record:#}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(world.ledger(), [7], "the PR is merged exactly once");
    assert!(lane.merged("feat/pr-7", "main"));
    assert!(world.lock_refs(&lane.remote_url).is_empty());
    let decisions = world.decisions();
    let reclaimed = decisions.iter().any(|d| {
        d["kind"] == "status"
            && d["from"] == "landing"
            && d["to"] == "queued"
            && d["reason"].as_str().unwrap_or("").contains("reclaimed")
    });
    assert!(reclaimed, "{decisions:#?}");
}

/// A landing of a dead daemon that is still running (its guard was killed too): `retry`
/// and `abandon` refuse and say why; the daemon's reclaim kills it before requeueing.
#[test]
fn a_surviving_landing_blocks_retry_and_abandon_and_is_killed_by_the_reclaim() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(12, "main");
    let owner = dead_owner();
    world.plant_claim(&id, &owner, "2026-11-24T00:00:00.000Z");
    // What a landing started by that daemon looks like: marked, in its own group.
    let mark = berth::runner::record_mark(&world.queue, &id);
    let mut stray = {
        use std::os::unix::process::CommandExt as _;
        Command::new("sleep")
            .arg("300")
            .env(berth::runner::RECORD_ENV, &mark)
            .env(berth::runner::OWNER_ENV, &owner)
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let stray_pid = stray.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(5);
    while berth::runner::landing_processes(&mark, None).is_empty() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }

    for verb in ["retry", "abandon"] {
        let refused = world.berth().args([verb, "12"]).output().unwrap();
        assert_eq!(refused.status.code(), Some(2), "{verb}");
        let why = String::from_utf8_lossy(&refused.stderr);
        assert!(
            why.contains("a landing of it is still running on this host")
                && why.contains(&stray_pid.to_string()),
            "{verb}: {why}"
        );
    }
    assert_eq!(world.read_record(&id)["status"], "landing");

    world.run_once(&world.git_forge_config("")).success();
    assert!(
        stray.try_wait().unwrap().is_some() || {
            std::thread::sleep(Duration::from_millis(200));
            stray.try_wait().unwrap().is_some()
        }
    );
    assert_eq!(world.read_record(&id)["status"], "landed");
    assert_eq!(world.ledger(), [12]);
}

/// `abandon` of an in-flight record that no live process owns (a planted one, dated far in
/// the future by a foreign owner) works; one whose owner lives is refused.
#[test]
fn abandon_settles_an_unowned_in_flight_record_and_refuses_a_live_one() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let planted = world
        .record(&lane.clone, 13)
        .set("status", "landing")
        .set("claimedBy", "other-host:1:1")
        .set("lastUpdatedAt", "2999-01-01T00:00:00.000Z")
        .write();
    world
        .berth()
        .args(["abandon", "13", "--reason", "planted"])
        .assert()
        .success();
    let record = world.read_record(&planted);
    assert_eq!(record["status"], "abandoned");
    assert_eq!(record["lastError"], "planted");

    let live = world
        .record(&lane.clone, 14)
        .set("status", "landing")
        .set("claimedBy", berth::ownership::this_process())
        .set("lastUpdatedAt", berth::clock::now_iso())
        .write();
    let refused = world.berth().args(["abandon", "14"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("still working on it"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(world.read_record(&live)["status"], "landing");
}

/// A planted in-flight record dated in 2999 by a foreign owner does not hold its lane for
/// ever: it is reclaimed (and says why), gated, and lands.
#[test]
fn an_in_flight_record_dated_in_the_future_is_reclaimed() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(15, "main");
    world.plant_claim(&id, "other-host:1:1", "2999-01-01T00:00:00.000Z");

    world.run_once(&world.git_forge_config("")).success();
    assert_eq!(world.read_record(&id)["status"], "landed");
    let reclaim = world
        .decisions()
        .into_iter()
        .find(|d| d["kind"] == "status" && d["to"] == "queued")
        .expect("a reclaim");
    assert!(
        reclaim["reason"]
            .as_str()
            .unwrap()
            .contains("in the future"),
        "{reclaim:#}"
    );
}

/// gstack test 44: the record's file vanishes mid-landing and a signal arrives; berth
/// writes it again as `queued` from the copy it claimed, so the PR stays in the queue.
#[test]
fn a_record_whose_file_vanished_mid_landing_is_recreated_queued_on_a_signal() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(16, "main");
    let config = crate::daemon::sleeping_config(&world, "");
    let mut daemon = world.spawn_berth(
        &["run", "--once", "--config", config.to_str().unwrap()],
        &world.berth_state(),
        &[],
    );
    wait_for_pid(&world.root.join("landing.pid"), &mut daemon);
    fs::remove_file(world.queue.join(format!("{id}.json"))).unwrap();
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(daemon.wait().unwrap().code(), Some(143));

    let record = world.read_record(&id);
    assert_eq!(record["status"], "queued", "{record:#}");
    assert_eq!(
        record["lastError"],
        "interrupted by signal SIGTERM mid-landing"
    );
    assert_eq!(record["featureBranch"], "feat/pr-16");
    assert!(record.get("claimedBy").is_none(), "{record:#}");
    assert!(world.lock_refs(&lane.remote_url).is_empty());
}

/// gstack test 44 for a legacy record (no `repoIdentity`), filed as gstack files it:
/// under its origin's identity. Its copy is written back under that same id.
#[test]
fn a_legacy_record_whose_file_vanished_mid_landing_is_recreated_under_its_own_id() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let feature = lane.push_feature("feat/pr-19", "main");
    let identity = berth::identity::repo_identity(&lane.clone).unwrap();
    let id = berth::safe_key::record_id(&identity, "main", 19);
    world
        .record(&lane.clone, 19)
        .set("featureBranch", feature)
        .file(&id)
        .write();
    let config = crate::daemon::sleeping_config(&world, "");
    let mut daemon = world.spawn_berth(
        &["run", "--once", "--config", config.to_str().unwrap()],
        &world.berth_state(),
        &[],
    );
    wait_for_pid(&world.root.join("landing.pid"), &mut daemon);
    fs::remove_file(world.queue.join(format!("{id}.json"))).unwrap();
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(daemon.wait().unwrap().code(), Some(143));

    let record = world.read_record(&id);
    assert_eq!(record["status"], "queued", "{record:#}");
    assert!(record.get("repoIdentity").is_none(), "{record:#}");
    assert!(record.get("claimedBy").is_none(), "{record:#}");
    assert!(world.lock_refs(&lane.remote_url).is_empty());
}

/// In-flight records pass the gates like queued ones: a planted `landing` record outside
/// every allowed root that claims a real lane is blocked, and the lane's own record lands.
#[test]
fn a_planted_in_flight_record_is_gated_and_does_not_hold_the_lane() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(17, "main");
    let outside = world.root.join("outside");
    fs::create_dir_all(&outside).unwrap();
    world.run_git(&outside, &["init", "-q"]);
    let identity = berth::identity::repo_identity(&lane.clone).unwrap();
    let planted = world
        .record(&outside, 18)
        .set("repoIdentity", identity.as_str())
        .set("status", "landing")
        .set("claimedBy", "other-host:1:1")
        .set("lastUpdatedAt", berth::clock::now_iso())
        .write();

    world.run_once(&world.git_forge_config("")).success();
    let record = world.read_record(&planted);
    assert_eq!(record["status"], "blocked", "{record:#}");
    let why = record["lastError"].as_str().unwrap();
    assert!(
        why.starts_with("repoPath outside daemon allowlist"),
        "{why}"
    );
    assert_eq!(world.read_record(&id)["status"], "landed");
    assert_eq!(world.ledger(), [17]);
}

/// A verdict the disk refuses (ENOSPC on a full tmpfs queue dir, mounted in a private
/// user+mount namespace) is kept, shown by `status`, and written once space returns; the
/// record never goes back to the queue meanwhile.
#[test]
fn a_verdict_the_full_disk_refuses_is_kept_shown_and_written_when_space_returns() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(19, "main");
    let staged = world.root.join("staged");
    fs::create_dir_all(&staged).unwrap();
    let file = format!("{id}.json");
    fs::rename(world.queue.join(&file), staged.join(&file)).unwrap();
    // The landing really merges, then fills the queue's disk.
    let land = world.land_script();
    let script = format!(
        "set -e; {land} \"$1\" \"$2\" {ledger} \"$3\"; dd if=/dev/zero of={fill} bs=4096 2>/dev/null || true",
        land = land.display(),
        ledger = world.root.join("ledger").display(),
        fill = world.queue.join("fill").display()
    );
    let config = world.config(&format!(
        "forge = \"git\"\npoll_secs = 1\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n"
    ));
    let mount = "mount -t tmpfs -o size=64k tmpfs \"$0\" && cp \"$1\"/*.json \"$0\"/ && shift && exec \"$@\"";
    let mut daemon = world.spawn_berth_wrapped(
        &[
            "unshare",
            "-Urm",
            "sh",
            "-c",
            mount,
            world.queue.to_str().unwrap(),
            staged.to_str().unwrap(),
        ],
        &["run", "--watch", "--config", config.to_str().unwrap()],
        &world.berth_state(),
    );
    // The daemon's view of the queue: the tmpfs inside its mount namespace.
    let queue = Path::new(&format!("/proc/{}/root", daemon.id()))
        .join(world.queue.strip_prefix("/").unwrap());
    let status = |world: &World| {
        let out = world
            .berth()
            .args(["status"])
            .env("BERTH_QUEUE_DIR", &queue)
            .env("BERTH_DIR", world.berth_state())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let record = |queue: &Path| -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(queue.join(&file)).unwrap()).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let shown = loop {
        let shown = status(&world);
        if shown.contains("verdict not saved") {
            break shown;
        }
        if Instant::now() > deadline {
            let _ = daemon.kill();
            let _ = daemon.wait();
            let log = fs::read_to_string(world.berth_state().with_extension("log")).unwrap();
            panic!("no unsaved verdict shown: {shown}\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        shown.contains(&id) && shown.contains("is landed") && shown.contains("No space left"),
        "{shown}"
    );
    assert_eq!(world.ledger(), [19]);
    assert!(lane.merged("feat/pr-19", "main"));
    // Ticks go by; the record stays in flight, owned by the live daemon, not requeued.
    assert!(world.wait_ticks(&world.berth_state(), 2, Duration::from_secs(30)));
    assert_eq!(record(&queue)["status"], "landing");

    fs::remove_file(queue.join("fill")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while record(&queue)["status"] != "landed" {
        assert!(
            Instant::now() < deadline,
            "the kept verdict was never written"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(record(&queue)["lastGithubState"], "MERGED");
    assert!(!status(&world).contains("verdict not saved"));
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(daemon.wait().unwrap().code(), Some(143));
    assert_eq!(world.ledger(), [19], "landed once");
}

/// Scenario: a daemon is killed (OOM, SIGKILL, a power cut) while a verdict the disk
/// refused waits in its memory; `unsaved-verdicts.json` still lists it. The next daemon on
/// the berth dir holds no such verdict (the record is reclaimed as stranded), but it only
/// publishes the list when one of its own verdicts waits, so `status` (and the queue page)
/// say "verdict not saved … the daemon writes it again every tick" for good, about a
/// verdict nobody holds. (passed-over.json is rewritten at start; this list is not.)
#[test]
fn a_killed_daemons_unsaved_verdicts_are_not_shown_by_the_next_daemon() {
    let world = World::new();
    let berth_dir = world.berth_state();
    fs::create_dir_all(&berth_dir).unwrap();
    let left = serde_json::json!([{
        "record": "widget-19",
        "verdict": "landed",
        "error": "No space left on device (os error 28)",
        "since": "2026-01-01T00:00:00.000Z",
    }]);
    fs::write(
        berth_dir.join("unsaved-verdicts.json"),
        serde_json::to_vec_pretty(&left).unwrap(),
    )
    .unwrap();
    let config = world.git_forge_config("poll_secs = 1\n");
    let mut daemon = world.spawn_run_debug("--watch", &config, &[]);
    let ticked = world.wait_ticks(&berth_dir, 3, Duration::from_secs(60));
    let out = world
        .berth()
        .args(["status"])
        .env("BERTH_DIR", &berth_dir)
        .output()
        .unwrap();
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    let _ = daemon.wait();
    let log = fs::read_to_string(berth_dir.with_extension("log")).unwrap_or_default();
    assert!(ticked, "{log}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        !shown.contains("verdict not saved"),
        "three ticks into a daemon that holds no unsaved verdict, status says: {shown}"
    );
}
