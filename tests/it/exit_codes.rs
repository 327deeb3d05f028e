//! docs/cli.md's exit-code table against real runs: every row is a case run here (or names
//! the test that runs it), and every case is a row.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::World;

/// Rows whose case needs a world too costly to build twice: the test that provokes it.
const ELSEWHERE: &[(&str, &str, &str)] = &[
    (
        "1",
        "rules replay",
        "replay::replay_finds_no_change_under_the_old_rules_and_exactly_the_held_prs_under_a_freeze",
    ),
    // The demo's checks pass by construction; a failing one is a bug, not a case.
    (
        "1",
        "demo",
        "demo::the_demo_runs_green_and_narrates_what_it_checks",
    ),
    (
        "128+N",
        "demo --keep",
        "demo::the_kept_demo_serves_its_queue_page_until_a_signal",
    ),
];

/// `(code, command)` for each row of the table under `## Exit codes` in docs/cli.md; a
/// row naming several commands gives one pair each.
fn documented() -> BTreeSet<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md");
    let text = fs::read_to_string(path).unwrap();
    let section = text
        .split("\n## Exit codes\n")
        .nth(1)
        .expect("docs/cli.md has an `## Exit codes` section");
    let mut rows = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let code = cells[0].trim_start_matches("| ").trim_matches('`');
        let commands = cells[1];
        let named: Vec<&str> = commands.split('`').skip(1).step_by(2).collect();
        if named.is_empty() {
            rows.insert((code.to_owned(), commands.to_owned()));
        }
        for command in named {
            rows.insert((code.to_owned(), command.to_owned()));
        }
    }
    rows
}

/// Runs `args` and returns its exit code.
fn code(cmd: &mut assert_cmd::Command) -> Option<i32> {
    cmd.output().unwrap().status.code()
}

/// Each case: the row it proves, and the real run's exit code.
fn provoked(world: &World) -> Vec<((&'static str, &'static str), Option<i32>)> {
    let git = world.git_forge_config("");
    let git = git.to_str().unwrap();
    let mut cases = Vec::new();
    cases.push((("0", "every command"), code(world.berth().arg("status"))));
    cases.push((
        ("2", "every command"),
        code(world.berth().args(["status", "--no-such-flag"])),
    ));

    // A record outside the allowlist: `run --once` blocks it at the gates, `status` shows it.
    let outside = world.root.join("outside");
    world.run_git(&world.root, &["init", "-q", "-b", "main", "outside"]);
    world.record(&outside, 7).write();
    let run = code(
        world
            .berth_daemon()
            .args(["run", "--once", "--config", git]),
    );
    cases.push((("1", "run --once"), run));
    cases.push((("1", "status"), code(world.berth().arg("status"))));
    cases.push((
        ("1", "explain"),
        code(world.berth_daemon().args(["explain", "99"])),
    ));

    let lane = world.git_lane("widget", None);
    let repo = lane.clone.to_str().unwrap();
    let ref_name = lane.hold_lock();
    cases.push((
        ("1", "lock release"),
        code(
            world
                .berth_daemon()
                .args(["lock", "release", &ref_name, "--repo-path", repo]),
        ),
    ));
    let zeros = "0".repeat(40);
    cases.push((
        ("1", "lock check"),
        code(world.berth_daemon().args([
            "lock",
            "check",
            &ref_name,
            "--sha",
            &zeros,
            "--repo-path",
            repo,
        ])),
    ));
    // An origin that is gone cannot be listed.
    let gone = world.git_lane("gone", None);
    fs::remove_dir_all(gone.remote_url.trim_start_matches("file://")).unwrap();
    cases.push((
        ("1", "lock status"),
        code(world.berth_daemon().args([
            "lock",
            "status",
            "--repo-path",
            gone.clone.to_str().unwrap(),
        ])),
    ));

    let missing = world.root.join("no-queue");
    cases.push((
        ("1", "doctor"),
        code(
            world
                .berth()
                .args(["doctor", "--offline", "--config", git])
                .arg("--queue-dir")
                .arg(&missing),
        ),
    ));
    let fixture = crate::faults::fixture_path();
    cases.push((
        ("1", "detect"),
        code(world.berth().arg("detect").arg(&fixture).arg("--no-count")),
    ));
    let learned = crate::faults::learned_file(&world.root, "BAD_PATH", "$..x");
    cases.push((
        ("1", "patterns list"),
        code(
            world
                .berth()
                .args(["patterns", "list", "--learned"])
                .arg(&learned),
        ),
    ));
    cases.push((("1", "faults list"), faults_list_with_a_pending_halt(world)));

    let root = world.rules_root();
    world.write_rule("policies/landing.rhai", "fn admit(ctx) { ");
    for verb in ["check", "test", "list"] {
        let case = match verb {
            "check" => ("1", "rules check"),
            "test" => ("1", "rules test"),
            _ => ("1", "rules list"),
        };
        cases.push((case, code(world.berth().args(["rules", verb]).arg(&root))));
    }
    let empty = world.root.join("empty-berth-dir");
    fs::create_dir_all(&empty).unwrap();
    cases.push((
        ("1", "rules capture"),
        code(
            world
                .berth()
                .args(["rules", "capture", "--berth-dir"])
                .arg(&empty),
        ),
    ));
    cases.push((("128+N", "run"), sigterm_exit(world, git)));
    cases
}

/// A daemon tick files a halt event for the fixture's run; `faults list` then.
fn faults_list_with_a_pending_halt(world: &World) -> Option<i32> {
    let build_state = world.home.join(".gstack/build-state");
    fs::copy(
        crate::faults::fixture_path(),
        build_state.join("polis.json"),
    )
    .unwrap();
    let berth_dir = world.root.join("faults-berth");
    world
        .berth_daemon()
        .env("BERTH_DIR", &berth_dir)
        .env("BERTH_QUEUE_DIR", world.root.join("faults-queue"))
        .args(["run", "--once", "--forge", "git"])
        .output()
        .unwrap();
    code(world.berth().args(["faults", "list"]))
}

/// `run --watch` stopped by SIGTERM once it has started.
fn sigterm_exit(world: &World, config: &str) -> Option<i32> {
    let berth_dir = world.root.join("signalled");
    let queue = world.root.join("signal-queue");
    let mut daemon = world.spawn_berth(
        &[
            "run",
            "--watch",
            "--config",
            config,
            "--queue-dir",
            queue.to_str().unwrap(),
        ],
        &berth_dir,
        &[],
    );
    let log = berth_dir.with_extension("log");
    let started = world.wait_for(Duration::from_secs(60), || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("berth starting"))
    });
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    let status = daemon.wait().unwrap();
    assert!(started, "the daemon never started");
    std::os::unix::process::ExitStatusExt::signal(&status)
        .map_or(status.code(), |signal| Some(128 + signal))
}

#[test]
fn every_documented_exit_code_is_what_a_real_run_exits_with() {
    let world = World::new();
    let cases = provoked(&world);
    let wrong: Vec<String> = cases
        .iter()
        .filter(|((code, _), got)| {
            let expected = match *code {
                "128+N" => 143,
                code => code.parse().unwrap(),
            };
            *got != Some(expected)
        })
        .map(|((code, command), got)| format!("{command}: documented {code}, exited {got:?}"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    let tested: BTreeSet<(String, String)> = cases
        .iter()
        .map(|((code, command), _)| ((*code).to_owned(), (*command).to_owned()))
        .chain(
            ELSEWHERE
                .iter()
                .map(|(code, command, _)| ((*code).to_owned(), (*command).to_owned())),
        )
        .collect();
    assert_eq!(
        documented(),
        tested,
        "docs/cli.md's exit-code rows and the cases here differ"
    );
}
