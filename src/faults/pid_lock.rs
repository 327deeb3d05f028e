//! The lock file that guards `learned-patterns.json` and the investigator's pattern files,
//! in gstack's format: a file created exclusively whose whole content is the holder's pid
//! (`12345`, no newline), so gstack's tooling and berth exclude each other.
//!
//! gstack never breaks this lock (its writers wait ~5 s and then skip their update), so
//! berth holds it only for one read-modify-write, and a crashed holder cannot wedge it:
//! a lock whose pid is no longer running is broken at once, and one older than
//! [`STALE_AFTER`] (a reused pid, a holder that hangs) is broken too. Breaking and
//! releasing happen under a kernel `flock` on a guard file beside it, which dies with its
//! holder: two berth processes can never both judge the same lock stale and remove a fresh
//! one taken in between, and an owner removes only its own lock (its pid, and within the
//! process the holder that took it last).
//!
//! A lock's age is its mtime's; one whose mtime is ahead of the clock (a clock stepped back,
//! a `touch -d` by whoever can write the dir) has no age to read, so it is as old as this
//! process has seen that lock file held.
//!
//! The lock path is hostile ground: it is opened without blocking and without following a
//! link, and at most [`MAX_LOCK_BYTES`] are read, so a FIFO or a link to `/dev/zero`
//! planted there is refused with an error naming the file instead of hanging the tick.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::json_file;
use crate::atomic_file;
use crate::hostile_file::ReadError;

/// A holder that has kept the lock this long is presumed gone (a reused pid) or hung:
/// one write takes milliseconds.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// How long a caller waits for a live holder, as gstack's writers do; then it gives up
/// with an error naming the holder.
pub const WAIT: Duration = Duration::from_secs(5);
/// A pid is at most 10 digits; a longer lock (an older berth's JSON one, say) is read up
/// to this and judged by its age.
pub const MAX_LOCK_BYTES: u64 = 4096;

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct PidLock {
    path: PathBuf,
    /// This holder among the process's holders of `path` over time: the file holds only
    /// the pid, so [`HOLDERS`] tells an owner whose lock was broken from its successor in
    /// the same process.
    token: u64,
}

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);
/// The token of this process's current holder of each lock path.
static HOLDERS: LazyLock<Mutex<HashMap<PathBuf, u64>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A lock file (inode, mtime) found with a future mtime, and when this process first saw it.
type Undated = (u64, SystemTime, Instant);
/// Per lock path, the last lock file found there with a future mtime: its age is how long
/// this process has seen it. One entry per lock path.
static UNDATED: LazyLock<Mutex<HashMap<PathBuf, Undated>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn holders() -> std::sync::MutexGuard<'static, HashMap<PathBuf, u64>> {
    HOLDERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why the lock was not taken or released; each names the lock or its guard file.
#[derive(Debug, thiserror::Error)]
pub enum PidLockError {
    #[error("cannot create lock {}: {source}", .path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("lock {}: {source}", .path.display())]
    Unusable {
        path: PathBuf,
        source: Box<PidLockError>,
    },
    #[error(
        "lock {} is held by {holder}; gave up after {} ms (it is broken at once when its process is gone, or once it is {} s old)",
        .path.display(), .waited.as_millis(), .stale_after.as_secs()
    )]
    Held {
        path: PathBuf,
        holder: String,
        waited: Duration,
        stale_after: Duration,
    },
    /// What is at the lock path cannot be read as a lock.
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("cannot stat: {0}")]
    Stat(io::Error),
    #[error("cannot remove: {0}")]
    Remove(io::Error),
    #[error("guard {}: {source}", .path.display())]
    Guard { path: PathBuf, source: GuardError },
    #[error("guard {} stayed locked by another process; gave up", .0.display())]
    GuardBusy(PathBuf),
}

/// Why the guard file beside a lock could not be opened or locked.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("is a symbolic link; refused")]
    Symlink,
    #[error("cannot open: {0}")]
    Open(io::Error),
    #[error("cannot stat: {0}")]
    Stat(io::Error),
    #[error("not a regular file; refused")]
    NotRegular,
    #[error("cannot lock: {0}")]
    Lock(io::Error),
}

enum Judged {
    /// The lock is gone (released, or broken just now): try again at once.
    Gone,
    /// Someone live holds it; the text says who.
    Held(String),
}

impl PidLock {
    /// Takes the lock at `path`, breaking a stale one, waiting up to `wait` for a live one.
    pub fn acquire(
        path: &Path,
        stale_after: Duration,
        wait: Duration,
    ) -> Result<PidLock, PidLockError> {
        let pid = std::process::id().to_string();
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            match atomic_file::create_new(path, pid.as_bytes(), 0o600) {
                Ok(()) => {
                    let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
                    holders().insert(path.to_owned(), token);
                    return Ok(PidLock {
                        path: path.to_owned(),
                        token,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(PidLockError::Create {
                        path: path.to_owned(),
                        source,
                    });
                }
            }
            let holder = match judge(path, stale_after, deadline) {
                Ok(Judged::Gone) => continue,
                Ok(Judged::Held(holder)) => holder,
                Err(reason) => {
                    return Err(PidLockError::Unusable {
                        path: path.to_owned(),
                        source: Box::new(reason),
                    });
                }
            };
            if Instant::now() >= deadline {
                return Err(PidLockError::Held {
                    path: path.to_owned(),
                    holder,
                    waited: wait,
                    stale_after,
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Takes the lock with the default limits.
    pub fn acquire_default(path: &Path) -> Result<PidLock, PidLockError> {
        PidLock::acquire(path, STALE_AFTER, WAIT)
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let deadline = Instant::now() + WAIT;
        let result = with_guard(&self.path, deadline, || {
            let mut holders = holders();
            let ours = holders.get(&self.path) == Some(&self.token);
            if ours {
                holders.remove(&self.path);
            }
            let Some((holder, _, _)) = read_holder(&self.path)? else {
                return Ok(());
            };
            if ours && holder.trim() == std::process::id().to_string() {
                fs::remove_file(&self.path).map_err(PidLockError::Remove)
            } else {
                tracing::warn!(lock = %self.path.display(), "our lock was broken as stale while we held it");
                Ok(())
            }
        });
        if let Err(e) = result {
            tracing::warn!(lock = %self.path.display(), "cannot release lock: {e}");
        }
    }
}

/// The lock's content, inode and modification time; `None` if it is gone.
fn read_holder(path: &Path) -> Result<Option<(String, u64, SystemTime)>, PidLockError> {
    let Some(opened) = json_file::open_regular(path, MAX_LOCK_BYTES)? else {
        return Ok(None);
    };
    let (inode, modified) = (opened.1.ino(), opened.1.modified());
    let modified = modified.map_err(PidLockError::Stat)?;
    // A half-written or foreign content is not an error: the lock is then judged by age.
    let text = json_file::read_opened(opened, MAX_LOCK_BYTES).unwrap_or_default();
    Ok(Some((text, inode, modified)))
}

/// Breaks the lock if its holder is gone or it is older than `stale_after`.
fn judge(path: &Path, stale_after: Duration, deadline: Instant) -> Result<Judged, PidLockError> {
    with_guard(path, deadline, || {
        let Some((text, inode, modified)) = read_holder(path)? else {
            return Ok(Judged::Gone);
        };
        let pid = text.trim().parse::<i32>().ok().filter(|pid| *pid > 0);
        let age = SystemTime::now()
            .duration_since(modified)
            .unwrap_or_else(|_| seen_for(path, inode, modified));
        let who = match pid {
            Some(pid) => format!("pid {pid}"),
            None => format!("an unreadable holder ({:?})", text.trim()),
        };
        let reason = match pid {
            Some(pid) if !process_alive(pid) => Some(format!("{who} is no longer running")),
            _ if age > stale_after => Some(format!(
                "{who} has held it for {} s, longer than the {} s limit",
                age.as_secs(),
                stale_after.as_secs()
            )),
            _ => None,
        };
        let Some(reason) = reason else {
            return Ok(Judged::Held(format!("{who} for {} ms", age.as_millis())));
        };
        // The file we judged, not one that replaced it meanwhile (gstack does not take
        // the guard, so it may have released and re-taken the lock).
        if fs::symlink_metadata(path).is_ok_and(|m| m.ino() == inode) {
            fs::remove_file(path).map_err(PidLockError::Remove)?;
            tracing::warn!(lock = %path.display(), "broke a stale lock: {reason}");
        }
        Ok(Judged::Gone)
    })
}

/// How long this process has seen the lock file `(inode, modified)` at `path`, whose mtime
/// is ahead of the clock.
fn seen_for(path: &Path, inode: u64, modified: SystemTime) -> Duration {
    let mut undated = UNDATED.lock().unwrap_or_else(|e| e.into_inner());
    let first = match undated.get(path) {
        Some(&(ino, at, first)) if (ino, at) == (inode, modified) => first,
        _ => {
            let now = Instant::now();
            undated.insert(path.to_owned(), (inode, modified, now));
            now
        }
    };
    first.elapsed()
}

fn guard_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.guard"))
}

/// Runs `f` holding the guard's `flock`, waiting for it no later than `deadline`.
fn with_guard<T>(
    path: &Path,
    deadline: Instant,
    f: impl FnOnce() -> Result<T, PidLockError>,
) -> Result<T, PidLockError> {
    let guard_path = guard_path(path);
    let guard = open_guard(&guard_path).map_err(|source| PidLockError::Guard {
        path: guard_path.clone(),
        source,
    })?;
    loop {
        match guard.try_lock() {
            Ok(()) => break,
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(PidLockError::GuardBusy(guard_path));
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(PidLockError::Guard {
                    path: guard_path,
                    source: GuardError::Lock(e),
                });
            }
        }
    }
    f()
}

/// The guard file, created if needed (0600; one a root berth creates in another user's dir
/// is that user's, who can then still take it), never through a link, never blocking.
fn open_guard(path: &Path) -> Result<File, GuardError> {
    let flags = OFlag::O_RDWR | OFlag::O_NONBLOCK;
    let file = atomic_file::open_or_create(path, flags, Mode::S_IRUSR | Mode::S_IWUSR).map_err(
        |e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => GuardError::Symlink,
            _ => GuardError::Open(e),
        },
    )?;
    let meta = file.metadata().map_err(GuardError::Stat)?;
    if !meta.is_file() {
        return Err(GuardError::NotRegular);
    }
    Ok(file)
}

/// `kill(pid, 0)`: no such process means dead; a permission error means someone else's
/// live process.
fn process_alive(pid: i32) -> bool {
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    fn age(path: &Path, by: Duration) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(SystemTime::now() - by)
            .unwrap();
    }

    #[test]
    fn the_lock_is_a_bare_pid_and_is_removed_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json.lock");
        let lock = PidLock::acquire_default(&path).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            std::process::id().to_string()
        );
        drop(lock);
        assert!(!path.exists());
    }

    #[test]
    fn a_dead_holder_is_broken_at_once_a_live_one_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json.lock");
        fs::write(&path, dead_pid().to_string()).unwrap();
        let started = Instant::now();
        let lock = PidLock::acquire(&path, STALE_AFTER, Duration::from_millis(200)).unwrap();
        assert!(started.elapsed() < Duration::from_millis(150));
        let err = PidLock::acquire(&path, STALE_AFTER, Duration::from_millis(50))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(lock);
        assert!(!path.exists());
    }

    #[test]
    fn an_old_lock_of_a_live_pid_or_of_no_pid_is_broken_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json.lock");
        for content in ["1", "", "garbage"] {
            fs::write(&path, content).unwrap();
            let err = PidLock::acquire(&path, STALE_AFTER, Duration::ZERO)
                .unwrap_err()
                .to_string();
            assert!(err.contains("is held by"), "{content:?}: {err}");
            age(&path, Duration::from_secs(60));
            drop(PidLock::acquire(&path, STALE_AFTER, Duration::ZERO).unwrap());
            assert!(!path.exists());
        }
    }

    #[test]
    fn a_broken_owner_does_not_remove_the_new_holders_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json.lock");
        let first = PidLock::acquire(&path, STALE_AFTER, Duration::from_millis(100)).unwrap();
        age(&path, Duration::from_secs(60));
        // The first holder looks hung: the second caller breaks its lock and takes it.
        let second = PidLock::acquire(&path, STALE_AFTER, Duration::from_millis(100)).unwrap();
        drop(first);
        assert!(
            path.exists(),
            "the first owner must not remove the second's lock"
        );
        drop(second);
        assert!(!path.exists());
    }

    /// Each would hang (FIFO) or exhaust memory (/dev/zero) if opened and read plainly.
    #[test]
    fn a_fifo_or_a_link_at_the_lock_path_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json.lock");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = PidLock::acquire(&path, STALE_AFTER, Duration::from_millis(100))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p.json.lock") && err.contains("a FIFO"),
            "{err}"
        );
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        let err = PidLock::acquire(&path, STALE_AFTER, Duration::from_millis(100))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p.json.lock") && err.contains("symbolic link"),
            "{err}"
        );
    }
}
