//! Queued records whose claim the store refused as over the record cap: a record just under
//! the cap is read and gated, but adding `claimedBy` passes the cap, so its claim can never
//! be written. Left as the lane's head, it would be picked and refused on every tick and
//! nothing behind it would land. Each is remembered by the stamp of its file, so selection
//! passes it over at the cost of a stat, until the file is written again.

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
    /// The claim of `id` (its file at `path`) was refused as `size` bytes over `cap`: it is
    /// passed over from now on, said once per version of its file. Whether it was new.
    pub fn refused(&self, id: &str, path: &Path, size: usize, cap: u64) -> bool {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return false;
        };
        let stamp = FileStamp::of(&meta);
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, FileStamp>> {
        self.refused.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
