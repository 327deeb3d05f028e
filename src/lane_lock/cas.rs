//! Every move of a lock ref is a compare-and-swap enforced where the ref is written.
//!
//! - A network origin (`git://`, `ssh://`, `https://`, scp-like): a push that berth's guard
//!   lets through only when the remote advertises the expected old value; the push carries
//!   that old value and the server re-checks it under its ref lock, so a ref that moved in
//!   between is refused by the server, not only by berth.
//! - A local origin (a path, `file://`): libgit2's local push transport writes refs with
//!   force and deletes whatever the ref holds, so berth does not push there. It opens the
//!   bare repository and updates the ref itself with libgit2's expected-old-value calls,
//!   which compare under the ref's `.lock` file (the same lock file `git` takes): a create
//!   expects the zero id (absent), an update expects the sha berth holds, and a delete goes
//!   through only while the ref still holds that sha.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use git2::{ErrorCode, Oid, Repository, RepositoryOpenFlags};

use super::broken_ref::{self, Room};
use super::expiry_cap::ExpirySightings;
use super::leftover::LeftoverSightings;
use super::local_deadline::Commitment;
use super::ref_writer::{self, Change, Writers, Written};
use super::trail::Trail;
use super::transport::{PushOutcome, push_guarded};
use super::{broken_above, flock_holder, foreign_writer, leftover, local_deadline, refs_look};
use lock_objects::{Carried, copy_lock_commit};

mod lock_objects;

/// What the ref must hold for the write to go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    Absent,
    At(Oid),
}

impl Expect {
    fn matches(self, found: Oid) -> bool {
        match self {
            Expect::Absent => found.is_zero(),
            Expect::At(sha) => found == sha,
        }
    }

    fn id(self) -> Oid {
        match self {
            Expect::Absent => Oid::ZERO_SHA1,
            Expect::At(sha) => sha,
        }
    }
}

/// Which lock move a write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWrite {
    Create,
    Takeover,
    Refresh,
    Release,
    /// The removal of a ref that stands in the way of a lock ref ([`super::in_the_way`]).
    Clear,
}

/// Called with the move and the ref after berth's own last look at the ref and before the
/// write is sent: the window a compare-and-swap must close. Tests interleave another
/// client's write there ([`super::LockClient::set_write_hook`]); the daemon sets none.
#[derive(Clone, Default)]
pub(crate) struct WriteHook(Option<WriteHookFn>);

/// See [`WriteHook`].
pub type WriteHookFn = Arc<dyn Fn(LockWrite, &str) + Send + Sync>;

impl WriteHook {
    pub fn new(hook: WriteHookFn) -> WriteHook {
        WriteHook(Some(hook))
    }

    fn call(&self, write: LockWrite, ref_name: &str) {
        if let Some(hook) = &self.0 {
            hook(write, ref_name);
        }
    }
}

impl fmt::Debug for WriteHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "WriteHook(set)"
        } else {
            "WriteHook(none)"
        })
    }
}

/// What a lock write runs with besides the write: the test hook, the sightings of `.lock`
/// files a dead writer may have left in a local origin, and the deadline of a local
/// origin's write ([`local_deadline`]). Owned: a local write runs on a thread of its own.
#[derive(Clone)]
pub(crate) struct WriteContext {
    pub hook: WriteHook,
    pub seen: Arc<LeftoverSightings>,
    /// First sightings of what is no lock ([`broken_above`]).
    pub expiry: Arc<ExpirySightings>,
    pub deadline: std::time::Duration,
}

/// One compare-and-swap of `ref_name` on `url`: to `new` (a lock commit already written in
/// `scratch`), or deleted when `new` is `None`, only if the ref holds what `expect` says.
///
/// `Refused` carries what berth's look found (nothing was written); `Rejected` means the
/// enforced check refused it (the ref moved between the look and the write, or someone
/// held its lock). `Err` is a transport or local failure and says nothing about the ref.
pub(crate) fn compare_and_swap(
    scratch: &Repository,
    url: &str,
    ref_name: &str,
    write: LockWrite,
    expect: Expect,
    new: Option<Oid>,
    with: WriteContext,
) -> Result<PushOutcome, git2::Error> {
    let hook = &with.hook;
    match local_path(url) {
        Some(path) => {
            // The whole write reads the origin with libgit2: on a thread of its own, with
            // its own handle on the scratch repository (the lock commit carried to it as
            // bytes), under the deadline.
            let path = path?;
            let carried = new.map(|sha| Carried::read(scratch, sha)).transpose()?;
            let scratch_path = scratch.path().to_owned();
            let handed = scratch_path.clone();
            let (at, ref_name) = (path.clone(), ref_name.to_owned());
            // Its git children (the objects' unpack, the ref's update) have bounds of their
            // own (each is killed past it) on top of the reads': cut off at the reads'
            // deadline, a write would leave a stopped writer that may still move the ref,
            // and this lane's own write would be taken for a theft.
            let deadline = ref_writer::local_write_deadline(with.deadline);
            // Past the deadline berth waits for a ref's writer child that started before
            // it (killed past its own bound), so what it reports is what the write did.
            let commitment = Commitment::new(COMMITTED_GRACE);
            let committed = Arc::clone(&commitment);
            local_deadline::run_committed(
                &path,
                deadline,
                Some(&handed),
                Some(&commitment),
                move || {
                    let scratch = Repository::open(&scratch_path)?;
                    if let Some(carried) = &carried {
                        carried.put_in(&scratch)?;
                    }
                    let write = Swap {
                        write,
                        expect,
                        new,
                        commitment: &committed,
                    };
                    local_swap(&scratch, &at, &ref_name, write, &with)
                },
            )?
        }
        None => {
            // A create needs no force: the server then also refuses it over an existing ref.
            let refspec = match (new, expect) {
                (None, _) => format!(":{ref_name}"),
                (Some(sha), Expect::Absent) => format!("{sha}:{ref_name}"),
                (Some(sha), Expect::At(_)) => format!("+{sha}:{ref_name}"),
            };
            push_guarded(scratch, url, &refspec, ref_name, &|advertised| {
                let accepted = expect.matches(advertised);
                if accepted {
                    hook.call(write, ref_name);
                }
                accepted
            })
        }
    }
}

/// The directory of a local origin, as libgit2 chooses its local transport: a `file://`
/// URL, an absolute path (whether or not it exists yet: it must never reach the push
/// transport), or other text without `://` that names an existing directory. `Some(Err)`
/// for a `file://` URL with no usable path (another host's, say).
pub(crate) fn local_path(url: &str) -> Option<Result<PathBuf, git2::Error>> {
    let is_file_url = url
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("file://"));
    if is_file_url {
        return Some(
            url::Url::parse(url)
                .ok()
                .and_then(|parsed| parsed.to_file_path().ok())
                .ok_or_else(|| {
                    git2::Error::from_str("the file:// origin names no local path berth can open")
                }),
        );
    }
    // An absolute path is never a URL, whatever it contains (`/srv/a://b/w.git`); other
    // text is local, as libgit2 takes it, when it names a directory and no network scheme.
    let path = std::path::Path::new(url);
    let network = NETWORK_SCHEMES.iter().any(|scheme| url.starts_with(scheme));
    (path.is_absolute() || (!network && path.is_dir())).then(|| Ok(PathBuf::from(url)))
}

/// The URL prefixes libgit2 gives a network transport before it looks for a directory.
const NETWORK_SCHEMES: [&str; 6] = [
    "git://",
    "http://",
    "https://",
    "ssh://",
    "ssh+git://",
    "git+ssh://",
];

/// How long past its deadline a local write's caller waits for a write that committed to
/// its ref's writer child before it: the child's bound, and a second for the write's last
/// reads (the ref, read again through the walked path), past which the answer is lost.
pub(super) const COMMITTED_GRACE: std::time::Duration =
    ref_writer::WRITER_BOUND.saturating_add(std::time::Duration::from_secs(1));

/// One local write: what it does, and where it and its caller stand ([`Commitment`]).
struct Swap<'a> {
    write: LockWrite,
    expect: Expect,
    new: Option<Oid>,
    commitment: &'a Commitment,
}

/// Why a write whose caller stopped waiting at its deadline does not go on: a lock ref
/// set after the take was reported failed would hold the lane for no landing until its
/// TTL. (A release still deletes: only while the ref holds this lock's commit, which frees
/// the lane sooner.)
fn caller_left(before: &str) -> git2::Error {
    git2::Error::from_str(&format!(
        "the write's caller stopped waiting at its deadline: nothing more is done ({before})"
    ))
}

fn local_swap(
    scratch: &Repository,
    path: &std::path::Path,
    ref_name: &str,
    swap: Swap<'_>,
    with: &WriteContext,
) -> Result<PushOutcome, git2::Error> {
    let Swap {
        write,
        expect,
        new,
        commitment,
    } = swap;
    let WriteContext {
        hook,
        seen: sightings,
        expiry,
        ..
    } = with;
    let looked = refs_look::look_before_write_at(path, ref_name)?;
    let origin = Repository::open_ext(path, RepositoryOpenFlags::NO_SEARCH, [] as [&str; 0])?;
    refs_look::refuse_linked(&origin)?;
    let blocking = refs_look::found_in(origin.path(), ref_name, looked)?;
    let room = Room {
        origin: &origin,
        lock_ref: ref_name,
        writers_lock: &origin.path().join(leftover::WRITERS_LOCK),
        expiry,
    };
    refs_look::settle(&room, blocking)?;
    let found = match origin.find_reference(ref_name) {
        Ok(reference) => Some(reference),
        Err(e) if e.code() == ErrorCode::NotFound => None,
        Err(e) => return Err(e),
    };
    let seen = found
        .as_ref()
        .and_then(|r| r.target())
        .unwrap_or(Oid::ZERO_SHA1);
    if !expect.matches(seen) {
        return Ok(PushOutcome::Refused { advertised: seen });
    }
    let change = match (new, found) {
        (Some(sha), _) => {
            if commitment.left() {
                return Err(caller_left("the lock commit's copy into the origin"));
            }
            copy_lock_commit(scratch, &origin, sha)?;
            Change::Set {
                new: sha,
                old: expect.id(),
            }
        }
        (None, Some(_)) => Change::Delete { old: seen },
        (None, None) => return Ok(PushOutcome::Refused { advertised: seen }),
    };
    hook.call(write, ref_name);
    // Under the ref's `.lock` file `git update-ref` compares the ref with the old id (the
    // zero id: must be absent) and writes only on a match; a delete goes through only while
    // the ref holds the value read above (== `expect`).
    // Broken refs first: a symlink among them would fail the walk `prepare` makes.
    broken_above::clear(&room)?;
    broken_ref::clear_below(&room)?;
    let mut prepared = leftover::prepare(&origin, ref_name, sightings)?;
    foreign_writer::spare(&mut prepared);
    // Recorded last, after anything set aside: the path git is given, walked again by the
    // writer child and after the write.
    let trail = Trail::record(&prepared.git_dir_fd, &prepared.git_dir, ref_name)?;
    // Committed, the caller waits for the writer child; a delete goes on even when the
    // caller left (its compare-and-swap can only remove this lock).
    if !commitment.commit() && new.is_some() {
        return Err(caller_left("the ref's write"));
    }
    let written = ref_writer::write(&prepared, &trail, ref_name, change)
        .map_err(|e| git2::Error::from_str(&format!("cannot run git update-ref: {e}")))?;
    let writers_held_by = report(&prepared, &written);
    if let Some(moved) = written.moved {
        return Ok(PushOutcome::Redirected {
            reason: trail.moved_message(moved),
        });
    }
    if written.commondir_planted {
        return Ok(PushOutcome::Redirected {
            reason: trail.commondir_message(),
        });
    }
    let wrote = Wrote {
        prepared: &prepared,
        trail: &trail,
        written: &written,
        writers_held_by: writers_held_by.as_deref(),
    };
    settle(&origin, ref_name, expect, new, &wrote)
}

/// A writer child that ran, and what it ran with.
struct Wrote<'a> {
    prepared: &'a leftover::Prepared,
    trail: &'a Trail,
    written: &'a Written,
    writers_held_by: Option<&'a str>,
}

/// What a writer child's run amounts to: a success only once the ref, read through the
/// walked path, holds what was written ([`Trail::holds`]).
fn settle(
    origin: &Repository,
    ref_name: &str,
    expect: Expect,
    new: Option<Oid>,
    wrote: &Wrote<'_>,
) -> Result<PushOutcome, git2::Error> {
    let (prepared, written) = (wrote.prepared, wrote.written);
    let believed = || match wrote.trail.holds(new) {
        Ok(()) => PushOutcome::Applied,
        Err(unbelieved) => PushOutcome::Redirected {
            reason: unbelieved.to_string(),
        },
    };
    if written.applied {
        return Ok(believed());
    }
    // The ref moved (or was deleted) since the look, or another writer holds its lock:
    // say which, so a refresh learns at once that the lane was taken.
    let now = match origin.refname_to_id(ref_name) {
        Ok(id) => Some(id),
        Err(read) if read.code() == ErrorCode::NotFound => Some(Oid::ZERO_SHA1),
        Err(_) => None,
    };
    // A writer stopped (or killed at its time limit) after its rename but before it
    // exited wrote the ref all the same: the ref holding exactly what this write meant to
    // put there (a fresh lock commit only this process made, or nothing after a delete)
    // is this write, not another holder's.
    if now == Some(new.unwrap_or(Oid::ZERO_SHA1)) {
        return Ok(believed());
    }
    // A `.lock` git named that berth never judges (`HEAD.lock`, taken for a `HEAD` naming
    // the lock ref) is no lock held: an error naming it, for an operator to clear.
    let foreign = git_named_lock(&written.said, &prepared.git_dir)
        .filter(|file| !prepared.locks.iter().any(|lock| lock.path == *file));
    if let Some(file) = foreign.filter(|_| now.is_none_or(|now| expect.matches(now))) {
        return Err(git2::Error::from_str(&foreign_lock_status(written, &file)));
    }
    Ok(match now {
        Some(now) if !expect.matches(now) => PushOutcome::Refused { advertised: now },
        // A live `git` may have let go of its `.lock` since: git's own words say it was there.
        _ if prepared
            .locks
            .iter()
            .any(|lock| lock.path.symlink_metadata().is_ok())
            || written.said.contains(".lock': File exists") =>
        {
            PushOutcome::Rejected {
                status: locked_status(prepared, written, wrote.writers_held_by),
            }
        }
        _ => {
            return Err(git2::Error::from_str(&format!(
                "git update-ref failed: {}",
                written.said
            )));
        }
    })
}

/// Logs and counts what the writer child reported about the writers' lock and the
/// leftover; the holder of a busy writers' lock, named.
fn report(prepared: &leftover::Prepared, written: &Written) -> Option<String> {
    for lock in &prepared.locks {
        if let Some(judged) = lock.leftover
            && written.removed_leftover
            && std::fs::symlink_metadata(&lock.path).is_err()
        {
            leftover::LEFTOVERS_REMOVED.inc();
            if judged.file.is_dir() {
                tracing::warn!(
                    file = %lock.path.display(),
                    aside = %judged.file.aside_in(&prepared.git_dir).display(),
                    judged = ?judged.reason,
                    "moved a directory planted at a ref's `.lock` out of `refs/` (git makes only regular files there; it blocked every write of the lane lock)"
                );
            } else {
                tracing::warn!(
                    file = %lock.path.display(),
                    kind = judged.file.kind_name(),
                    judged = ?judged.reason,
                    "removed a `.lock` left by a writer that died mid-write, or planted (it blocked every write of the lane lock)"
                );
            }
        }
    }
    match written.writers {
        Writers::Held => None,
        Writers::Unopened => {
            tracing::warn!(
                file = %prepared.writers_lock.display(),
                "the lane lock writers' lock could not be taken: the lock ref was written without it, and a `.lock` file a dead writer left is not removed; let every user that runs berth on this repository open it (`chmod 0664` and a shared group, or `git config core.sharedRepository group`)"
            );
            None
        }
        Writers::Busy => {
            WRITERS_BLOCKED.inc();
            let holder = flock_holder::describe(&prepared.writers_lock);
            tracing::warn!(
                file = %prepared.writers_lock.display(),
                "the lane lock writers' lock is held {holder} past {} s: the lock ref was written without it, and a `.lock` file left by a dead writer is not removed",
                ref_writer::WRITERS_WAIT.as_secs()
            );
            Some(holder)
        }
    }
}

/// Why a write found the ref's `.lock` file in its way, and what clears it.
fn locked_status(
    prepared: &leftover::Prepared,
    written: &Written,
    writers_held_by: Option<&str>,
) -> String {
    // The `.lock` git named (the ref's own, or `packed-refs.lock` for a delete).
    let named = git_named_lock(&written.said, &prepared.git_dir);
    let file = prepared
        .locks
        .iter()
        .find(|lock| named.as_ref() == Some(&lock.path))
        .or_else(|| {
            prepared
                .locks
                .iter()
                .find(|lock| lock.path.symlink_metadata().is_ok())
        })
        .unwrap_or(&prepared.locks[0])
        .path
        .display();
    let clears = match writers_held_by {
        Some(holder) => format!(
            "berth removes no leftover while the writers' lock {} is held {holder}",
            prepared.writers_lock.display()
        ),
        None => format!(
            "if no git process writes it, it was left by a writer that died mid-write, and berth removes it once it is {} s old or has been seen unchanged that long",
            leftover::LEFTOVER_AGE.as_secs()
        ),
    };
    format!(
        "the ref was locked while berth wrote it ({}): {file}; {clears}",
        written.said
    )
}

/// The `.lock` file git's words name as in its way ("Unable to create '<path>'"), against
/// `git_dir` when git named it relative.
fn git_named_lock(said: &str, git_dir: &std::path::Path) -> Option<PathBuf> {
    let (_, rest) = said.split_once("Unable to create '")?;
    let (path, _) = rest.split_once("': ")?;
    Some(git_dir.join(path))
}

/// Why a write failed on a `.lock` outside those berth judges ([`leftover::prepare`]):
/// `HEAD.lock` when the origin's `HEAD` names the lock ref, which `git update-ref` locks
/// too. berth never removes it: git takes it for every write through `HEAD`, most by
/// writers that never take berth's writers' lock, so no rule of berth's makes its removal
/// a compare-and-swap (docs/lane-locks.md).
fn foreign_lock_status(written: &Written, file: &std::path::Path) -> String {
    format!(
        "the ref was locked while berth wrote it ({}): {}; berth removes no `.lock` outside the lane lock refs, so the lane is held until an operator removes it once no git process writes the origin (left by a git that died mid-write)",
        written.said,
        file.display()
    )
}

/// Local-origin writes that found the writers' lock held past the wait
/// (`berth_lane_lock_writers_blocked_total`).
pub static WRITERS_BLOCKED: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_origins_are_paths_and_file_urls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        assert_eq!(local_path(path).unwrap().unwrap(), dir.path());
        let url = format!("file://{path}");
        assert_eq!(local_path(&url).unwrap().unwrap(), dir.path());
        let upper = format!("FILE://{path}");
        assert_eq!(local_path(&upper).unwrap().unwrap(), dir.path());
        assert!(local_path("/no/such/dir").unwrap().is_ok());
        // A path is a path even with `://` in it: libgit2 would push there with force.
        let odd = dir.path().join("a:").join("").join("b");
        std::fs::create_dir_all(&odd).unwrap();
        let odd = format!("{path}/a://b");
        assert_eq!(
            local_path(&odd).unwrap().unwrap(),
            std::path::Path::new(&odd)
        );
        assert!(
            local_path("file://elsewhere.example/srv/git/w.git")
                .unwrap()
                .is_err()
        );
        for network in [
            "git://127.0.0.1:9418/w.git",
            "https://github.com/acme/w.git",
            "git@github.com:acme/w.git",
        ] {
            assert!(local_path(network).is_none(), "{network}");
        }
    }
}
