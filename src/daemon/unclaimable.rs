//! Queued records whose claim the store refused as over the record cap: a record just under
//! the cap is read and gated, but adding `claimedBy` passes the cap, so its claim can never
//! be written. Left as the lane's head, it would be picked and refused on every tick and
//! nothing behind it would land. Each is remembered by the stamp of the version the claim
//! read, so selection passes it over at the cost of a stat, until the file is written
//! again. Each tick forgets the ones whose file moved or went, so the set holds at most
//! the records still in the queue as they were refused.
//!
//! Nobody would see such a record after the one warning, so the set is shown where
//! operators look for stuck records: the `berth_records_passed_over` gauge (by reason) and
//! `<berth dir>/`[`PASSED_OVER_FILE`], which `berth status` and the queue page list. The file
//! is rewritten only when the set changed, at most once a tick ([`Unclaimable::flush`]), and
//! never past the bytes its readers read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::published::{self, ReadPublishedError};
use crate::file_stamp::FileStamp;
use crate::telemetry::Telemetry;

/// The file `berth status` and the queue page read.
pub const PASSED_OVER_FILE: &str = "passed-over.json";

/// The records the published file names (the gauge counts them all): about 300 bytes each.
pub const MAX_PASSED_OVER_LISTED: usize = 1000;

/// The most the file holds, written and read: the daemon lists fewer records rather than
/// pass it, and a larger file is not berth's own (`status` refuses to read it).
const MAX_PASSED_OVER_FILE_BYTES: u64 = 1024 * 1024;

/// Why selection passes a queued record over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PassOverReason {
    /// Adding `claimedBy` would take the record over the store's size cap.
    ClaimTooLarge,
}

impl PassOverReason {
    /// The gauge's `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            PassOverReason::ClaimTooLarge => "claim_too_large",
        }
    }
}

/// One record passed over, as `berth status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassedOverLine {
    pub record: String,
    pub file: String,
    pub reason: PassOverReason,
    /// What the reason comes to for this record (sizes, the cap).
    pub detail: String,
    pub since: String,
}

impl PassedOverLine {
    /// `passed over: <record> (<file>): <detail> (since <since>); …`, for `status` and the page.
    pub fn line(&self) -> String {
        format!(
            "passed over: {} ({}): {} (since {}); not landed until its file is written again or removed",
            self.record, self.file, self.detail, self.since
        )
    }
}

/// A refused record: its file's stamp when refused, and its line.
#[derive(Debug)]
struct Refused {
    path: PathBuf,
    stamp: FileStamp,
    line: PassedOverLine,
}

/// The records whose claim was refused as too large, by id.
#[derive(Debug)]
pub struct Unclaimable {
    refused: Mutex<HashMap<String, Refused>>,
    /// The set changed since the file was last written.
    changed: AtomicBool,
    file: PathBuf,
    telemetry: Arc<Telemetry>,
}

impl Unclaimable {
    /// None passed over yet: a previous daemon's list is removed, the gauge is 0.
    pub fn new(berth_dir: &Path, telemetry: Arc<Telemetry>) -> Unclaimable {
        let unclaimable = Unclaimable {
            refused: Mutex::default(),
            changed: AtomicBool::new(true),
            file: berth_dir.join(PASSED_OVER_FILE),
            telemetry,
        };
        unclaimable.flush();
        unclaimable
    }

    /// The claim of `id` (its file at `path`, the version stamped `stamp`) was refused as
    /// `size` bytes over `cap`: that version is passed over from now on, said once. Whether
    /// it was new.
    pub fn refused(&self, id: &str, path: &Path, stamp: FileStamp, size: usize, cap: u64) -> bool {
        let detail = format!(
            "claiming it would make it {size} bytes, over the {cap}-byte record limit a claim is held to (1 MiB less its verdict's room)"
        );
        let line = PassedOverLine {
            record: id.to_owned(),
            file: path.display().to_string(),
            reason: PassOverReason::ClaimTooLarge,
            detail,
            since: crate::clock::now_iso(),
        };
        let refused = Refused {
            path: path.to_owned(),
            stamp,
            line,
        };
        let new = self
            .lock()
            .insert(id.to_owned(), refused)
            .is_none_or(|old| old.stamp != stamp);
        if new {
            tracing::warn!(
                record = %id,
                "{}: not landed: claiming it would make it {size} bytes, over the {cap}-byte record limit a claim is held to; passed over until the file is written again",
                path.display()
            );
            self.changed();
        }
        new
    }

    /// Whether `id` (its file at `path`) is passed over: its claim was refused and the file
    /// was not written since. A rewritten (or removed) file is forgotten.
    pub fn passes_over(&self, id: &str, path: &Path) -> bool {
        let mut refused = self.lock();
        let Some(entry) = refused.get(id) else {
            return false;
        };
        let same = entry.path == path && unchanged(entry);
        if !same {
            refused.remove(id);
            drop(refused);
            self.changed();
        }
        same
    }

    /// Once a tick: forgets every record whose file was written or removed since its claim
    /// was refused (one a tick no longer selects would stay listed, and held, otherwise; a
    /// stat each), then [`flush`](Self::flush)es.
    pub fn sweep(&self) {
        let mut refused = self.lock();
        let before = refused.len();
        refused.retain(|_, entry| unchanged(entry));
        let changed = refused.len() != before;
        drop(refused);
        if changed {
            self.changed();
        }
        self.flush();
    }

    /// The set changed: the gauge says so now, the file at the next [`flush`](Self::flush).
    fn changed(&self) {
        let count = self.lock().len();
        self.telemetry
            .passed_over(PassOverReason::ClaimTooLarge.label(), count);
        self.changed.store(true, Ordering::Relaxed);
    }

    /// Rewrites the published list if the set changed since it was last written: the first
    /// [`MAX_PASSED_OVER_LISTED`] records by id, fewer if they would pass
    /// [`MAX_PASSED_OVER_FILE_BYTES`].
    pub fn flush(&self) {
        if !self.changed.swap(false, Ordering::Relaxed) {
            return;
        }
        let mut lines: Vec<PassedOverLine> = self.lock().values().map(|r| r.line.clone()).collect();
        self.telemetry
            .passed_over(PassOverReason::ClaimTooLarge.label(), lines.len());
        lines.sort_by(|a, b| a.record.cmp(&b.record));
        lines.truncate(MAX_PASSED_OVER_LISTED);
        if !published::publish_within(&self.file, &mut lines, MAX_PASSED_OVER_FILE_BYTES) {
            // The file still shows an older set: the next tick writes it again.
            self.changed.store(true, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Refused>> {
        self.refused.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether the entry's file still has the stamp it had when its claim was refused.
fn unchanged(entry: &Refused) -> bool {
    std::fs::symlink_metadata(&entry.path).is_ok_and(|m| FileStamp::of(&m) == entry.stamp)
}

/// The records a daemon published as passed over in `berth_dir` (none if no file).
pub fn read(berth_dir: &Path) -> Result<Vec<PassedOverLine>, ReadPublishedError> {
    published::read(
        &berth_dir.join(PASSED_OVER_FILE),
        MAX_PASSED_OVER_FILE_BYTES,
    )
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Duration;

    use super::Unclaimable;
    use crate::file_stamp::FileStamp;
    use crate::telemetry::{Sources, Telemetry};

    fn stamp(path: &Path) -> FileStamp {
        FileStamp::of(&std::fs::symlink_metadata(path).unwrap())
    }

    /// A record file `<id>.json` in `dir`.
    fn record_file(dir: &Path, id: &str) -> PathBuf {
        let path = dir.join(format!("{id}.json"));
        std::fs::write(&path, "{}").unwrap();
        path
    }

    fn unclaimable(berth_dir: &Path) -> Unclaimable {
        let sources = Sources {
            berth_dir: berth_dir.to_owned(),
            halts: crate::faults::HaltStore::new(berth_dir.join("faults")),
            fallbacks: Arc::default(),
        };
        let telemetry = Telemetry::new(sources, "git", Duration::from_secs(1));
        Unclaimable::new(berth_dir, Arc::new(telemetry))
    }

    /// A queue writer who writes records just under 1 MiB under ever new ids and removes
    /// each once refused does not grow the set: a record no longer listed is forgotten.
    #[test]
    fn a_refused_record_gone_from_the_queue_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let unclaimable = unclaimable(dir.path());
        for n in 0..100 {
            let path = record_file(dir.path(), &format!("r{n}"));
            assert!(unclaimable.refused(&format!("r{n}"), &path, stamp(&path), 1 << 21, 1 << 20));
            std::fs::remove_file(&path).unwrap();
        }
        let other = record_file(dir.path(), "other");
        assert!(unclaimable.refused("other", &other, stamp(&other), 1 << 21, 1 << 20));
        // Later ticks over a queue holding the one other record.
        for _ in 0..3 {
            unclaimable.sweep();
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
        let unclaimable = unclaimable(dir.path());
        let path = record_file(dir.path(), "r");
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

    /// The daemon lists at most 1,000 records; `berth status` and the queue page read what
    /// it wrote: with ids of the longest kind (249 bytes) in a queue dir of 300 bytes, the
    /// reader's 1 MiB cap must still hold the list.
    #[test]
    fn the_list_the_daemon_writes_is_one_its_readers_read() {
        let dir = tempfile::tempdir().unwrap();
        let unclaimable = unclaimable(dir.path());
        let probe = record_file(dir.path(), "probe");
        let queue = std::path::Path::new("/srv").join("q".repeat(295));
        for n in 0..super::MAX_PASSED_OVER_LISTED {
            let id = format!("{n:04}{}", "r".repeat(crate::store::MAX_ID_LEN - 4));
            let path = queue.join(format!("{id}.json"));
            unclaimable.refused(&id, &path, stamp(&probe), 1_048_000, 1_044_480);
        }
        unclaimable.flush();
        let written = std::fs::metadata(dir.path().join(super::PASSED_OVER_FILE))
            .unwrap()
            .len();
        let read = super::read(dir.path());
        assert!(
            read.as_ref()
                .is_ok_and(|l| l.len() > super::MAX_PASSED_OVER_LISTED / 2),
            "the daemon wrote {written} bytes that its readers refuse: {:?}",
            read.map(|l| l.len())
        );
    }

    /// A write of the list that fails (the disk full, here a directory in the file's place)
    /// is made again at a later tick: the set it failed to show is not hidden until the set
    /// next changes.
    #[test]
    fn a_list_that_failed_to_be_written_is_written_at_a_later_tick() {
        let dir = tempfile::tempdir().unwrap();
        let unclaimable = unclaimable(dir.path());
        let file = dir.path().join(super::PASSED_OVER_FILE);
        std::fs::create_dir(&file).unwrap();
        let path = record_file(dir.path(), "r");
        assert!(unclaimable.refused("r", &path, stamp(&path), 1 << 21, 1 << 20));
        unclaimable.sweep();
        std::fs::remove_dir(&file).unwrap();
        for _ in 0..3 {
            unclaimable.sweep();
            assert!(unclaimable.passes_over("r", &path));
        }
        let listed = super::read(dir.path()).unwrap();
        assert_eq!(
            listed.len(),
            1,
            "a record passed over for three ticks is not listed: the failed write was never made again"
        );
    }

    /// Refusals write nothing by themselves: the list is written at the tick's flush, once,
    /// and only if the set changed since.
    #[test]
    fn the_list_is_written_once_a_tick_and_only_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let unclaimable = unclaimable(dir.path());
        let file = dir.path().join(super::PASSED_OVER_FILE);
        let path = record_file(dir.path(), "r");
        for n in 0..50 {
            unclaimable.refused(&format!("r{n}"), &path, stamp(&path), 1 << 21, 1 << 20);
        }
        assert!(
            !file.exists(),
            "a refusal wrote the list before the tick's flush"
        );
        unclaimable.sweep();
        let first = stamp(&file);
        unclaimable.refused("r0", &path, stamp(&path), 1 << 21, 1 << 20);
        unclaimable.sweep();
        assert_eq!(stamp(&file), first, "an unchanged list was written again");
        assert_eq!(super::read(dir.path()).unwrap().len(), 50);
    }
}
