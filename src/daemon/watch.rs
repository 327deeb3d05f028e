//! `--watch` wakes on a write in the queue dir as well as on the poll interval; reads
//! (berth's own included) never wake it (see [`crate::write_events`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::RecursiveMode;
use tokio::sync::Notify;

use crate::write_events::{Change, WriteWatch};

/// How long a burst of writes (a producer's temp file + rename) is gathered into one wake.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// What changed in the queue dir since the last [`QueueWatcher::changed`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct QueueChanges {
    /// File names (`<id>.json`) that were written, created, renamed or removed.
    pub files: BTreeSet<String>,
    /// Events were lost: the whole dir must be looked at again.
    pub rescan: bool,
}

impl QueueChanges {
    fn is_empty(&self) -> bool {
        self.files.is_empty() && !self.rescan
    }
}

/// A watch on the queue dir's record files; [`QueueWatcher::changed`] resolves once per
/// burst of writes with the files they touched.
pub struct QueueWatcher {
    _watch: WriteWatch,
    pending: Arc<Mutex<QueueChanges>>,
    wake: Arc<Notify>,
}

/// A record file: `*.json`, not one of berth's own hidden lock or temp files.
fn is_record_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".json") && !n.starts_with('.'))
}

impl QueueWatcher {
    pub fn start(dir: &Path) -> anyhow::Result<QueueWatcher> {
        crate::atomic_file::ensure_private_dir(dir)?;
        let pending = Arc::new(Mutex::new(QueueChanges::default()));
        let wake = Arc::new(Notify::new());
        let (sink, bell) = (Arc::clone(&pending), Arc::clone(&wake));
        let watch = WriteWatch::start(
            &[(dir.to_owned(), RecursiveMode::NonRecursive)],
            is_record_file,
            move |change| {
                let mut pending = sink.lock().unwrap_or_else(|e| e.into_inner());
                match change {
                    Change::Rescan => pending.rescan = true,
                    Change::Paths(paths) => pending.files.extend(
                        paths
                            .iter()
                            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned)),
                    ),
                }
                drop(pending);
                bell.notify_one();
            },
        )
        .map_err(|(path, e)| anyhow::anyhow!("cannot watch {}: {e}", path.display()))?;
        Ok(QueueWatcher {
            _watch: watch,
            pending,
            wake,
        })
    }

    /// The next burst of changes. Cancel-safe: changes not yet handed out stay pending.
    pub async fn changed(&mut self) -> QueueChanges {
        loop {
            if !self.lock().is_empty() {
                // Something is pending: let the rest of the burst arrive, then hand it all.
                tokio::time::sleep(DEBOUNCE).await;
                return std::mem::take(&mut *self.lock());
            }
            self.wake.notified().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueChanges> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}
