//! Hits counted back into a pattern file, and the file's whole-array rewrite, under the
//! patterns' lock.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{Value, json};

use super::super::fault::kind_of;
use super::super::json_file;
use super::super::pid_lock::PidLock;
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
    if calls.iter().all(Vec::is_empty)
        || json_file::open_regular(path, json_file::MAX_JSON_BYTES)
            .map_err(|e| LearnedError::Load {
                path: path.to_owned(),
                source: e.into(),
            })?
            .is_none()
    {
        return Ok(());
    }
    let _lock = PidLock::acquire_default(&lock_path(path))?;
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
        let hits = calls
            .iter()
            .filter(|fired| fired.iter().any(|c| c.as_ref() == category))
            .count() as u64;
        if hits == 0 {
            continue;
        }
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

/// Replaces a pattern file atomically, keeping its mode (0600 for a new one).
pub(crate) fn write_array(path: &Path, entries: &[Value]) -> Result<(), LearnedError> {
    let mode = std::fs::symlink_metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o777);
    let bytes = json_file::pretty(&entries).map_err(|source| LearnedError::Encode {
        path: path.to_owned(),
        source,
    })?;
    atomic_file::write_atomic(path, &bytes, mode).map_err(|source| LearnedError::Write {
        path: path.to_owned(),
        source,
    })
}
