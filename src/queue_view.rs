//! The daemon's incremental view of the queue dir: every record file it has read, keyed by
//! file name, with the stamp that identifies the content it read (device, inode, size,
//! mtime and ctime to the nanosecond). A refresh re-reads only the files whose stamp
//! changed, parses nothing else, and reports an unreadable file once per change of that
//! file, not once per tick. Files are parsed by [`QueueStore::read_named_into`] only.
//! A racy stamp ([`RACY_NS`]) is not trusted: such a file is read again on its next refresh,
//! as is one whose read the system failed (out of descriptors, say): only content read and
//! found wanting is kept as the file's answer.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use crate::record::Status;
use crate::store::{QueueStore, StoredRecord, Unreadable};

pub use crate::file_stamp::{FileStamp, RACY_NS};
use crate::file_stamp::{ReadStart, Sighting};

/// At most this many threads examine the files of one sweep.
const SWEEP_THREADS: usize = 4;
/// A sweep over fewer files than this stays on the calling thread.
const PARALLEL_SWEEP_MIN: usize = 512;
/// Names the dir listing refused (not UTF-8) the view keeps, the first by name; the rest
/// are counted. Whoever writes the queue dir can plant such names without bound, and every
/// tick hands them to the queue detectors (which name 20) and the metrics (which count).
pub const MAX_BAD_NAMES_KEPT: usize = 100;

/// What [`QueueView::examine`] found at one name.
enum Found {
    /// Nothing there any more.
    Gone,
    /// The stamp the view holds: not read.
    Same,
    /// Read anew, and whether it must be read again next refresh (its stamp was racy, or
    /// the system failed the read).
    Read(Arc<Entry>, bool),
}

/// One file as last read.
#[derive(Debug)]
struct Entry {
    seen: Sighting,
    content: Result<StoredRecord, Unreadable>,
}

/// Which files a refresh looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// Every file in the dir (a stat each; only changed ones are read).
    Sweep,
    /// Only these file names (a watcher's report), plus any file whose stamp was racy.
    Files(BTreeSet<String>),
}

/// What one refresh found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Files read (new or changed) or forgotten (removed).
    pub changed: usize,
    /// Files that became unreadable, or changed and are still unreadable, in this refresh.
    pub newly_unreadable: Vec<Unreadable>,
    /// Names not UTF-8 past the [`MAX_BAD_NAMES_KEPT`] kept, when a sweep found the names
    /// changed: counted, never named one by one.
    pub bad_names_unlisted: usize,
}

/// The records of one queue dir as of the last refresh.
#[derive(Debug, Default)]
pub struct QueueView {
    /// Behind a pointer: a record is ~600 bytes, and a map's nodes hold their values
    /// inline, half of them empty slots after sorted inserts.
    entries: BTreeMap<String, Arc<Entry>>,
    /// The entries holding a record that is not settled
    /// ([`crate::record::Record::is_settled`]), shared with `entries`: all a tick ever
    /// looks at, walked without a lookup per record, so a settled record costs a tick
    /// nothing.
    active: BTreeMap<String, Arc<Entry>>,
    /// The entries holding a queued or in-flight record, shared with `entries`: what
    /// selection, discovery and the gates walk.
    live: BTreeMap<String, Arc<Entry>>,
    /// The names of the entries whose stamp was taken too close to a write to be trusted
    /// (see [`RACY_NS`]), or whose read the system failed: re-read by every refresh until
    /// it ages, or is read.
    racy: BTreeSet<String>,
    /// Names the dir listing itself refused (not UTF-8) as the last sweep found them: the
    /// first [`MAX_BAD_NAMES_KEPT`] by name.
    bad_names: Vec<Unreadable>,
    /// How many such names the last sweep found, kept or not.
    bad_names_total: usize,
    /// Bumped whenever anything in the view changed: consumers compare it to skip work.
    generation: u64,
    /// How many files were read (parsed) since the view was made: tests count these.
    files_read: u64,
}

impl QueueView {
    pub fn new() -> QueueView {
        QueueView::default()
    }

    /// Brings the view up to date with `store`'s dir.
    pub fn refresh(&mut self, store: &QueueStore, what: &Refresh) -> Refreshed {
        let mut seen = Refreshed::default();
        let mut buffer = Vec::new();
        match what {
            Refresh::Sweep => {
                let (names, bad_names) = match store.names() {
                    Ok(listing) => listing,
                    Err(e) => {
                        // The view stays as it was: a dir that cannot be listed clears nothing.
                        tracing::error!("cannot list the queue: {e}");
                        return seen;
                    }
                };
                let total = bad_names.len();
                let bad_names = first_by_name(bad_names, MAX_BAD_NAMES_KEPT);
                if total != self.bad_names_total || bad_names != self.bad_names {
                    let before: HashSet<&str> =
                        self.bad_names.iter().map(|b| b.file.as_str()).collect();
                    seen.newly_unreadable.extend(
                        bad_names
                            .iter()
                            .filter(|b| !before.contains(b.file.as_str()))
                            .cloned(),
                    );
                    seen.bad_names_unlisted = total - bad_names.len();
                    self.bad_names = bad_names;
                    self.bad_names_total = total;
                    seen.changed += 1;
                }
                let listed: BTreeSet<&str> = names.iter().map(String::as_str).collect();
                let gone: Vec<String> = self
                    .entries
                    .keys()
                    .filter(|k| !listed.contains(k.as_str()))
                    .cloned()
                    .collect();
                for name in gone {
                    self.forget(&name);
                    seen.changed += 1;
                }
                self.sweep(store, &names, &mut seen);
            }
            Refresh::Files(names) => {
                let racy: Vec<String> = self.racy.difference(names).cloned().collect();
                for name in names.iter().chain(&racy) {
                    if crate::store::is_record_name(name) {
                        self.refresh_one(store, name, false, &mut seen, &mut buffer);
                    }
                }
            }
        }
        if seen.changed > 0 {
            self.generation += 1;
        }
        seen
    }

    /// After berth itself wrote `<id>.json` through the store: read it back, so the view
    /// holds what is on disk (and a watcher's report of that write finds nothing new).
    pub fn written(&mut self, store: &QueueStore, id: &str) {
        let mut seen = Refreshed::default();
        self.refresh_one(
            store,
            &crate::store::file_name_of(id),
            true,
            &mut seen,
            &mut Vec::new(),
        );
        if seen.changed > 0 {
            self.generation += 1;
        }
    }

    fn refresh_one(
        &mut self,
        store: &QueueStore,
        name: &str,
        force: bool,
        seen: &mut Refreshed,
        buffer: &mut Vec<u8>,
    ) {
        let found = self.examine(store, name, force, buffer);
        self.apply(name, found, seen);
    }

    /// Every name of a sweep, examined on up to [`SWEEP_THREADS`] threads when there are
    /// enough of them (a cold start reads every file; the kernel's copies dominate, and
    /// they run in parallel), then applied in name order.
    fn sweep(&mut self, store: &QueueStore, names: &[String], seen: &mut Refreshed) {
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(SWEEP_THREADS);
        let found: Vec<Found> = if threads > 1 && names.len() >= PARALLEL_SWEEP_MIN {
            let this = &*self;
            let chunk = names.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let workers: Vec<_> = names
                    .chunks(chunk)
                    .map(|part| {
                        scope.spawn(move || {
                            let mut buffer = Vec::new();
                            part.iter()
                                .map(|name| this.examine(store, name, false, &mut buffer))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|worker| match worker.join() {
                        Ok(found) => found,
                        // A worker only reads files and parses JSON; if it panicked anyway,
                        // the panic belongs to this thread.
                        Err(panic) => std::panic::resume_unwind(panic),
                    })
                    .collect()
            })
        } else {
            let mut buffer = Vec::new();
            names
                .iter()
                .map(|name| self.examine(store, name, false, &mut buffer))
                .collect()
        };
        for (name, found) in names.iter().zip(found) {
            self.apply(name, found, seen);
        }
    }

    /// What is on disk at `name` compared with the view; reads the file only if its stamp
    /// changed (or `force`, or the stamp was racy). Changes nothing.
    fn examine(&self, store: &QueueStore, name: &str, force: bool, buffer: &mut Vec<u8>) -> Found {
        let path = store.dir().join(name);
        // A file the view holds is read again only if its stamp moved; a new one is read
        // at once, its stamp taken from the handle it was read through.
        if !force && self.entries.contains_key(name) {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                // Gone (or unreachable, which reads the same to every later step).
                return Found::Gone;
            };
            if self
                .entries
                .get(name)
                .is_some_and(|e| e.seen.stamp == FileStamp::of(&meta))
                && !self.racy.contains(name)
            {
                return Found::Same;
            }
        }
        let start = ReadStart::now();
        let read = store.read_named_opened(name, buffer);
        // Not opened (refused, or gone): the stamp of what is at the path, if anything.
        let Some(meta) = read
            .opened
            .or_else(|| std::fs::symlink_metadata(&path).ok())
        else {
            return Found::Gone;
        };
        let last = self.entries.get(name).map(|e| &e.seen);
        let (seen, racy) = start.judge(FileStamp::of(&meta), last);
        let entry = Entry {
            seen,
            content: read.content,
        };
        Found::Read(Arc::new(entry), racy || read.system_failed)
    }

    fn apply(&mut self, name: &str, found: Found, seen: &mut Refreshed) {
        let (read, racy) = match found {
            Found::Same => return,
            Found::Gone => {
                if self.forget(name) {
                    seen.changed += 1;
                }
                return;
            }
            Found::Read(read, racy) => (read, racy),
        };
        self.files_read += 1;
        let before = self.entries.get(name);
        if let Err(bad) = &read.content {
            let same_report = before.is_some_and(|e| {
                e.seen.stamp == read.seen.stamp && e.content.as_ref().err() == Some(bad)
            });
            if !same_report {
                seen.newly_unreadable.push(bad.clone());
            }
        }
        let unchanged = before.is_some_and(|e| {
            e.seen.stamp == read.seen.stamp
                && match (&e.content, &read.content) {
                    (Ok(a), Ok(b)) => a.record == b.record,
                    (Err(a), Err(b)) => a == b,
                    _ => false,
                }
        });
        if !unchanged {
            seen.changed += 1;
        }
        if racy {
            self.racy.insert(name.to_owned());
        } else {
            self.racy.remove(name);
        }
        let record = read.content.as_ref().ok().map(|s| &s.record);
        if record.is_some_and(|r| !r.is_settled()) {
            self.active.insert(name.to_owned(), Arc::clone(&read));
        } else {
            self.active.remove(name);
        }
        if record.is_some_and(|r| r.status == Status::Queued || r.status.is_in_flight()) {
            self.live.insert(name.to_owned(), Arc::clone(&read));
        } else {
            self.live.remove(name);
        }
        self.entries.insert(name.to_owned(), read);
    }

    /// Drops `name` from the view; whether it was there.
    fn forget(&mut self, name: &str) -> bool {
        self.active.remove(name);
        self.live.remove(name);
        self.racy.remove(name);
        self.entries.remove(name).is_some()
    }

    /// Every readable record, by file name.
    pub fn records(&self) -> impl Iterator<Item = &StoredRecord> {
        self.entries
            .values()
            .filter_map(|e| e.content.as_ref().ok())
    }

    /// Every readable record that is not settled, by file name: what a tick works on.
    pub fn active(&self) -> impl Iterator<Item = &StoredRecord> {
        self.active.values().filter_map(|e| e.content.as_ref().ok())
    }

    /// Every queued or in-flight record, by file name.
    pub fn live(&self) -> impl Iterator<Item = &StoredRecord> {
        self.live.values().filter_map(|e| e.content.as_ref().ok())
    }

    /// Every file that is not a usable record, and why; of the names that are not UTF-8,
    /// the first [`MAX_BAD_NAMES_KEPT`] ([`Self::unreadable_unlisted`] counts the rest).
    pub fn unreadable(&self) -> Vec<Unreadable> {
        self.bad_names
            .iter()
            .cloned()
            .chain(
                self.entries
                    .values()
                    .filter_map(|e| e.content.as_ref().err().cloned()),
            )
            .collect()
    }

    /// Names not UTF-8 the last sweep found past the [`MAX_BAD_NAMES_KEPT`] kept.
    pub fn unreadable_unlisted(&self) -> usize {
        self.bad_names_total - self.bad_names.len()
    }

    /// The record `id` as last read, if it was readable.
    pub fn get(&self, id: &str) -> Option<&StoredRecord> {
        self.entries
            .get(&crate::store::file_name_of(id))
            .and_then(|e| e.content.as_ref().ok())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn files_read(&self) -> u64 {
        self.files_read
    }
}

/// The first `keep` of `names` by file name, sorted: one pass over a planted listing of any
/// size, not a sort of all of it.
fn first_by_name(mut names: Vec<Unreadable>, keep: usize) -> Vec<Unreadable> {
    if names.len() > keep {
        names.select_nth_unstable_by(keep, |a, b| a.file.cmp(&b.file));
        names.truncate(keep);
    }
    names.sort_unstable_by(|a, b| a.file.cmp(&b.file));
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_stamp::age_past_racy_window;
    use crate::record::sample::queued;
    use crate::store::{Expect, Move};

    #[test]
    fn a_refresh_reads_only_what_changed_and_reports_a_bad_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = QueueStore::new(dir.path());
        let ids: Vec<String> = (1..=5)
            .map(|pr| store.insert(&queued(pr)).unwrap())
            .collect();
        std::fs::write(dir.path().join("broken.json"), "{ nope").unwrap();
        age_past_racy_window();
        let mut view = QueueView::new();
        let first = view.refresh(&store, &Refresh::Sweep);
        assert_eq!(view.files_read(), 6);
        assert_eq!(first.newly_unreadable.len(), 1);
        assert_eq!(view.records().count(), 5);

        // Nothing changed: a sweep stats, reads nothing, reports nothing.
        let generation = view.generation();
        let again = view.refresh(&store, &Refresh::Sweep);
        assert_eq!(again, Refreshed::default());
        assert_eq!(view.files_read(), 6);
        assert_eq!(view.generation(), generation);

        // One record changed through the store: the view reads just that file back.
        store
            .transition(Move::new(&ids[2], Expect::Any, Status::Blocked), |r| {
                r.last_error = Some("x".into())
            })
            .unwrap();
        view.written(&store, &ids[2]);
        assert_eq!(view.files_read(), 7);
        assert_eq!(view.get(&ids[2]).unwrap().record.status, Status::Blocked);
        age_past_racy_window();
        let named = Refresh::Files([format!("{}.json", ids[2])].into());
        view.refresh(&store, &named);
        view.refresh(&store, &Refresh::Sweep);
        // Read once more at most, when its racy stamp aged; then never again.
        let settled = view.files_read();
        assert!(settled <= 8, "{settled}");
        view.refresh(&store, &Refresh::Sweep);
        assert_eq!(view.files_read(), settled);

        // The broken file, rewritten still broken: reported once more; removed: forgotten.
        std::fs::write(dir.path().join("broken.json"), "{ still nope").unwrap();
        let changed = view.refresh(&store, &Refresh::Files(["broken.json".into()].into()));
        assert_eq!(changed.newly_unreadable.len(), 1);
        std::fs::remove_file(dir.path().join(format!("{}.json", ids[0]))).unwrap();
        std::fs::remove_file(dir.path().join("broken.json")).unwrap();
        view.refresh(&store, &Refresh::Sweep);
        assert_eq!(view.records().count(), 4);
        assert!(view.unreadable().is_empty());
    }

    #[test]
    fn a_sweep_over_many_files_reads_each_once_and_keeps_only_live_records_active() {
        let dir = tempfile::tempdir().unwrap();
        let store = QueueStore::new(dir.path());
        let count = PARALLEL_SWEEP_MIN + 100;
        let ids: Vec<String> = (1..=count as u64)
            .map(|pr| store.insert(&queued(pr)).unwrap())
            .collect();
        // Every third record settled (abandoned), so not active.
        for id in ids.iter().step_by(3) {
            store
                .transition(Move::new(id, Expect::Any, Status::Abandoned), |_| {})
                .unwrap();
        }
        for n in 0..3 {
            std::fs::write(dir.path().join(format!("broken-{n}.json")), "{ nope").unwrap();
        }
        age_past_racy_window();
        let mut view = QueueView::new();
        let first = view.refresh(&store, &Refresh::Sweep);
        assert_eq!(view.files_read(), count as u64 + 3);
        assert_eq!(first.newly_unreadable.len(), 3);
        assert_eq!(view.records().count(), count);
        let settled = count.div_ceil(3);
        assert_eq!(view.active().count(), count - settled);
        assert!(view.active().all(|s| !s.record.is_settled()));

        // Nothing changed: the next sweep reads nothing and reports nothing.
        assert_eq!(view.refresh(&store, &Refresh::Sweep), Refreshed::default());
        assert_eq!(view.files_read(), count as u64 + 3);

        // A live record that settles leaves the active set; a removed one leaves both.
        store
            .transition(Move::new(&ids[1], Expect::Any, Status::Abandoned), |_| {})
            .unwrap();
        view.written(&store, &ids[1]);
        std::fs::remove_file(dir.path().join(format!("{}.json", ids[2]))).unwrap();
        view.refresh(&store, &Refresh::Sweep);
        assert_eq!(view.active().count(), count - settled - 2);
        assert_eq!(view.records().count(), count - 1);
        // Every live record is queued here; one blocked stays active but is not live.
        assert_eq!(view.live().count(), count - settled - 2);
        store
            .transition(Move::new(&ids[4], Expect::Any, Status::Blocked), |_| {})
            .unwrap();
        view.written(&store, &ids[4]);
        assert_eq!(view.active().count(), count - settled - 2);
        assert_eq!(view.live().count(), count - settled - 3);
        assert!(view.live().all(|s| s.record.status == Status::Queued));
    }

    /// Names that are not UTF-8 (anyone who writes the queue dir can plant them without
    /// bound): the view keeps the first 100 by name and counts the rest; a sweep that finds
    /// the same names reports nothing, and a new one past the first 100 only moves the count.
    #[test]
    fn names_not_utf8_past_the_first_hundred_are_counted_not_kept() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let store = QueueStore::new(dir.path());
        let plant = |n: usize| {
            let name = [&[0xff][..], format!("{n:04}").as_bytes()].concat();
            std::fs::write(dir.path().join(std::ffi::OsStr::from_bytes(&name)), "").unwrap();
        };
        (0..MAX_BAD_NAMES_KEPT + 50).for_each(plant);
        let mut view = QueueView::new();
        let first = view.refresh(&store, &Refresh::Sweep);
        assert_eq!(first.newly_unreadable.len(), MAX_BAD_NAMES_KEPT);
        assert_eq!(first.bad_names_unlisted, 50);
        assert_eq!(view.unreadable().len(), MAX_BAD_NAMES_KEPT);
        assert_eq!(view.unreadable_unlisted(), 50);
        assert!(view.unreadable()[0].file.ends_with("0000"));
        assert_eq!(view.refresh(&store, &Refresh::Sweep), Refreshed::default());
        plant(9999);
        let grown = view.refresh(&store, &Refresh::Sweep);
        assert_eq!((grown.changed, grown.newly_unreadable.len()), (1, 0));
        assert_eq!(view.unreadable_unlisted(), 51);
    }
}
