//! A run's lock file in `active-faults/`: one sync or sweep of the run's registries at a time.

use std::fs;
use std::io;
use std::time::Duration;

use super::super::run_id::{file_run_id, fit_stem};
use super::{HaltStore, HaltStoreError, io_problem};
use crate::atomic_file;
use crate::private_dir::PrivateDir;

/// How long a run's sync waits for the run's lock: not at all. Berth holds it for
/// milliseconds, but whoever can write the faults dir can hold the locks of any number of
/// runs, and waiting for each in turn would hold up every fault round behind them. A held
/// run is synced on a later round, once its lock is free.
const RUN_LOCK_WAIT: Duration = Duration::ZERO;

/// The name of the lock file of `run_id`'s registries in `active-faults/`.
pub(super) fn run_lock_name(run_id: &str) -> String {
    let lock_stem = format!(".{}", file_run_id(run_id));
    format!("{}.lock", fit_stem(&lock_stem, ".lock".len()))
}

/// Takes the run's lock file `name` in `active`, and makes sure it is still the file there:
/// a sync that found its run with nothing raised removes the lock file while holding it,
/// so a lock taken on the file it removed would guard nothing; such a lock is let go and
/// the file there now is taken instead.
pub(super) fn lock_run(active: &PrivateDir, name: &str) -> io::Result<fs::File> {
    use std::os::unix::fs::MetadataExt as _;
    let lock_path = active.join(name);
    for _ in 0..3 {
        let file = active.open_lock_file(name)?;
        let file = atomic_file::lock_open_file_within(file, &lock_path, RUN_LOCK_WAIT)?;
        let held = file.metadata()?;
        if active
            .entry(name)?
            .is_some_and(|there| (there.dev, there.ino) == (held.dev(), held.ino()))
        {
            return Ok(file);
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

impl HaltStore {
    /// [`lock_run`], tried once a pass: a lock this pass could not take (held by another
    /// process) is said once and not tried again by its later syncs of the run, which are
    /// skipped without a line ([`HaltStoreError::SaidBefore`]). Each state file of a run is
    /// a sync of its own, and a run of 10,000 would otherwise be 10,000 tries and lines.
    pub(super) fn lock_run_once(
        &self,
        active: &PrivateDir,
        name: &str,
    ) -> Result<fs::File, HaltStoreError> {
        let path = active.join(name);
        if self.pass().locks.said(&[name]) {
            return Err(HaltStoreError::SaidBefore { path });
        }
        lock_run(active, name).map_err(|e| {
            self.pass().locks.first(&[name]);
            io_problem("lock", &path)(e)
        })
    }
}
