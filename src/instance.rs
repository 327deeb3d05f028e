//! One daemon per berth dir: an advisory `flock` on `<berth_dir>/daemon.lock`, held for the
//! daemon's whole life and released by the kernel when the process dies (a crash never
//! wedges it). The file holds the holder's pid and start time so a refused start, `status`
//! and `doctor` can name it.
//!
//! Two daemons on one berth dir would share the rules status, the health file, the decision
//! log and the scratch repos; the second would overwrite what the first reports.

use std::fs::{File, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const LOCK_FILE: &str = "daemon.lock";

/// The holder's stamp is a few dozen bytes; anything longer is not berth's.
const MAX_STAMP_BYTES: u64 = 4096;

/// Who holds (or last held) the instance lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub pid: u32,
    /// When that daemon started (ISO-8601 UTC).
    pub since: String,
    /// `once` or `watch`.
    pub mode: String,
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
        let mut file = crate::atomic_file::open_lock_file(&path).map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_stamp(&mut file)
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "a process that has not written its stamp yet".into());
                return Err(InstanceError::Running {
                    dir: berth_dir.to_owned(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        let stamp = Holder {
            pid: std::process::id(),
            since: crate::clock::now_iso(),
            mode: mode.to_owned(),
        };
        let mut text = serde_json::to_string(&stamp).map_err(|e| io_err(io::Error::other(e)))?;
        text.push('\n');
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        file.write_all(text.as_bytes()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        Ok(InstanceLock { _file: file })
    }
}

/// The running daemon on `berth_dir`, if any: the lock is held by someone (probed with a
/// shared lock that is dropped at once, so a probe never blocks a starting daemon for
/// longer than the probe itself).
pub fn running(berth_dir: &Path) -> io::Result<Option<Holder>> {
    let path = lock_path(berth_dir);
    let mut file = match crate::atomic_file::open_read_nofollow(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(None),
        Err(TryLockError::WouldBlock) => Ok(Some(read_stamp(&mut file).unwrap_or(Holder {
            pid: 0,
            since: "?".into(),
            mode: "?".into(),
        }))),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

fn read_stamp(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(MAX_STAMP_BYTES).read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
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
