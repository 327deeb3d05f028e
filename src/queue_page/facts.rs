//! What the queue page shows, read once per refresh: `status --json`'s report, the decision
//! log's landings (ETAs, recent endings), the pending halt events and the policy's last
//! order. Rendering reads only this.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::faults::HaltStore;
use crate::faults::halt_store::{HaltStatus, ListedHalt};
use crate::gates::Allowlist;
use crate::queue_order::QueueOrder;
use crate::queue_report::QueueReport;
use crate::queue_report::history::History;
use crate::queue_report::log_index::DecisionIndex;
use crate::store::{QueueStore, StoreError};

/// Where the page reads from: the daemon's queue, berth dir, halt dir, current allowed
/// roots and published order. Nothing else of the daemon.
pub struct PageSources {
    pub store: QueueStore,
    pub berth_dir: PathBuf,
    pub halts: HaltStore,
    pub allowlist: Box<dyn Fn() -> Arc<Allowlist> + Send + Sync>,
    pub order: Arc<QueueOrder>,
}

pub struct PageFacts {
    pub report: QueueReport,
    pub history: std::io::Result<History>,
    /// Pending halt events (not resolved, not investigated).
    pub halts: Vec<ListedHalt>,
    pub unreadable_halts: usize,
    /// Record ids, first to land first, as the daemon's last tick ranked them.
    pub order: Vec<String>,
    pub berth_dir: PathBuf,
    pub now: String,
}

impl PageFacts {
    /// The facts, the decision log's part from `index` (only what was appended since its
    /// last read is parsed).
    pub fn read(sources: &PageSources, index: &DecisionIndex) -> Result<PageFacts, StoreError> {
        let berth_dir = &sources.berth_dir;
        let report =
            QueueReport::read_indexed(&sources.store, &(sources.allowlist)(), berth_dir, index)?;
        let history = index.history(berth_dir);
        let listing = sources.halts.list();
        Ok(PageFacts {
            report,
            history,
            halts: listing
                .halts
                .into_iter()
                .filter(|h| h.status == HaltStatus::Pending)
                .collect(),
            unreadable_halts: listing.unreadable.len(),
            order: sources.order.get(),
            berth_dir: sources.berth_dir.clone(),
            now: crate::clock::now_iso(),
        })
    }
}

/// The newest attempt log of `record` under `<berth_dir>/logs/<record>/`, looking at no
/// more than [`MAX_LOG_ENTRIES`] entries.
pub fn newest_attempt_log(berth_dir: &Path, record: &str) -> Option<PathBuf> {
    let dir = berth_dir.join("logs").join(record);
    std::fs::read_dir(&dir)
        .ok()?
        .take(MAX_LOG_ENTRIES)
        .flatten()
        .filter_map(|entry| {
            let modified = entry.metadata().ok()?.modified().ok()?;
            Some((modified, entry.path()))
        })
        .max()
        .map(|(_, path)| path)
}

/// The entries of one record's log dir the page looks at.
pub const MAX_LOG_ENTRIES: usize = 1000;
