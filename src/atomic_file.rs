//! The one way berth replaces a file: write a temp file beside it, fsync, rename over the
//! target, fsync the directory. A reader sees the old bytes or the new bytes, never half.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt as _, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// Atomically replaces (or creates) `path` with `bytes`, leaving it with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let (temp, dir) = durable_temp_beside(path, bytes, mode)?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Creates `path` with `bytes` only if nothing is there yet (exclusive create), durably.
pub fn create_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let (temp, dir) = durable_temp_beside(path, bytes, mode)?;
    temp.persist_noclobber(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// A temp file in `path`'s directory holding `bytes` with `mode`, already fsynced, ready
/// to be renamed over (or next to) `path`.
fn durable_temp_beside<'p>(
    path: &'p Path,
    bytes: &[u8],
    mode: u32,
) -> io::Result<(tempfile::NamedTempFile, &'p Path)> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // A leading dot keeps half-written files out of every directory scan berth makes.
    let mut temp = tempfile::Builder::new()
        .prefix(".berth-tmp-")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    temp.as_file().sync_all()?;
    Ok((temp, dir))
}

/// Makes a directory (and parents) that only its owner can enter: created 0700, an
/// existing one tightened to 0700. A symlink planted in its place is refused, so nothing
/// berth writes there lands in a directory someone else chose.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a symlink; berth keeps its files only in a real directory (remove the link)",
                dir.display()
            ),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Opens a file of berth's own for appending (a log, the decision log): its directory
/// private, the file created 0600 (an existing one tightened), never through a symlink
/// (`O_NOFOLLOW`) and never anything but a regular file (a FIFO does not block the open).
pub fn open_append_private(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_private_dir(dir)?;
    }
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symlink; berth does not write through links",
                    path.display()
                ),
            ),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How long berth waits for an advisory lock another process holds on a file in a
/// directory others can write (a queue record, the halt dir), before it gives up and
/// reports the lock as held. Berth's own writes hold such a lock for milliseconds.
pub const LOCK_WAIT: Duration = Duration::from_millis(250);

/// How often a held lock is tried again within its wait.
const LOCK_RETRY: Duration = Duration::from_millis(10);

/// Opens (creating if needed, mode 0600) a file to hold an advisory lock on. O_NOFOLLOW:
/// a planted symlink must not make berth create or chmod a file elsewhere; O_NONBLOCK
/// and a type check on the handle: a FIFO planted at the lock path must not hang the open.
pub fn open_lock_file(lock_path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(lock_path)?;
    checked_lock_file(file, lock_path)
}

/// The checks [`open_lock_file`] makes on the handle it opened (`lock_path` names it in
/// messages): a regular file, tightened to 0600 unless it has other links.
pub fn checked_lock_file(file: File, lock_path: &Path) -> io::Result<File> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", lock_path.display()),
        ));
    }
    // A hard link planted at the lock path names a file that is not berth's: its mode is
    // left alone (a root daemon would otherwise make a linked `/etc/passwd` 0600).
    if meta.nlink() == 1 && meta.mode() & 0o7777 != 0o600 {
        file.set_permissions(Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Opens a file in one of berth's own dirs for reading: never through a symlink, never
/// blocking on a FIFO planted in its place.
pub fn open_read_nofollow(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// Takes an exclusive advisory lock on a lock file, waiting for it; the lock is released
/// when the returned file is dropped, including when the process dies. Only for locks
/// that berth's own processes hold; see [`lock_exclusive_within`] for the others.
pub fn lock_exclusive(lock_path: &Path) -> io::Result<File> {
    let file = open_lock_file(lock_path)?;
    file.lock()?;
    Ok(file)
}

/// Takes an exclusive advisory lock, trying for at most `wait`: a lock someone else
/// holds longer is an error of kind `WouldBlock`, never a hang.
pub fn lock_exclusive_within(lock_path: &Path, wait: Duration) -> io::Result<File> {
    lock_open_file_within(open_lock_file(lock_path)?, lock_path, wait)
}

/// [`lock_exclusive_within`] for a lock file the caller opened itself.
pub fn lock_open_file_within(file: File, lock_path: &Path, wait: Duration) -> io::Result<File> {
    lock_within(file, lock_path, wait, File::try_lock)
}

/// Takes a shared advisory lock on a lock file the caller opened (read-only will do),
/// trying for at most `wait`, as [`lock_exclusive_within`] does.
pub fn lock_shared_within(file: File, lock_path: &Path, wait: Duration) -> io::Result<File> {
    lock_within(file, lock_path, wait, File::try_lock_shared)
}

/// Tries to take an advisory lock that found it held by another process
/// (`berth_lock_busy_tries_total`): each try of a bounded wait counts, so a wait that
/// should have been one try shows as many.
pub static BUSY_LOCK_TRIES: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

fn lock_within(
    file: File,
    lock_path: &Path,
    wait: Duration,
    try_lock: fn(&File) -> Result<(), std::fs::TryLockError>,
) -> io::Result<File> {
    let deadline = Instant::now() + wait;
    loop {
        match try_lock(&file) {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                BUSY_LOCK_TRIES.inc();
                std::thread::sleep(LOCK_RETRY)
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                BUSY_LOCK_TRIES.inc();
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "{} is locked by another process (still held after {} ms)",
                        lock_path.display(),
                        wait.as_millis()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn create_new_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("r.json");
        create_new(&target, b"first", 0o600).unwrap();
        let err = create_new(&target, b"second", 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&target).unwrap(), b"first");
    }
}
