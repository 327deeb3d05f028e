//! `--watch` wakes on a change in the queue dir as well as on the poll interval.

use std::path::Path;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::mpsc;

/// How long a burst of writes (a producer's temp file + rename) is gathered into one wake.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// A debounced watch on the queue dir; [`QueueWatcher::changed`] resolves once per burst.
pub struct QueueWatcher {
    _debouncer: notify_debouncer_full::Debouncer<
        notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
    changes: mpsc::Receiver<()>,
}

impl QueueWatcher {
    pub fn start(dir: &Path) -> anyhow::Result<QueueWatcher> {
        crate::atomic_file::ensure_private_dir(dir)?;
        let (tx, changes) = mpsc::channel(1);
        let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
            let relevant = match result {
                // berth's own lock and temp files start with a dot: not news.
                Ok(events) => events.iter().any(|e| {
                    e.paths.iter().any(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.ends_with(".json") && !n.starts_with('.'))
                    })
                }),
                Err(_) => true,
            };
            if relevant {
                // A full channel already holds a wake-up: nothing is lost by dropping this one.
                let _ = tx.try_send(());
            }
        })?;
        debouncer.watch(dir, RecursiveMode::NonRecursive)?;
        Ok(QueueWatcher {
            _debouncer: debouncer,
            changes,
        })
    }

    pub async fn changed(&mut self) -> Option<()> {
        self.changes.recv().await
    }
}
