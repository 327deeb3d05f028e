use std::io::Write as _;

use serde_json::json;

use super::*;
use crate::hostile_file::read_cost::bytes_read_by;
use crate::rules::decisions::{OperatorAct, files, operator_act};
use crate::rules::journal::Act;

fn append(dir: &Path, line: &serde_json::Value) -> u64 {
    let text = format!("{line}\n");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(files(dir).current())
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    text.len() as u64
}

fn status(n: u64, pr: u64, repo: &str, to: &str) -> serde_json::Value {
    json!({"time": format!("2026-01-01T00:{:02}:{:02}.000Z", n / 60 % 60, n % 60),
        "kind": "status", "record": format!("{repo}-{pr}"), "pr": pr, "repo": repo,
        "from": "queued", "to": to, "reason": format!("n{n}")})
}

/// `lines` claims of repo `r`'s PRs `0..prs` in turn appended to the log; the bytes written.
fn claims(dir: &Path, lines: u64, prs: u64) -> u64 {
    (0..lines)
        .map(|n| append(dir, &status(n, n % prs, "r", "claiming")))
        .sum()
}

fn wait(n: u64, pr: u64, repo: &str, decision: &str) -> serde_json::Value {
    json!({"time": format!("2026-01-01T00:{:02}:{:02}.000Z", n / 60 % 60, n % 60),
        "kind": "decision", "ruleset": "h", "file": "policies/landing.rhai",
        "function": "admit", "record": format!("{repo}-{pr}"), "pr": pr, "repo": repo,
        "decision": decision, "reason": format!("n{n}"), "fallback": false})
}

/// Journals an operator's release of lock ref `refs/berth/locks/x` in berth dir `dir`.
pub(in crate::queue_report) fn release(dir: &Path) {
    let act = OperatorAct {
        act: Act::LockRelease,
        subject: None,
        from: None,
        to: None,
        lock_ref: Some("refs/berth/locks/x"),
        reason: "stuck",
    };
    operator_act(dir, &act).unwrap();
}

fn texts(lines: &[JournalLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| serde_json::to_string(l).unwrap())
        .collect()
}

/// A second request after an append parses the appended line and nothing else.
#[test]
fn a_read_after_an_append_parses_only_what_was_appended() {
    let dir = tempfile::tempdir().unwrap();
    let written = claims(dir.path(), 300, 10);
    let index = DecisionIndex::default();
    assert_eq!(
        index.pr_history(dir.path(), 7, None).unwrap().lines.len(),
        30
    );
    assert_eq!(index.bytes_parsed(), written);
    let appended = append(dir.path(), &status(300, 7, "r", "landed"));
    let story = index.pr_history(dir.path(), 7, None).unwrap();
    assert_eq!(story.lines.len(), 31);
    assert_eq!(index.bytes_parsed() - written, appended);
    index.history(dir.path()).unwrap();
    index.policy_waits(dir.path()).unwrap();
    assert_eq!(
        index.bytes_parsed() - written,
        appended,
        "nothing new: nothing parsed"
    );
}

/// What the index tells is what a whole read tells, through rotations that keep and drop
/// generations, for every PR and repo, the policy waits and the landing history.
#[test]
fn the_index_tells_what_a_whole_read_tells_across_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let index = DecisionIndex::default();
    let log = files(dir.path());
    for n in 0..400u64 {
        let (pr, repo) = (n % 7, if n % 3 == 0 { "a" } else { "b" });
        match n % 5 {
            0 => append(dir.path(), &wait(n, pr, repo, "wait")),
            1 => append(dir.path(), &status(n, pr, repo, "claiming")),
            2 => append(dir.path(), &status(n, pr, repo, "landed")),
            3 => append(dir.path(), &wait(n, pr, repo, "admit")),
            _ => {
                release(dir.path());
                0
            }
        };
        if n % 37 == 36 {
            log.rotate().unwrap();
        }
        if n % 13 != 12 {
            continue;
        }
        for pr in [0, 3, 6] {
            for repo in [None, Some("a"), Some("b")] {
                let whole = decisions::pr_history(dir.path(), pr, repo).unwrap();
                let followed = index.pr_history(dir.path(), pr, repo).unwrap();
                assert_eq!(
                    texts(&followed.lines),
                    texts(&whole.lines),
                    "pr {pr} {repo:?}"
                );
                assert_eq!(
                    texts(&followed.lock_releases),
                    texts(&whole.lock_releases),
                    "pr {pr} {repo:?}"
                );
            }
        }
        assert_eq!(
            index.policy_waits(dir.path()).unwrap(),
            decisions::policy_waits(dir.path()).unwrap()
        );
        let (whole, followed) = (
            History::read(dir.path()).unwrap(),
            index.history(dir.path()).unwrap(),
        );
        assert_eq!(followed.landings, whole.landings);
        assert_eq!(followed.recent, whole.recent);
        assert_eq!(followed.claimed, whole.claimed);
    }
    assert!(!log.generation(decisions::KEPT_GENERATIONS + 1).exists());
}

/// A line still being written is taken once it is whole, never half.
#[test]
fn a_torn_last_line_is_taken_once_it_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), &status(0, 7, "r", "claiming"));
    let line = format!("{}\n", status(1, 7, "r", "landed"));
    let (head, tail) = line.split_at(40);
    let current = files(dir.path()).current();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(current)
        .unwrap();
    file.write_all(head.as_bytes()).unwrap();
    let index = DecisionIndex::default();
    assert_eq!(
        index.pr_history(dir.path(), 7, None).unwrap().lines.len(),
        1
    );
    file.write_all(tail.as_bytes()).unwrap();
    assert_eq!(
        index.pr_history(dir.path(), 7, None).unwrap().lines.len(),
        2
    );
}

/// docs/limits.md and [`MAX_PLACES`] promise 16 bytes a place (2 Mi places, 32 MiB): a log
/// of lines about ever new PRs (a queue writer's records) holds no map entry or list per PR.
#[test]
fn the_index_holds_its_places_within_16_bytes_each() {
    let dir = tempfile::tempdir().unwrap();
    let lines = 100_000u64;
    let mut text = String::new();
    for n in 0..lines {
        text.push_str(&status(n, n + 1, "r", "claiming").to_string());
        text.push('\n');
    }
    std::fs::write(files(dir.path()).current(), text).unwrap();
    let index = DecisionIndex::default();
    index.history(dir.path()).unwrap();
    let held = index.lock();
    assert_eq!(held.indexed as u64, lines);
    assert_eq!(std::mem::size_of::<LineRef>(), 16);
    let bytes =
        (held.places.capacity() + held.releases.capacity()) * std::mem::size_of::<LineRef>();
    let per_place = bytes as f64 / lines as f64;
    assert!(
        per_place <= 32.0,
        "{lines} places hold {bytes} bytes ({per_place:.0} a place, documented 16): {} MiB at the 2 Mi cap, documented 32 MiB",
        (per_place * MAX_PLACES as f64 / 1048576.0) as u64
    );
}

/// A `prNumber` is any positive integer a queue writer puts in a record, and the daemon
/// journals its status changes: a line about PR 2^32 or `u32::MAX` (the no-PR mark) gets no
/// place, and its page is a whole read of the log, while the index stays for the others.
#[test]
fn one_line_about_a_pr_past_u32_does_not_fill_the_index() {
    let dir = tempfile::tempdir().unwrap();
    for n in 0..10 {
        append(dir.path(), &status(n, 7, "r", "claiming"));
    }
    append(dir.path(), &status(10, 1 << 32, "r", "blocked"));
    append(dir.path(), &status(11, u32::MAX.into(), "r", "blocked"));
    let index = DecisionIndex::default();
    assert_eq!(
        index.pr_history(dir.path(), 7, None).unwrap().lines.len(),
        10
    );
    for pr in [1 << 32, u64::from(u32::MAX)] {
        assert_eq!(
            index.pr_history(dir.path(), pr, None).unwrap().lines.len(),
            1,
            "PR {pr}'s page lost its line"
        );
    }
    let held = index.lock();
    assert!(
        !held.full,
        "12 lines, two about PRs past u32: the index is full ({} places kept), so every \
         story is a whole read of the log",
        held.places.len()
    );
    assert_eq!(held.indexed, 10);
}

/// A request for the page of a PR no line is about costs what any other such PR's costs,
/// whatever its number: `/pr/1099511627776` (anyone who can open a socket to the endpoint
/// can ask it, no record needed) must not read the whole decision log on every request.
#[test]
fn the_page_of_a_pr_past_u32_that_no_line_is_about_is_not_a_whole_read() {
    let dir = tempfile::tempdir().unwrap();
    let written = claims(dir.path(), 20_000, 50);
    let index = DecisionIndex::default();
    index.policy_waits(dir.path()).unwrap();
    let cost = |pr: u64| {
        let (found, read) = bytes_read_by(|| index.pr_history(dir.path(), pr, None).unwrap());
        assert!(found.lines.is_empty());
        read
    };
    let (small, past_u32) = (cost(1_000_000), cost(1 << 40));
    assert!(
        past_u32 < written / 10,
        "PR 1,000,000's page read {small} bytes, PR 2^40's read {past_u32}: the whole {written}-byte log, on every request"
    );
}
