//! The one way berth replaces a file: write a temp file beside it, fsync, rename over the
//! target, fsync the directory. A reader sees the old bytes or the new bytes, never half.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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

/// Makes a directory (and parents) that only its owner can enter.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, Permissions::from_mode(0o700))?;
    }
    Ok(())
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
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", lock_path.display()),
        ));
    }
    file.set_permissions(Permissions::from_mode(0o600))?;
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
    let file = open_lock_file(lock_path)?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(LOCK_RETRY)
            }
            Err(std::fs::TryLockError::WouldBlock) => {
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
    fn create_new_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("r.json");
        create_new(&target, b"first", 0o600).unwrap();
        let err = create_new(&target, b"second", 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&target).unwrap(), b"first");
    }
}
