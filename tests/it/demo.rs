//! `berth demo`, the README's "run it" command, must pass on any machine with git.

use predicates::prelude::*;

#[test]
fn the_demo_runs_green_and_narrates_what_it_checks() {
    assert_cmd::Command::cargo_bin("berth")
        .unwrap()
        .arg("demo")
        .env_remove("BERTH_LOG")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "lock ref refs/gstack/release-locks/127.0.0.1-acme-widget/main appeared",
        ))
        .stdout(predicate::str::contains(
            "queued -> blocked: repoPath rejected by daemon allowlist (pre-id derivation): repoPath ",
        ))
        .stdout(predicate::str::contains(
            "PR #201 [release/1.x] landing -> landed",
        ))
        .stdout(predicate::str::contains(
            "PR #103 [main] waits: release freeze",
        ))
        .stdout(predicate::str::contains(
            "a broken edit is refused: policies/landing.rhai:",
        ))
        .stdout(predicate::str::contains("PR #103 [main] landing -> landed"))
        .stdout(predicate::str::contains("[FAILED]").not())
        .stdout(predicate::str::contains(
            "demo finished: every step happened as narrated",
        ));
}
