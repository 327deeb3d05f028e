//! The lane lock's own unit tests: ref names, settings, forced release, the scratch dir
//! and when a held lock counts as lost.

use super::*;
use std::time::SystemTime;

/// A fresh bare repository in a temp dir, as a local origin for lane locks.
pub(super) struct BareOrigin {
    pub dir: tempfile::TempDir,
    pub bare: std::path::PathBuf,
    /// The origin URL: the repository's path.
    pub url: String,
}

impl BareOrigin {
    pub fn new() -> BareOrigin {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("locks.git");
        bare_repo(&bare);
        let url = bare.to_str().unwrap().to_owned();
        BareOrigin { dir, bare, url }
    }

    /// A lock client with the default settings, its scratch dir beside the origin.
    pub fn client(&self) -> LockClient {
        LockClient::new(&self.dir.path().join("scratch"), LockSettings::default()).unwrap()
    }

    /// Tries to take `lane`'s lock as owner `me`.
    pub fn take(&self, client: &LockClient, lane: &Lane) -> Result<Acquire, LockError> {
        client.acquire(&self.url, lane, "me", Path::new("/a"))
    }
}

/// Makes a new bare repository at `at`, asserting git did.
pub(super) fn bare_repo(at: &Path) {
    let out = std::process::Command::new("git")
        .args(["init", "--bare", "-q"])
        .arg(at)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// What berth set aside in the origin `bare` (broken refs and planted `.lock` nodes moved
/// out of `refs/`).
pub(super) fn set_aside_in(bare: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(bare)
        .unwrap()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("berth-set-aside-")
        })
        .map(|entry| entry.path())
        .collect()
}

/// Runs git in the repository `git_dir` with `stdin` as its input, asserting it succeeded;
/// its output, trimmed.
pub(super) fn git_fed(git_dir: &Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("git")
        .args(args)
        .env("GIT_DIR", git_dir)
        .current_dir(git_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The lane of `github.com/acme/widget` on `main`.
pub(super) fn widget_main() -> Lane {
    lane("github.com/acme/widget", "main")
}

fn lane(identity: &str, base: &str) -> Lane {
    Lane {
        repo_identity: identity.into(),
        base_branch: base.into(),
    }
}

#[test]
fn ref_names_match_gstack() {
    assert_eq!(
        lock_ref_name(&lane("github.com/acme/widget", "main")),
        "refs/gstack/release-locks/github.com-acme-widget/main"
    );
    assert_eq!(
        lock_ref_name(&lane("gitlab.example.com/group/sub/repo", "release/2.x")),
        "refs/gstack/release-locks/gitlab.example.com-group-sub-repo/release-2.x"
    );
    assert_eq!(
        lock_ref_name(&lane("path:/home/u/code/w", " ")),
        "refs/gstack/release-locks/path-home-u-code-w/record"
    );
}

#[test]
fn refuses_refs_git_would_reject() {
    for bad in [
        lane("acme", "x.lock"),
        lane(".hidden", "main"),
        lane("a..b", "main"),
    ] {
        let err = checked_lock_ref(&bad).unwrap_err();
        assert!(matches!(err, LockError::InvalidRef { .. }), "{bad:?}");
        assert!(err.to_string().contains(&lock_ref_name(&bad)), "{err}");
    }
    assert!(checked_lock_ref(&lane("github.com/acme/w", "main")).is_ok());
}

#[test]
fn settings_keep_one_heartbeat_ttl_relationship() {
    let defaults = LockSettings::default();
    assert_eq!(defaults.ttl, Duration::from_secs(7200));
    assert_eq!(defaults.heartbeat_every, Duration::from_secs(900));
    assert_eq!(defaults.remote_timeout, Duration::from_secs(30));
    assert_eq!(
        LockSettings::with_ttl(Duration::from_secs(8)).heartbeat_every,
        Duration::from_secs(1)
    );
    let mut slow = defaults;
    slow.heartbeat_every = slow.ttl;
    assert!(matches!(
        slow.validate(),
        Err(LockError::InvalidSettings { .. })
    ));
    let mut no_timeout = defaults;
    no_timeout.remote_timeout = Duration::ZERO;
    assert!(no_timeout.validate().is_err());
    assert!(defaults.validate().is_ok());
    // A lock held longer than every contender believes would outlive their judgement of it.
    let longer = LockSettings::with_ttl(LONGEST_TTL + Duration::from_millis(1));
    let err = longer.validate().unwrap_err().to_string();
    assert!(err.contains("ttl must be at most 2 h"), "{err}");
    assert!(LockSettings::with_ttl(LONGEST_TTL).validate().is_ok());
}

#[test]
fn force_release_takes_only_full_shas_of_lock_refs() {
    let dir = tempfile::tempdir().unwrap();
    let client = LockClient::new(&dir.path().join("scratch"), LockSettings::default()).unwrap();
    let url = "git://127.0.0.1:1/none";
    let sha = "0123456789abcdef0123456789abcdef01234567";
    for bad_ref in [
        "refs/heads/main",
        "refs/gstack/release-locks/a/*",
        "refs/gstack/release-locks/a/b.lock",
    ] {
        assert!(matches!(
            client.force_release(url, bad_ref, sha),
            Err(LockError::InvalidRef { .. })
        ));
    }
    for bad_sha in ["abc123", "", &"g".repeat(40), &format!("{sha}0")] {
        assert!(matches!(
            client.force_release(url, "refs/gstack/release-locks/a/b", bad_sha),
            Err(LockError::InvalidSha { .. })
        ));
    }
}

#[test]
fn scratch_dir_is_private_and_stale_leftovers_are_swept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("state/lane-lock");
    let stale = scratch.join(format!("{}old", transport::SCRATCH_PREFIX));
    let fresh = scratch.join(format!("{}new", transport::SCRATCH_PREFIX));
    let other = scratch.join("keep-me");
    for d in [&stale, &fresh, &other] {
        std::fs::create_dir_all(d).unwrap();
    }
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    for d in [&stale, &other] {
        std::fs::File::open(d)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
    LockClient::new(&scratch, LockSettings::default()).unwrap();
    let mode = std::fs::metadata(&scratch).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(!stale.exists());
    assert!(fresh.exists() && other.exists());
}

#[test]
fn held_lock_is_lost_after_ttl_or_when_stolen() {
    let start = Instant::now();
    let mut held = HeldLock {
        origin_url: "git://127.0.0.1/x".into(),
        ref_name: "refs/gstack/release-locks/a/b".into(),
        lane: lane("a", "b"),
        sha: Oid::ZERO_SHA1,
        payload: LockPayload {
            owner_id: String::new(),
            repo_path: String::new(),
            repo_identity: None,
            base_branch: String::new(),
            created_at: None,
            expires_at: String::new(),
        },
        ttl: Duration::from_secs(10),
        last_refresh: start,
        gone: None,
        aliases: Vec::new(),
        aliases_before: 0,
        unconfirmed: Vec::new(),
    };
    assert!(!held.is_lost(start + Duration::from_secs(10)));
    assert!(held.is_lost(start + Duration::from_millis(10_001)));
    assert_eq!(
        held.time_until_lost(start + Duration::from_secs(4)),
        Duration::from_secs(6)
    );
    held.gone = Some(Gone::Stolen(None));
    assert!(held.is_lost(start));
    assert_eq!(held.time_until_lost(start), Duration::ZERO);
}

/// A heartbeat dropped without `stop` (its landing panicked) stops refreshing: the lock
/// then expires on its TTL instead of wedging the lane for every daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_heartbeat_refreshes_no_more() {
    let origin = BareOrigin::new();
    let client = LockClient::new(
        &origin.dir.path().join("scratch"),
        LockSettings::with_ttl(Duration::from_millis(1600)),
    )
    .unwrap();
    let Ok(Acquire::Acquired(held)) = origin.take(&client, &widget_main()) else {
        panic!("the lock was not taken");
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let heartbeat = Heartbeat::spawn(std::sync::Arc::new(client), held, &shutdown);
    let mut refreshed = heartbeat.refreshed();
    let first = tokio::time::timeout(Duration::from_secs(30), refreshed.changed()).await;
    assert!(matches!(first, Ok(Ok(()))), "the heartbeat never refreshed");
    drop(heartbeat);
    // The refresh loop owns the channel's sender: it closes when the loop ended.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while refreshed.changed().await.is_ok() {}
    })
    .await;
    assert!(ended.is_ok(), "the dropped heartbeat still refreshes");
    assert!(!shutdown.is_cancelled());
}

/// A local origin shared by a group (`git init --shared=group`: every writer's git makes
/// its directories group-writable) is written by many users' pushes. The lock commit
/// berth copies into its object database must leave its fan-out directories as git would:
/// group-writable, or the group's next push with an object there fails ("insufficient
/// permission for adding an object to repository database").
#[test]
fn lock_objects_in_a_group_shared_origin_leave_its_directories_group_writable() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("shared.git");
    let out = std::process::Command::new("git")
        .args(["init", "--bare", "-q", "--shared=group"])
        .arg(&bare)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let before: Vec<_> = std::fs::read_dir(bare.join("objects"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    let client = LockClient::new(&dir.path().join("scratch"), LockSettings::default()).unwrap();
    let taken = client.acquire(
        bare.to_str().unwrap(),
        &widget_main(),
        "me",
        Path::new("/a"),
    );
    assert!(matches!(taken, Ok(Acquire::Acquired(_))), "{taken:?}");
    let closed: Vec<_> = std::fs::read_dir(bare.join("objects"))
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| !before.contains(&entry.file_name()))
        .map(|entry| {
            (
                entry.path(),
                entry.metadata().unwrap().permissions().mode() & 0o7777,
            )
        })
        .filter(|(_, mode)| mode & 0o070 != 0o070)
        .collect();
    assert!(
        closed.is_empty(),
        "fan-out directories the group cannot write: {closed:?}"
    );
}

/// berth runs `git` from `PATH` in a session of its own and, past 7 s, sends SIGTERM
/// (git removes its `.lock` files on it). Sent to its pid alone, a `git` that is a wrapper running
/// the real git as its child (a shell script without `exec`) dies of the SIGTERM while
/// its child, hung appending to a FIFO at `logs/HEAD` (`HEAD` naming the ref), never gets
/// it and keeps `HEAD.lock`: every later write of the lane fails on a lock file berth
/// judges as no ref's leftover, and the wait reading its error output to the end never
/// ends. So berth signals the whole process group the child leads, and reads its error
/// output only up to the writer's bound.
#[test]
fn a_writer_stopped_at_its_limit_stops_the_git_its_git_runs() {
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::os::unix::process::CommandExt as _;
    let (dir, new, name) = ref_writer::head_reflog_fifo_origin();
    let planted = dir.path().join("logs/HEAD");
    // A `git` wrapper as `PATH` may hold one: the real git run as its child, no `exec`.
    let script = "git --git-dir \"$1\" update-ref --no-deref \"$2\" \"$3\" \"$4\"; exit $?";
    let mut wrapped = std::process::Command::new("sh");
    wrapped
        .args(["-c", script, "git"])
        .arg(dir.path())
        .args([name, &new.to_string(), &Oid::ZERO_SHA1.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let started = std::time::Instant::now();
    let mut child = wrapped.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(ref_writer::finish(&mut child, started, "git update-ref"));
    });
    // berth's own bound is 9 s; far past it, the wait for the writer never ended.
    let ended = rx.recv_timeout(std::time::Duration::from_secs(30));
    let left = dir.path().join("HEAD.lock").exists();
    // Let the real git go, if it still runs: a reader on the FIFO lets its append through.
    let mut drained = String::new();
    if let Ok(mut reader) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&planted)
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let _ = std::io::Read::read_to_string(&mut reader, &mut drained);
    }
    assert!(
        !left && ended.is_ok(),
        "the wait for the stopped writer ended: {ended:?}; HEAD.lock left behind by the git it ran: {left}"
    );
}

/// A lock commit is written to the scratch repository's memory, not its disk: written
/// loose, each cost berth a temp file, a rename and mostly a fan-out directory (two lock
/// commits a landing), which on ext4 without a journal cost more than anything else berth
/// wrote a landing. Every way a lock commit reaches an origin still carries it: libgit2's
/// copy into a local origin (on a thread with a handle of its own), `git unpack-objects`
/// into a group-shared one, and a push to a `git://` one. Take, refresh and release each
/// way; the origin held each lock commit the ref named, and no scratch repository holds a
/// loose object.
#[test]
fn lock_commits_reach_every_origin_and_no_scratch_repository_writes_one_to_disk() {
    use crate::git_daemon::GitDaemon;
    for (how, init) in [
        ("local", &["init", "--bare", "-q"][..]),
        ("shared", &["init", "--bare", "-q", "--shared=group"][..]),
        ("git://", &["init", "--bare", "-q"][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("locks.git");
        let out = std::process::Command::new("git")
            .args(init)
            .arg(&bare)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let daemon = (how == "git://").then(|| GitDaemon::start(dir.path()).unwrap());
        let url = daemon.as_ref().map_or_else(
            || bare.to_str().unwrap().to_owned(),
            |daemon| daemon.url_for("locks.git"),
        );
        let scratch = dir.path().join("scratch");
        let client = LockClient::new(&scratch, LockSettings::default()).unwrap();
        let taken = client.acquire(&url, &widget_main(), "me", Path::new("/a"));
        let Ok(Acquire::Acquired(mut held)) = taken else {
            panic!("{how}: the lock was not taken: {taken:?}");
        };
        let first = held.sha;
        client.heartbeat(&mut held).unwrap();
        assert_ne!(
            held.sha, first,
            "{how}: the refresh wrote no new lock commit"
        );
        for sha in [first, held.sha] {
            let kind = git_fed(&bare, &["cat-file", "-t", &sha.to_string()], "");
            assert_eq!(kind, "commit", "{how}: {sha} in the origin");
        }
        let ref_name = lock_ref_name(&widget_main());
        let named = git_fed(&bare, &["rev-parse", &ref_name], "");
        assert_eq!(named, held.sha.to_string(), "{how}");
        assert!(
            matches!(client.release(&held), Ok(Released::Deleted)),
            "{how}"
        );
        let loose: Vec<_> = walk_files(&scratch)
            .into_iter()
            .filter(|path| {
                let mut parts = path.iter().rev();
                let (_, fan_out, objects) = (parts.next(), parts.next(), parts.next());
                objects.is_some_and(|o| o == "objects") && fan_out.is_some_and(|f| f.len() == 2)
            })
            .collect();
        assert!(
            loose.is_empty(),
            "{how}: loose objects in scratch: {loose:?}"
        );
    }
}

/// Every file under `dir`, at any depth.
fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(walk_files(&path));
        } else {
            found.push(path);
        }
    }
    found
}
