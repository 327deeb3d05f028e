//! Advisory lock files (a record's `.<id>.lock`, the halt dir's, berth's own), opened
//! without following a link or blocking on a FIFO, and taken within a bound where others
//! may hold them.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// How long berth waits for an advisory lock another process holds on a file in a
/// directory others can write (a queue record, the halt dir), before it gives up and
/// reports the lock as held. Berth's own writes hold such a lock for milliseconds.
pub const LOCK_WAIT: Duration = Duration::from_millis(250);

/// How often a held lock is tried again within its wait.
const LOCK_RETRY: Duration = Duration::from_millis(10);

/// Opens (creating if needed, mode 0600) a file to hold an advisory lock on. O_NOFOLLOW:
/// a planted symlink must not make berth create or chmod a file elsewhere; O_NONBLOCK
/// and a type check on the handle: a FIFO planted at the lock path must not hang the open.
/// One a root berth creates in another user's dir is given to that user
/// ([`super::open_or_create_at`]), who can then still lock it.
pub fn open_lock_file(lock_path: &Path) -> io::Result<File> {
    let flags = OFlag::O_RDWR | OFlag::O_NONBLOCK;
    let file = super::open_or_create(lock_path, flags, Mode::S_IRUSR | Mode::S_IWUSR)?;
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
