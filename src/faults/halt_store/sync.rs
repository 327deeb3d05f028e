//! One tick's filing of a run's faults: new ones emitted once, cleared ones resolved once,
//! the run's registry updated with what was written.

use std::cell::OnceCell;
use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use super::super::halt::HaltEvent;
use super::super::registry::{self, ActiveFault};
use super::super::run_id::{file_run_id, fit_stem};
use super::{ACTIVE_DIR, HaltStore, HaltStoreError, SyncReport, io_problem};
use crate::atomic_file;

/// How long a run's sync waits for the run's lock: not at all. Berth holds it for
/// milliseconds, but whoever can write the faults dir can hold the locks of any number of
/// runs, and waiting for each in turn would hold up every fault round behind them. A held
/// run is synced on a later round, once its lock is free.
const RUN_LOCK_WAIT: Duration = Duration::ZERO;

impl HaltStore {
    /// One tick for one run's state file (`source`; the queue dir for queue faults): files
    /// the first event of every detector id not already raised, resolves every raised
    /// detector id not among `events`, and records the new raised set. A halt id that
    /// another entry (of this registry, or of another state file's registry with the same
    /// run id) still holds is neither filed again nor resolved. Only what was written is
    /// recorded, so a failed write is retried on the next tick.
    pub fn sync_run(&self, run_id: &str, source: &str, events: &[HaltEvent]) -> SyncReport {
        let mut report = SyncReport::default();
        let active_dir = match self.ensure(ACTIVE_DIR) {
            Ok(dir) => dir,
            Err(problem) => {
                report.problems.push(problem.to_string());
                return report;
            }
        };
        let path = registry::path(&active_dir, run_id, source);
        if events.is_empty()
            && matches!(fs::symlink_metadata(&path), Err(e) if e.kind() == io::ErrorKind::NotFound)
        {
            // Nothing raised, nothing to clear: no lock file made for a run with no fault.
            return report;
        }
        let lock_stem = format!(".{}", file_run_id(run_id));
        let lock_path = active_dir.join(format!("{}.lock", fit_stem(&lock_stem, ".lock".len())));
        let _guard = match lock_run(&lock_path) {
            Ok(guard) => guard,
            Err(e) => {
                report
                    .problems
                    .push(io_problem("lock", &lock_path)(e).to_string());
                return report;
            }
        };
        let mut registry = match registry::load(&path, run_id, source) {
            Ok((registry, warning)) => {
                report.problems.extend(warning);
                registry
            }
            Err(problem) => {
                report.problems.push(problem.to_string());
                return report;
            }
        };
        // Listed only when a fault is raised or cleared: a pass over runs that changed
        // nothing then lists nothing, where listing for each run is quadratic in the runs.
        let listing = OnceCell::new();
        let elsewhere =
            || listing.get_or_init(|| registry::raised_elsewhere(&active_dir, run_id, &path));
        let mut changed = false;
        let mut current: HashSet<&str> = HashSet::new();
        for event in events {
            if !current.insert(&event.detector_id)
                || registry.active.contains_key(&event.detector_id)
            {
                continue;
            }
            let held = elsewhere().contains(&event.fault_id)
                || registry
                    .active
                    .values()
                    .any(|a| a.fault_id == event.fault_id);
            if !held {
                let Some(emitted) = counted(&mut report, self.emit(event)) else {
                    continue;
                };
                report.emitted.push((event.fault_id.clone(), emitted));
            }
            registry.active.insert(
                event.detector_id.clone(),
                ActiveFault {
                    fault_id: event.fault_id.clone(),
                    first_detected_at: event.timestamp.clone(),
                },
            );
            changed = true;
        }
        let cleared: Vec<String> = registry
            .active
            .keys()
            .filter(|id| !current.contains(id.as_str()))
            .cloned()
            .collect();
        for detector_id in cleared {
            let Some(fault_id) = registry
                .active
                .get(&detector_id)
                .map(|a| a.fault_id.clone())
            else {
                continue;
            };
            let held = elsewhere().contains(&fault_id)
                || registry
                    .active
                    .iter()
                    .any(|(id, a)| current.contains(id.as_str()) && a.fault_id == fault_id);
            if !held && !elsewhere().unread().is_empty() {
                // Another registry of the run may hold it: it stays raised (and in this
                // registry) until they can be read.
                report
                    .problems
                    .extend(elsewhere().unread().iter().map(|unread| {
                        format!(
                            "{fault_id} not resolved: a registry of the run is unreadable: {unread}"
                        )
                    }));
                continue;
            }
            if !held && !report.resolved.contains(&fault_id) {
                if counted(&mut report, self.resolve(run_id, &fault_id)).is_none() {
                    continue;
                }
                report.resolved.push(fault_id);
            }
            registry.active.remove(&detector_id);
            changed = true;
        }
        if report.withheld > 0
            && let Err(problem) = self.file_cap_event()
        {
            report.problems.push(problem.to_string());
        }
        if changed && registry.active.is_empty() {
            // Nothing raised: the registry goes, and the run's lock file with it once no
            // other registry of the run is left, so runs that come and go leave nothing.
            if let Err(e) = remove_if_there(&path) {
                report
                    .problems
                    .push(io_problem("remove", &path)(e).to_string());
            } else if !registry::others_exist(&active_dir, run_id, &path)
                && let Err(e) = remove_if_there(&lock_path)
            {
                report
                    .problems
                    .push(io_problem("remove", &lock_path)(e).to_string());
            }
        } else if changed {
            registry.updated_at = crate::clock::now_iso();
            if let Err(e) = registry::save(&path, &registry) {
                report
                    .problems
                    .push(io_problem("write", &path)(e).to_string());
            }
        }
        report
    }
}

/// What a write of the halt dir gave; a withheld write or a problem is counted in `report`
/// instead, and the fault left as it was.
fn counted<T>(report: &mut SyncReport, result: Result<T, HaltStoreError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(HaltStoreError::Withheld { .. }) => {
            report.withheld += 1;
            None
        }
        Err(problem) => {
            report.problems.push(problem.to_string());
            None
        }
    }
}

/// Takes the run's lock file, and makes sure it is still the file at `lock_path`: a sync
/// that found its run with nothing raised removes the lock file while holding it, so a
/// lock taken on the file it removed would guard nothing; such a lock is let go and the
/// file there now is taken instead.
fn lock_run(lock_path: &Path) -> io::Result<fs::File> {
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

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
