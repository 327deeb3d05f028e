//! Pruning `<berth_dir>/logs/`: attempt logs older than [`MAX_LOG_AGE`] go, then the
//! oldest ones until the dir holds at most [`MAX_LOGS_BYTES`]. A log written within
//! [`RECENT`] stays whatever its size (a landing may still be writing it). Only regular
//! files directly in a record's dir are looked at; a link is never followed. A record's
//! dir left empty and unchanged for [`RECENT`] goes too, so the ids of records long gone
//! do not pile up as empty dirs.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub const MAX_LOG_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
pub const MAX_LOGS_BYTES: u64 = 1024 * 1024 * 1024;
/// Logs modified this recently are never removed (a step may still be writing them).
pub const RECENT: Duration = Duration::from_secs(3600);

/// What one prune removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub files: usize,
    pub bytes: u64,
    /// Empty record dirs removed.
    pub dirs: usize,
}

/// Prunes `logs_dir` as of `now` with the given bounds (the daemon passes the constants).
pub fn prune(logs_dir: &Path, now: SystemTime, max_age: Duration, max_bytes: u64) -> Pruned {
    let mut logs = attempt_logs(logs_dir);
    // Oldest first.
    logs.sort_by_key(|(_, modified, _)| *modified);
    let mut total: u64 = logs.iter().map(|(_, _, size)| size).sum();
    let mut pruned = Pruned::default();
    for (path, modified, size) in logs {
        let age = now.duration_since(modified).unwrap_or_default();
        if age < RECENT || (age < max_age && total <= max_bytes) {
            continue;
        }
        if fs::remove_file(&path).is_ok() {
            total -= size;
            pruned.files += 1;
            pruned.bytes += size;
        }
    }
    pruned.dirs = remove_empty_record_dirs(logs_dir, now);
    pruned
}

/// Removes each record dir that is empty and whose entries last changed [`RECENT`] ago or
/// more (a landing that just made one has not yet opened its log in it); `remove_dir`
/// removes only an empty dir, so a log created meanwhile keeps it.
fn remove_empty_record_dirs(logs_dir: &Path, now: SystemTime) -> usize {
    let Ok(records) = fs::read_dir(logs_dir) else {
        return 0;
    };
    records
        .flatten()
        .filter(|entry| {
            entry.metadata().is_ok_and(|meta| {
                meta.is_dir()
                    && meta.modified().is_ok_and(|changed| {
                        now.duration_since(changed).unwrap_or_default() >= RECENT
                    })
            })
        })
        .filter(|entry| fs::remove_dir(entry.path()).is_ok())
        .count()
}

/// `(path, mtime, size)` of every regular file one level under each record dir.
fn attempt_logs(logs_dir: &Path) -> Vec<(PathBuf, SystemTime, u64)> {
    let Ok(records) = fs::read_dir(logs_dir) else {
        return Vec::new();
    };
    records
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| fs::read_dir(entry.path()).ok())
        .flat_map(|files| files.flatten())
        .filter_map(|entry| {
            // `DirEntry::metadata` does not follow a link.
            let meta = entry.metadata().ok().filter(|m| m.is_file())?;
            Some((entry.path(), meta.modified().ok()?, meta.len()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_logs_go_then_the_oldest_past_the_size_cap_but_never_a_recent_one() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("rec");
        fs::create_dir(&record).unwrap();
        let day = Duration::from_secs(24 * 3600);
        let now = SystemTime::now();
        let write = |name: &str, bytes: usize, age: Duration| {
            let path = record.join(name);
            fs::write(&path, vec![b'x'; bytes]).unwrap();
            let file = fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(now - age).unwrap();
            path
        };
        let ancient = write("attempt-1-land.log", 10, 40 * day);
        let old = write("attempt-2-land.log", 600, 3 * day);
        let newer = write("attempt-3-land.log", 600, 2 * day);
        let recent = write("attempt-4-land.log", 2000, Duration::from_secs(60));
        std::os::unix::fs::symlink("/etc/hostname", record.join("link.log")).unwrap();
        let pruned = prune(dir.path(), now, 30 * day, 1000);
        assert_eq!(
            pruned,
            Pruned {
                files: 3,
                bytes: 1210,
                dirs: 0,
            }
        );
        assert!(!ancient.exists() && !old.exists() && !newer.exists());
        assert!(recent.exists(), "a log written within the hour stays");
        assert!(record.join("link.log").symlink_metadata().is_ok());
    }

    /// The dirs of records whose logs all aged out are removed once they have been empty
    /// for an hour, not kept for ever; one a landing just made stays.
    #[test]
    fn record_dirs_left_empty_go_once_unchanged_for_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        for n in 0..5 {
            let record = dir.path().join(format!("rec-{n}"));
            fs::create_dir(&record).unwrap();
            let log = record.join("attempt-1-land.log");
            fs::write(&log, "x").unwrap();
            let file = fs::File::options().write(true).open(&log).unwrap();
            file.set_modified(now - Duration::from_secs(40 * 24 * 3600))
                .unwrap();
        }
        let fresh = dir.path().join("just-made");
        fs::create_dir(&fresh).unwrap();
        let pruned = prune(dir.path(), now, MAX_LOG_AGE, MAX_LOGS_BYTES);
        assert_eq!((pruned.files, pruned.dirs), (5, 0), "emptied just now");
        let later = now + RECENT + Duration::from_secs(1);
        let pruned = prune(dir.path(), later, MAX_LOG_AGE, MAX_LOGS_BYTES);
        assert_eq!(pruned.dirs, 6);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
