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

/// `demo --keep` serves the queue page of its world after the run, until a signal; the page
/// shows the landings the demo made, with their ETAs' history.
#[test]
fn the_kept_demo_serves_its_queue_page_until_a_signal() {
    use std::io::BufRead;
    let mut demo = std::process::Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .args(["demo", "--keep"])
        .env_remove("BERTH_LOG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mut url, mut kept) = (None, None);
    for line in std::io::BufReader::new(demo.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(dir) = line.strip_prefix("the world is kept in ") {
            kept = Some(std::path::PathBuf::from(dir));
        }
        if let Some(rest) = line.strip_prefix("the queue page stays up at http://") {
            url = rest.split('/').next().map(str::to_owned);
            break;
        }
    }
    let addr = url.expect("the demo printed its page's URL");
    let (status, page) = crate::support::request(&addr, "GET", "/");
    let (_, story) = crate::support::request(&addr, "GET", "/pr/103");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(demo.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = demo.wait().unwrap();
    if let Some(dir) = kept {
        std::fs::remove_dir_all(dir).unwrap();
    }
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        page.contains("<h2>Recent landings and blocks</h2>")
            && page.contains("<span class=\"word\">landed</span>"),
        "{page}"
    );
    assert!(
        story.contains("admit: wait") && story.contains("release freeze"),
        "{story}"
    );
    // The kept daemon holds two more PRs under a freeze: the page shows the lane's queue,
    // why each waits, and an ETA from the run's landings.
    assert!(
        page.contains("PR <a href=\"/pr/")
            && page
                .matches("release freeze: kept by berth demo --keep")
                .count()
                >= 2
            && page.contains("ETA <span class=\"word\">~ "),
        "{page}"
    );
    assert!(exit.success(), "{exit:?}");
}
