//! A directory watch that reports writes, never reads.
//!
//! notify's inotify backend watches `OPEN`, `CLOSE_NOWRITE` and `ATTRIB` too, so every
//! read of a watched file arrives as an event, and a read that updates the access time
//! (relatime does so on the first read after a write) arrives as an attribute change. A
//! watcher that counted those would wake itself on its own reads, forever. This one passes
//! on only a create, a close after writing, a rename, a removal, and an attribute change
//! that moved the file's ctime (chmod, chown, a hard link: an access-time update never
//! moves the ctime). Plain `MODIFY` (data written, file still open) is passed on only when
//! the watch asks for it: the queue watch does, since a producer that rewrites a record in
//! place and keeps it open never closes it (its consumer debounces the burst, and berth
//! itself writes only hidden temp files it renames); the rules watch does not, since every
//! editor closes the file and a rebuild of a half-written rule would be refused for nothing.
//! Reads never cause `MODIFY`.
//!
//! The watch has no timer of its own: an idle watch is a thread blocked in the kernel.
//! Debouncing is the consumer's (see `daemon::watch` and `rules::reload`).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// What one event meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// These watched paths were created, or written while still open: their writer may
    /// not be done.
    Paths(Vec<PathBuf>),
    /// These watched paths' change is whole: closed after writing, renamed (into place or
    /// away), removed, or their attributes changed.
    Finished(Vec<PathBuf>),
    /// Events were lost (the kernel queue overflowed, or the watch reported an error):
    /// anything may have changed.
    Rescan,
}

/// Tells writes from reads, one event at a time. Remembers the ctime it last saw of each
/// path, so an attribute event that did not move it (an access-time update) is dropped.
pub struct WriteFilter {
    /// When watching began: a file whose ctime is older has not changed since.
    since_ns: i128,
    ctimes: HashMap<PathBuf, i128>,
    /// Whether data written to a file still open (`MODIFY`) is a change.
    modify_is_write: bool,
}

impl Default for WriteFilter {
    fn default() -> Self {
        WriteFilter::new(false)
    }
}

impl WriteFilter {
    pub fn new(modify_is_write: bool) -> WriteFilter {
        let since_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        WriteFilter {
            // ctimes come from the kernel's coarse clock (a few ms behind): leave slack.
            since_ns: since_ns - 50_000_000,
            ctimes: HashMap::new(),
            modify_is_write,
        }
    }

    /// The paths of `event` that changed and that `cares` about, or a rescan.
    pub fn changed(&mut self, event: &notify::Event, cares: impl Fn(&Path) -> bool) -> Change {
        if event.need_rescan() {
            return Change::Rescan;
        }
        // Whether the event is a write (rather than an attribute change, which is one only
        // when it moved the ctime), and whether it ends one.
        let (write, finished) = match event.kind {
            EventKind::Create(_) => (true, false),
            EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Access(AccessKind::Close(AccessMode::Write)) => (true, true),
            EventKind::Modify(ModifyKind::Data(_)) if self.modify_is_write => (true, false),
            EventKind::Modify(ModifyKind::Metadata(_)) => (false, true),
            _ => return Change::Paths(Vec::new()),
        };
        let mut paths = Vec::new();
        for path in event.paths.iter().filter(|p| cares(p)) {
            let ctime = ctime_ns(path);
            let moved = match ctime {
                // Gone: its removal is news (a rename away reports it here too).
                None => {
                    self.ctimes.remove(path);
                    true
                }
                Some(ctime) => {
                    let seen = self.ctimes.insert(path.clone(), ctime);
                    write || ctime != seen.unwrap_or(self.since_ns) && ctime >= self.since_ns
                }
            };
            if moved {
                paths.push(path.clone());
            }
        }
        if finished && !paths.is_empty() {
            Change::Finished(paths)
        } else {
            Change::Paths(paths)
        }
    }
}

fn ctime_ns(path: &Path) -> Option<i128> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some(meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128)
}

/// A running watch; dropping it stops it.
pub struct WriteWatch {
    watcher: RecommendedWatcher,
}

impl WriteWatch {
    /// Watches each `(dir, mode)` and calls `on_change` (on the watch's own thread) with
    /// every non-empty [`Change`] among the paths `cares` accepts; `modify_is_write` as in
    /// [`WriteFilter::new`].
    pub fn start(
        dirs: &[(PathBuf, RecursiveMode)],
        modify_is_write: bool,
        cares: impl Fn(&Path) -> bool + Send + 'static,
        mut on_change: impl FnMut(Change) + Send + 'static,
    ) -> Result<WriteWatch, (PathBuf, notify::Error)> {
        let mut filter = WriteFilter::new(modify_is_write);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let change = match event {
                    Ok(event) => filter.changed(&event, &cares),
                    Err(_) => Change::Rescan,
                };
                if change != Change::Paths(Vec::new()) {
                    on_change(change);
                }
            })
            .map_err(|e| (PathBuf::new(), e))?;
        for (dir, mode) in dirs {
            watcher.watch(dir, *mode).map_err(|e| (dir.clone(), e))?;
        }
        Ok(WriteWatch { watcher })
    }

    /// Watches `dir` again after it was replaced (removed and made again, or renamed over):
    /// the kernel's watch followed the old directory and ended with it. Not to be called
    /// from `on_change` (it runs on the watch's own thread, which this waits for).
    pub fn rewatch(&mut self, dir: &Path, mode: RecursiveMode) -> notify::Result<()> {
        // The old watch may already be gone with its directory: nothing to undo then.
        let _ = self.watcher.unwatch(dir);
        self.watcher.watch(dir, mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, MetadataKind};

    fn event(kind: EventKind, path: &Path) -> notify::Event {
        notify::Event::new(kind).add_path(path.to_owned())
    }

    fn json(p: &Path) -> bool {
        p.extension().is_some_and(|e| e == "json")
    }

    #[test]
    fn reads_and_access_time_updates_are_not_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.json");
        std::fs::write(&file, "{}").unwrap();
        // Written before the watch began: its ctime is older than the watch.
        std::thread::sleep(std::time::Duration::from_millis(60));
        let mut filter = WriteFilter::new(false);
        let none = Change::Paths(Vec::new());
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
        ] {
            assert_eq!(filter.changed(&event(kind, &file), json), none, "{kind:?}");
        }
        let written = event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            &file,
        );
        assert_eq!(
            filter.changed(&written, json),
            Change::Finished(vec![file.clone()])
        );
        // The read after that write updates atime: same ctime, no change.
        let attrib = event(
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            &file,
        );
        assert_eq!(filter.changed(&attrib, json), none);
        // A chmod moves the ctime: a change.
        std::thread::sleep(std::time::Duration::from_millis(20));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            filter.changed(&attrib, json),
            Change::Finished(vec![file.clone()])
        );
        // Files it does not care about are never news.
        let other = dir.path().join(".a.lock");
        let created = event(EventKind::Create(CreateKind::File), &other);
        assert_eq!(filter.changed(&created, json), none);
        let rescan = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert_eq!(filter.changed(&rescan, json), Change::Rescan);
        // A watch that asks for it hears data written to a file still open.
        let modified = event(
            EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any)),
            &file,
        );
        assert_eq!(
            WriteFilter::new(true).changed(&modified, json),
            Change::Paths(vec![file.clone()])
        );
        // A file created is not yet written; one renamed into place is whole.
        let created = event(EventKind::Create(CreateKind::File), &file);
        assert_eq!(
            filter.changed(&created, json),
            Change::Paths(vec![file.clone()])
        );
        let renamed = event(
            EventKind::Modify(ModifyKind::Name(notify::event::RenameMode::To)),
            &file,
        );
        assert_eq!(
            filter.changed(&renamed, json),
            Change::Finished(vec![file.clone()])
        );
    }
}
