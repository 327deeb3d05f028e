//! The lane lock against real bare remotes served by `git daemon --enable=receive-pack` on
//! 127.0.0.1 (a local-path remote would not enforce compare-and-swap), cross-checked with the
//! `git` CLI the way gstack writes and reads locks.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use berth::clock;
use berth::git_daemon::GitDaemon;
use berth::lane_lock::{
    Acquire, Heartbeat, HeldLock, Lane, ListedLock, LockClient, LockError, LockPayload,
    LockSettings, Released, lock_ref_name,
};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::memory::in_own_process;

/// libgit2's timeouts are process-wide: every client in this binary uses this one.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(3);
pub(super) const LONG_TTL: Duration = Duration::from_secs(2 * 60 * 60);
const CONTENDERS: usize = 8;
const RACE_ROUNDS: usize = 5;

fn settings(ttl: Duration) -> LockSettings {
    LockSettings {
        ttl,
        heartbeat_every: ttl / 8,
        remote_timeout: REMOTE_TIMEOUT,
    }
}

/// A bare `locks.git`, reached through `url`.
pub(super) struct Remote {
    pub bare: PathBuf,
    pub url: String,
    _daemon: Option<GitDaemon>,
    _dir: TempDir,
}

/// How a test reaches the bare remote.
#[derive(Debug, Clone, Copy)]
pub(super) enum Reach {
    /// `git://127.0.0.1:<port>/locks.git` through its own `git daemon`.
    GitDaemon,
    /// The bare repository's path.
    Path,
    /// `file://` + the bare repository's path.
    FileUrl,
}

pub(super) fn remote() -> Remote {
    remote_by(Reach::GitDaemon)
}

pub(super) fn remote_by(reach: Reach) -> Remote {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("locks.git");
    git(
        dir.path(),
        &["init", "--bare", "-q", bare.to_str().unwrap()],
    );
    let (url, daemon) = match reach {
        Reach::GitDaemon => {
            let daemon = GitDaemon::start(dir.path()).unwrap();
            (daemon.url_for("locks.git"), Some(daemon))
        }
        Reach::Path => (bare.to_str().unwrap().to_owned(), None),
        Reach::FileUrl => (format!("file://{}", bare.display()), None),
    };
    Remote {
        bare,
        url,
        _daemon: daemon,
        _dir: dir,
    }
}

impl Remote {
    /// The ref as the remote's own files say (not through the lock code under test).
    pub fn sha(&self, ref_name: &str) -> Option<String> {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(&self.bare)
            .args(["rev-parse", "--verify", "-q", ref_name])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap().trim().to_owned())
    }

    fn raw_commit(&self, sha: &str) -> String {
        git(&self.bare, &["cat-file", "commit", sha])
    }
}

/// A client with its own scratch dir (kept alive with it).
pub(super) fn client(ttl: Duration) -> (TempDir, LockClient) {
    let dir = tempfile::tempdir().unwrap();
    let client = LockClient::new(&dir.path().join("lane-lock"), settings(ttl)).unwrap();
    (dir, client)
}

pub(super) fn lane(base: &str) -> Lane {
    Lane {
        repo_identity: "github.com/acme/widget".into(),
        base_branch: base.into(),
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=gstack",
            "-c",
            "user.email=gstack@example.com",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(super) fn acquired(outcome: Result<Acquire, LockError>) -> HeldLock {
    match outcome {
        Ok(Acquire::Acquired(held)) => held,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

/// gstack's payload, as its TypeScript daemon serialises it (`JSON.stringify(p, null, 2)`).
pub(super) fn gstack_payload(owner: &str, base: &str, expires_in: chrono::Duration) -> Value {
    let now = clock::now();
    json!({
        "ownerId": owner,
        "repoPath": "/home/dev/code/widget",
        "repoIdentity": "github.com/acme/widget",
        "baseBranch": base,
        "createdAt": clock::iso(now - chrono::Duration::hours(1)),
        "expiresAt": clock::iso(now + expires_in),
    })
}

/// Writes a lock the way gstack does with the git CLI: `mktree`, `commit-tree -m -m`, push.
pub(super) fn gstack_write(remote: &Remote, ref_name: &str, body: &str) -> String {
    gstack_write_to(&remote.url, ref_name, body)
}

/// [`gstack_write`] to the remote at `url`.
pub(super) fn gstack_write_to(url: &str, ref_name: &str, body: &str) -> String {
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["init", "--bare", "-q", "."]);
    let tree = git_stdin(work.path(), &["mktree"], "");
    let sha = git(
        work.path(),
        &[
            "commit-tree",
            tree.trim(),
            "-m",
            "gstack release lock",
            "-m",
            body,
        ],
    );
    let sha = sha.trim().to_owned();
    // Even `push --force` is refused when the ref moves between the advertisement and the
    // update (a heartbeat of the holder): a peer pushes again, as this one does.
    let refspec = format!("{sha}:{ref_name}");
    let push = ["push", "-q", "--force", url, refspec.as_str()];
    for _ in 0..20 {
        let out = Command::new("git")
            .current_dir(work.path())
            .args(push)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            return sha;
        }
        assert!(stderr.contains("cannot lock ref"), "git {push:?}: {stderr}");
    }
    panic!("git {push:?} lost the race to the holder 20 times");
}

fn git_stdin(dir: &Path, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("git")
        .current_dir(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Reads a lock the way gstack does: `git fetch` the ref, `git log -1 --format=%B`, and
/// `JSON.parse` of the text after the first blank line.
fn gstack_read(remote: &Remote, ref_name: &str) -> Value {
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["init", "-q", "."]);
    git(work.path(), &["fetch", "-q", &remote.url, ref_name]);
    let message = git(work.path(), &["log", "-1", "--format=%B", "FETCH_HEAD"]);
    let (_, body) = message.split_once("\n\n").expect("a blank line");
    serde_json::from_str(body).expect("gstack's JSON.parse")
}

fn wait_until_expired(payload: &LockPayload) {
    wait_until_past(&payload.expires_at);
}

fn wait_until_past(expires_at: &str) {
    let expires = clock::parse_iso(expires_at).unwrap();
    while clock::now() <= expires {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `held` and the locks every spelling shares, taken with it, have expired.
fn wait_until_all_expired(remote: &Remote, held: &HeldLock) {
    wait_until_expired(held.payload());
    for alias in held.alias_ref_names() {
        wait_until_past(gstack_read(remote, alias)["expiresAt"].as_str().unwrap());
    }
}

#[test]
fn acquire_on_a_fresh_lane_creates_the_ref_with_the_exact_payload() {
    let remote = remote();
    let (_dir, client) = client(LONG_TTL);
    let lane = lane("release/2.x");
    let ref_name = lock_ref_name(&lane);
    assert_eq!(
        ref_name,
        "refs/gstack/release-locks/github.com-acme-widget/release-2.x"
    );
    let before = clock::now();
    let held = acquired(client.acquire(
        &remote.url,
        &lane,
        "host-a:4242",
        Path::new("/home/dev/code/widget"),
    ));
    let after = clock::now();

    assert_eq!(remote.sha(&ref_name).as_deref(), Some(held.sha().as_str()));
    let raw = remote.raw_commit(&held.sha());
    let (headers, message) = raw.split_once("\n\n").unwrap();
    assert!(headers.starts_with("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"));
    assert!(!headers.contains("\nparent "), "{headers}");
    let payload: Value =
        serde_json::from_str(message.strip_prefix("gstack release lock\n\n").unwrap()).unwrap();
    assert_eq!(
        message,
        format!(
            "gstack release lock\n\n{}\n",
            serde_json::to_string_pretty(&payload).unwrap()
        )
    );
    let keys: Vec<&str> = payload
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "ownerId",
            "repoPath",
            "repoIdentity",
            "baseBranch",
            "createdAt",
            "expiresAt"
        ]
    );
    assert_eq!(payload["ownerId"], "host-a:4242");
    assert_eq!(payload["repoPath"], "/home/dev/code/widget");
    assert_eq!(payload["repoIdentity"], "github.com/acme/widget");
    assert_eq!(payload["baseBranch"], "release/2.x");
    let created_text = payload["createdAt"].as_str().unwrap();
    let expires_text = payload["expiresAt"].as_str().unwrap();
    for text in [created_text, expires_text] {
        assert_eq!(text.len(), 24, "{text}");
        assert!(text.ends_with('Z') && text.as_bytes()[19] == b'.', "{text}");
    }
    let created = clock::parse_iso(created_text).unwrap();
    let expires = clock::parse_iso(expires_text).unwrap();
    assert!(created >= before - chrono::Duration::milliseconds(1) && created <= after);
    assert_eq!(expires - created, chrono::Duration::hours(2));
    assert_eq!(held.payload().expires_at, expires_text);
    assert!(!held.is_lost(Instant::now()));
}

#[test]
fn gstack_reads_our_lock_with_git_fetch_and_log() {
    let remote = remote();
    let (_dir, client) = client(LONG_TTL);
    let lane = lane("main");
    let held = acquired(client.acquire(&remote.url, &lane, "berth-1", Path::new("/src/w")));
    let read = gstack_read(&remote, &lock_ref_name(&lane));
    assert_eq!(read, serde_json::to_value(held.payload()).unwrap());
    assert_eq!(read["ownerId"], "berth-1");
    let expires = clock::parse_iso(read["expiresAt"].as_str().unwrap()).unwrap();
    assert!(expires > clock::now() + chrono::Duration::minutes(119));
}

#[test]
fn a_second_owner_sees_the_holder_and_the_lock_is_untouched() {
    let remote = remote();
    let (_a_dir, a) = client(LONG_TTL);
    let (_b_dir, b) = client(LONG_TTL);
    let lane = lane("main");
    let held = acquired(a.acquire(&remote.url, &lane, "owner-a", Path::new("/src/a")));
    match b.acquire(&remote.url, &lane, "owner-b", Path::new("/src/b")) {
        Ok(Acquire::HeldElsewhere { holder, sha, .. }) => {
            assert_eq!(&holder, held.payload());
            assert_eq!(holder.owner_id, "owner-a");
            assert_eq!(sha, held.sha());
        }
        other => panic!("expected HeldElsewhere, got {other:?}"),
    }
    assert_eq!(remote.sha(&lock_ref_name(&lane)), Some(held.sha()));
}

#[test]
fn an_expired_lock_is_taken_over_and_its_old_owner_cannot_release_the_new_one() {
    let remote = remote();
    let (_a_dir, a) = client(Duration::from_secs(1));
    let (_b_dir, b) = client(LONG_TTL);
    let lane = lane("main");
    let ref_name = lock_ref_name(&lane);
    let old = acquired(a.acquire(&remote.url, &lane, "owner-a", Path::new("/src/a")));
    wait_until_all_expired(&remote, &old);

    let new = acquired(b.acquire(&remote.url, &lane, "owner-b", Path::new("/src/b")));
    assert_ne!(new.sha(), old.sha());
    assert_eq!(remote.sha(&ref_name), Some(new.sha()));
    assert_eq!(new.payload().owner_id, "owner-b");

    assert_eq!(
        a.release(&old).unwrap(),
        Released::NotOurs { now_sha: new.sha() }
    );
    assert_eq!(
        remote.sha(&ref_name),
        Some(new.sha()),
        "the new owner's lock survives"
    );
    assert_eq!(b.release(&new).unwrap(), Released::Deleted);
    assert_eq!(remote.sha(&ref_name), None);
}

#[test]
fn an_unreadable_lock_is_refused_and_left_alone() {
    let remote = remote();
    let (_dir, client) = client(LONG_TTL);
    let mut no_expiry = gstack_payload("gstack-x", "b1", chrono::Duration::hours(-1));
    no_expiry.as_object_mut().unwrap().remove("expiresAt");
    let mut bad_time = gstack_payload("gstack-x", "b2", chrono::Duration::hours(-1));
    bad_time["expiresAt"] = json!("whenever");
    let cases = [
        ("b0", "not json at all".to_owned(), "holds no JSON object"),
        ("b1", no_expiry.to_string(), "expiresAt"),
        (
            "b2",
            serde_json::to_string_pretty(&bad_time).unwrap(),
            "whenever",
        ),
    ];
    for (base, body, why) in cases {
        let lane = lane(base);
        let ref_name = lock_ref_name(&lane);
        let written = gstack_write(&remote, &ref_name, &body);
        match client.acquire(&remote.url, &lane, "berth", Path::new("/src/w")) {
            Ok(Acquire::Unreadable { sha, reason }) => {
                assert_eq!(sha, written);
                assert!(reason.contains(why), "{base}: {reason}");
            }
            other => panic!("{base}: expected Unreadable, got {other:?}"),
        }
        assert_eq!(remote.sha(&ref_name), Some(written), "{base} untouched");
    }
}

#[test]
fn release_deletes_our_lock_and_a_missing_ref_is_success() {
    let remote = remote();
    let (_dir, client) = client(LONG_TTL);
    let lane = lane("main");
    let ref_name = lock_ref_name(&lane);
    let held = acquired(client.acquire(&remote.url, &lane, "owner-a", Path::new("/src/a")));
    assert_eq!(client.release(&held).unwrap(), Released::Deleted);
    assert_eq!(remote.sha(&ref_name), None);
    assert_eq!(client.release(&held).unwrap(), Released::AlreadyGone);
    assert_eq!(
        client
            .force_release(&remote.url, &ref_name, &held.sha())
            .unwrap(),
        Released::AlreadyGone
    );
    // The lane is free again.
    let again = acquired(client.acquire(&remote.url, &lane, "owner-b", Path::new("/src/b")));
    assert_eq!(remote.sha(&ref_name), Some(again.sha()));
}

#[test]
fn heartbeat_extends_the_expiry_with_compare_and_swap() {
    let remote = remote();
    let (_dir, client) = client(LONG_TTL);
    let lane = lane("main");
    let ref_name = lock_ref_name(&lane);
    let mut held = acquired(client.acquire(&remote.url, &lane, "owner-a", Path::new("/src/a")));
    let first = held.payload().clone();
    let first_refresh = held.last_refresh();
    std::thread::sleep(Duration::from_millis(20));

    client.heartbeat(&mut held).unwrap();
    assert_eq!(remote.sha(&ref_name), Some(held.sha()));
    assert!(held.last_refresh() > first_refresh);
    // gstack re-stamps createdAt on every refresh ("last refreshed at").
    assert!(held.payload().created_at > first.created_at);
    assert_eq!(held.payload().owner_id, first.owner_id);
    let before = clock::parse_iso(&first.expires_at).unwrap();
    let after = clock::parse_iso(&held.payload().expires_at).unwrap();
    assert!(after > before, "{after} > {before}");
    assert_eq!(
        gstack_read(&remote, &ref_name),
        serde_json::to_value(held.payload()).unwrap()
    );
    assert!(!held.is_lost(Instant::now()));
    assert_eq!(client.release(&held).unwrap(), Released::Deleted);
}

#[test]
fn heartbeat_after_a_takeover_reports_the_loss_and_never_writes() {
    let remote = remote();
    let (_a_dir, a) = client(Duration::from_secs(1));
    let (_b_dir, b) = client(LONG_TTL);
    let lane = lane("main");
    let ref_name = lock_ref_name(&lane);
    let mut old = acquired(a.acquire(&remote.url, &lane, "owner-a", Path::new("/src/a")));
    wait_until_all_expired(&remote, &old);
    let new = acquired(b.acquire(&remote.url, &lane, "owner-b", Path::new("/src/b")));

    // Taken over after expiry: the TTL already says lost, and nothing is written.
    assert!(old.is_lost(Instant::now()));
    assert!(matches!(a.heartbeat(&mut old), Err(LockError::Lost { .. })));
    assert_eq!(remote.sha(&ref_name), Some(new.sha()));
}

#[test]
fn heartbeat_finds_a_lock_taken_before_its_ttl_stolen_for_good() {
    let remote = remote();
    let (_dir, client) = client(LONG_TTL);
    let main_lane = lane("main");
    let ref_name = lock_ref_name(&main_lane);
    let mut held =
        acquired(client.acquire(&remote.url, &main_lane, "owner-a", Path::new("/src/a")));
    // An unconditional overwrite (a buggy peer, an operator's `push -f`).
    let body = gstack_payload("intruder", "main", chrono::Duration::hours(1)).to_string();
    let intruder = gstack_write(&remote, &ref_name, &body);

    for _ in 0..2 {
        match client.heartbeat(&mut held) {
            Err(e @ LockError::Stolen { .. }) => {
                assert!(e.to_string().contains(&intruder), "{e}");
                assert!(e.to_string().contains("stop the landing"), "{e}");
            }
            other => panic!("expected Stolen, got {other:?}"),
        }
        assert!(held.is_lost(Instant::now()));
    }
    assert_eq!(remote.sha(&ref_name), Some(intruder.clone()));
    assert_eq!(
        client.release(&held).unwrap(),
        Released::NotOurs { now_sha: intruder }
    );

    // A lock deleted under us (operator force-release) is just as lost.
    let mut held =
        acquired(client.acquire(&remote.url, &lane("other"), "owner-a", Path::new("/src/a")));
    client
        .force_release(&remote.url, held.ref_name(), &held.sha())
        .unwrap();
    assert!(matches!(
        client.heartbeat(&mut held),
        Err(LockError::Stolen { now_sha: None, .. })
    ));
    assert_eq!(
        remote.sha(held.ref_name()),
        None,
        "a lost lock is not recreated"
    );
}

#[test]
fn heartbeat_failures_lose_the_lock_once_the_ttl_has_passed() {
    let remote = remote();
    let (_dir, client) = client(Duration::from_millis(1500));
    let lane = lane("main");
    let mut held = acquired(client.acquire(&remote.url, &lane, "owner-a", Path::new("/src/a")));
    let sha = held.sha();
    // The host goes away: refreshes fail, but that alone is not a loss until the TTL.
    drop(remote);
    assert!(matches!(
        client.heartbeat(&mut held),
        Err(LockError::Remote { op: "refresh", .. })
    ));
    assert_eq!(held.sha(), sha);
    assert!(!held.is_lost(Instant::now()));
    std::thread::sleep(held.time_until_lost(Instant::now()) + Duration::from_millis(20));
    assert!(held.is_lost(Instant::now()));
    assert!(matches!(
        client.heartbeat(&mut held),
        Err(LockError::Lost { .. })
    ));
}

/// libgit2's timeouts are process-wide and the first `LockClient` sets them, while other
/// modules of this test binary create clients with the 30 s default. So the test re-runs
/// itself alone in a child process, where this module's short timeout is the one in force.
#[test]
fn a_dead_remote_is_an_error_never_an_absent_ref() {
    if in_own_process("lane_lock::a_dead_remote_is_an_error_never_an_absent_ref") {
        dead_remote_checks();
    }
}

fn dead_remote_checks() {
    let (_dir, client) = client(LONG_TTL);
    let lane = lane("main");
    let ref_name = lock_ref_name(&lane);
    let sha = "0123456789abcdef0123456789abcdef01234567";

    // Port closed: refused at once.
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let closed_url = format!(
        "git://127.0.0.1:{}/locks.git",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let started = Instant::now();
    assert_remote_error(client.acquire(&closed_url, &lane, "o", Path::new("/src")));
    assert_remote_error(client.force_release(&closed_url, &ref_name, sha));
    assert_remote_error(client.list(&closed_url));
    assert!(
        started.elapsed() < REMOTE_TIMEOUT,
        "{:?}",
        started.elapsed()
    );

    // Port open but silent (accepted by the kernel, never answered): the read timeout.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let silent_url = format!(
        "git://127.0.0.1:{}/locks.git",
        silent.local_addr().unwrap().port()
    );
    let started = Instant::now();
    assert_remote_error(client.acquire(&silent_url, &lane, "o", Path::new("/src")));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= REMOTE_TIMEOUT / 2,
        "gave up too early: {elapsed:?}"
    );
    assert!(elapsed < REMOTE_TIMEOUT * 2, "took {elapsed:?}");
    let started = Instant::now();
    assert_remote_error(client.force_release(&silent_url, &ref_name, sha));
    assert!(
        started.elapsed() < REMOTE_TIMEOUT * 2,
        "took {:?}",
        started.elapsed()
    );
}

fn assert_remote_error<T: std::fmt::Debug>(outcome: Result<T, LockError>) {
    match outcome {
        Err(e @ LockError::Remote { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("127.0.0.1") && text.contains("retry later"),
                "{text}"
            );
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
}

/// `CONTENDERS` threads, each with its own client and scratch dir, acquire `lane` at once;
/// asserts exactly one wins and every other one names the winner.
fn race(remote: &Remote, lane: &Lane, round: usize) {
    let barrier = Arc::new(Barrier::new(CONTENDERS));
    let handles: Vec<_> = (0..CONTENDERS)
        .map(|i| {
            let (barrier, url, lane) = (Arc::clone(&barrier), remote.url.clone(), lane.clone());
            std::thread::spawn(move || {
                let (_dir, client) = client(LONG_TTL);
                barrier.wait();
                client.acquire(&url, &lane, &format!("owner-{i}"), Path::new("/src/w"))
            })
        })
        .collect();
    let outcomes: Vec<Acquire> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"))
        })
        .collect();
    let winners: Vec<&HeldLock> = outcomes
        .iter()
        .filter_map(|o| match o {
            Acquire::Acquired(held) => Some(held),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "round {round}: {outcomes:?}");
    let winner = winners[0];
    assert_eq!(
        remote.sha(&lock_ref_name(lane)),
        Some(winner.sha()),
        "round {round}"
    );
    for outcome in &outcomes {
        match outcome {
            Acquire::Acquired(_) => {}
            Acquire::HeldElsewhere { holder, sha, .. } => {
                assert_eq!(holder, winner.payload(), "round {round}");
                assert_eq!(sha, &winner.sha(), "round {round}");
            }
            other => panic!("round {round}: unexpected {other:?}"),
        }
    }
}

#[test]
fn eight_contenders_for_a_fresh_lane_exactly_one_wins_every_round() {
    let remote = remote();
    for round in 0..RACE_ROUNDS {
        race(&remote, &lane(&format!("fresh-{round}")), round);
    }
}

#[test]
fn eight_contenders_for_an_expired_lane_exactly_one_wins_every_round() {
    let remote = remote();
    for round in 0..RACE_ROUNDS {
        let lane = lane(&format!("expired-{round}"));
        let stale = gstack_payload(
            "gstack-dead",
            &lane.base_branch,
            chrono::Duration::minutes(-5),
        );
        let stale_sha = gstack_write(
            &remote,
            &lock_ref_name(&lane),
            &serde_json::to_string_pretty(&stale).unwrap(),
        );
        race(&remote, &lane, round);
        assert_ne!(remote.sha(&lock_ref_name(&lane)), Some(stale_sha));
    }
}

#[test]
fn a_gstack_cli_lock_is_honoured_while_live_and_taken_over_when_expired() {
    let remote = remote();
    let (_dir, client) = client(LONG_TTL);
    let lane = lane("main");
    let ref_name = lock_ref_name(&lane);

    let live = gstack_payload("gstack-host:99", "main", chrono::Duration::hours(1));
    let live_sha = gstack_write(
        &remote,
        &ref_name,
        &serde_json::to_string_pretty(&live).unwrap(),
    );
    match client.acquire(&remote.url, &lane, "berth", Path::new("/src/w")) {
        Ok(Acquire::HeldElsewhere { holder, sha, .. }) => {
            assert_eq!(serde_json::to_value(&holder).unwrap(), live);
            assert_eq!(sha, live_sha);
        }
        other => panic!("expected HeldElsewhere, got {other:?}"),
    }
    assert_eq!(remote.sha(&ref_name), Some(live_sha));

    let expired = gstack_payload("gstack-host:99", "main", chrono::Duration::seconds(-1));
    gstack_write(
        &remote,
        &ref_name,
        &serde_json::to_string_pretty(&expired).unwrap(),
    );
    let held = acquired(client.acquire(&remote.url, &lane, "berth", Path::new("/src/w")));
    assert_eq!(remote.sha(&ref_name), Some(held.sha()));
    assert_eq!(gstack_read(&remote, &ref_name)["ownerId"], "berth");
}

#[test]
fn list_shows_every_lock_and_force_release_deletes_exactly_what_was_shown() {
    let remote = remote();
    let (_dir, client) = client(LONG_TTL);
    assert_eq!(client.list(&remote.url).unwrap(), []);
    let live = acquired(client.acquire(&remote.url, &lane("live"), "owner-a", Path::new("/src/a")));
    let expired_ref = lock_ref_name(&lane("expired"));
    let expired_payload = gstack_payload("gstack-x", "expired", chrono::Duration::minutes(-1));
    let expired_sha = gstack_write(
        &remote,
        &expired_ref,
        &serde_json::to_string_pretty(&expired_payload).unwrap(),
    );
    let junk_ref = lock_ref_name(&lane("junk"));
    let junk_sha = gstack_write(&remote, &junk_ref, "{ nope");

    let listing = client.list(&remote.url).unwrap();
    let summary: Vec<(&str, &str, &ListedLock)> = listing
        .iter()
        .map(|l| (l.ref_name.as_str(), l.sha.as_str(), &l.state))
        .collect();
    // First the lock every spelling of the repository shares, held with `live`.
    assert_eq!(summary.len(), 4, "{listing:?}");
    let (shared, summary) = summary.split_first().unwrap();
    assert_eq!(Some(shared.0), live.alias_ref_names().next(), "{listing:?}");
    assert!(matches!(shared.2, ListedLock::Live(p) if p.owner_id == "owner-a"));
    assert_eq!(summary[0].0, expired_ref);
    assert_eq!(summary[0].1, expired_sha);
    assert!(
        matches!(summary[0].2, ListedLock::Expired(p) if serde_json::to_value(p).unwrap() == expired_payload)
    );
    assert_eq!(summary[1].0, junk_ref);
    assert_eq!(summary[1].1, junk_sha);
    assert!(
        matches!(summary[1].2, ListedLock::Unreadable { reason } if reason.starts_with(&format!("release lock payload unreadable at {junk_sha}")))
    );
    assert_eq!(summary[2].0, live.ref_name());
    assert_eq!(summary[2].1, live.sha());
    assert_eq!(summary[2].2, &ListedLock::Live(live.payload().clone()));

    // A stale sha (the lock was retaken since it was shown) deletes nothing.
    assert_eq!(
        client
            .force_release(&remote.url, &junk_ref, &expired_sha)
            .unwrap(),
        Released::NotOurs {
            now_sha: junk_sha.clone()
        }
    );
    assert_eq!(remote.sha(&junk_ref), Some(junk_sha.clone()));
    assert_eq!(
        client
            .force_release(&remote.url, &junk_ref, &junk_sha)
            .unwrap(),
        Released::Deleted
    );
    assert_eq!(remote.sha(&junk_ref), None);
    assert!(matches!(
        client.force_release(&remote.url, "refs/heads/main", &junk_sha),
        Err(LockError::InvalidRef { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_task_refreshes_until_stopped_then_the_lock_is_released() {
    let remote = remote();
    let (_dir, client) = client(Duration::from_millis(1600));
    let client = Arc::new(client);
    let lane = lane("main");
    let ref_name = lock_ref_name(&lane);
    let held = acquired(client.acquire(&remote.url, &lane, "owner-a", Path::new("/src/a")));
    let first_sha = held.sha();
    let heartbeat = Heartbeat::spawn(Arc::clone(&client), held, &CancellationToken::new());

    // Three TTL-halves: only refreshes keep it alive (heartbeat every 200 ms).
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(!heartbeat.is_lost());
    }
    let snapshot = heartbeat.snapshot();
    assert_ne!(snapshot.sha(), first_sha);
    assert!(!snapshot.is_lost(Instant::now()));

    let held = heartbeat.stop().await;
    assert_eq!(
        remote.sha(&ref_name),
        Some(held.sha()),
        "stop returns the current sha"
    );
    let release_client = Arc::clone(&client);
    let released = tokio::task::spawn_blocking(move || release_client.release(&held))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(released, Released::Deleted);
    assert_eq!(remote.sha(&ref_name), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_task_signals_loss_when_the_lock_is_taken() {
    let remote = remote();
    let (_dir, client) = client(Duration::from_millis(1600));
    let client = Arc::new(client);
    let lane = lane("main");
    let ref_name = lock_ref_name(&lane);
    let held = acquired(client.acquire(&remote.url, &lane, "owner-a", Path::new("/src/a")));
    let heartbeat = Heartbeat::spawn(Arc::clone(&client), held, &CancellationToken::new());
    let mut lost = heartbeat.lost();

    // Someone overwrites the lock unconditionally (a buggy peer, an operator's push -f).
    let body = serde_json::to_string_pretty(&gstack_payload(
        "intruder",
        "main",
        chrono::Duration::hours(1),
    ))
    .unwrap();
    let intruder = tokio::task::block_in_place(|| gstack_write(&remote, &ref_name, &body));
    tokio::time::timeout(Duration::from_secs(3), lost.wait_for(|lost| *lost))
        .await
        .expect("loss reported within a few heartbeats")
        .unwrap();
    let held = heartbeat.stop().await;
    assert!(held.is_lost(Instant::now()));
    let release_client = Arc::clone(&client);
    let released = tokio::task::spawn_blocking(move || release_client.release(&held))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        released,
        Released::NotOurs {
            now_sha: intruder.clone()
        }
    );
    assert_eq!(remote.sha(&ref_name), Some(intruder));
}

#[test]
fn a_remote_that_refuses_updates_is_never_read_as_success() {
    use std::os::unix::fs::PermissionsExt;
    let remote = remote();
    let (_dir, client) = client(LONG_TTL);
    let main_lane = lane("main");
    let ref_name = lock_ref_name(&main_lane);
    let mut held =
        acquired(client.acquire(&remote.url, &main_lane, "owner-a", Path::new("/src/a")));
    // From now on the host declines every ref update (push() is Ok, the ref reports why).
    let hook = remote.bare.join("hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    match client.heartbeat(&mut held) {
        Err(LockError::Rejected { status, .. }) => assert!(status.contains("hook"), "{status}"),
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(
        !held.is_lost(Instant::now()),
        "a refusal alone is not a takeover"
    );
    assert!(matches!(
        client.release(&held),
        Err(LockError::Contended { op: "release", .. })
    ));
    assert_eq!(remote.sha(&ref_name), Some(held.sha()));

    let other = lane("other");
    match client.acquire(&remote.url, &other, "owner-a", Path::new("/src/a")) {
        Err(e @ LockError::Contended { .. }) => {
            assert!(e.to_string().contains("create rejected"), "{e}")
        }
        other => panic!("expected Contended, got {other:?}"),
    }
    assert_eq!(remote.sha(&lock_ref_name(&other)), None);
}

/// DESIGN §4 fail-closed: a refresh that hangs (the remote accepts and then says nothing)
/// must not keep the lock "ours" past the TTL.
#[test]
fn a_hanging_refresh_loses_the_lock_at_the_ttl_not_at_the_socket_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("locks.git");
    git(
        dir.path(),
        &["init", "--bare", "-q", bare.to_str().unwrap()],
    );
    let daemon = GitDaemon::start(dir.path()).unwrap();
    let (url, port) = (daemon.url_for("locks.git"), daemon.port());
    let ttl = Duration::from_millis(1500);
    let (_scratch, client) = client(ttl);
    let held = acquired(client.acquire(&url, &lane("main"), "hb-owner", dir.path()));
    // The remote goes silent: the same port now accepts connections and never answers.
    drop(daemon);
    // (git daemon's forked children hold the listening socket until they have died.)
    let deadline = Instant::now() + Duration::from_secs(5);
    let _silent = loop {
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(listener) => break listener,
            Err(e) if Instant::now() > deadline => panic!("rebind port {port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let lost_after = runtime.block_on(async move {
        let heartbeat = Heartbeat::spawn(Arc::new(client), held, &CancellationToken::new());
        let mut lost = heartbeat.lost();
        tokio::time::timeout(Duration::from_secs(10), lost.wait_for(|l| *l))
            .await
            .expect("the lock is reported lost")
            .unwrap();
        started.elapsed()
    });
    assert!(
        lost_after < ttl + Duration::from_millis(800),
        "lost only after {lost_after:?} (TTL {ttl:?})"
    );
}
