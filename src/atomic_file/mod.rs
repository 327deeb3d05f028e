//! The one way berth replaces a file: write a temp file beside it, fsync, rename over the
//! target, fsync the directory. A reader sees the old bytes or the new bytes, never half.

use std::ffi::OsStr;
use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, linkat, unlinkat};

use crate::file_owner::{self, Kept, Owner};

/// Atomically replaces (or creates) `path` with `bytes`. The file is left with `mode`,
/// berth's user's, except under a root berth beside another user ([`file_owner`]): a file
/// of another user's it replaces keeps that user and its mode, and a new file in another
/// user's dir is given to that user.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let (dir, dir_path, name) = open_dir_of(path)?;
    let kept = file_owner::kept_over(&dir, name, mode)?;
    write_at(dir.as_fd(), dir_path, name, bytes, kept, Place::Over)
}

/// Creates `path` with `bytes` only if nothing is there yet (exclusive create), durably; a
/// root berth gives it to the dir's owner when that is another user ([`Owner::heir_in`]).
pub fn create_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let (dir, dir_path, name) = open_dir_of(path)?;
    let owner = Owner::heir_in_dir(&dir)?;
    write_at(
        dir.as_fd(),
        dir_path,
        name,
        bytes,
        Kept { mode, owner },
        Place::New,
    )
}

/// Where [`write_at`] puts the file it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Renamed over whatever is at the name.
    Over,
    /// At the name only if nothing is there (`AlreadyExists` otherwise).
    New,
}

/// The one way berth writes a whole file, in the open dir `dir` (named `dir_path` in
/// messages): a temp file beside the target holding `bytes`, left with `kept`'s mode and
/// owner and fsynced, then renamed over `name` (or linked to it, [`Place::New`]), and the
/// dir fsynced. A reader sees the old bytes or the new bytes, never half; nothing is
/// opened by a path, so a dir whose name is swapped meanwhile is never written through.
pub fn write_at(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    name: &OsStr,
    bytes: &[u8],
    kept: Kept,
    place: Place,
) -> io::Result<()> {
    let (temp, mut file) = create_temp(dir, dir_path)?;
    let written: io::Result<()> = (|| {
        file.write_all(bytes)?;
        file.set_permissions(Permissions::from_mode(kept.mode))?;
        if let Some(owner) = kept.owner {
            owner.give(&file)?;
        }
        file.sync_all()?;
        match place {
            Place::Over => renameat(dir, temp.as_str(), dir, name)?,
            Place::New => linkat(dir, temp.as_str(), dir, name, AtFlags::empty())?,
        }
        Ok(())
    })();
    // A linked temp name is removed too: the file lives on under `name`.
    if written.is_err() || place == Place::New {
        let _ = unlinkat(dir, temp.as_str(), UnlinkatFlags::NoRemoveDir);
    }
    written?;
    File::from(dir.try_clone_to_owned()?).sync_all()
}

/// Names tried for one temp file before a write gives up.
const TEMP_TRIES: usize = 64;

/// A new temp file in `dir` (exclusive create, never through a link, 0600 until its mode
/// is set) named with a leading dot, which keeps half-written files out of every directory
/// scan berth makes.
fn create_temp(dir: BorrowedFd<'_>, dir_path: &Path) -> io::Result<(String, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    // A name is taken only by a temp file a killed berth left (or one planted by whoever
    // writes the dir): a few tries find a free one, and the loop still ends.
    for _ in 0..TEMP_TRIES {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let temp = format!(
            ".berth-tmp-{}-{}-{nanos:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        match openat(dir, temp.as_str(), flags, Mode::S_IRUSR | Mode::S_IWUSR) {
            Ok(fd) => return Ok((temp, File::from(fd))),
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "no free temp file name in {} after {TEMP_TRIES} tries",
            dir_path.display()
        ),
    ))
}

/// `path`'s directory, opened (following a link, as the path names it), its path and
/// `path`'s last component.
fn open_dir_of(path: &Path) -> io::Result<(OwnedFd, &Path, &OsStr)> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    Ok((nix::fcntl::open(dir, flags, Mode::empty())?, dir, name))
}

/// How often [`open_or_create_at`] tries when the name comes and goes under it.
const OPEN_TRIES: usize = 8;

/// Opens `name` in the open dir `dir` with `flags` (never through a link: `O_NOFOLLOW`,
/// `O_CLOEXEC` added), creating it with `mode` if nothing is there. A file this call
/// creates is given to the dir's owner when a root berth makes it in another user's dir
/// ([`Owner::heir_in`]); one found there is never chowned (it may be a hard link to a file
/// that is not berth's).
pub fn open_or_create_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: OFlag,
    mode: Mode,
) -> io::Result<File> {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut last = Errno::ENOENT;
    // Whoever writes the dir can remove the file between the two opens: try again, a
    // bounded number of times.
    for _ in 0..OPEN_TRIES {
        match create_exclusive_at(dir, name, flags, mode) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            created => return created,
        }
        match openat(dir, name, flags, mode) {
            Ok(fd) => return Ok(File::from(fd)),
            Err(Errno::ENOENT) => last = Errno::ENOENT,
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.into())
}

/// Creates `name` in the open dir `dir` (`O_CREAT|O_EXCL|O_NOFOLLOW`, with `flags` and
/// `mode`); `AlreadyExists` if anything is there. A root berth gives it to the dir's owner
/// when that is another user ([`Owner::heir_in`]).
pub fn create_exclusive_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: OFlag,
    mode: Mode,
) -> io::Result<File> {
    let flags = flags | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags, mode)?;
    if let Some(owner) = Owner::heir_in_dir(dir)? {
        owner.give(&fd)?;
    }
    Ok(File::from(fd))
}

/// [`create_exclusive_at`] for `path`, in the directory its path names.
pub fn create_exclusive(path: &Path, flags: OFlag, mode: Mode) -> io::Result<File> {
    let (dir, _, name) = open_dir_of(path)?;
    create_exclusive_at(dir.as_fd(), name, flags, mode)
}

/// [`open_or_create_at`] for `path`, in the directory its path names.
pub fn open_or_create(path: &Path, flags: OFlag, mode: Mode) -> io::Result<File> {
    let (dir, _, name) = open_dir_of(path)?;
    open_or_create_at(dir.as_fd(), name, flags, mode)
}

mod dirs;
mod lock;

pub use dirs::{create_dirs, ensure_private_dir, open_append_private};
pub use lock::{
    BUSY_LOCK_TRIES, LOCK_WAIT, checked_lock_file, lock_exclusive, lock_exclusive_within,
    lock_open_file_within, lock_shared_within, open_lock_file, open_read_nofollow,
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::time::Instant;

    #[test]
    fn replaces_content_with_mode_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("r.json");
        write_atomic(&target, b"one", 0o600).unwrap();
        write_atomic(&target, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.json")]);
    }

    #[test]
    fn lock_files_never_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(".r.lock")).unwrap();
        assert!(lock_exclusive(&dir.path().join(".r.lock")).is_err());
        assert!(!elsewhere.exists());
    }

    #[test]
    fn a_hard_link_planted_at_a_lock_path_keeps_its_files_mode() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("passwd");
        fs::write(&other, "root:x:0:0").unwrap();
        fs::set_permissions(&other, Permissions::from_mode(0o644)).unwrap();
        fs::hard_link(&other, dir.path().join(".r.lock")).unwrap();
        drop(lock_exclusive(&dir.path().join(".r.lock")).unwrap());
        let mode = fs::metadata(&other).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o644,
            "berth changed the mode of a file linked at its lock path"
        );
        drop(lock_exclusive(&dir.path().join(".own.lock")).unwrap());
        let own = fs::metadata(dir.path().join(".own.lock")).unwrap();
        assert_eq!(own.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_held_lock_is_reported_after_the_wait_and_a_fifo_is_no_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".r.lock");
        let held = lock_exclusive(&path).unwrap();
        let started = Instant::now();
        let err = lock_exclusive_within(&path, LOCK_WAIT).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(err.to_string().contains("still held after 250 ms"), "{err}");
        assert!(started.elapsed() >= LOCK_WAIT);
        drop(held);
        lock_exclusive_within(&path, LOCK_WAIT).unwrap();
        let fifo = dir.path().join(".fifo.lock");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = lock_exclusive_within(&fifo, LOCK_WAIT).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn private_dirs_and_appends_refuse_planted_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let own = dir.path().join("own");
        std::os::unix::fs::symlink(&elsewhere, &own).unwrap();
        let err = ensure_private_dir(&own).unwrap_err().to_string();
        assert!(err.contains("is a symlink"), "{err}");
        let err = open_append_private(&own.join("decisions.jsonl")).unwrap_err();
        assert!(err.to_string().contains("is a symlink"), "{err}");
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);

        let fresh = dir.path().join("a/b");
        ensure_private_dir(&fresh).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&fresh), 0o700);
        let target = elsewhere.join("victim");
        fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, fresh.join("log")).unwrap();
        let err = open_append_private(&fresh.join("log")).unwrap_err();
        assert!(
            err.to_string().contains("does not write through links"),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        let mut file = open_append_private(&fresh.join("ok.log")).unwrap();
        file.write_all(b"line\n").unwrap();
        assert_eq!(mode(&fresh.join("ok.log")), 0o600);
    }

    /// Every bound is a number in docs/limits.md with what happens past it: the opens an
    /// open-or-create tries while the name comes and goes (a lock file, the faults pid guard,
    /// an append) are [`OPEN_TRIES`], past which it fails with `ENOENT`; no row says so.
    #[test]
    fn the_open_or_create_tries_are_in_the_limits_doc() {
        let limits =
            fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/limits.md"))
                .unwrap();
        let row = limits.lines().find(|l| {
            l.starts_with('|') && (l.contains("OPEN_TRIES") || l.contains("comes and goes"))
        });
        assert!(
            row.is_some(),
            "docs/limits.md has no row for the {OPEN_TRIES} opens of open_or_create_at"
        );
    }

    #[test]
    fn create_new_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("r.json");
        create_new(&target, b"first", 0o600).unwrap();
        let err = create_new(&target, b"second", 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&target).unwrap(), b"first");
    }

    /// A root berth beside another user (`nobody` here): the dirs and files it makes in
    /// that user's dir are that user's, a file of theirs it rewrites keeps its owner and
    /// mode, and its own file there (left by an older berth) becomes theirs when rewritten.
    /// A hard link planted at the name is no file of the dir's: its owner is not copied.
    #[test]
    fn a_root_berths_writes_in_another_users_dir_are_that_users() {
        use std::os::unix::fs::MetadataExt as _;
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: only root can give a file to another user");
            return;
        }
        const NOBODY: u32 = 65534;
        let top = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(top.path(), Some(NOBODY), Some(NOBODY)).unwrap();
        let dir = top.path().join("a/b");
        ensure_private_dir(&dir).unwrap();
        let owner = |p: &Path| {
            let m = fs::symlink_metadata(p).unwrap();
            (m.uid(), m.mode() & 0o777)
        };
        assert_eq!(owner(&top.path().join("a")), (NOBODY, 0o700));
        assert_eq!(owner(&dir), (NOBODY, 0o700));
        write_atomic(&dir.join("new.json"), b"1", 0o600).unwrap();
        create_new(&dir.join("made.json"), b"1", 0o600).unwrap();
        drop(open_append_private(&dir.join("decisions.jsonl")).unwrap());
        drop(lock_exclusive(&dir.join(".r.lock")).unwrap());
        for name in ["new.json", "made.json", "decisions.jsonl", ".r.lock"] {
            assert_eq!(owner(&dir.join(name)), (NOBODY, 0o600), "{name}");
        }
        let theirs = dir.join("theirs.json");
        fs::write(&theirs, "x").unwrap();
        std::os::unix::fs::chown(&theirs, Some(1), Some(1)).unwrap();
        fs::set_permissions(&theirs, Permissions::from_mode(0o644)).unwrap();
        write_atomic(&theirs, b"y", 0o600).unwrap();
        assert_eq!(owner(&theirs), (1, 0o644));
        let roots = dir.join("roots.json");
        fs::write(&roots, "x").unwrap();
        write_atomic(&roots, b"y", 0o600).unwrap();
        assert_eq!(owner(&roots), (NOBODY, 0o600));
        let linked = dir.join("linked.json");
        fs::hard_link(&theirs, &linked).unwrap();
        write_atomic(&linked, b"z", 0o600).unwrap();
        assert_eq!(owner(&linked), (NOBODY, 0o600));
        assert_eq!(owner(&theirs), (1, 0o644));
        let temps = fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".berth-tmp-")
            })
            .count();
        assert_eq!(temps, 0, "temp files left in {}", dir.display());
    }
}
