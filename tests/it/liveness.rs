//! Who owns an in-flight record: a process berth cannot see is never taken for gone, a
//! process that merely runs under the stamped pid is never taken for an owner, and a record
//! nobody touches for the lock TTL is stranded whatever its stamp says. Real namespaces, a
//! real `hidepid=2` /proc, real daemons.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{World, stamp_of};

/// `lastUpdatedAt` a few minutes ahead: within the clock skew berth tolerates, so only the
/// file itself can say when it was written.
fn minutes_ahead(minutes: i64) -> String {
    berth::clock::iso(berth::clock::now() + chrono::Duration::minutes(minutes))
}

/// Why the namespace tests cannot run here, if they cannot.
fn namespaces_missing() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root to mount a /proc and to switch to user nobody".into());
    }
    for tool in ["unshare", "setpriv"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// A long-lived process of root (the test): the live holder another user cannot see.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(Command::new("sleep").arg("300").spawn().unwrap())
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lets user nobody reach and write the world's queue (and read its config).
fn open_queue_to_nobody(world: &World) {
    let mut dir = world.queue.as_path();
    while let Some(parent) = dir.parent() {
        if parent == Path::new("/tmp") || parent == Path::new("/") {
            break;
        }
        let mode = fs::metadata(parent).unwrap().permissions().mode();
        fs::set_permissions(parent, fs::Permissions::from_mode(mode | 0o711)).unwrap();
        dir = parent;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    for entry in fs::read_dir(&world.queue).unwrap() {
        nix::unistd::chown(&entry.unwrap().path(), Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    nix::unistd::chown(&world.queue, Some(nobody.uid), Some(nobody.gid)).unwrap();
}

/// `berth <args>` as user nobody, behind `namespace` (a shell snippet run in a fresh mount
/// namespace before berth starts).
fn berth_as_nobody(
    world: &World,
    unshare: &[&str],
    namespace: &str,
    args: &[&str],
) -> std::process::Output {
    let berth = world.berth_std();
    let mut cmd = Command::new("unshare");
    let script =
        format!("{namespace} && exec setpriv --reuid nobody --regid nogroup --clear-groups \"$@\"");
    cmd.args(unshare)
        .args(["sh", "-c", &script, "sh"])
        .arg(berth.get_program())
        .args(args);
    for (key, value) in berth.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let state = world.root.join("nobody-state");
    fs::create_dir_all(&state).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    nix::unistd::chown(&state, Some(nobody.uid), Some(nobody.gid)).unwrap();
    cmd.env("BERTH_DIR", &state);
    cmd.current_dir("/").output().unwrap()
}

/// Finding: with /proc mounted `hidepid=2` (systemd's `ProtectProc=invisible`), or from
/// another pid namespace, another user's live owner cannot be seen. It is "unknown" (judged
/// by its record's age), never "gone": `retry` refuses while the record is fresh.
#[test]
fn an_owner_hidden_from_proc_is_unknown_not_gone() {
    if let Some(why) = namespaces_missing() {
        eprintln!("SKIPPED an_owner_hidden_from_proc_is_unknown_not_gone: {why}");
        return;
    }
    let world = World::new();
    let repo = world.repo("widget", "git@github.com:acme/widget.git");
    let owner = Sleeper::start();
    let id = world
        .record(&repo, 21)
        .set("status", "landing")
        .set("claimedBy", stamp_of(owner.pid()))
        .set("lastUpdatedAt", berth::clock::now_iso())
        .write();
    let config = world.config("");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    open_queue_to_nobody(&world);
    let retry = ["retry", "21", "--config", config.to_str().unwrap()];

    let hidden = "mount -t proc -o hidepid=2 proc /proc";
    let cases: [(&str, &[&str], &str); 2] = [
        ("/proc mounted hidepid=2", &["-m"], hidden),
        (
            "another pid namespace",
            &["-m", "-p", "-f", "--mount-proc"],
            "true",
        ),
    ];
    for (case, unshare, namespace) in cases {
        let out = berth_as_nobody(&world, unshare, namespace, &retry);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{case}: {stderr}");
        assert!(stderr.contains("still working on it"), "{case}: {stderr}");
        assert_eq!(world.read_record(&id)["status"], "landing", "{case}");
    }
}

/// Finding: a planted `landing` record stamped with this host and pid 1 (with its real
/// start time) is not owned by a berth: once nobody has touched it for the lock TTL, the
/// daemon reclaims it (and raises STRANDED_RECORD while the reclaim cannot be written), and
/// the PR lands. Its `lastUpdatedAt`, a few minutes ahead, does not keep it fresh: the file
/// says when it was written.
#[test]
fn a_planted_owner_that_runs_is_stranded_after_the_ttl() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(22, "main");
    world.plant_claim(&id, &stamp_of(1), &minutes_ahead(4));
    // A producer holds the record's lock: the reclaim cannot be written, so the fault shows.
    let held = fs::File::create(world.queue.join(format!(".{id}.lock"))).unwrap();
    held.lock().unwrap();

    let config = world.git_forge_config("poll_secs = 1\nlock_ttl_secs = 3\nheartbeat_secs = 1\n");
    let mut daemon = world.spawn_watch(&config);
    let pending = world
        .home
        .join(".gstack/skill-faults/pending-investigations");
    let stranded_fault = || {
        fs::read_dir(&pending)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| fs::read_to_string(e.path()).is_ok_and(|t| t.contains("[STRANDED_RECORD] ")))
    };
    let raised = world.wait_for(Duration::from_secs(30), stranded_fault);
    assert_eq!(world.read_record(&id)["status"], "landing");
    drop(held);
    let landed = raised
        && world.wait_for(Duration::from_secs(30), || {
            world.read_record(&id)["status"] == "landed"
        });
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
    let log = fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default();
    assert!(raised, "STRANDED_RECORD never raised\n{log}");
    assert!(landed, "the planted claim was never reclaimed\n{log}");
    assert_eq!(world.ledger(), [22]);
    let reclaim = world
        .decisions()
        .into_iter()
        .find(|d| d["kind"] == "status" && d["to"] == "queued")
        .expect("a reclaim");
    assert!(
        reclaim["reason"]
            .as_str()
            .unwrap()
            .contains("untouched since"),
        "{reclaim:#}"
    );
}

/// Finding: `retry` and `abandon` work on a planted claim of a running process once the
/// record is older than the TTL, whether the stamp names pid 1 or a long-lived `sleep`.
#[test]
fn retry_and_abandon_take_a_planted_live_claim_after_the_ttl() {
    let world = World::new();
    let repo = world.repo("widget", "git@github.com:acme/widget.git");
    let sleeper = Sleeper::start();
    let an_hour_ago = berth::clock::iso(berth::clock::now() - chrono::Duration::hours(1));
    let plant = |pr: u64, owner: String, updated: &str| {
        world
            .record(&repo, pr)
            .set("status", "landing")
            .set("claimedBy", owner)
            .set("lastUpdatedAt", updated)
            .write()
    };
    let first = plant(23, stamp_of(1), &an_hour_ago);
    let second = plant(24, stamp_of(sleeper.pid()), &minutes_ahead(4));
    let ttl = world.config("lock_ttl_secs = 3\nheartbeat_secs = 1\n");

    world
        .berth()
        .args(["retry", "23", "--config"])
        .arg(&ttl)
        .assert()
        .success();
    assert_eq!(world.read_record(&first)["status"], "queued");

    let abandoned = world.wait_for(Duration::from_secs(30), || {
        world
            .berth()
            .args(["abandon", "24", "--config"])
            .arg(&ttl)
            .output()
            .unwrap()
            .status
            .success()
    });
    assert!(
        abandoned,
        "a fresh-looking planted claim was never released"
    );
    assert_eq!(world.read_record(&second)["status"], "abandoned");
}

/// A real landing that runs longer than the lock TTL keeps its record fresh: a second
/// daemon on the same queue never reclaims it, and the PR lands once.
#[test]
fn a_landing_longer_than_the_ttl_is_not_reclaimed_by_another_daemon() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(25, "main");
    let land = world.land_script();
    let started = world.root.join("started");
    let script = format!(
        "touch {started}; sleep 5; {land} \"$1\" \"$2\" {ledger} \"$3\"",
        started = started.display(),
        land = land.display(),
        ledger = world.root.join("ledger").display()
    );
    let config = world.config(&format!(
        "forge = \"git\"\npoll_secs = 1\nlock_ttl_secs = 3\nheartbeat_secs = 1\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n"
    ));
    let run = ["run", "--watch", "--config", config.to_str().unwrap()];
    let first_dir = world.root.join("first");
    let mut first = world.spawn_berth(&run, &first_dir, &[]);
    let began = world.wait_for(Duration::from_secs(30), || started.exists());
    // The claim names the instance lock its daemon holds: the proof it is alive.
    let claim = world.read_record(&id)["claimedBy"].clone();
    let lock = fs::canonicalize(first_dir.join("daemon.lock")).unwrap();
    assert!(
        claim
            .as_str()
            .unwrap_or("")
            .ends_with(&format!(":{}", lock.display())),
        "{claim}"
    );
    let second_dir = world.root.join("second");
    let mut second = world.spawn_berth(&run, &second_dir, &[]);
    let landed = began
        && world.wait_for(Duration::from_secs(60), || {
            world.read_record(&id)["status"] == "landed"
        });
    for daemon in [&mut first, &mut second] {
        kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
        daemon.wait().unwrap();
    }
    let logs: String = [&first_dir, &second_dir]
        .iter()
        .map(|d| fs::read_to_string(d.with_extension("log")).unwrap_or_default())
        .collect();
    assert!(landed, "{:#}\n{logs}", world.read_record(&id));
    assert_eq!(world.ledger(), [25]);
    assert!(!logs.contains("reclaimed stranded record"), "{logs}");
}

/// The instance lock a stamp names is a *path*, which each mount namespace resolves on its
/// own (systemd's `PrivateTmp=`/`ProtectHome=`/`TemporaryFileSystem=`, containers run with
/// the host's pid namespace and network). Daemon A runs in a mount namespace of its own
/// whose berth dir sits at the same path as daemon B's on the host, with the same hostname,
/// boot and pid namespace. Probing that path, B would find its own held instance lock
/// ("held by another daemon"), judge the live A gone, kill A's running step by its mark and
/// take A's live lane lock over. A's stamp names its mount namespace and root, so B cannot
/// judge A: unknown, and the lock's TTL decides. Needs root (unshare).
#[test]
fn a_live_daemon_in_another_mount_namespace_keeps_its_step_and_its_lane() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: a mount namespace needs root");
        return;
    }
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let _id_a = lane.queue(71, "main");
    let (queue_b, id_b) = lane.queue_for_second_daemon(72);
    let step_pid = world.root.join("step-a.pid");
    let config_a = world.step_config(
        "a.toml",
        &format!("echo $$ > {}; sleep 300", step_pid.display()),
    );
    let config_b = world.step_config("b.toml", &world.exec_land());
    // One path, two files: A's berth dir on a tmpfs only A's namespace sees.
    let shared_path = world.root.join("ns");
    fs::create_dir_all(&shared_path).unwrap();
    let berth_dir = shared_path.join("state");
    let template = world.berth_std();
    let mut a = std::process::Command::new("unshare");
    a.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs tmpfs \"$0\" && exec \"$@\"")
        .arg(&shared_path)
        .arg(template.get_program())
        .args(["run", "--watch", "--config", config_a.to_str().unwrap()])
        .current_dir(template.get_current_dir().unwrap());
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => a.env(key, value),
            None => a.env_remove(key),
        };
    }
    a.env("BERTH_DIR", &berth_dir)
        .env("GIT_AUTHOR_NAME", "berth test")
        .env("GIT_AUTHOR_EMAIL", "test@berth.invalid")
        .env("GIT_COMMITTER_NAME", "berth test")
        .env("GIT_COMMITTER_EMAIL", "test@berth.invalid")
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(world.root.join("a.log")).unwrap());
    let mut daemon_a = a.spawn().unwrap();
    let began = world.wait_for(Duration::from_secs(90), || {
        fs::read_to_string(&step_pid).is_ok_and(|pid| pid.trim().parse::<i32>().is_ok())
    });
    if !began {
        let _ = daemon_a.kill();
        let _ = daemon_a.wait();
        panic!(
            "A's step never started:\n{}",
            fs::read_to_string(world.root.join("a.log")).unwrap_or_default()
        );
    }
    let step: i32 = fs::read_to_string(&step_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let args_b = ["run", "--watch", "--config", config_b.to_str().unwrap()];
    let mut daemon_b = world.spawn_berth(
        &args_b,
        &berth_dir,
        &[("BERTH_QUEUE_DIR", queue_b.as_path())],
    );
    let log_b = berth_dir.with_extension("log");
    let skips = || {
        fs::read_to_string(&log_b)
            .unwrap_or_default()
            .matches("lane skipped")
            .count()
    };
    let landed_b = || world.read_record_in(&queue_b, &id_b)["status"] == "landed";
    world.wait_for(Duration::from_secs(60), || landed_b() || skips() >= 5);
    let b_landed = landed_b();
    let step_alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(step), None).is_ok();
    let said_b = fs::read_to_string(&log_b).unwrap_or_default();
    for daemon in [&mut daemon_a, &mut daemon_b] {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(daemon.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    for daemon in [&mut daemon_a, &mut daemon_b] {
        if !world.wait_for(Duration::from_secs(20), || {
            matches!(daemon.try_wait(), Ok(Some(_)))
        }) {
            let _ = daemon.kill();
        }
        let _ = daemon.wait();
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(step),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(
        !b_landed && step_alive,
        "B landed: {b_landed}, A's live step killed: {}; B said:\n{}",
        !step_alive,
        said_b
            .lines()
            .filter(|l| l.contains("gone") || l.contains("taking over") || l.contains("killed"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
