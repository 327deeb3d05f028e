use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::lane_lock::{Acquire, HeldLock, Lane, LockClient, LockError, LockSettings, LockWrite};

/// A bare origin with a local lane.
struct Origin {
    dir: tempfile::TempDir,
    bare: PathBuf,
    url: String,
    lane: Lane,
}

fn origin() -> Origin {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("locks.git");
    git2::Repository::init_bare(&bare).unwrap();
    let url = bare.to_str().unwrap().to_owned();
    let lane = Lane {
        repo_identity: url.clone(),
        base_branch: "main".into(),
    };
    Origin {
        dir,
        bare,
        url,
        lane,
    }
}

impl Origin {
    fn client(&self) -> LockClient {
        LockClient::new(&self.dir.path().join("scratch"), LockSettings::default()).unwrap()
    }

    fn elsewhere(&self) -> PathBuf {
        self.dir.path().join("another-program")
    }

    /// Runs `op` on a thread named `name` while another writer holds the writers'
    /// lock; once `op`'s writer child waits for it, `swap` runs, then the lock is let go.
    fn swapped_during_wait<T: Send + 'static>(
        &self,
        name: &str,
        op: impl FnOnce() -> T + Send + 'static,
        swap: impl FnOnce(),
    ) -> T {
        let writers =
            crate::atomic_file::lock_exclusive(&self.bare.join("berth-lane-locks.lock")).unwrap();
        let running = std::thread::Builder::new()
            .name(name.into())
            .spawn(op)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !child_named(name) {
            assert!(Instant::now() < deadline, "no writer child came");
            std::thread::sleep(Duration::from_millis(1));
        }
        swap();
        drop(writers);
        running.join().unwrap()
    }

    /// Moves `relative` out of the origin and puts a symlink to where it went.
    fn move_out(&self, relative: &str) -> PathBuf {
        let inside = self.bare.join(relative);
        std::fs::rename(&inside, self.elsewhere()).unwrap();
        std::os::unix::fs::symlink(self.elsewhere(), &inside).unwrap();
        inside
    }
}

/// Whether a child of this test process carries the name `name` (a forked writer child
/// before its exec carries the forking thread's name).
fn child_named(name: &str) -> bool {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        field("PPid:") == me && field("Name:") == name
    })
}

/// Every file under `dir` with its contents.
fn contents(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(contents(&path));
        } else {
            found.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
        }
    }
    found.sort();
    found
}

/// Acquires `o`'s lane while `fs` serves and asserts that no lock ref was written under
/// `watched` (another repository's lock refs, absent or a directory); the answer.
fn acquire_writing_nothing_in(
    o: &Origin,
    fs: flip_fs::FlipFs,
    watched: &Path,
) -> Result<Acquire, LockError> {
    let outcome = o.client().acquire(&o.url, &o.lane, "me", Path::new("/a"));
    let written = if watched.exists() {
        contents(watched)
    } else {
        Vec::new()
    };
    drop(fs);
    assert!(
        written.is_empty(),
        "the acquire answered {outcome:?} and wrote the lane's lock ref(s) in another repository: {written:?}"
    );
    outcome
}

/// Whether the lane was not taken, for a reason that says `why`.
fn refused_naming(said: &Result<Acquire, LockError>, why: &str) -> bool {
    match said {
        Err(LockError::Redirected { reason, .. }) => reason.contains(why),
        Err(other) => other.to_string().contains(why),
        Ok(_) => false,
    }
}

fn redirected(said: &Result<impl std::fmt::Debug, LockError>, path: &Path) -> bool {
    matches!(said, Err(LockError::Redirected { reason, .. })
        if reason.contains(&format!("{} is now a symlink", path.display())))
}

/// A symlink swapped in for the lane's identity directory after berth's walk, while
/// the writer child waits for the writers' lock (which any writer of the origin can
/// hold), is found by the child's walk right before `git` would run: nothing is
/// written outside the origin, and the lane is not taken; the answer names the path.
#[test]
fn a_symlink_swapped_in_while_the_writer_waits_is_refused_before_git_runs() {
    let o = origin();
    let first = crate::lane_lock::lane_lock_refs(&o.url, &o.lane)[0].clone();
    let identity = o.bare.join(first.rsplit_once('/').unwrap().0);
    std::fs::create_dir_all(&identity).unwrap();
    std::fs::create_dir_all(o.elsewhere()).unwrap();
    let client = o.client();
    let (url, lane) = (o.url.clone(), o.lane.clone());
    let outcome = o.swapped_during_wait(
        "swap-acquire",
        move || client.acquire(&url, &lane, "me", Path::new("/a")),
        || {
            std::fs::remove_dir(&identity).unwrap();
            std::os::unix::fs::symlink(o.elsewhere(), &identity).unwrap();
        },
    );
    assert!(
        contents(&o.elsewhere()).is_empty(),
        "git wrote outside: {outcome:?}"
    );
    assert!(redirected(&outcome, &identity), "{outcome:?}");
    assert!(!matches!(outcome, Ok(Acquire::Acquired(_))));
}

fn acquired(o: &Origin, client: &LockClient) -> HeldLock {
    match client
        .acquire(&o.url, &o.lane, "me", Path::new("/a"))
        .unwrap()
    {
        Acquire::Acquired(held) => held,
        other => panic!("{other:?}"),
    }
}

/// A refresh whose path was swapped under it writes nothing outside the origin and
/// loses the lock: the landing stops.
#[test]
fn a_refresh_through_a_swapped_path_loses_the_lock() {
    let o = origin();
    let client = Arc::new(o.client());
    let held = acquired(&o, &client);
    let before = contents(&o.bare.join("refs/gstack/release-locks"));
    let refreshing = Arc::clone(&client);
    let (outcome, held) = o.swapped_during_wait(
        "swap-refresh",
        move || {
            let mut held = held;
            (refreshing.heartbeat(&mut held), held)
        },
        || {
            o.move_out("refs/gstack/release-locks");
        },
    );
    let locks = o.bare.join("refs/gstack/release-locks");
    // The first refresh's child found the swap; the next one's walk refuses it.
    assert!(outcome.is_err());
    assert!(held.is_lost(Instant::now()));
    assert_eq!(held.loss(), Some(crate::gstack_text::LOCK_NOT_OWNED));
    let after: Vec<_> = contents(&o.elsewhere())
        .into_iter()
        .map(|(path, text)| (locks.join(path.strip_prefix(o.elsewhere()).unwrap()), text))
        .collect();
    assert_eq!(before, after, "a lock ref outside the origin was written");
}

/// A release whose path was swapped under it is reported, once: it is not tried
/// again through that path.
#[test]
fn a_release_through_a_swapped_path_is_reported_and_not_retried() {
    let o = origin();
    let mut client = o.client();
    let releases = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&releases);
    client.set_write_hook(Arc::new(move |write, _| {
        if write == LockWrite::Release {
            *counted.lock().unwrap() += 1;
        }
    }));
    let client = Arc::new(client);
    let held = acquired(&o, &client);
    let releasing = Arc::clone(&client);
    let outcome = o.swapped_during_wait(
        "swap-release",
        move || releasing.release(&held),
        || {
            o.move_out("refs/gstack/release-locks");
        },
    );
    let locks = o.bare.join("refs/gstack/release-locks");
    assert!(redirected(&outcome, &locks), "{outcome:?}");
    // The alias ref's release and gstack's, each once.
    assert_eq!(*releases.lock().unwrap(), 2);
    assert_eq!(
        contents(&o.elsewhere()).len(),
        2,
        "a lock ref outside was deleted"
    );
}

const REF: &str = "refs/gstack/release-locks/id/main";

fn recorded(git_dir: &Path) -> Trail {
    let fd = super::super::lock_dir::open_git_dir(git_dir).unwrap();
    Trail::record(&fd, git_dir, REF).unwrap()
}

/// After `git` reported success, the ref is read through the walked path: a write that
/// went through a directory swapped for a symlink, or a ref that holds something else,
/// is not believed; what was written, or no loose ref after a delete, is.
#[test]
fn a_write_is_believed_only_where_the_walked_path_holds_it() {
    let o = origin();
    let identity = o.bare.join("refs/gstack/release-locks/id");
    std::fs::create_dir_all(&identity).unwrap();
    let trail = recorded(&o.bare);
    let sha = Oid::from_str("1111111111111111111111111111111111111111").unwrap();
    let other = Oid::from_str("2222222222222222222222222222222222222222").unwrap();
    assert_eq!(trail.holds(None), Ok(()));
    let said = |written| trail.holds(written).unwrap_err().to_string();
    assert!(said(Some(sha)).contains("no loose ref"));
    std::fs::write(identity.join("main"), format!("{other}\n")).unwrap();
    assert!(said(Some(sha)).contains("holds \"2222"));
    assert!(trail.holds(None).is_err());
    std::fs::write(identity.join("main"), format!("{sha}\n")).unwrap();
    assert_eq!(trail.holds(Some(sha)), Ok(()));
    // The same write, reached through a symlink to where the directory went.
    o.move_out("refs/gstack/release-locks/id");
    let said = said(Some(sha));
    assert!(
        said.contains(&format!("{} is now a symlink", identity.display())),
        "{said}"
    );
    // A directory git removed after a delete: no loose ref.
    std::fs::remove_file(&identity).unwrap();
    assert_eq!(trail.holds(None), Ok(()));
}

/// `refs` and `refs/gstack` may be the operator's symlinks (git new-workdir): followed,
/// and held to the symlink and directory the walk found; a symlink at or below
/// `release-locks` is refused.
#[test]
fn only_the_operators_symlinks_above_the_lock_refs_are_followed() {
    let o = origin();
    let real = o.dir.path().join("shared-refs");
    std::fs::create_dir_all(real.join("gstack/release-locks/id")).unwrap();
    std::fs::remove_dir_all(o.bare.join("refs")).unwrap();
    std::os::unix::fs::symlink(&real, o.bare.join("refs")).unwrap();
    let trail = recorded(&o.bare);
    assert!(matches!(trail.rewalk(), Ok(Reached::Dir(_))));
    // The symlink led to another directory.
    let other = o.dir.path().join("other-refs");
    std::fs::create_dir_all(other.join("gstack/release-locks/id")).unwrap();
    std::fs::remove_file(o.bare.join("refs")).unwrap();
    std::os::unix::fs::symlink(&other, o.bare.join("refs")).unwrap();
    assert_eq!(trail.rewalk().unwrap_err(), Moved(1));
    std::fs::rename(other.join("gstack/release-locks"), o.elsewhere()).unwrap();
    std::os::unix::fs::symlink(o.elsewhere(), other.join("gstack/release-locks")).unwrap();
    let fd = super::super::lock_dir::open_git_dir(&o.bare).unwrap();
    let said = Trail::record(&fd, &o.bare, REF).unwrap_err();
    assert!(
        said.message().contains("release-locks is a symlink"),
        "{said}"
    );
}

/// `refs_look::refuse_linked` refuses an origin with a `commondir` naming another
/// repository when berth opens it, but `git update-ref` would read `commondir` again when
/// the writer child execs it, and the child's walk ([`Trail`]) covers only the lock ref's
/// path. Any writer of the origin holds the writers' lock while berth's child waits for
/// it, plants a `commondir` naming a directory of its own (its `objects` the origin's, its
/// `refs` another repository's), and lets go: the child runs git with the git dir berth
/// looked at as its common dir, so the lane's lock ref is written in the origin, never in
/// that other repository where no berth holds it (review 29).
#[test]
fn a_commondir_planted_while_the_writer_waits_writes_no_lock_in_another_repo() {
    let o = origin();
    let other = o.dir.path().join("other.git");
    git2::Repository::init_bare(&other).unwrap();
    let planted = o.elsewhere();
    std::fs::create_dir_all(&planted).unwrap();
    std::os::unix::fs::symlink(o.bare.join("objects"), planted.join("objects")).unwrap();
    std::os::unix::fs::symlink(other.join("refs"), planted.join("refs")).unwrap();
    let client = o.client();
    let (url, lane) = (o.url.clone(), o.lane.clone());
    let commondir = o.bare.join("commondir");
    let outcome = o.swapped_during_wait(
        "plant-common",
        move || client.acquire(&url, &lane, "me", Path::new("/a")),
        || std::fs::write(&commondir, format!("{}\n", planted.display())).unwrap(),
    );
    let written = std::fs::read_dir(other.join("refs/gstack/release-locks"))
        .map(|dir| contents(&dir.into_iter().next().unwrap().unwrap().path()))
        .unwrap_or_default();
    assert!(
        written.is_empty()
            && format!("{outcome:?}").contains("commondir is not a file naming the origin"),
        "the acquire answered {outcome:?} and wrote the lane's lock ref(s) in another repository: {written:?}"
    );
}

/// git resolves a `commondir` by text (`strbuf_add_real_path`: `lstat`, then `readlink` of
/// each symlink); the kernel follows a /proc magic link to the object itself. Any user with
/// unprivileged user namespaces bind-mounts the origin over another repository in a mount
/// namespace of its own and keeps a process there with that mount as its cwd: to the
/// kernel `/proc/<pid>/cwd` is the origin's git dir (same dev/ino), to `readlink`, from
/// berth's namespace, the other repository's path. Planted while the child waits for the
/// writers' lock, that `commondir` once passed [`Trail::commondir_is_own`] and git wrote the
/// lane's lock ref into the other repository, a lock nobody holds; the child now refuses a
/// magic link there (and, since review 32, any symlink) and nothing is written (review 31).
#[test]
fn a_commondir_through_a_proc_magic_link_writes_no_lock_in_another_repo() {
    let o = origin();
    let other = o.dir.path().join("other.git");
    git2::Repository::init_bare(&other).unwrap();
    let script = format!(
        "mount --bind '{}' '{}' && cd '{}' && exec sleep 30",
        o.bare.display(),
        other.display(),
        other.display()
    );
    let mut keeper = std::process::Command::new("unshare")
        .args(["-Urm", "sh", "-c", &script])
        .spawn()
        .unwrap();
    let cwd = PathBuf::from(format!("/proc/{}/cwd", keeper.id()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(&cwd).ok().as_deref() != Some(other.as_path()) {
        assert!(
            Instant::now() < deadline && keeper.try_wait().unwrap().is_none(),
            "no process in a mount namespace of its own (unshare -Urm) came"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let client = o.client();
    let (url, lane) = (o.url.clone(), o.lane.clone());
    let commondir = o.bare.join("commondir");
    let planted = cwd.clone();
    let outcome = o.swapped_during_wait(
        "plant-magic",
        move || client.acquire(&url, &lane, "me", Path::new("/a")),
        || std::fs::write(&commondir, format!("{}\n", planted.display())).unwrap(),
    );
    let written = std::fs::read_dir(other.join("refs/gstack/release-locks"))
        .map(|dir| contents(&dir.into_iter().next().unwrap().unwrap().path()))
        .unwrap_or_default();
    keeper.kill().unwrap();
    keeper.wait().unwrap();
    assert!(
        written.is_empty(),
        "the acquire answered {outcome:?} and wrote the lane's lock ref(s) in another repository: {written:?}"
    );
}

mod flip_fs;
mod openat2_refused;
mod packed_after;

/// review 32: the writer child judges a `commondir` by the directory its own walk reaches
/// (`openat2`), git by the path its own walk reaches (`strbuf_add_real_path`: `lstat`,
/// `readlink`), two walks of the same text milliseconds apart. Where a symlink on the
/// way lives on a file system whose server answers each `readlink` afresh (FUSE, which
/// `fusermount` lets any user mount; a network file system another host changes), the
/// two need not meet: here the symlink names the origin's git dir to berth and its child
/// and another repository to git. Planted once, at any time (no race with the writers'
/// lock), that `commondir` passes `refuse_linked` and [`Trail::commondir_is_own`] on every
/// write, and git writes the lane's lock ref into the other repository: a lock nobody
/// holds (berth answered Redirected, "a directory of its path is missing", naming neither
/// `commondir` nor the repository written). The child now refuses a symlink on a
/// `commondir`'s path, naming the file. Skipped (said on stderr) without root and
/// `/dev/fuse`.
#[test]
fn a_commondir_through_a_symlink_git_reads_otherwise_writes_no_lock_in_another_repo() {
    let o = origin();
    let other = o.dir.path().join("other.git");
    git2::Repository::init_bare(&other).unwrap();
    let mnt = o.dir.path().join("flip");
    let Some(fs) = flip_fs::FlipFs::mount(&mnt, &o.bare.canonicalize().unwrap(), &other) else {
        return;
    };
    let commondir = format!("{}\n", mnt.join("link").display());
    std::fs::write(o.bare.join("commondir"), commondir).unwrap();
    let outcome = acquire_writing_nothing_in(&o, fs, &other.join("refs/gstack/release-locks"));
    assert!(
        format!("{outcome:?}").contains("commondir is not a file naming the origin"),
        "the refusal names the commondir file: {outcome:?}"
    );
}

/// review 33: 6ef1cf8 refuses a symlink on a `commondir`'s path because "without symlinks
/// both walks take the same steps". On FUSE (which any user may mount, anywhere of their
/// own) whether a node is a symlink at all is the server's answer to each `lookup`: here
/// `link` is an empty directory to berth and its writer child, and a symlink to another
/// repository's `refs` for git. The `commondir` `<mnt>/link/../../locks.git` walks, for
/// the child's `openat2(RESOLVE_NO_SYMLINKS)` (and libgit2's `realpath` in
/// `refuse_linked`), through a directory, up out of the mount and back to the origin's
/// git dir (dev/ino match); for git's `strbuf_add_real_path` through a symlink, to the
/// other repository, where git writes the lane's lock ref: a lock nobody holds. Planted
/// once (one file in the origin), no race with the writers' lock. Skipped (said on
/// stderr) without root and `/dev/fuse`.
#[test]
fn a_commondir_through_a_fuse_dir_git_sees_as_a_symlink_writes_no_lock_in_another_repo() {
    let o = origin();
    let other = o.dir.path().join("else/locks.git");
    git2::Repository::init_bare(&other).unwrap();
    let mnt = o.dir.path().join("flip");
    let Some(fs) = flip_fs::FlipFs::dir_or_link(&mnt, &other.join("refs")) else {
        return;
    };
    let commondir = format!("{}\n", mnt.join("link/../../locks.git").display());
    std::fs::write(o.bare.join("commondir"), commondir).unwrap();
    let outcome = acquire_writing_nothing_in(&o, fs, &other.join("refs/gstack/release-locks"));
    assert!(refused_naming(&outcome, "crosses no mount"), "{outcome:?}");
}

/// review 33: the same per-lookup answer on the lock ref's own path. [`Trail::rewalk`]
/// (in the writer child, right before git) and [`Trail::holds`] take a step that is a
/// directory as it is; on FUSE the server says per request whether it is one. A writer
/// of the origin mounts a FUSE file system on `refs/gstack/release-locks` (a directory it
/// may write), whose `+repo` is an empty directory to berth and its child and a symlink to
/// another repository's same directory for git: git writes the lane's lock ref there, a
/// lock nobody holds. Skipped (said on stderr) without root and `/dev/fuse`.
#[test]
fn a_fuse_dir_on_the_lock_refs_path_git_sees_as_a_symlink_writes_no_lock_in_another_repo() {
    let o = origin();
    let first = crate::lane_lock::lane_lock_refs(&o.url, &o.lane)[0].clone();
    let (parent, _) = first.rsplit_once('/').unwrap();
    let (mount_at, name) = parent.rsplit_once('/').unwrap();
    let other = o.dir.path().join("other.git");
    git2::Repository::init_bare(&other).unwrap();
    std::fs::create_dir_all(other.join(parent)).unwrap();
    let mnt = o.bare.join(mount_at);
    let Some(fs) = flip_fs::FlipFs::named_dir_or_link(&mnt, name.as_bytes(), &other.join(parent))
    else {
        return;
    };
    let outcome = acquire_writing_nothing_in(&o, fs, &other.join(parent));
    assert!(refused_naming(&outcome, "(a mount)"), "{outcome:?}");
}

/// review 33: and on the operator's own symlink. A symlink at `refs` (new-workdir's
/// layout, which berth follows) is kept to the same symlink and the same directory, but
/// git's open reads its text again, and a text that passes through a FUSE node and back
/// out with `..` reaches that directory for berth's child and another repository's `refs`
/// for git, whom the server tells the node is a symlink. Skipped (said on stderr) without
/// root and `/dev/fuse`.
#[test]
fn an_operators_refs_symlink_through_a_fuse_dir_writes_no_lock_in_another_repo() {
    let o = origin();
    let real = o.dir.path().join("real");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::rename(o.bare.join("refs"), real.join("refs")).unwrap();
    let other = o.dir.path().join("else/real");
    git2::Repository::init_bare(&other).unwrap();
    let to_git = o.dir.path().join("else/q/r");
    std::fs::create_dir_all(&to_git).unwrap();
    let mnt = o.dir.path().join("flip");
    let Some(fs) = flip_fs::FlipFs::dir_or_link(&mnt, &to_git) else {
        return;
    };
    std::os::unix::fs::symlink(mnt.join("link/../../real/refs"), o.bare.join("refs")).unwrap();
    let outcome = acquire_writing_nothing_in(&o, fs, &other.join("refs/gstack/release-locks"));
    assert!(
        refused_naming(&outcome, "whose path crosses a mount"),
        "{outcome:?}"
    );
}

/// A mount put on the lock ref's path after berth's walk (any writer of the origin may
/// mount a FUSE file system on a directory it writes) is found by the walk again, named
/// as a mount; an operator's `refs` symlink whose relative text crosses no mount is
/// followed. The mount is skipped (said on stderr) without root.
#[test]
fn a_mount_on_the_lock_refs_path_after_the_walk_is_refused_by_name() {
    let o = origin();
    std::fs::rename(o.bare.join("refs"), o.dir.path().join("shared-refs")).unwrap();
    std::os::unix::fs::symlink("../shared-refs", o.bare.join("refs")).unwrap();
    let locks = o.bare.join("refs/gstack/release-locks");
    std::fs::create_dir_all(locks.join("id")).unwrap();
    let trail = recorded(&o.bare);
    assert!(matches!(trail.rewalk(), Ok(Reached::Dir(_))));
    let target = CString::new(locks.as_os_str().as_bytes()).unwrap();
    let none = std::ptr::null();
    // SAFETY: NUL-terminated strings that outlive the call, and no data.
    let mounted = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            none,
        )
    };
    if mounted != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    std::fs::create_dir_all(locks.join("id")).unwrap();
    let walked = trail.rewalk();
    let said = trail.moved_message(Moved(3));
    // SAFETY: a NUL-terminated path that outlives the call.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    assert_eq!(walked.unwrap_err(), Moved(3));
    assert!(
        said.contains("release-locks is on another file system than the git dir"),
        "{said}"
    );
}
