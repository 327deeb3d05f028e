//! A lock ref's `.lock` file left in a local origin by a writer that died mid-write.
//!
//! git and libgit2 update a loose ref by creating `<ref>.lock` exclusively, writing the new
//! id into it and renaming it over the ref. A writer SIGKILLed in between leaves the
//! `.lock` file behind, and every later write of that ref, git's included, fails while it
//! exists: the lane would stand still for ever. berth writes a local origin's lock refs
//! from a short-lived child ([`super::ref_writer`]) that holds an exclusive `flock` on
//! [`WRITERS_LOCK`] in the repository around its write, so a `.lock` file found while
//! holding it belongs to no live berth writer: it is a dead one's, or a live `git`'s
//! (gstack's push), which holds it for milliseconds.
//!
//! Berth judges a `.lock` file dead ([`judge`]) when its modification time is at least
//! [`LEFTOVER_AGE`] in the past on the file system's clock, or when berth has seen that
//! same file (device, inode, size, modification time) unchanged for [`LEFTOVER_AGE`] on
//! `CLOCK_BOOTTIME`, which no clock step moves, in any of its processes ([`leftover_seen`]). One dated in the future (a clock stepped
//! back while a live `git` held it, a `touch -d`) is only seen, never old. The writer
//! child removes the judged file only while holding the writers' lock and only if it is
//! still that file. git makes only regular files there, so a directory, symlink or other
//! node at a `.lock` was planted: it is judged the same way, a symlink removed (never
//! followed), a directory moved whole out of `refs/` ([`FileId::aside_in`]), nothing in it
//! read or lost. A child that cannot have the writers' lock writes without it and
//! removes nothing, and berth names who holds it ([`super::flock_holder`]).

use std::ffi::{CStr, CString};
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use git2::Repository;
use nix::libc;

use super::{below_ref, leftover_seen, lock_dir};
use crate::boot_clock::BootTime;

/// The file berth's writers of a local origin's lock refs hold locked around each write,
/// in the repository's git dir.
pub(super) const WRITERS_LOCK: &str = "berth-lane-locks.lock";

/// How long a ref's `.lock` file must be old, or seen unchanged, before berth takes it for
/// a dead writer's: a live `git` holds one for milliseconds (seconds, with a slow
/// `reference-transaction` hook), a berth writer child for at most
/// [`super::ref_writer::WRITE_LIMIT`].
pub const LEFTOVER_AGE: Duration = Duration::from_secs(10);

/// `.lock` files this process removed as dead writers' (`berth_lane_lock_leftovers_removed_total`).
pub static LEFTOVERS_REMOVED: LazyLock<prometheus_client::metrics::counter::Counter> =
    LazyLock::new(Default::default);

/// A file as a stat shows it: the same values seen again mean nobody replaced or wrote it
/// in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct FileId {
    /// The file type bits of `st_mode`: git makes only regular files at a `.lock`, so a
    /// directory, symlink or other node there was planted and is judged like a leftover.
    kind: u32,
    dev: u64,
    ino: u64,
    size: i64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileId {
    pub(super) fn of(meta: &Metadata) -> FileId {
        FileId {
            kind: meta.mode() & libc::S_IFMT,
            dev: meta.dev(),
            ino: meta.ino(),
            size: i64::try_from(meta.size()).unwrap_or(i64::MAX),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }

    /// The node `name` in the directory `dir`, not following a symlink; async-signal-safe
    /// (a writer child calls it between fork and exec).
    pub(super) fn at(dir: libc::c_int, name: &CStr) -> Option<FileId> {
        // SAFETY: an all-zero `stat` is a valid value for fstatat to overwrite.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `name` is NUL-terminated, `stat` writable; a bad `dir` only fails.
        let found =
            unsafe { libc::fstatat(dir, name.as_ptr(), &raw mut stat, libc::AT_SYMLINK_NOFOLLOW) };
        if found != 0 {
            return None;
        }
        Some(FileId {
            kind: stat.st_mode & libc::S_IFMT,
            dev: stat.st_dev,
            ino: stat.st_ino,
            size: stat.st_size,
            mtime: stat.st_mtime,
            mtime_nsec: stat.st_mtime_nsec,
        })
    }

    fn modified(&self) -> Option<SystemTime> {
        let secs = u64::try_from(self.mtime).ok()?;
        let nanos = u32::try_from(self.mtime_nsec).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
    }

    /// A directory, which only a rename can take out of the way without reading into it.
    pub(super) fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }

    /// A regular file, which git opens and reads without blocking.
    pub(super) fn is_file(&self) -> bool {
        self.kind == libc::S_IFREG
    }

    /// Where a planted directory at a `.lock` is set aside in the repository's git dir:
    /// outside `refs/`, where git never takes it for a ref, and named by its inode so two
    /// never meet.
    pub(super) fn aside_in(&self, git_dir: &Path) -> PathBuf {
        git_dir.join(self.aside_name())
    }

    /// [`FileId::aside_in`]'s name in the git dir.
    pub(super) fn aside_name(&self) -> String {
        format!("berth-set-aside-{}-{}", self.dev, self.ino)
    }

    /// What a log line calls it.
    pub(super) fn kind_name(&self) -> &'static str {
        match self.kind {
            libc::S_IFREG => "file",
            libc::S_IFDIR => "directory",
            libc::S_IFLNK => "symlink",
            libc::S_IFIFO => "FIFO",
            libc::S_IFSOCK => "socket",
            libc::S_IFCHR | libc::S_IFBLK => "device",
            _ => "special file",
        }
    }
}

/// The `.lock` files berth has seen ([`leftover_seen`]).
pub(super) type LeftoverSightings = leftover_seen::LeftoverSightings<FileId>;

/// What a writer of a local origin's lock ref needs before it starts ([`prepare`]).
pub(super) struct Prepared {
    /// The origin's git dir, where a planted directory is set aside.
    pub git_dir: PathBuf,
    /// The same, opened: the writer child sets a directory aside relative to it.
    pub git_dir_fd: OwnedFd,
    pub writers_lock: PathBuf,
    /// The ref's own `.lock`, then the origin's `packed-refs.lock`, which `git update-ref
    /// -d` takes for every delete: a dead git (a killed `git gc`) leaves either behind;
    /// then those below the ref, where it is a directory ([`below_ref`]).
    pub locks: Vec<LockFile>,
}

/// A `.lock` file a ref write needs free.
pub(super) struct LockFile {
    /// Where it is, for messages and sightings; never opened or removed by this path.
    pub path: PathBuf,
    /// Its directory, opened without following a symlink ([`lock_dir`]); `None`: missing.
    pub dir: Option<OwnedFd>,
    /// Its name in `dir`.
    pub name: CString,
    /// Judged a dead writer's: the writer removes it if it is still it.
    pub leftover: Option<Judged>,
}

/// A `.lock` file judged a dead writer's, and why.
#[derive(Debug, Clone, Copy)]
pub(super) struct Judged {
    pub file: FileId,
    pub reason: Age,
}

/// How a `.lock` file was found to be old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Age {
    /// Its modification time is this far in the past on the file system's clock.
    Dated(Duration),
    /// berth has seen it unchanged for this long.
    Seen(Duration),
}

/// Makes the repository's writers' lock (with the repository's sharing) and judges
/// `ref_name`'s `.lock` file, if any.
///
/// A writers' lock berth may not open (another user's file, made under a narrow umask; a
/// directory or FIFO planted at its path) does not stop the write: the ref's own `.lock` file still makes the write a
/// compare-and-swap. Only the clearing needs the writers' lock, so without it a leftover
/// is left alone, as a live `git` writer's would be, and the log names the file and the
/// fix.
pub(super) fn prepare(
    origin: &Repository,
    ref_name: &str,
    seen: &LeftoverSightings,
) -> Result<Prepared, git2::Error> {
    let git_dir = origin.path();
    let git_dir_fd = lock_dir::open_git_dir(git_dir)
        .map_err(|e| git2::Error::from_str(&format!("cannot open {}: {e}", git_dir.display())))?;
    let ref_lock = format!("{ref_name}.lock");
    // The ref's own directory first: below a symlink nothing is looked at.
    let mut found = vec![
        (
            lock_dir::open_parent(&git_dir_fd, git_dir, &ref_lock)?,
            ref_lock,
        ),
        (
            lock_dir::open_parent(&git_dir_fd, git_dir, "packed-refs.lock")?,
            "packed-refs.lock".to_owned(),
        ),
    ];
    found.extend(
        below_ref::lock_files_below(&git_dir.join(ref_name))
            .iter()
            .filter_map(|path| {
                let relative = path.strip_prefix(git_dir).ok()?.to_str()?.to_owned();
                // A symlink swapped in since the look: nothing judged there.
                Some((
                    lock_dir::open_parent(&git_dir_fd, git_dir, &relative).ok()?,
                    relative,
                ))
            }),
    );
    let writers_lock = git_dir.join(WRITERS_LOCK);
    let fs_now = match open_shared(origin, &writers_lock) {
        Ok(writers) => Some(fs_now(&writers).ok()),
        Err(e) => {
            tracing::warn!(
                file = %writers_lock.display(),
                "cannot open the lane lock writers' lock ({e}): the lock ref is written without it, and a `.lock` file a dead writer left is not removed; let every user that runs berth on this repository open it (`chmod 0664` and a shared group, or `git config core.sharedRepository group`), or, if it is not a regular file, remove it"
            );
            None
        }
    };
    let locks = found
        .into_iter()
        .map(|(dir, relative)| {
            let base = relative.rsplit('/').next().unwrap_or_default();
            let name = CString::new(base).unwrap_or_default();
            let path = git_dir.join(&relative);
            let found = dir
                .as_ref()
                .and_then(|dir| FileId::at(dir.as_raw_fd(), &name));
            LockFile {
                leftover: fs_now
                    .and_then(|fs_now| judge(found, &path, fs_now, BootTime::now(), seen)),
                path,
                dir,
                name,
            }
        })
        .collect();
    Ok(Prepared {
        git_dir: git_dir.to_owned(),
        git_dir_fd,
        writers_lock,
        locks,
    })
}

/// The file system's clock: `writers` touched (`UTIME_NOW`, which an NFS client leaves to
/// the server's clock) and its modification time read back, so a file server whose clock
/// is behind this host's never makes a live writer's `.lock` look old. Fails for a
/// writers' lock opened read-only (another user's file).
fn fs_now(writers: &File) -> io::Result<SystemTime> {
    nix::sys::stat::futimens(
        writers,
        &nix::sys::time::TimeSpec::UTIME_NOW,
        &nix::sys::time::TimeSpec::UTIME_NOW,
    )
    .map_err(io::Error::from)?;
    writers.metadata()?.modified()
}

/// Whether the `.lock` file at `path` is a dead writer's ([`prepare`]): dated at least
/// [`LEFTOVER_AGE`] before `fs_now`, or seen unchanged ([`leftover_seen`]) for
/// [`LEFTOVER_AGE`] up to `now`. `found` is what is at `path` now.
fn judge(
    found: Option<FileId>,
    path: &Path,
    fs_now: Option<SystemTime>,
    now: BootTime,
    seen: &LeftoverSightings,
) -> Option<Judged> {
    let Some(file) = found else {
        leftover_seen::forget(seen, path);
        return None;
    };
    let dated = fs_now
        .zip(file.modified())
        .and_then(|(now, at)| now.duration_since(at).ok())
        .unwrap_or_default();
    if dated >= LEFTOVER_AGE {
        return Some(Judged {
            file,
            reason: Age::Dated(dated),
        });
    }
    let unchanged = leftover_seen::unchanged_for(seen, path, file, now);
    (unchanged >= LEFTOVER_AGE).then_some(Judged {
        file,
        reason: Age::Seen(unchanged),
    })
}

/// Opens (creating if needed) the writers' lock, which every user who writes the
/// repository's lock refs shares: a group-shared repository's users, a service user and
/// an operator's root. A user who may not write it opens it read-only: a local `flock`
/// needs no write access (over NFS it does; that user then gets the open's error).
///
/// Made here, it gets the mode `core.sharedRepository` asks for (as git gives its own
/// files), and when made by root, the repository's owner and group: an operator's `sudo`
/// under a narrow umask must not leave a file the service user cannot open.
pub(super) fn open_shared(origin: &Repository, path: &Path) -> io::Result<File> {
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
/// user who cannot open it writes without it ([`prepare`]).
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

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
        prepare(
            &origin,
            "refs/gstack/release-locks/a/main",
            &LeftoverSightings::in_memory(),
        )
        .unwrap();
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

    fn judge_at(
        path: &Path,
        fs_now: Option<SystemTime>,
        now: BootTime,
        seen: &LeftoverSightings,
    ) -> Option<Judged> {
        let dir = File::open(path.parent().unwrap()).unwrap();
        let name = CString::new(path.file_name().unwrap().as_encoded_bytes()).unwrap();
        judge(FileId::at(dir.as_raw_fd(), &name), path, fs_now, now, seen)
    }

    /// A `.lock` file dated `offset` from now (negative: in the past).
    pub(in crate::lane_lock) fn plant(path: &Path, at: SystemTime) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(at)
            .unwrap();
    }

    #[test]
    fn an_old_leftover_is_judged_dead_and_a_young_one_not() {
        let dir = tempfile::tempdir().unwrap();
        let (young, old) = (dir.path().join("young.lock"), dir.path().join("old.lock"));
        let now = SystemTime::now();
        plant(&young, now - LEFTOVER_AGE / 2);
        plant(&old, now - 2 * LEFTOVER_AGE);
        let boot = BootTime::now();
        let seen = LeftoverSightings::in_memory();
        assert!(judge_at(&young, Some(now), boot, &seen).is_none());
        let judged = judge_at(&old, Some(now), boot, &seen).unwrap();
        assert!(matches!(judged.reason, Age::Dated(age) if age >= LEFTOVER_AGE));
        // Without the file system's clock, a date proves nothing.
        assert!(judge_at(&old, None, boot, &seen).is_none());
    }

    /// A `.lock` file a year ahead (a clock stepped back while a live `git` held it, a
    /// `touch -d`) is not old: only seeing it unchanged for the leftover age makes it so,
    /// and any change starts the count again.
    #[test]
    fn a_future_dated_leftover_is_dead_only_once_seen_unchanged_for_the_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ahead.lock");
        let year = Duration::from_secs(365 * 24 * 3600);
        plant(&path, SystemTime::now() + year);
        let first = BootTime::now();
        let fs_now = Some(SystemTime::now());
        let seen = LeftoverSightings::in_memory();
        assert!(judge_at(&path, fs_now, first, &seen).is_none());
        assert!(judge_at(&path, fs_now, first.after(LEFTOVER_AGE / 2), &seen).is_none());
        let judged = judge_at(&path, fs_now, first.after(LEFTOVER_AGE), &seen).unwrap();
        assert_eq!(judged.reason, Age::Seen(LEFTOVER_AGE));
        std::fs::write(&path, "changed").unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(SystemTime::now() + year)
            .unwrap();
        let later = first.after(2 * LEFTOVER_AGE);
        assert!(
            judge_at(&path, fs_now, later, &seen).is_none(),
            "a changed file kept its age"
        );
        assert!(judge_at(&path, fs_now, later.after(LEFTOVER_AGE), &seen).is_some());
    }
}
