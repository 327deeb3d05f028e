//! The installed service behaves like the shell: the unit's `ExecStart` alone (no
//! environment) carries the allowlist, the config and the dirs; configured repos and roots
//! are allowed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::install::{parse_unit, systemd_words};
use crate::support::{GitLane, World};

/// A git lane whose clone lives at `<root>/elsewhere/widget`: under none of gstack's
/// `$HOME` defaults, so only an allowlist entry lets it land.
fn lane_elsewhere(world: &World) -> GitLane<'_> {
    let bare = world.bare_remote("widget");
    let url = bare.to_str().unwrap().to_owned();
    let clone = world.clone_into(&world.root.join("elsewhere"), "widget", &url);
    GitLane {
        world,
        remote_url: url,
        clone,
    }
}

/// A git-forge config whose landing command carries its own git identity (a service has
/// no `~/.gitconfig` to find one in when `HOME` is not set).
fn self_contained_config(world: &World) -> PathBuf {
    world.config(&format!(
        "forge = \"git\"\npoll_secs = 1\nland_command = [\"/usr/bin/env\", \"GIT_AUTHOR_NAME=t\", \"GIT_AUTHOR_EMAIL=t@berth.invalid\", \"GIT_COMMITTER_NAME=t\", \"GIT_COMMITTER_EMAIL=t@berth.invalid\", \"{}\", \"{{branch}}\", \"{{base}}\", \"{}\", \"{{pr}}\"]\n",
        world.land_script().display(),
        world.root.join("ledger").display()
    ))
}

/// The `ExecStart=` argv of the systemd unit `berth install` writes for `berth_dir`.
fn installed_exec_start(
    world: &World,
    berth_dir: &Path,
    config: &Path,
    allow: &Path,
) -> Vec<String> {
    let out = world
        .berth()
        .env("BERTH_DIR", berth_dir)
        .env("GSTACK_DAEMON_REPO_ALLOWLIST", allow)
        .args(["install", "--platform", "systemd", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit_dir = world.home.join(".config/systemd/user");
    let unit = fs::read_dir(&unit_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "service"))
        .expect("a unit was written");
    let unit = parse_unit(&fs::read_to_string(unit).unwrap());
    systemd_words(&unit[&("Service".into(), "ExecStart".into())][0], true)
}

#[test]
fn the_units_exec_start_with_an_empty_environment_lands_what_the_shell_lands() {
    let world = World::new();
    let lane = lane_elsewhere(&world);
    let elsewhere = world.root.join("elsewhere");
    let config = self_contained_config(&world);

    // From the shell, with gstack's allowlist variable: PR 1 lands.
    let first = lane.queue(1, "main");
    world
        .berth_daemon()
        .env("GSTACK_DAEMON_REPO_ALLOWLIST", &elsewhere)
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .assert()
        .success();
    assert_eq!(world.read_record(&first)["status"], "landed");

    // The unit's command, with nothing of the shell's environment: PR 2 lands too.
    let state = world.root.join("service-state");
    let argv = installed_exec_start(&world, &state, &config, &elsewhere);
    let second = lane.queue(2, "main");
    let log = fs::File::create(world.root.join("service.log")).unwrap();
    let mut daemon = std::process::Command::new("env")
        .arg("-i")
        .args(&argv)
        .current_dir("/")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    world.wait_for(Duration::from_secs(60), || {
        ["landed", "blocked"].contains(&world.read_record(&second)["status"].as_str().unwrap())
    });
    let landed = world.read_record(&second)["status"] == "landed";
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    let status = daemon.wait().unwrap();
    assert!(
        landed,
        "record {}; argv {argv:?}; log:\n{}",
        world.read_record(&second),
        fs::read_to_string(world.root.join("service.log")).unwrap()
    );
    assert_eq!(world.ledger(), [1, 2]);
    assert_eq!(
        status.code(),
        Some(143),
        "a stop is the 143 the unit accepts"
    );
}

#[test]
fn configured_repos_and_allowed_roots_are_allowed_without_the_environment() {
    let world = World::new();
    let lane = lane_elsewhere(&world);
    lane.push_feature("feat/pr-7", "main");
    let enqueue = |config: &Path| {
        world
            .berth()
            .args(["enqueue", "--config"])
            .arg(config)
            .arg("--repo-path")
            .arg(&lane.clone)
            .args([
                "--pr",
                "7",
                "--feature-branch",
                "feat/pr-7",
                "--version",
                "1.0.0",
            ])
            .output()
            .unwrap()
    };
    // No allowlist at all: refused, and the error says where to allow it.
    let none = world.config("forge = \"git\"\n");
    let out = enqueue(&none);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("outside the daemon allowlist"), "{stderr}");

    // The repo listed in `repos`: allowed.
    let repos = world.config(&format!(
        "forge = \"git\"\nrepos = [\"{}\"]\n",
        lane.clone.display()
    ));
    let out = enqueue(&repos);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in fs::read_dir(&world.queue).unwrap() {
        fs::remove_file(file.unwrap().path()).unwrap();
    }

    // A root in `allowed_roots`: allowed.
    let roots = world.config(&format!(
        "forge = \"git\"\nallowed_roots = [\"{}\"]\n",
        world.root.join("elsewhere").display()
    ));
    let out = enqueue(&roots);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A relative root is a config error naming the key.
    let bad = world.config("allowed_roots = [\"code\"]\n");
    let out = enqueue(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("allowed_roots entry code is not an absolute path"),
        "{stderr}"
    );
}

/// The daemon's log so far.
fn log_of(world: &World) -> String {
    fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default()
}

#[test]
fn sighup_reloads_the_config_and_keeps_running() {
    let world = World::new();
    let lane = lane_elsewhere(&world);
    let config = self_contained_config(&world);
    let base = fs::read_to_string(&config).unwrap();
    let first = lane.queue(1, "main");
    let mut daemon = world.spawn_watch(&config);
    let hup = |daemon: &std::process::Child| {
        kill(Pid::from_raw(daemon.id() as i32), Signal::SIGHUP).unwrap()
    };
    // Outside every allowed root: blocked at the gate.
    assert!(
        world.wait_for(
            Duration::from_secs(30),
            || world.read_record(&first)["status"] == "blocked"
        ),
        "log:\n{}",
        log_of(&world)
    );

    // The root is allowed in the file, and another key changes that needs a restart.
    fs::write(
        &config,
        format!(
            "{}allowed_roots = [\"{}\"]\n",
            base.replace("poll_secs = 1\n", "poll_secs = 2\n"),
            world.root.join("elsewhere").display()
        ),
    )
    .unwrap();
    hup(&daemon);
    assert!(
        world.wait_for(Duration::from_secs(30), || log_of(&world)
            .contains("SIGHUP: configuration reloaded; applied allowed_roots")),
        "log:\n{}",
        log_of(&world)
    );
    assert!(
        log_of(&world).contains(
            "SIGHUP: poll_secs changed in the config file but cannot change in a running daemon"
        ),
        "{}",
        log_of(&world)
    );
    world.berth().args(["retry", &first]).assert().success();
    assert!(
        world.wait_for(
            Duration::from_secs(60),
            || world.read_record(&first)["status"] == "landed"
        ),
        "record {}; log:\n{}",
        world.read_record(&first),
        log_of(&world)
    );

    // A file that does not parse is refused on one line naming where; the daemon goes on.
    fs::write(&config, "poll_secs = \n").unwrap();
    hup(&daemon);
    assert!(
        world.wait_for(Duration::from_secs(30), || log_of(&world)
            .lines()
            .any(|l| l.contains("configuration reload REFUSED")
                && l.contains(&format!("config {}:1:", config.display())))),
        "log:\n{}",
        log_of(&world)
    );
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon stopped");
    let second = lane.queue(2, "main");
    assert!(
        world.wait_for(
            Duration::from_secs(60),
            || world.read_record(&second)["status"] == "landed"
        ),
        "record {}; log:\n{}",
        world.read_record(&second),
        log_of(&world)
    );
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(daemon.wait().unwrap().code(), Some(143));
    assert_eq!(world.ledger(), [1, 2]);
}
