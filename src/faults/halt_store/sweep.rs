//! Registries of runs whose state file is gone (gstack archived the run while a fault was
//! raised): nothing syncs such a run again, so without this its registry and lock file
//! would stay in `active-faults/` for good. Once per store (the daemon makes one per pass),
//! at its first raise or clear, each is removed under its run's lock, then the run's lock
//! file once no other registry of the run is left. As for a gone state file's registry
//! found beside a live one, its faults are not resolved: its pending events stay for an
//! investigator.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use super::super::registry;
use super::run_lock::{lock_run, remove_if_there, run_lock_path};

/// Removes the registries in `active_dir` whose state files are gone; a run whose lock is
/// held (by this sync, or another process) is left for a later pass.
pub fn remove_gone_runs(active_dir: &Path) {
    let Ok(entries) = fs::read_dir(active_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_registry = name
            .to_str()
            .is_some_and(|n| n.ends_with(".json") && !n.starts_with('.'));
        let Ok(before) = entry.metadata() else {
            continue;
        };
        if !is_registry || !before.is_file() {
            continue;
        }
        let path = entry.path();
        let Some(found) = registry::of_gone_state(&path) else {
            continue;
        };
        let lock_path = run_lock_path(active_dir, &found.run_id);
        let Ok(_guard) = lock_run(&lock_path) else {
            continue;
        };
        // Only the file read above: a run that synced meanwhile may have rewritten it.
        let still = fs::symlink_metadata(&path)
            .is_ok_and(|now| (now.dev(), now.ino()) == (before.dev(), before.ino()));
        if !still || remove_if_there(&path).is_err() {
            continue;
        }
        if !registry::others_exist(active_dir, &found.run_id, &path)
            && let Err(e) = remove_if_there(&lock_path)
        {
            tracing::warn!(file = %lock_path.display(), "lock file of a gone run not removed: {e}");
        }
    }
}
