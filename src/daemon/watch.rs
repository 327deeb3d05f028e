//! `--watch` wakes on a write in the queue dir as well as on the poll interval; reads
//! (berth's own included) never wake it (see [`crate::write_events`]). Data written to a
//! record still held open counts as a write (a producer that rewrites in place never
//! closes it); berth's own writes are hidden temp files renamed into place. The queue dir's
//! parent is watched too: a queue dir removed and made again (or renamed over) ends the
//! kernel's watch on the old one, so its reappearance re-adds the watch and rescans.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::RecursiveMode;
use tokio::sync::Notify;

use crate::write_events::{Change, WriteWatch};

use super::StartError;

/// How long a write still under way (a record created, or written while open) is given to
/// finish before the wake; a record renamed into place or closed after writing wakes the
/// loop at once.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// File names kept pending at most; past it they are dropped for a rescan (a sweep of the
/// whole dir reads every file that changed), so a flood of names costs no memory and loses
/// no write.
pub const MAX_PENDING_FILES: usize = 4096;

/// What changed in the queue dir since the last [`QueueWatcher::changed`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct QueueChanges {
    /// File names (`<id>.json`) that were written, created, renamed or removed.
    pub files: BTreeSet<String>,
    /// Events were lost: the whole dir must be looked at again.
    pub rescan: bool,
}

/// The changes not yet handed out, and when the first of them was heard.
#[derive(Default)]
struct Pending {
    changes: QueueChanges,
    since: Option<std::time::Instant>,
    /// Files whose last event left a write under way (created, or written while open).
    unfinished: BTreeSet<String>,
}

impl Pending {
    /// Notes one change heard.
    fn hear(&mut self, change: Change, queue_dir: &Path, replaced: &AtomicBool) {
        self.since.get_or_insert_with(std::time::Instant::now);
        let (paths, finished) = match change {
            Change::Rescan => {
                self.changes.rescan = true;
                return;
            }
            Change::Paths(paths) => (paths, false),
            Change::Finished(paths) => (paths, true),
        };
        for path in paths {
            if path == queue_dir {
                replaced.store(true, Ordering::SeqCst);
                self.changes.rescan = true;
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                if finished {
                    self.unfinished.remove(name);
                } else {
                    self.unfinished.insert(name.to_owned());
                }
                self.changes.files.insert(name.to_owned());
            }
        }
        if self.changes.files.len() > MAX_PENDING_FILES {
            self.changes.files.clear();
            self.unfinished.clear();
            self.changes.rescan = true;
        }
    }

    /// When what is pending should be handed out: at once when every write heard is
    /// whole, else [`DEBOUNCE`] after the first (a rescan is a burst too: it waits).
    fn due(&self) -> Option<std::time::Instant> {
        let since = self.since?;
        Some(if self.unfinished.is_empty() && !self.changes.rescan {
            since
        } else {
            since + DEBOUNCE
        })
    }
}

/// A watch on the queue dir's record files; [`QueueWatcher::changed`] resolves once per
/// burst of writes with the files they touched, [`QueueWatcher::take`] hands out what is
/// pending at once.
pub struct QueueWatcher {
    watch: WriteWatch,
    dir: PathBuf,
    pending: Arc<Mutex<Pending>>,
    /// The queue dir itself was created, renamed or removed: its watch must be re-added.
    replaced: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

/// A record file: `*.json`, not one of berth's own hidden lock or temp files.
fn is_record_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(crate::store::is_record_name)
}

impl QueueWatcher {
    pub fn start(dir: &Path) -> Result<QueueWatcher, StartError> {
        crate::atomic_file::ensure_private_dir(dir).map_err(StartError::Dir)?;
        let pending = Arc::new(Mutex::new(Pending::default()));
        let replaced = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Notify::new());
        let (sink, bell, moved) = (
            Arc::clone(&pending),
            Arc::clone(&wake),
            Arc::clone(&replaced),
        );
        let mut dirs = vec![(dir.to_owned(), RecursiveMode::NonRecursive)];
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            dirs.push((parent.to_owned(), RecursiveMode::NonRecursive));
        }
        let (queue_dir, own) = (dir.to_owned(), dir.to_owned());
        let watch = WriteWatch::start(
            &dirs,
            true,
            move |path| {
                path == queue_dir || path.parent() == Some(&queue_dir) && is_record_file(path)
            },
            move |change| {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .hear(change, &own, &moved);
                bell.notify_one();
            },
        )
        .map_err(|(path, error)| StartError::QueueWatch { path, error })?;
        Ok(QueueWatcher {
            watch,
            dir: dir.to_owned(),
            pending,
            replaced,
            wake,
        })
    }

    /// The next burst of changes. Cancel-safe: changes not yet handed out stay pending,
    /// and the debounce runs from the first of them, so a future dropped and made again
    /// (another event won the race) does not start it over.
    pub async fn changed(&mut self) -> QueueChanges {
        loop {
            if self.replaced.swap(false, Ordering::SeqCst) && self.dir.is_dir() {
                // Watched again before the debounce: a record written meanwhile is either
                // heard by the new watch or found by the rescan this wake leads to.
                if let Err(e) = self.watch.rewatch(&self.dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(
                        "cannot watch the queue dir {} again: {e}",
                        self.dir.display()
                    );
                }
            }
            let due = self.lock().due();
            if let Some(due) = due {
                // Something is pending: let a write under way finish, then hand it all.
                tokio::time::sleep_until(due.into()).await;
                return self.take();
            }
            self.wake.notified().await;
        }
    }

    /// Every change heard and not yet handed out, now: the loop reads them on whatever
    /// turn comes first, so a slow tick that keeps winning the race never leaves a write
    /// unread.
    pub fn take(&mut self) -> QueueChanges {
        let mut pending = self.lock();
        pending.since = None;
        pending.unfinished.clear();
        std::mem::take(&mut pending.changes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flood of distinct names heard during one long tick stays at the cap, and what it
    /// dropped is a rescan: the next refresh sweeps the dir and reads every one of them.
    #[test]
    fn a_flood_of_names_stays_at_the_cap_and_becomes_a_rescan() {
        let dir = Path::new("/q");
        let replaced = AtomicBool::new(false);
        let mut pending = Pending::default();
        for n in 0..3 * MAX_PENDING_FILES {
            let path = dir.join(format!("r{n}.json"));
            pending.hear(Change::Paths(vec![path]), dir, &replaced);
            assert!(pending.changes.files.len() <= MAX_PENDING_FILES);
            assert!(pending.unfinished.len() <= MAX_PENDING_FILES);
        }
        assert!(pending.changes.rescan, "the dropped names are swept");
    }

    #[test]
    fn a_whole_write_is_handed_out_at_once_and_one_under_way_after_the_debounce() {
        let dir = Path::new("/queue");
        let replaced = AtomicBool::new(false);
        let record = || dir.join("r.json");
        let mut pending = Pending::default();
        assert_eq!(pending.due(), None, "nothing heard");
        pending.hear(Change::Finished(vec![record()]), dir, &replaced);
        let since = pending.since.unwrap();
        assert_eq!(pending.due(), Some(since), "renamed into place: at once");

        let mut pending = Pending::default();
        pending.hear(Change::Paths(vec![record()]), dir, &replaced);
        let since = pending.since.unwrap();
        assert_eq!(
            pending.due(),
            Some(since + DEBOUNCE),
            "created, not yet closed"
        );
        pending.hear(Change::Finished(vec![record()]), dir, &replaced);
        assert_eq!(pending.due(), Some(since), "closed after writing: at once");
        assert_eq!(pending.changes.files.len(), 1);

        pending.hear(Change::Rescan, dir, &replaced);
        assert_eq!(
            pending.due(),
            Some(since + DEBOUNCE),
            "events lost: a burst"
        );
    }
}
