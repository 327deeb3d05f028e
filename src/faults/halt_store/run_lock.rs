//! A run's lock file in `active-faults/`: one sync or sweep of the run's registries at a time.

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use super::super::run_id::{file_run_id, fit_stem};
use crate::atomic_file;

/// How long a run's sync waits for the run's lock: not at all. Berth holds it for
/// milliseconds, but whoever can write the faults dir can hold the locks of any number of
/// runs, and waiting for each in turn would hold up every fault round behind them. A held
/// run is synced on a later round, once its lock is free.
const RUN_LOCK_WAIT: Duration = Duration::ZERO;

/// The lock file of `run_id`'s registries in `active_dir`.
pub(super) fn run_lock_path(active_dir: &Path, run_id: &str) -> std::path::PathBuf {
    let lock_stem = format!(".{}", file_run_id(run_id));
    active_dir.join(format!("{}.lock", fit_stem(&lock_stem, ".lock".len())))
}

/// Takes the run's lock file, and makes sure it is still the file at `lock_path`: a sync
/// that found its run with nothing raised removes the lock file while holding it, so a
/// lock taken on the file it removed would guard nothing; such a lock is let go and the
/// file there now is taken instead.
pub(super) fn lock_run(lock_path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::MetadataExt as _;
    for _ in 0..3 {
        let file = atomic_file::lock_exclusive_within(lock_path, RUN_LOCK_WAIT)?;
        let held = file.metadata()?;
        match fs::symlink_metadata(lock_path) {
            Ok(there) if there.dev() == held.dev() && there.ino() == held.ino() => {
                return Ok(file);
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::WouldBlock,
        format!(
            "{} kept being replaced while it was taken",
            lock_path.display()
        ),
    ))
}

pub(super) fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
