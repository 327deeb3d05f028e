//! Queued records whose claim the store refused as over the record cap: a record just under
//! the cap is read and gated, but adding `claimedBy` passes the cap, so its claim can never
//! be written. Left as the lane's head, it would be picked and refused on every tick and
//! nothing behind it would land. Each is remembered by the stamp of the version the claim
//! read, so selection passes it over at the cost of a stat, until the file is written
//! again; one no longer queued (removed, or moved by hand) is forgotten at the next
//! selection, so the set holds at most the queued records.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use crate::file_stamp::FileStamp;

/// The records whose claim was refused as too large, by id, with their file's stamp then.
#[derive(Debug, Default)]
pub struct Unclaimable {
    refused: Mutex<HashMap<String, FileStamp>>,
}

impl Unclaimable {
    /// The claim of `id` (its file at `path`, the version stamped `read`) was refused as
    /// `size` bytes over `cap`: that version is passed over from now on, said once. Whether
    /// it was new.
    pub fn refused(&self, id: &str, path: &Path, read: FileStamp, size: usize, cap: u64) -> bool {
        let stamp = read;
        let mut refused = self.lock();
        let new = refused.insert(id.to_owned(), stamp) != Some(stamp);
        if new {
            tracing::warn!(
                record = %id,
                "{}: not landed: claiming it would make it {size} bytes, over the {cap}-byte record limit; passed over until the file is written again",
                path.display()
            );
        }
        new
    }

    /// Whether `id` (its file at `path`) is passed over: its claim was refused and the file
    /// was not written since. A rewritten (or removed) file is forgotten.
    pub fn passes_over(&self, id: &str, path: &Path) -> bool {
        let mut refused = self.lock();
        let Some(stamp) = refused.get(id) else {
            return false;
        };
        let same = std::fs::symlink_metadata(path).is_ok_and(|m| FileStamp::of(&m) == *stamp);
        if !same {
            refused.remove(id);
        }
        same
    }

    /// Forgets every record for which `queued` (whether the queue still holds it queued)
    /// says no: the set never holds more than the queued records.
    pub fn keep_only(&self, queued: impl Fn(&str) -> bool) {
        self.lock().retain(|id, _| queued(id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, FileStamp>> {
        self.refused.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::Unclaimable;
    use crate::file_stamp::FileStamp;

    fn stamp(path: &Path) -> FileStamp {
        FileStamp::of(&std::fs::symlink_metadata(path).unwrap())
    }

    /// A queue writer who writes records just under 1 MiB under ever new ids and removes
    /// each once refused does not grow the set: a record no longer listed is forgotten.
    #[test]
    fn a_refused_record_gone_from_the_queue_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let unclaimable = Unclaimable::default();
        for n in 0..100 {
            let path = dir.path().join(format!("r{n}.json"));
            std::fs::write(&path, "{}").unwrap();
            assert!(unclaimable.refused(&format!("r{n}"), &path, stamp(&path), 1 << 21, 1 << 20));
            std::fs::remove_file(&path).unwrap();
        }
        let other = dir.path().join("other.json");
        std::fs::write(&other, "{}").unwrap();
        assert!(unclaimable.refused("other", &other, stamp(&other), 1 << 21, 1 << 20));
        // Later ticks select over a queue holding the one other record.
        for _ in 0..3 {
            unclaimable.keep_only(|id| id == "other");
            assert!(unclaimable.passes_over("other", &other));
        }
        let kept = unclaimable.lock().len();
        assert_eq!(
            kept, 1,
            "{kept} refused records are held, one is still queued"
        );
    }

    /// The version passed over is the one the claim read: a version written between that
    /// read and the refusal's bookkeeping is not passed over.
    #[test]
    fn the_version_passed_over_is_the_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let unclaimable = Unclaimable::default();
        let path = dir.path().join("r.json");
        std::fs::write(&path, "{}").unwrap();
        let read = stamp(&path);
        let temp = dir.path().join(".r.tmp");
        std::fs::write(&temp, "{\"fixed\": true}").unwrap();
        std::fs::rename(&temp, &path).unwrap();
        unclaimable.refused("r", &path, read, 1 << 21, 1 << 20);
        assert!(
            !unclaimable.passes_over("r", &path),
            "the fixed version written after the refused read is passed over"
        );
    }
}
