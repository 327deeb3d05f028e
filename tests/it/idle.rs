//! An idle daemon is quiet: reads never wake it, it asks the forge at most once per repo
//! per poll interval, and a refused rule edit is reported once (issue 9 §1).

use std::fs;
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{GhLane, World};

/// `run --watch` with the `gh` stand-in, logging each wake (`tick changed=…`).
fn watch_with_gh(gh: &GhLane, config: &std::path::Path) -> Child {
    gh.world.spawn_berth(
        &["run", "--watch", "--config", config.to_str().unwrap()],
        &gh.world.berth_state(),
        &[
            ("GH_STANDIN_DIR", &gh.replies),
            ("GH_STANDIN_LOG", &gh.log),
            ("BERTH_LOG", std::path::Path::new("berth=debug")),
        ],
    )
}

fn stop(mut daemon: Child) {
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
}

/// The daemon's `tick` debug lines (one per wake), as `changed=N files_read=M`.
fn ticks(world: &World) -> Vec<String> {
    fs::read_to_string(world.berth_state().with_extension("log"))
        .unwrap_or_default()
        .lines()
        .map(strip_ansi)
        .filter_map(|l| {
            l.split_once(" tick changed=")
                .map(|(_, n)| format!("changed={}", n.trim()))
        })
        .collect()
}

/// The daemon's log lines that contain `text`.
fn log_lines(world: &World, text: &str) -> Vec<String> {
    fs::read_to_string(world.berth_state().with_extension("log"))
        .unwrap_or_default()
        .lines()
        .map(strip_ansi)
        .filter(|l| l.contains(text))
        .collect()
}

/// The log without its colour codes (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads every file in `dir` a few times, as `berth status` or a producer would.
fn read_all(dir: &std::path::Path) {
    for _ in 0..5 {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            if entry.path().is_file() {
                let _ = fs::read(entry.path());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// PRs 40–43 of the widget repo, settled: three landed and proven, one blocked and just
/// checked (not due for a re-check for another 10 minutes).
fn settled_queue(gh: &GhLane) {
    let now = berth::clock::now_iso();
    for pr in 40..43 {
        gh.world
            .record(&gh.repo, pr)
            .set("repoIdentity", "github.com/acme/widget")
            .set("status", "landed")
            .set("lastGithubState", "MERGED")
            .set("lastGithubCheckedAt", now.as_str())
            .write();
    }
    gh.world
        .record(&gh.repo, 43)
        .set("repoIdentity", "github.com/acme/widget")
        .set("status", "blocked")
        .set("lastError", "land: exited 1")
        .set("lastGithubState", "OPEN")
        .set("lastGithubCheckedAt", now.as_str())
        .write();
}

#[test]
fn idle_watch_over_a_settled_queue_is_not_woken_by_reads() {
    let world = World::new();
    let gh = world.gh_lane();
    settled_queue(&gh);
    let config = gh.config(r#"["true"]"#, "poll_secs = 60\n");
    let daemon = watch_with_gh(&gh, &config);
    let status = world.berth_state().join("rules-status.json");
    wait_for("the daemon to start", || status.exists());
    let ticks = || ticks(&world);
    wait_for("the first tick", || ticks().len() == 1);
    // The daemon's own reads, and everyone else's: no tick, no call. Then one settled
    // record written: the watcher delivers in order, so once its wake is counted, any wake
    // the reads had caused would have been counted before it.
    read_all(&world.queue);
    wake_with(&world, || {
        world
            .record(&gh.repo, 44)
            .set("repoIdentity", "github.com/acme/widget")
            .set("status", "abandoned")
            .write();
    });
    let calls = gh.calls();
    let ticks = ticks();
    stop(daemon);
    // Every record is settled: nothing to ask the forge, and each file read once.
    assert!(calls.is_empty(), "gh calls while idle: {calls:?}");
    assert_eq!(ticks[0], "changed=4 files_read=4", "{ticks:?}");
    // The next wake is the written record's (it may read files again whose stamps were
    // too young to trust at the first tick).
    assert!(ticks[1].starts_with("changed=1 "), "{ticks:?}");
}

#[test]
fn a_refused_rule_edit_is_reported_once_and_a_valid_one_reloads_once() {
    let world = World::new();
    world.write_rule(
        "policies/landing.rhai",
        include_str!("../../policies/landing.rhai"),
    );
    let daemon = world.spawn_watching(&world.git_forge_config("poll_secs = 60\n"));
    let log = || fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default();
    let status = world.berth_state().join("rules-status.json");
    wait_for("the daemon's rules status", || status.exists());
    wait_for("the rules watch", || {
        log().contains("watching the rules root")
    });
    let wait = Duration::from_secs(20);
    let broken = berth::rules::write_and_await(
        &world.rules_root(),
        &world.berth_state(),
        "policies/landing.rhai",
        "fn admit(record, ctx) {\n",
        wait,
    )
    .unwrap();
    assert!(matches!(broken, berth::rules::ReloadSeen::Refused(_)));
    // Reads report nothing again: the next edit's answer, awaited below, comes after any
    // answer the reads had caused (the rules watch handles its events in order).
    read_all(&world.rules_root().join("policies"));

    let fixed = berth::rules::write_and_await(
        &world.rules_root(),
        &world.berth_state(),
        "policies/landing.rhai",
        &include_str!("../../policies/landing.rhai").replace("no landing policy", "nothing"),
        wait,
    )
    .unwrap();
    assert!(matches!(fixed, berth::rules::ReloadSeen::Active(_)));
    let refusals = log().matches("rule reload REFUSED").count();
    assert_eq!(refusals, 1, "{}", log());
    read_all(&world.rules_root().join("policies"));
    // One more refused edit, awaited, counts every answer the reads had caused.
    let again = berth::rules::write_and_await(
        &world.rules_root(),
        &world.berth_state(),
        "policies/landing.rhai",
        "fn order(records, ctx) {\n",
        wait,
    )
    .unwrap();
    assert!(matches!(again, berth::rules::ReloadSeen::Refused(_)));
    stop(daemon);
    let log = log();
    assert_eq!(log.matches("rule reload REFUSED").count(), 2, "{log}");
    assert_eq!(
        log.matches("rule set reloaded and active").count(),
        1,
        "{log}"
    );
}

/// Repos `acme/<name>` whose origin is GitHub (`git@github.com:acme/<name>.git`, pointed
/// at a local bare remote by the user's git config, as [`World::gh_lane`] does for
/// `widget`), with an empty discovery listing each.
pub(crate) fn github_repos(gh: &GhLane, names: &[&str]) -> Vec<std::path::PathBuf> {
    let w = gh.world;
    let mut gitconfig = fs::read_to_string(w.home.join(".gitconfig")).unwrap();
    let mut repos = Vec::new();
    for name in names {
        let bare = w.bare_remote(name);
        let url = format!("git@github.com:acme/{name}.git");
        gitconfig.push_str(&format!(
            "[url \"{}\"]\n\tinsteadOf = {url}\n",
            bare.display()
        ));
        let repo = w.clone_into(&w.code, name, bare.to_str().unwrap());
        w.run_git(&repo, &["remote", "set-url", "origin", &url]);
        fs::write(gh.replies.join(format!("pr-list.acme.{name}.json")), "[]").unwrap();
        repos.push(repo);
    }
    fs::write(w.home.join(".gitconfig"), gitconfig).unwrap();
    repos
}

/// The `gh` calls as `(what, repo)`: `discover` (open labelled PRs) or `states` (the
/// shared listing of every PR's state), sorted.
fn call_kinds(gh: &GhLane) -> Vec<(String, String)> {
    let mut kinds: Vec<(String, String)> = gh
        .calls()
        .iter()
        .map(|c| {
            let repo = c[c.iter().position(|a| a == "--repo").unwrap() + 1].clone();
            let kind = match (&c[1][..], c.contains(&"all".to_owned())) {
                ("list", false) => "discover",
                ("list", true) => "states",
                _ => "view",
            };
            (kind.to_owned(), repo)
        })
        .collect();
    kinds.sort();
    kinds
}

/// How many times the shared listing of every PR's state (`states`) was asked for.
fn states_listings(gh: &GhLane) -> usize {
    call_kinds(gh)
        .iter()
        .filter(|(kind, _)| kind == "states")
        .count()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The `gh` stand-in's listing for repo `b`: PR 2 merged.
pub(crate) fn pr_2_of_b_merged(gh: &GhLane) {
    fs::write(
        gh.replies.join("pr-list.acme.b.json"),
        r#"[{"number": 2, "state": "MERGED", "mergedAt": "2026-11-24T10:00:00Z",
             "mergeCommit": {"oid": "0123456789abcdef0123456789abcdef01234567"},
             "labels": [], "baseRefName": "main", "headRefName": "feat/pr-2"}]"#,
    )
    .unwrap();
}

/// Five repos, one tick: a repo with a live record (`a`) and a configured repo with no
/// record at all (`e`) are discovered; a repo with a blocked record due for a re-check
/// (`b`) gets one shared listing of PR states; repos whose records are settled (`c`) or
/// not due (`d`) cost nothing.
fn five_repo_world(gh: &GhLane) -> (Vec<std::path::PathBuf>, std::path::PathBuf) {
    let repos = github_repos(gh, &["a", "b", "c", "d", "e"]);
    let w = gh.world;
    let now = berth::clock::now_iso();
    let record = |i: usize, pr: u64| {
        w.record(&repos[i], pr).set(
            "repoIdentity",
            format!("github.com/acme/{}", ["a", "b", "c", "d", "e"][i]),
        )
    };
    record(0, 1)
        .set("status", "landing")
        .set("claimedBy", berth::ownership::this_process())
        .set("lastUpdatedAt", now.as_str())
        .write();
    record(1, 2)
        .set("status", "blocked")
        .set("lastError", "land: exited 1")
        .write();
    pr_2_of_b_merged(gh);
    record(2, 3)
        .set("status", "landed")
        .set("lastGithubState", "MERGED")
        .write();
    record(2, 4).set("status", "abandoned").write();
    record(3, 5)
        .set("status", "blocked")
        .set("lastError", "land: exited 1")
        .set("lastGithubState", "OPEN")
        .set("lastGithubCheckedAt", now.as_str())
        .write();
    let config = gh.config(
        r#"["true"]"#,
        &format!(
            "poll_secs = 60\nrepos = [{:?}]\n",
            repos[4].to_str().unwrap()
        ),
    );
    (repos, config)
}

#[test]
fn forge_calls_per_tick_are_one_per_repo_with_due_work() {
    let world = World::new();
    let gh = world.gh_lane();
    let (_repos, config) = five_repo_world(&gh);
    let once = || {
        gh.berth()
            .args(["run", "--once", "--config", config.to_str().unwrap()])
            .assert()
            .success();
    };
    once();
    assert_eq!(
        call_kinds(&gh),
        pairs(&[
            ("discover", "acme/a"),
            ("discover", "acme/e"),
            ("states", "acme/b"),
        ])
    );
    let id = berth::safe_key::record_id("github.com/acme/b", "main", 2);
    assert_eq!(world.read_record(&id)["status"], "landed");

    // `b` is settled now: the next tick discovers `a` and `e` again, and asks nothing else.
    fs::remove_file(&gh.log).unwrap();
    once();
    assert_eq!(
        call_kinds(&gh),
        pairs(&[("discover", "acme/a"), ("discover", "acme/e")])
    );
}

/// Makes a queue write and waits for its wake: one more tick line than before it.
fn wake_with(world: &World, write: impl FnOnce()) {
    let before = ticks(world).len();
    write();
    wait_for("the write's wake", || ticks(world).len() > before);
}

#[test]
fn writes_wake_watch_but_the_forge_is_asked_once_per_repo_per_poll_interval() {
    let world = World::new();
    let gh = world.gh_lane();
    let (repos, config) = five_repo_world(&gh);
    let daemon = watch_with_gh(&gh, &config);
    let first = pairs(&[
        ("discover", "acme/a"),
        ("discover", "acme/e"),
        ("states", "acme/b"),
    ]);
    wait_for("the first tick's forge calls", || call_kinds(&gh) == first);
    // The first (poll) tick's round ends with the queue detectors; the writes come after.
    wait_for("the first round's queue detectors", || {
        !log_lines(&world, "queue detectors run").is_empty()
    });
    // Writes to the queue wake ticks (the blocked record of `d` edited three times, a new
    // file for `c` that is settled); none of them is due forge work.
    for n in 0..3 {
        wake_with(&world, || {
            world
                .record(&repos[3], 5)
                .set("repoIdentity", "github.com/acme/d")
                .set("status", "blocked")
                .set("lastError", format!("land: exited {n}"))
                .set("lastGithubState", "OPEN")
                .set("lastGithubCheckedAt", berth::clock::now_iso())
                .write();
        });
    }
    wake_with(&world, || {
        world
            .record(&repos[2], 6)
            .set("repoIdentity", "github.com/acme/c")
            .set("status", "abandoned")
            .write();
    });
    let calls = call_kinds(&gh);
    let ticks = ticks(&world);
    let detector_runs = log_lines(&world, "queue detectors run");
    stop(daemon);
    assert_eq!(calls, first);
    // The queue detectors judge every live record: they ran on the first (poll) tick, over
    // the live records only (`a`'s queued one, `b`'s due one; settled ones never), and
    // never on a watcher's wake.
    assert_eq!(detector_runs.len(), 1, "{detector_runs:?}");
    // The first tick read the 6 files (and `b`'s write-back); every wake after it read
    // what was written, and nothing else.
    // (A write the watcher reports in two batches wakes twice; the second finds the file
    // as the first read it: `changed=0`.)
    let woken: Vec<&String> = ticks.iter().skip(1).collect();
    assert!(
        woken.iter().filter(|t| t.starts_with("changed=1 ")).count() >= 3,
        "{ticks:?}"
    );
    assert!(
        woken
            .iter()
            .all(|t| t.starts_with("changed=1 ") || t.starts_with("changed=0 ")),
        "{ticks:?}"
    );
}

/// Repo `acme/b` with PR #2's record blocked, the forge asked about it just now; its id.
fn blocked_just_checked(gh: &GhLane) -> String {
    let repos = github_repos(gh, &["b"]);
    gh.world
        .record(&repos[0], 2)
        .set("repoIdentity", "github.com/acme/b")
        .set("status", "blocked")
        .set("lastError", "land: exited 1")
        .set("lastGithubState", "OPEN")
        .set("lastGithubCheckedAt", berth::clock::now_iso())
        .write()
}

/// A blocked record checked just now is not due; with nothing written meanwhile, it is
/// re-checked once `reconcile_every_secs` has passed, on a poll tick (the tick remembers
/// when the next record comes due instead of walking the queue every time).
#[test]
fn a_blocked_record_is_rechecked_when_it_comes_due_without_any_write() {
    let world = World::new();
    let gh = world.gh_lane();
    let id = blocked_just_checked(&gh);
    pr_2_of_b_merged(&gh);
    let config = gh.config(r#"["true"]"#, "poll_secs = 1\nreconcile_every_secs = 6\n");
    let daemon = watch_with_gh(&gh, &config);
    let states = || states_listings(&gh);
    wait_for("the first ticks", || ticks(&world).len() >= 2);
    assert_eq!(states(), 0, "not due yet: {:?}", call_kinds(&gh));
    wait_for("the re-check once due", || states() == 1);
    wait_for("the record landed", || {
        world.read_record(&id)["status"] == "landed"
    });
    let record = world.read_record(&id);
    stop(daemon);
    assert_eq!(record["status"], "landed", "{record}");
}

/// `reconcile_every_secs` may be set past any date ("never re-ask"): a blocked record
/// asked of the forge just now is then never due, and every tick still runs whole.
#[test]
fn a_reconcile_interval_past_any_date_never_rechecks_and_ticks_still_run() {
    let world = World::new();
    let gh = world.gh_lane();
    blocked_just_checked(&gh);
    let config = gh.config(
        r#"["true"]"#,
        "poll_secs = 1\nreconcile_every_secs = 9000000000000\n",
    );
    let daemon = watch_with_gh(&gh, &config);
    wait_for("the first ticks", || ticks(&world).len() >= 2);
    let failed = log_lines(&world, "tick preparation failed");
    let calls = call_kinds(&gh);
    stop(daemon);
    assert!(failed.is_empty(), "{failed:?}");
    assert!(calls.iter().all(|(kind, _)| kind != "states"), "{calls:?}");
}

/// A blocked record whose verdict filled it to the 1 MiB cap (its `lastError` cut to fit)
/// still takes the GitHub check written after it (its `lastError`, berth's text, is cut
/// further): it is then not due, so neither the forge (whose listing is kept for the
/// interval anyway) nor the record is asked again, and no tick tries a write it refuses.
#[test]
fn a_blocked_record_full_to_the_cap_still_takes_its_github_check() {
    let world = World::new();
    let gh = world.gh_lane();
    let repos = github_repos(&gh, &["b"]);
    let id = world
        .record(&repos[0], 2)
        .set("repoIdentity", "github.com/acme/b")
        .set("status", "blocked")
        .set("lastGithubCheckedAt", "2026-01-01T00:00:00.000Z")
        .write();
    let path = world.queue.join(format!("{id}.json"));
    let mut record: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    record["lastError"] = serde_json::json!("");
    let base = record.to_string().len();
    let error = format!(
        "land: exited 1: {}",
        "e".repeat(1024 * 1024 - base - 16 - 30 - 8)
    );
    record["lastError"] = serde_json::json!(format!("{error} [cut to fit the record limit]"));
    let text = record.to_string();
    assert!(text.len() <= 1024 * 1024 - 8, "{}", text.len());
    let temp = world.queue.join(".tmp-record");
    fs::write(&temp, text).unwrap();
    fs::rename(&temp, &path).unwrap();
    fs::write(
        gh.replies.join("pr-list.acme.b.json"),
        r#"[{"number": 2, "state": "OPEN", "labels": [], "baseRefName": "main",
             "headRefName": "feat/pr-2"}]"#,
    )
    .unwrap();
    let config = gh.config(
        r#"["true"]"#,
        "poll_secs = 1\nreconcile_every_secs = 3600\n",
    );
    let daemon = watch_with_gh(&gh, &config);
    let states = || states_listings(&gh);
    wait_for("the first check", || states() >= 1);
    let after = ticks(&world).len();
    wait_for("five more ticks", || ticks(&world).len() >= after + 5);
    let asked = states();
    let skipped = log_lines(&world, "reconcile write skipped").len();
    let record = world.read_record(&id);
    stop(daemon);
    assert_eq!(skipped, 0, "the check was refused on {skipped} ticks");
    assert_eq!(
        asked,
        1,
        "the forge asked on every tick: {:?}",
        call_kinds(&gh)
    );
    assert_eq!(
        record["lastGithubState"], "OPEN",
        "the check was not written"
    );
    assert!(fs::metadata(&path).unwrap().len() <= 1024 * 1024);
}
