//! Registries of runs whose state file is gone (gstack archived the run while a fault was
//! raised): nothing syncs such a run again, so without this its registry and lock file
//! would stay in `active-faults/` for good. Once per store (the daemon makes one per pass),
//! at its first raise or clear, each is removed under its run's lock, then the run's lock
//! file once no other registry of the run is left. As for a gone state file's registry
//! found beside a live one, its faults are not resolved: its pending events stay for an
//! investigator.
//!
//! Whoever writes the faults dir can plant registries of up to 8 MiB under every name a
//! listing reads (hard links: one file's disk). So a registry is read once per stamp
//! ([`FileStamp`]) and judged by its source alone, which each pass stats; and a pass reads
//! at most [`MAX_SWEEP_READ_BYTES`] of registries it has not judged yet, leaving the rest
//! to the next passes.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

use super::super::json_file::MAX_JSON_BYTES;
use super::super::read_budget::ReadBudget;
use super::super::registry;
use super::run_lock::{lock_run, run_lock_name};
use crate::file_stamp::{FileStamp, ReadStart};
use crate::private_dir::PrivateDir;

/// What one pass's sweep may read of registries it has not judged before: berth's own are
/// kilobytes, so a real `active-faults/` is judged in one pass; past it the others wait
/// for the next passes, which skip what is judged.
pub const MAX_SWEEP_READ_BYTES: u64 = 32 * 1024 * 1024;

/// The longest path a system call takes (`PATH_MAX`): a source longer than this can never
/// be found gone, so it is not kept.
const MAX_SOURCE_BYTES: usize = 4096;

/// What a registry's content tells the sweep.
#[derive(Clone, Debug)]
enum Judged {
    /// It can never be a gone state file's: not a registry, the queue's, a source no
    /// system call takes.
    Never,
    /// Gone once this state file is.
    Source(Box<str>),
}

/// The registries the last sweep of each `active-faults/` judged, by stamp: only the
/// stamps one sweep saw (at most a listing's names) are kept for the next.
static JUDGED: LazyLock<Mutex<HashMap<PathBuf, HashMap<FileStamp, Judged>>>> =
    LazyLock::new(Mutex::default);

/// One sweep's reads: what was judged, and what it may still read.
struct Pass {
    before: HashMap<FileStamp, Judged>,
    now: HashMap<FileStamp, Judged>,
    /// Stamps first read within the racy window: judged for this pass only.
    racy: HashMap<FileStamp, Judged>,
    budget: ReadBudget,
}

impl Pass {
    /// The judgement of an opened registry: from an earlier read of its stamp, else read
    /// within the budget; `None` while it waits for a later pass or could not be read.
    fn judge(&mut self, opened: (File, Metadata), start: ReadStart) -> Option<Judged> {
        let stamp = FileStamp::of(&opened.1);
        if let Some(judged) = self.now.get(&stamp).or_else(|| self.racy.get(&stamp)) {
            return Some(judged.clone());
        }
        if let Some(judged) = self.before.remove(&stamp) {
            self.now.insert(stamp, judged.clone());
            return Some(judged);
        }
        if !self.budget.spend(&opened.1) {
            return None;
        }
        let judged = match registry::read_opened(opened).ok()? {
            Some(found)
                if found.source.ends_with(".json") && found.source.len() <= MAX_SOURCE_BYTES =>
            {
                Judged::Source(found.source.into())
            }
            _ => Judged::Never,
        };
        let (_, racy) = start.judge(stamp, None);
        let kept = if racy { &mut self.racy } else { &mut self.now };
        kept.insert(stamp, judged.clone());
        Some(judged)
    }
}

/// Removes the registries in `active` whose state files are gone; a run whose lock is
/// held (by this sync, or another process) is left for a later pass. Only the first
/// [`super::MAX_NAMES_PER_LISTING`] names are looked at.
pub fn remove_gone_runs(active: &PrivateDir) {
    let Ok((names, _)) = active.names_up_to(super::MAX_NAMES_PER_LISTING) else {
        return;
    };
    let mut judged = JUDGED.lock().unwrap_or_else(|e| e.into_inner());
    let mut pass = Pass {
        before: judged.remove(active.path()).unwrap_or_default(),
        now: HashMap::new(),
        racy: HashMap::new(),
        budget: ReadBudget::new(MAX_SWEEP_READ_BYTES),
    };
    for name in names {
        if !name.ends_with(".json") || !registry::may_be_registry_name(&name) {
            continue;
        }
        let start = ReadStart::now();
        let Ok(opened) = active.open_regular(&name, MAX_JSON_BYTES) else {
            continue;
        };
        let before = opened.1.clone();
        if let Some(Judged::Source(source)) = pass.judge(opened, start)
            && registry::source_is_gone(&source)
            && pass.budget.spend(&before)
        {
            remove_gone(active, &name, &before);
        }
    }
    if pass.budget.waiting() > 0 {
        tracing::warn!(
            dir = %active.path().display(),
            "{} registries not looked at for a gone run this pass: the sweep read its {MAX_SWEEP_READ_BYTES} bytes; they are read by the next passes",
            pass.budget.waiting()
        );
    }
    judged.insert(active.path().to_owned(), pass.now);
}

/// Removes the registry `name` whose state file is gone, found as `before`, under its
/// run's lock (read again for its run id: only a registry to remove is read twice); then the run's lock file once no other registry of the run is left.
fn remove_gone(active: &PrivateDir, name: &str, before: &Metadata) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(Ok(Some(found))) = active
        .open_regular(name, MAX_JSON_BYTES)
        .map(registry::read_opened)
    else {
        return;
    };
    if !registry::source_is_gone(&found.source) {
        return;
    }
    let lock_name = run_lock_name(&found.run_id);
    let Ok(_guard) = lock_run(active, &lock_name) else {
        return;
    };
    // Only the file judged: a run that synced meanwhile may have rewritten it.
    let still = active
        .entry(name)
        .is_ok_and(|now| now.is_some_and(|now| (now.dev, now.ino) == (before.dev(), before.ino())));
    if !still || active.remove_if_there(name).is_err() {
        return;
    }
    if !registry::others_exist(active, &found.run_id, name)
        && let Err(e) = active.remove_if_there(&lock_name)
    {
        tracing::warn!(file = %active.join(&lock_name).display(), "lock file of a gone run not removed: {e}");
    }
}
