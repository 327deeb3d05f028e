//! Hits counted back into a pattern file, and the file's whole-array rewrite, under the
//! patterns' lock.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::super::fault::kind_of;
use super::super::json_file;
use super::super::pid_lock::{self, PidLock};
use super::{LearnedError, lock_path};
use crate::atomic_file;

/// gstack's `persistHitCounts` (fault-detectors.md §4.4), once per detector call that
/// produced faults: every entry whose `category` is one of `fired` (built-in or learned,
/// each counted once per call) gets `hitCount + 1` and `lastHit = now`, including entries
/// the loader skips and entries a built-in detector of the same category suppressed. An
/// entry without a string category is skipped with a warning. Nothing happens when nothing
/// fired or the file does not exist. The rewrite is atomic, keeps unknown fields, order
/// and the file's mode, and is the only thing done under the lock.
pub fn record_hits(path: &Path, fired: &[&str]) -> Result<(), LearnedError> {
    record_hits_of_calls(path, &[fired.to_vec()])
}

/// [`record_hits`] for several detector calls at once, under one take of the lock (so one
/// wait for it at most): each entry gets one hit per call whose `fired` names its category.
pub fn record_hits_of_calls<S: AsRef<str>>(
    path: &Path,
    calls: &[Vec<S>],
) -> Result<(), LearnedError> {
    let mut counts = HitCounts::default();
    counts.add_calls(calls);
    write_counts(path, &counts, pid_lock::WAIT)
}

/// Hits per category: what one or more detector calls add to each entry of that category.
/// Kept by the fault watch while the file's lock is held by someone else, so it holds at
/// most [`MAX_PENDING_CATEGORIES`] categories.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HitCounts {
    counts: BTreeMap<String, u64>,
    /// Hits of categories past [`MAX_PENDING_CATEGORIES`], not kept.
    dropped: u64,
}

/// Categories whose hits wait for the patterns' lock; a category past it loses its hits
/// (counted in [`HitCounts::dropped`]). Categories are those of faults raised, a few dozen
/// built in plus the learned ones: far fewer in practice.
pub const MAX_PENDING_CATEGORIES: usize = 1024;

impl HitCounts {
    /// One hit per call to each category it names (once, however often it names it).
    pub fn add_calls<S: AsRef<str>>(&mut self, calls: &[Vec<S>]) {
        for fired in calls {
            let fired: BTreeSet<&str> = fired.iter().map(AsRef::as_ref).collect();
            for category in fired {
                self.add(category, 1);
            }
        }
    }

    fn add(&mut self, category: &str, hits: u64) {
        if let Some(count) = self.counts.get_mut(category) {
            *count = count.saturating_add(hits);
        } else if self.counts.len() < MAX_PENDING_CATEGORIES {
            self.counts.insert(category.to_owned(), hits);
        } else {
            self.dropped = self.dropped.saturating_add(hits);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The hits not kept because the category bound was reached, since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// How many hits are kept, over all categories.
    pub fn total(&self) -> u64 {
        self.counts
            .values()
            .fold(0, |sum, n| sum.saturating_add(*n))
    }
}

/// Adds `counts` to the entries of the pattern file at `path` (gstack's `persistHitCounts`,
/// see [`record_hits`]), waiting up to `wait` for the file's lock (a stale lock is broken
/// at once whatever `wait` is). Nothing happens when nothing was hit or the file does not
/// exist.
pub fn write_counts(path: &Path, counts: &HitCounts, wait: Duration) -> Result<(), LearnedError> {
    if counts.is_empty()
        || json_file::open_regular(path, json_file::MAX_JSON_BYTES)
            .map_err(|e| LearnedError::Load {
                path: path.to_owned(),
                source: e.into(),
            })?
            .is_none()
    {
        return Ok(());
    }
    let _lock = PidLock::acquire(&lock_path(path), pid_lock::STALE_AFTER, wait)?;
    let mut entries = read_array(path)?;
    let now = crate::clock::now_iso();
    let mut bumped = false;
    for (index, entry) in entries.iter_mut().enumerate() {
        let Value::Object(map) = entry else {
            continue;
        };
        let Some(category) = map.get("category").and_then(Value::as_str) else {
            tracing::warn!(file = %path.display(), "learned-patterns.json entry {index} missing category; its hits are not counted");
            continue;
        };
        let Some(&hits) = counts.counts.get(category) else {
            continue;
        };
        let count = match map.get("hitCount") {
            Some(Value::Number(n)) => n
                .as_u64()
                .map(|n| json!(n.saturating_add(hits)))
                .or_else(|| n.as_f64().map(|n| json!(n + hits as f64))),
            _ => None,
        };
        map.insert("hitCount".into(), count.unwrap_or(json!(hits)));
        map.insert("lastHit".into(), json!(now));
        bumped = true;
    }
    if bumped {
        write_array(path, &entries)?;
    }
    Ok(())
}

/// The raw array of a pattern file, for rewriting; a missing file is an empty array.
pub(crate) fn read_array(path: &Path) -> Result<Vec<Value>, LearnedError> {
    match json_file::read_json(path) {
        Ok(None) => Ok(Vec::new()),
        Ok(Some(Value::Array(entries))) => Ok(entries),
        Ok(Some(other)) => Err(LearnedError::NotArray {
            path: path.to_owned(),
            found: kind_of(&other),
        }),
        Err(source) => Err(LearnedError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Replaces a pattern file atomically, keeping its mode (0600 for a new one): pretty as
/// gstack writes it, or compact where pretty would be past the 8 MiB berth and gstack read
/// back (an unknown field of nested arrays, kept by every rewrite, pretty prints to ~100×
/// its size); one past that even compact is refused, the file kept as it was.
pub(crate) fn write_array(path: &Path, entries: &[Value]) -> Result<(), LearnedError> {
    let mode = std::fs::symlink_metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o777);
    let bytes = json_file::within(&entries, json_file::MAX_JSON_BYTES).map_err(|e| {
        LearnedError::Encode {
            path: path.to_owned(),
            source: e.into(),
        }
    })?;
    atomic_file::write_atomic(path, &bytes, mode).map_err(|source| LearnedError::Write {
        path: path.to_owned(),
        source,
    })
}
