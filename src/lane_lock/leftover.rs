//! A lock ref's `.lock` file left in a local origin by a writer that died mid-write.
//!
//! git and libgit2 update a loose ref by creating `<ref>.lock` exclusively, writing the new
//! id into it and renaming it over the ref. A writer SIGKILLed in between leaves the
//! `.lock` file behind, and every later write of that ref, git's included, fails while it
//! exists: the lane would stand still for ever. berth's own writers of a local origin's
//! lock refs take an exclusive `flock` on [`WRITERS_LOCK`] in the repository around each
//! write, so a `.lock` file found while holding it belongs to no live berth writer: it is
//! a dead one's, or a live `git` (gstack's push), which holds it for milliseconds. One
//! older than [`LEFTOVER_AGE`] is removed (and logged); a younger one fails the write,
//! which names it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use git2::Repository;
use nix::libc;

/// The file berth's writers of a local origin's lock refs hold locked around each write,
/// in the repository's git dir.
pub(super) const WRITERS_LOCK: &str = "berth-lane-locks.lock";

/// How old a ref's `.lock` file must be before berth takes it for a dead writer's: a live
/// `git` holds one for milliseconds (seconds, with a slow `reference-transaction` hook).
pub const LEFTOVER_AGE: Duration = Duration::from_secs(10);

/// How long a writer waits for another berth writer of the same repository.
const WRITERS_WAIT: Duration = Duration::from_secs(5);

/// Takes the repository's berth-writers lock, waiting at most [`WRITERS_WAIT`].
pub(super) fn writers_lock(origin: &Repository) -> Result<File, git2::Error> {
    let path = origin.path().join(WRITERS_LOCK);
    open_shared(&path)
        .and_then(|file| crate::atomic_file::lock_open_file_within(file, &path, WRITERS_WAIT))
        .map_err(|e| {
            git2::Error::from_str(&format!(
                "cannot take the lane lock writers' lock {}: {e}",
                path.display()
            ))
        })
}

/// Opens (creating if needed) the writers' lock, which every user who writes the
/// repository's lock refs shares: a group-shared repository's users, a service user and
/// an operator's root. So its mode is the umask's (never narrowed to its creator), and a
/// user who may not write it opens it read-only: a local `flock` needs no write access
/// (over NFS it does; that user then gets the open's error).
fn open_shared(path: &Path) -> io::Result<File> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .custom_flags(flags)
        .open(path)
    {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)?,
        opened => opened?,
    };
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a regular file",
        ));
    }
    Ok(file)
}

/// The `.lock` file of `ref_name` in `origin`.
pub(super) fn ref_lock_path(origin: &Repository, ref_name: &str) -> PathBuf {
    origin.path().join(format!("{ref_name}.lock"))
}

/// Removes `ref_name`'s `.lock` file if it is a regular file older than [`LEFTOVER_AGE`].
/// Call only while holding [`writers_lock`]. Returns the age of a younger one left alone.
pub(super) fn clear(origin: &Repository, ref_name: &str) -> Option<Duration> {
    let path = ref_lock_path(origin, ref_name);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let age = meta
        .modified()
        .ok()
        .and_then(|at| SystemTime::now().duration_since(at).ok())
        .unwrap_or_default();
    if age < LEFTOVER_AGE {
        return Some(age);
    }
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::warn!(
            file = %path.display(),
            age_secs = age.as_secs(),
            "removed a lane lock ref's .lock file left by a writer that died mid-write (it blocked every write of the lock)"
        ),
        Err(e) => tracing::warn!(
            file = %path.display(),
            "a lane lock ref's .lock file left by a dead writer blocks the lane and cannot be removed: {e}"
        ),
    }
    None
}
