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
//! which names it. A writer that cannot have the writers' lock writes without it and
//! removes nothing ([`before_write`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::Repository;
use nix::libc;

/// The file berth's writers of a local origin's lock refs hold locked around each write,
/// in the repository's git dir.
pub(super) const WRITERS_LOCK: &str = "berth-lane-locks.lock";

/// How old a ref's `.lock` file must be before berth takes it for a dead writer's: a live
/// `git` holds one for milliseconds (seconds, with a slow `reference-transaction` hook).
pub const LEFTOVER_AGE: Duration = Duration::from_secs(10);

/// `.lock` files this process removed as dead writers' (`berth_lane_lock_leftovers_removed_total`).
pub static LEFTOVERS_REMOVED: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// How long a writer waits for another berth writer of the same repository.
const WRITERS_WAIT: Duration = Duration::from_secs(5);

/// What a writer of `origin`'s lock refs holds around one write ([`before_write`]).
#[must_use = "the writers' lock is held only while this lives"]
pub(super) struct Writers {
    /// The locked writers' lock; `None` when it could not be had (the write goes on
    /// without it and clears nothing).
    _held: Option<File>,
}

/// Takes the repository's writers' lock (waiting at most [`WRITERS_WAIT`]) and, holding
/// it, clears `ref_name`'s leftover `.lock` file ([`clear`]).
///
/// A writers' lock berth may not open (another user's file, made under a narrow umask) or
/// that stays locked past the wait (a local user who can read it holds its `flock`) does
/// not stop the write: the ref's own `.lock` file still makes the write a compare-and-swap.
/// Only the clearing needs the writers' lock, so without it a leftover is left alone, as a
/// live `git` writer's would be, and the log names the file and the fix.
pub(super) fn before_write(origin: &Repository, ref_name: &str) -> Result<Writers, git2::Error> {
    let path = origin.path().join(WRITERS_LOCK);
    let locked = open_shared(origin, &path)
        .and_then(|file| crate::atomic_file::lock_open_file_within(file, &path, WRITERS_WAIT));
    match locked {
        Ok(file) => {
            clear(origin, ref_name, &file);
            Ok(Writers { _held: Some(file) })
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::WouldBlock
            ) =>
        {
            tracing::warn!(
                file = %path.display(),
                "cannot take the lane lock writers' lock ({e}): the lock ref is written without it, and a `.lock` file a dead writer left is not removed; let every user that runs berth on this repository open it (`chmod 0664` and a shared group, or `git config core.sharedRepository group`), or remove the file"
            );
            Ok(Writers { _held: None })
        }
        Err(e) => Err(git2::Error::from_str(&format!(
            "cannot take the lane lock writers' lock {}: {e}",
            path.display()
        ))),
    }
}

/// Opens (creating if needed) the writers' lock, which every user who writes the
/// repository's lock refs shares: a group-shared repository's users, a service user and
/// an operator's root. A user who may not write it opens it read-only: a local `flock`
/// needs no write access (over NFS it does; that user then gets the open's error).
///
/// Made here, it gets the mode `core.sharedRepository` asks for (as git gives its own
/// files), and when made by root, the repository's owner and group: an operator's `sudo`
/// under a narrow umask must not leave a file the service user cannot open.
fn open_shared(origin: &Repository, path: &Path) -> io::Result<File> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let open = |create_new: bool| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(create_new)
            .mode(0o666)
            .custom_flags(flags)
            .open(path)
    };
    let file = match open(true) {
        Ok(created) => {
            share(origin, &created);
            created
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match open(false) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(path)?,
            opened => opened?,
        },
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a regular file",
        ));
    }
    Ok(file)
}

/// Gives a writers' lock just made the repository's sharing ([`open_shared`]). Best
/// effort: a file left with the umask's mode still works for its creator, and another
/// user who cannot open it writes without it ([`before_write`]).
fn share(origin: &Repository, file: &File) {
    use std::os::unix::fs::MetadataExt as _;
    if let Some(mode) = shared_mode(origin)
        && let Err(e) = nix::sys::stat::fchmod(file, nix::sys::stat::Mode::from_bits_truncate(mode))
    {
        tracing::debug!("cannot give the writers' lock mode {mode:o}: {e}");
    }
    if nix::unistd::geteuid().is_root()
        && let Ok(dir) = std::fs::metadata(origin.path())
    {
        let owner = Some(nix::unistd::Uid::from_raw(dir.uid()));
        let group = Some(nix::unistd::Gid::from_raw(dir.gid()));
        if let Err(e) = nix::unistd::fchown(file, owner, group) {
            tracing::debug!("cannot give the writers' lock the repository's owner: {e}");
        }
    }
}

/// The mode `core.sharedRepository` gives a file git makes (`git help config`); `None` for
/// `umask` (or unset): the umask's.
fn shared_mode(origin: &Repository) -> Option<u32> {
    let value = origin
        .config()
        .ok()?
        .get_string("core.sharedRepository")
        .ok()?
        .to_ascii_lowercase();
    match value.as_str() {
        "group" | "true" | "1" => Some(0o660),
        "all" | "world" | "everybody" | "2" => Some(0o664),
        octal if octal.starts_with('0') && octal.len() > 1 => u32::from_str_radix(octal, 8)
            .ok()
            .map(|mode| (mode & 0o666) | 0o600),
        _ => None,
    }
}

/// The `.lock` file of `ref_name` in `origin`.
pub(super) fn ref_lock_path(origin: &Repository, ref_name: &str) -> PathBuf {
    origin.path().join(format!("{ref_name}.lock"))
}

/// Removes `ref_name`'s `.lock` file if it is a regular file older than [`LEFTOVER_AGE`].
/// Call only while holding `writers`, the writers' lock.
///
/// Its age is measured on the clock that stamped it, the file system's: `writers` is
/// touched (`UTIME_NOW`, which an NFS client leaves to the server's clock) and the two
/// modification times compared. So a file server whose clock is behind this host's never
/// makes a live writer's `.lock` look old. One as far ahead of that clock as a leftover's
/// age is taken for a leftover too, never for a young file. Without that clock (`writers` opened read-only,
/// another user's file) nothing is removed.
fn clear(origin: &Repository, ref_name: &str, writers: &File) {
    let path = ref_lock_path(origin, ref_name);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return;
    };
    if !meta.is_file() {
        return;
    }
    let now = nix::sys::stat::futimens(
        writers,
        &nix::sys::time::TimeSpec::UTIME_NOW,
        &nix::sys::time::TimeSpec::UTIME_NOW,
    )
    .map_err(io::Error::from)
    .and_then(|()| writers.metadata()?.modified());
    let now = match now {
        Ok(now) => now,
        Err(e) => {
            tracing::warn!(
                file = %path.display(),
                "a lane lock ref's .lock file is not judged, so not removed: the file system's clock cannot be read by touching {} ({e})",
                origin.path().join(WRITERS_LOCK).display()
            );
            return;
        }
    };
    // A live writer stamps its `.lock` with this clock's now: one ahead of it by as much as
    // a leftover's age (a clock stepped back, a `touch -d`) is no live writer's either.
    let age = meta
        .modified()
        .ok()
        .map(|at| {
            now.duration_since(at)
                .unwrap_or_else(|ahead| ahead.duration())
        })
        .unwrap_or_default();
    if age < LEFTOVER_AGE {
        return;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {
            LEFTOVERS_REMOVED.inc();
            tracing::warn!(
                file = %path.display(),
                age_secs = age.as_secs(),
                "removed a lane lock ref's .lock file left by a writer that died mid-write (it blocked every write of the lock)"
            );
        }
        Err(e) => tracing::warn!(
            file = %path.display(),
            "a lane lock ref's .lock file left by a dead writer blocks the lane and cannot be removed: {e}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use std::time::SystemTime;

    use super::*;

    fn writers_mode(origin: &Repository) -> u32 {
        let path = origin.path().join(WRITERS_LOCK);
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_writers_lock_made_here_gets_the_repositorys_shared_mode() {
        let dir = tempfile::tempdir().unwrap();
        let origin = Repository::init_bare(dir.path().join("o.git")).unwrap();
        origin
            .config()
            .unwrap()
            .set_str("core.sharedRepository", "group")
            .unwrap();
        drop(before_write(&origin, "refs/gstack/release-locks/a/main").unwrap());
        assert_eq!(writers_mode(&origin), 0o660);
        assert_eq!(shared_mode(&origin), Some(0o660));
        for (value, mode) in [("all", Some(0o664)), ("0640", Some(0o640)), ("umask", None)] {
            origin
                .config()
                .unwrap()
                .set_str("core.sharedRepository", value)
                .unwrap();
            assert_eq!(shared_mode(&origin), mode, "{value}");
        }
    }

    fn plant(origin: &Repository, ref_name: &str, age: Duration) -> PathBuf {
        let leftover = ref_lock_path(origin, ref_name);
        std::fs::create_dir_all(leftover.parent().unwrap()).unwrap();
        std::fs::write(&leftover, "").unwrap();
        File::options()
            .write(true)
            .open(&leftover)
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
        leftover
    }

    #[test]
    fn an_old_leftover_is_removed_and_counted_and_a_young_one_left() {
        let dir = tempfile::tempdir().unwrap();
        let origin = Repository::init_bare(dir.path().join("o.git")).unwrap();
        let (young_ref, old_ref) = (
            "refs/gstack/release-locks/a/main",
            "refs/gstack/release-locks/b/main",
        );
        let young = plant(&origin, young_ref, LEFTOVER_AGE / 2);
        let old = plant(&origin, old_ref, 2 * LEFTOVER_AGE);
        let before = LEFTOVERS_REMOVED.get();
        drop(before_write(&origin, young_ref).unwrap());
        assert!(young.exists());
        drop(before_write(&origin, old_ref).unwrap());
        assert!(!old.exists());
        assert!(LEFTOVERS_REMOVED.get() > before);
    }

    /// Anyone who may read the file can hold its `flock`: that must cost the lane the
    /// clearing of leftovers at most, never its writes.
    #[test]
    fn a_writers_lock_held_by_someone_else_past_the_wait_does_not_stop_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let origin = Repository::init_bare(dir.path().join("o.git")).unwrap();
        let ref_name = "refs/gstack/release-locks/a/main";
        drop(before_write(&origin, ref_name).unwrap());
        let reader = File::open(origin.path().join(WRITERS_LOCK)).unwrap();
        reader.lock().unwrap();
        let leftover = plant(&origin, ref_name, 2 * LEFTOVER_AGE);
        let writers = before_write(&origin, ref_name).unwrap();
        assert!(writers._held.is_none());
        assert!(
            leftover.exists(),
            "a leftover was cleared without the writers' lock"
        );
    }

    /// A `.lock` file whose mtime is a year ahead (a clock stepped back, a `touch -d`) is
    /// no live writer's: it must not block the lane until the clock catches up.
    #[test]
    fn a_leftover_with_a_future_mtime_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let origin = Repository::init_bare(dir.path().join("o.git")).unwrap();
        let ref_name = "refs/gstack/release-locks/a/main";
        let leftover = ref_lock_path(&origin, ref_name);
        std::fs::create_dir_all(leftover.parent().unwrap()).unwrap();
        std::fs::write(&leftover, "").unwrap();
        let ahead = SystemTime::now() + Duration::from_secs(365 * 24 * 3600);
        File::options()
            .write(true)
            .open(&leftover)
            .unwrap()
            .set_modified(ahead)
            .unwrap();
        let writers = before_write(&origin, ref_name).unwrap();
        assert!(writers._held.is_some());
        assert!(
            !leftover.exists(),
            "a .lock file a year ahead of the clock was left blocking the lane"
        );
    }
}
