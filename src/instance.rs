//! One daemon per berth dir: an advisory `flock` on `<berth_dir>/daemon.lock`, held for the
//! daemon's whole life and released by the kernel when the process dies (a crash never
//! wedges it). The file holds the holder's pid and start time so a refused start, `status`
//! and `doctor` can name it.
//!
//! Two daemons on one berth dir would share the rules status, the health file, the decision
//! log and the scratch repos; the second would overwrite what the first reports.
//!
//! The lock is also the daemon's proof of life: its owner stamp names the lock file
//! ([`crate::ownership`]), and whoever can take the lock ([`probe`]) knows the daemon that
//! stamped a claim is gone.

use std::fs::{File, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::process_probe::Seen;

pub const LOCK_FILE: &str = "daemon.lock";

/// The holder's stamp is a few dozen bytes; anything longer is not berth's.
const MAX_STAMP_BYTES: u64 = 4096;

/// How long a starting daemon waits for the lock when its holder is gone but still holds
/// it through the guards of its steps: the guard's SIGTERM-to-SIGKILL grace (2 s) and its
/// wait for the group to go ([`crate::runner`]), with room for a loaded machine.
pub const STEPS_STOP_WAIT: Duration = Duration::from_secs(10);

/// How many times a start opens the lock path again when it was replaced between the open
/// and the lock: each replacement is another process's `rm` racing this start.
const REPLACED_RETRIES: u32 = 3;

/// Who holds (or last held) the instance lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub pid: u32,
    /// When that daemon started (ISO-8601 UTC).
    pub since: String,
    /// `once` or `watch`.
    pub mode: String,
    /// The holder's start in clock ticks since boot ([`crate::process_probe::start_ticks`]):
    /// a later daemon given the same pid is not the one that stamped a claim. Absent in
    /// files written before berth recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
}

impl Holder {
    /// Whether the daemon this stamp names is proven gone (its pid absent, or now another
    /// process's).
    pub fn is_gone(&self) -> bool {
        match crate::process_probe::probe(self.pid) {
            Seen::Gone => true,
            Seen::Running { start_ticks } => {
                self.start_ticks.is_some_and(|start| start != start_ticks)
            }
            Seen::Unknown(_) => false,
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} (run --{}) since {}",
            self.pid, self.mode, self.since
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(
        "another berth daemon is running on {dir}: {holder}; stop it first (or give this one its own --berth-dir)"
    )]
    Running { dir: PathBuf, holder: String },
    #[error("cannot take the instance lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

/// Which file (device and inode) a lock path named: a path can be unlinked and made again,
/// and a `flock` belongs to the file, not to its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The instance lock this process holds, if it holds one: its absolute path (what its
/// owner stamps name, [`crate::ownership::this_process`]), its file and its descriptor.
static HELD_HERE: Mutex<Option<(PathBuf, FileId, RawFd)>> = Mutex::new(None);

/// The instance lock this process holds right now, by absolute path, and the file it is.
pub fn held_here() -> Option<(PathBuf, FileId)> {
    held().as_ref().map(|(path, file, _)| (path.clone(), *file))
}

/// Runs `f` with the descriptor of the instance lock this process holds (`None` if it holds
/// none), which stays open until `f` returns. A process forked inside `f` that keeps the
/// descriptor keeps the lock held until it exits too: `flock` belongs to the open file,
/// not to the process, and is released only when its last descriptor closes. A step's
/// guard does that, so the lock is free only once the daemon and every step it started are
/// gone ([`crate::ownership`]).
pub fn with_held_fd<T>(f: impl FnOnce(Option<RawFd>) -> T) -> T {
    let held = held();
    f(held.as_ref().map(|(_, _, fd)| *fd))
}

fn held() -> std::sync::MutexGuard<'static, Option<(PathBuf, FileId, RawFd)>> {
    HELD_HERE.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for InstanceLock {
    /// Forgets the lock before its file closes (the field drops after this body), so
    /// [`with_held_fd`] never hands out a closed or reused descriptor.
    fn drop(&mut self) {
        *held() = None;
    }
}

pub fn lock_path(berth_dir: &Path) -> PathBuf {
    berth_dir.join(LOCK_FILE)
}

impl InstanceLock {
    /// Takes the lock without waiting and writes this process's stamp into it; refuses,
    /// naming the holder, when another daemon has it.
    pub fn acquire(berth_dir: &Path, mode: &str) -> Result<InstanceLock, InstanceError> {
        let path = lock_path(berth_dir);
        let io_err = |source| InstanceError::Io {
            path: path.clone(),
            source,
        };
        crate::atomic_file::ensure_private_dir(berth_dir).map_err(io_err)?;
        // The path is unlinked and made anew between the open and the lock (another
        // daemon's start racing an `rm`): the lock taken is on a file nobody else will
        // open, so it is let go and the path opened again, a bounded number of times.
        let mut attempts = 0;
        let (mut file, id) = loop {
            let file = lock_file(berth_dir, &path)?;
            let meta = file.metadata().map_err(io_err)?;
            match std::fs::symlink_metadata(&path) {
                Ok(named) if FileId::of(&named) == FileId::of(&meta) => {
                    break (file, FileId::of(&meta));
                }
                Ok(_) | Err(_) if attempts < REPLACED_RETRIES => attempts += 1,
                Ok(_) => {
                    return Err(io_err(io::Error::other(format!(
                        "it was replaced while being locked, {} times in a row",
                        REPLACED_RETRIES + 1
                    ))));
                }
                Err(e) => return Err(io_err(e)),
            }
        };
        let stamp = Holder {
            pid: std::process::id(),
            since: crate::clock::now_iso(),
            mode: mode.to_owned(),
            start_ticks: crate::process_probe::start_ticks(std::process::id()).ok(),
        };
        let mut text = serde_json::to_string(&stamp).map_err(|e| io_err(io::Error::other(e)))?;
        text.push('\n');
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        file.write_all(text.as_bytes()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        // Named by its realpath, so a checker anywhere on this machine finds it.
        *held() = std::fs::canonicalize(&path)
            .ok()
            .map(|path| (path, id, file.as_raw_fd()));
        Ok(InstanceLock { _file: file })
    }
}

/// Opens the lock file at `path` and takes its `flock`; refuses, naming the holder, when
/// another daemon has it.
fn lock_file(berth_dir: &Path, path: &Path) -> Result<File, InstanceError> {
    let io_err = |source| InstanceError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = crate::atomic_file::open_lock_file(path).map_err(io_err)?;
    // Another daemon's liveness probe holds the lock for microseconds: retried within
    // the bound, so a probe never refuses a start.
    let mut deadline = Instant::now() + crate::atomic_file::LOCK_WAIT;
    let mut draining = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => {
                let holder = read_stamp(&mut file);
                // A daemon that died mid-step leaves the lock to its steps' guards
                // until they have stopped the steps: wait for that, boundedly.
                if !draining && holder.as_ref().is_some_and(Holder::is_gone) {
                    draining = true;
                    deadline = Instant::now() + STEPS_STOP_WAIT;
                    continue;
                }
                let holder = match holder {
                    Some(h) if draining => format!(
                        "{h}, which is gone, but a landing step it started still runs after {}s (its step guard holds {}: `fuser -v` names it; a stopped guard needs SIGCONT or SIGKILL)",
                        STEPS_STOP_WAIT.as_secs(),
                        path.display()
                    ),
                    Some(h) => h.to_string(),
                    None => "a process that has not written its stamp yet".into(),
                };
                return Err(InstanceError::Running {
                    dir: berth_dir.to_owned(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
    }
    Ok(file)
}

/// What an instance lock file says about its daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Nobody holds it: no daemon runs on that berth dir.
    Free,
    /// A daemon holds it; who, when its stamp could be read.
    Held(Option<Holder>),
}

/// Probes the instance lock at `path` (a path another process may have named, so opened
/// as a hostile file: no symlink, no blocking open, a regular file of at most 4 KiB) with
/// a shared lock that is dropped at once, so a probe never blocks a starting daemon for
/// longer than the probe itself.
pub fn probe(path: &Path) -> Result<Probe, crate::hostile_file::ReadError> {
    probe_file(path).map(|(probe, _)| probe)
}

/// [`probe`], and which file the path named when it was probed.
pub fn probe_file(path: &Path) -> Result<(Probe, FileId), crate::hostile_file::ReadError> {
    let (mut file, meta) = crate::hostile_file::open_regular(path, MAX_STAMP_BYTES)?;
    let probe = match file.try_lock_shared() {
        Ok(()) => Probe::Free,
        Err(TryLockError::WouldBlock) => Probe::Held(read_stamp(&mut file)),
        Err(TryLockError::Error(e)) => return Err(e.into()),
    };
    Ok((probe, FileId::of(&meta)))
}

/// The running daemon on `berth_dir`, if any: the lock is held by someone ([`probe`]).
pub fn running(berth_dir: &Path) -> io::Result<Option<Holder>> {
    match probe(&lock_path(berth_dir)) {
        Ok(Probe::Free) => Ok(None),
        Ok(Probe::Held(holder)) => Ok(Some(holder.unwrap_or(Holder {
            pid: 0,
            since: "?".into(),
            mode: "?".into(),
            start_ticks: None,
        }))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn read_stamp(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(MAX_STAMP_BYTES).read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// Waits (≤ 10 s) until no process holds `berth_dir`'s instance lock. Another test of this
/// binary may fork a child (a lock writer waiting in `pre_exec` for origin's writers' lock,
/// ≤ 5 s) while a test holds the lock: the child shares the lock's open file description
/// until its exec closes it, so a dropped lock is free once that child has exec'd, not at
/// the drop itself.
#[cfg(test)]
pub(crate) fn wait_until_free(berth_dir: &Path) {
    let freed = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while running(berth_dir).unwrap().is_some() && std::time::Instant::now() < freed {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_acquire_names_the_first_and_a_drop_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running(dir.path()).unwrap(), None);
        let first = InstanceLock::acquire(dir.path(), "watch").unwrap();
        let holder = running(dir.path()).unwrap().expect("held");
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.mode, "watch");
        let err = InstanceLock::acquire(dir.path(), "once")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("since 20"),
            "{err}"
        );
        drop(first);
        wait_until_free(dir.path());
        assert_eq!(running(dir.path()).unwrap(), None);
        let _again = InstanceLock::acquire(dir.path(), "once").unwrap();
    }

    #[test]
    fn a_planted_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(LOCK_FILE)).unwrap();
        assert!(InstanceLock::acquire(dir.path(), "once").is_err());
        assert!(!elsewhere.exists());
    }
}
