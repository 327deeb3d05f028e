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

#[test]
fn a_missing_gh_is_named_with_the_fix() {
    let world = World::new();
    let config = world.config("forge = \"gh\"\ngh_program = \"gh-that-is-not-installed\"\n");
    let out = world
        .berth_daemon()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`gh-that-is-not-installed` cannot be run")
            && stderr.contains("install the GitHub CLI")
            && stderr.contains("forge = \"git\""),
        "{stderr}"
    );
}
