//! Registries of runs whose state file is gone (gstack archived the run while a fault was
//! raised): nothing syncs such a run again, so without this its registry and lock file
//! would stay in `active-faults/` for good. Once per store (the daemon makes one per pass),
//! at its first raise or clear, each is removed under its run's lock, then the run's lock
//! file once no other registry of the run is left. As for a gone state file's registry
//! found beside a live one, its faults are not resolved: its pending events stay for an
//! investigator.

use super::super::registry;
use super::run_lock::{lock_run, run_lock_name};
use crate::private_dir::PrivateDir;

/// Removes the registries in `active` whose state files are gone; a run whose lock is
/// held (by this sync, or another process) is left for a later pass. Only the first
/// [`super::MAX_NAMES_PER_LISTING`] names are looked at.
pub fn remove_gone_runs(active: &PrivateDir) {
    let Ok((names, _)) = active.names_up_to(super::MAX_NAMES_PER_LISTING) else {
        return;
    };
    for name in names {
        if !name.ends_with(".json") || name.starts_with('.') {
            continue;
        }
        let Ok(Some(before)) = active.entry(&name) else {
            continue;
        };
        if !before.is_file {
            continue;
        }
        let Some(found) = registry::of_gone_state(active, &name) else {
            continue;
        };
        let lock_name = run_lock_name(&found.run_id);
        let Ok(_guard) = lock_run(active, &lock_name) else {
            continue;
        };
        // Only the file read above: a run that synced meanwhile may have rewritten it.
        let still = active
            .entry(&name)
            .is_ok_and(|now| now.is_some_and(|now| (now.dev, now.ino) == (before.dev, before.ino)));
        if !still || active.remove_if_there(&name).is_err() {
            continue;
        }
        if !registry::others_exist(active, &found.run_id, &name)
            && let Err(e) = active.remove_if_there(&lock_name)
        {
            tracing::warn!(file = %active.join(&lock_name).display(), "lock file of a gone run not removed: {e}");
        }
    }
}
