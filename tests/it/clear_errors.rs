//! Errors an operator can act on: a mistyped queue dir is never a new or empty queue, and a
//! missing `gh` names the fix.

use crate::support::World;

#[test]
fn a_missing_queue_dir_is_an_error_for_enqueue_lock_status_and_retry() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    lane.push_feature("feat/pr-1", "main");
    let typo = world.root.join("queue-typo");
    let runs: [Vec<String>; 3] = [
        [
            "enqueue",
            "--repo-path",
            lane.clone.to_str().unwrap(),
            "--pr",
            "1",
            "--feature-branch",
            "feat/pr-1",
            "--version",
            "1.0.0",
        ]
        .map(String::from)
        .to_vec(),
        ["lock", "status"].map(String::from).to_vec(),
        ["retry", "1"].map(String::from).to_vec(),
    ];
    for args in runs {
        let out = world
            .berth()
            .args(&args)
            .arg("--queue-dir")
            .arg(&typo)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("queue dir {} cannot be read", typo.display())),
            "{args:?}: {stderr}"
        );
        assert!(!typo.exists(), "{args:?} created the mistyped queue dir");
    }
}

/// A `PATH` holding git and nothing else: no `gh` wherever the tests run.
fn path_without_gh(world: &World) -> std::path::PathBuf {
    let bin = world.root.join("bin-without-gh");
    std::fs::create_dir_all(&bin).unwrap();
    let git = which::which("git").expect("git is installed");
    std::os::unix::fs::symlink(git, bin.join("git")).unwrap();
    bin
}

#[test]
fn a_missing_gh_stops_run_and_status_and_doctor_name_the_fix() {
    let world = World::new();
    let config = world.config("forge = \"gh\"\n");
    let fix = format!(
        "install the GitHub CLI (https://cli.github.com) and `gh auth login`, or set forge = \"git\" in {}",
        config.display()
    );
    let path = path_without_gh(&world);
    // `berth args… --config <config>` with no `gh` on its PATH.
    let without_gh = |mut berth: assert_cmd::Command, args: &[&str]| {
        berth
            .env("PATH", &path)
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let run = without_gh(world.berth_daemon(), &["run", "--once"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the forge is gh, but `gh` cannot be run") && stderr.contains(&fix),
        "{stderr}"
    );
    assert!(!stderr.contains("No such file or directory"), "{stderr}");

    // A queued record will not land without gh: status says so.
    let lane = world.git_lane("widget", None);
    lane.queue(1, "main");
    let status = without_gh(world.berth(), &["status", "--offline"]);
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("forge: ") && l.contains(&fix)),
        "{stdout}"
    );

    let json = without_gh(world.berth(), &["status", "--offline", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        json["forgeProblem"]
            .as_str()
            .is_some_and(|p| p.contains(&fix)),
        "{json:#}"
    );

    let doctor = without_gh(world.berth(), &["doctor", "--offline"]);
    let stdout = String::from_utf8_lossy(&doctor.stdout);
    assert_eq!(doctor.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL  gh: ") && l.contains(&fix)),
        "{stdout}"
    );
}
