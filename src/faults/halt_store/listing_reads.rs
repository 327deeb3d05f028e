//! How a listing reads the event files it shows. Whoever writes the halt dir can plant an
//! 8 MiB event under every name a listing reads (hard links: one file's disk), and the
//! listings run often (the queue page's facts once a second) on the endpoint's few handler
//! threads. So a file is read once per stamp ([`FileStamp`]): within a listing, every name
//! of one file is one read; across the listings of one store, a file whose stamp did not
//! move is not read again. And a long-lived store's listing (the daemon's metrics and queue
//! page, on threads that must answer) reads at most [`MAX_LISTING_READ_BYTES`] of files it
//! had not read before; past it the others are left out, and the listing says it is partial.
//! A one-shot store (`berth faults list`, `doctor`, `faults ack`) has no next listing to
//! read the rest, so it reads every name it lists, and keeps none of its reads once the
//! listing is done: the listing holds the one copy of what it shows (each file's fields are
//! shared, [`Arc`], by the reads and the listing while it is made).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::super::json_file;
use super::super::read_budget::ReadBudget;
use super::shown::Shown;
use crate::file_stamp::{FileStamp, ReadStart, Sighting};
use crate::hostile_file::ReadError;
use crate::private_dir::PrivateDir;

/// What one listing of a long-lived store may read of event files it did not read before:
/// 64 MiB, eight events of the largest size berth reads, or thousands of the few KiB real
/// ones take.
pub const MAX_LISTING_READ_BYTES: u64 = 64 * 1024 * 1024;

/// An event file in a subdir, by the subdir's name and its own.
type Key = (&'static str, String);

/// Why an event file cannot be shown; shared by every name of the file.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Unshown {
    #[error(transparent)]
    Read(Arc<ReadError>),
    #[error(transparent)]
    NotJson(Arc<serde_json::Error>),
}

/// What a listing took from one event file: its shown fields, or why it cannot be read.
#[derive(Clone, Debug)]
struct Read {
    seen: Sighting,
    /// Whether the stamp proves the content (it was not racy when read).
    trusted: bool,
    shown: Result<Arc<Shown>, Unshown>,
}

/// The event files as the last listing of a store read them: only the names that listing
/// read are kept, each with no more than it shows.
#[derive(Debug, Default)]
pub struct ReadCache {
    files: Mutex<HashMap<Key, Read>>,
}

/// One listing's reads.
pub struct ListingReads<'a> {
    cache: &'a ReadCache,
    before: HashMap<Key, Read>,
    now: HashMap<Key, Read>,
    /// The name each stamp was read under in this listing.
    by_stamp: HashMap<FileStamp, Key>,
    budget: ReadBudget,
    /// Whether the reads are kept for the store's next listing (a long-lived store's).
    keep: bool,
}

impl<'a> ListingReads<'a> {
    /// Files left unread past the budget.
    pub fn skipped(&self) -> usize {
        self.budget.waiting()
    }

    /// A listing that reads at most `budget` bytes of files it did not read before, or every
    /// file for `None` (a one-shot store: no next listing would read the rest, or use its
    /// reads).
    pub fn start(cache: &'a ReadCache, budget: Option<u64>) -> ListingReads<'a> {
        let before = std::mem::take(&mut *cache.files.lock().unwrap_or_else(|e| e.into_inner()));
        ListingReads {
            cache,
            before,
            now: HashMap::new(),
            by_stamp: HashMap::new(),
            budget: ReadBudget::new(budget.unwrap_or(u64::MAX)),
            keep: budget.is_some(),
        }
    }

    /// The shown fields of `name` in `dir` (the subdir `sub`), or why it cannot be read;
    /// `None` when nothing is there or it was left unread past the budget.
    pub fn shown(
        &mut self,
        dir: &PrivateDir,
        sub: &'static str,
        name: &str,
    ) -> Option<Result<Arc<Shown>, Unshown>> {
        let start = ReadStart::now();
        let (file, meta) = match dir.open_regular(name, json_file::MAX_JSON_BYTES) {
            Ok(opened) => opened,
            Err(e) if e.is_not_found() => return None,
            Err(e) => return Some(Err(Unshown::Read(Arc::new(e)))),
        };
        let stamp = FileStamp::of(&meta);
        let key = (sub, name.to_owned());
        let last = self.before.remove(&key);
        if let Some(last) = last.as_ref().filter(|l| l.trusted && l.seen.stamp == stamp) {
            self.by_stamp.insert(stamp, key.clone());
            self.now.insert(key, last.clone());
            return Some(last.shown.clone());
        }
        if let Some(read) = self.by_stamp.get(&stamp).and_then(|k| self.now.get(k)) {
            return Some(read.shown.clone());
        }
        if !self.budget.spend(&meta) {
            return None;
        }
        let shown = json_file::read_opened((file, meta), json_file::MAX_JSON_BYTES)
            .map_err(|e| Unshown::Read(Arc::new(e)))
            .and_then(|text| Shown::parse(&text).map_err(|e| Unshown::NotJson(Arc::new(e))))
            .map(Arc::new);
        let (seen, racy) = start.judge(stamp, last.as_ref().map(|l| &l.seen));
        let read = Read {
            seen,
            trusted: !racy,
            shown: shown.clone(),
        };
        self.by_stamp.insert(stamp, key.clone());
        self.now.insert(key, read);
        Some(shown)
    }
}

impl Drop for ListingReads<'_> {
    /// Keeps this listing's reads for the store's next one, a long-lived store's only.
    fn drop(&mut self) {
        if !self.keep {
            return;
        }
        let now = std::mem::take(&mut self.now);
        *self.cache.files.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }
}
