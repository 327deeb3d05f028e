//! The daemon's incremental view of the queue dir: every record file it has read, keyed by
//! file name, with the stamp that identifies the content it read (device, inode, size,
//! mtime and ctime to the nanosecond). A refresh re-reads only the files whose stamp
//! changed, parses nothing else, and reports an unreadable file once per change of that
//! file, not once per tick. Files are parsed by [`QueueStore::read_named`] only.
//!
//! A stamp taken within [`RACY_NS`] of the read is not trusted (the kernel's timestamps are
//! coarse, so a second write in the same few milliseconds could leave every field equal):
//! such a file is read again on its next refresh, once its stamp has aged.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;

use crate::store::{QueueStore, StoredRecord, Unreadable};

/// How close to its read a file's ctime may be before its stamp stops proving anything.
pub const RACY_NS: i128 = 100_000_000;

/// What identifies a file's content on disk without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        }
    }
}

/// One file as last read.
#[derive(Debug)]
struct Entry {
    stamp: FileStamp,
    /// The stamp was taken too close to a write to be trusted (see [`RACY_NS`]).
    racy: bool,
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
}

/// The records of one queue dir as of the last refresh.
#[derive(Debug, Default)]
pub struct QueueView {
    entries: BTreeMap<String, Entry>,
    /// Names the dir listing itself refused (not UTF-8): reported by the last sweep.
    bad_names: Vec<Unreadable>,
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
                if bad_names != self.bad_names {
                    seen.newly_unreadable.extend(
                        bad_names
                            .iter()
                            .filter(|b| !self.bad_names.contains(b))
                            .cloned(),
                    );
                    self.bad_names = bad_names;
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
                    self.entries.remove(&name);
                    seen.changed += 1;
                }
                for name in &names {
                    self.refresh_one(store, name, false, &mut seen);
                }
            }
            Refresh::Files(names) => {
                let racy: Vec<String> = self
                    .entries
                    .iter()
                    .filter(|(name, e)| e.racy && !names.contains(*name))
                    .map(|(name, _)| name.clone())
                    .collect();
                for name in names.iter().chain(&racy) {
                    if crate::store::is_record_name(name) {
                        self.refresh_one(store, name, false, &mut seen);
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
        self.refresh_one(store, &format!("{id}.json"), true, &mut seen);
        if seen.changed > 0 {
            self.generation += 1;
        }
    }

    fn refresh_one(&mut self, store: &QueueStore, name: &str, force: bool, seen: &mut Refreshed) {
        let meta = match std::fs::symlink_metadata(store.dir().join(name)) {
            Ok(meta) => meta,
            Err(_) => {
                // Gone (or unreachable, which reads the same to every later step).
                if self.entries.remove(name).is_some() {
                    seen.changed += 1;
                }
                return;
            }
        };
        let stamp = FileStamp::of(&meta);
        if !force
            && let Some(entry) = self.entries.get(name)
            && entry.stamp == stamp
            && !entry.racy
        {
            return;
        }
        let content = store.read_named(name);
        self.files_read += 1;
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let racy = now_ns - stamp.ctime_ns.max(stamp.mtime_ns) < RACY_NS;
        if let Err(bad) = &content {
            let same_report = self
                .entries
                .get(name)
                .is_some_and(|e| e.stamp == stamp && e.content.as_ref().err() == Some(bad));
            if !same_report {
                seen.newly_unreadable.push(bad.clone());
            }
        }
        let unchanged = self.entries.get(name).is_some_and(|e| {
            e.stamp == stamp
                && match (&e.content, &content) {
                    (Ok(a), Ok(b)) => a.record == b.record,
                    (Err(a), Err(b)) => a == b,
                    _ => false,
                }
        });
        if !unchanged {
            seen.changed += 1;
        }
        self.entries.insert(
            name.to_owned(),
            Entry {
                stamp,
                racy,
                content,
            },
        );
    }

    /// Every readable record, by file name.
    pub fn records(&self) -> impl Iterator<Item = &StoredRecord> {
        self.entries
            .values()
            .filter_map(|e| e.content.as_ref().ok())
    }

    /// Every file that is not a usable record, and why.
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

    /// The record `id` as last read, if it was readable.
    pub fn get(&self, id: &str) -> Option<&StoredRecord> {
        self.entries
            .get(&format!("{id}.json"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Record, Status};
    use crate::store::Expect;

    fn record(pr: u64) -> Record {
        Record::from_json(serde_json::json!({
            "runId": "run-1", "repoPath": "/r", "baseBranch": "main", "featureBranch": "feat/a",
            "prNumber": pr, "version": "1.0.0", "livingPlanPath": "/r/PLAN.md",
            "worktreePath": "/r", "queuedAt": "2026-05-17T08:37:01.000Z", "status": "queued",
            "repoIdentity": "github.com/acme/widget"
        }))
        .unwrap()
    }

    /// Waits until every stamp taken now is old enough to be trusted (not racy).
    fn age(_dir: &std::path::Path) {
        std::thread::sleep(std::time::Duration::from_nanos(RACY_NS as u64 + 20_000_000));
    }

    #[test]
    fn a_refresh_reads_only_what_changed_and_reports_a_bad_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = QueueStore::new(dir.path());
        let ids: Vec<String> = (1..=5)
            .map(|pr| store.insert(&record(pr)).unwrap())
            .collect();
        std::fs::write(dir.path().join("broken.json"), "{ nope").unwrap();
        age(dir.path());
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
            .transition(&ids[2], Expect::Any, Status::Blocked, |r| {
                r.last_error = Some("x".into())
            })
            .unwrap();
        view.written(&store, &ids[2]);
        assert_eq!(view.files_read(), 7);
        assert_eq!(view.get(&ids[2]).unwrap().record.status, Status::Blocked);
        age(dir.path());
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
}
