//! The queue's records as the daemon reads and writes them: the store, the view of it the
//! ticks walk, and the decision log every status change is written to.
//!
//! Architecture Invariant: the daemon writes a record only through [`Records::transition`]
//! or [`Records::insert`], so the view never misses a write of this process and every
//! status change has its line in the decision log.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::queue_view::QueueView;
use crate::record::Record;
use crate::rules::DecisionLog;
use crate::store::{Move, QueueStore, StoreError};

/// The handle every part that reads or writes records holds (the tick, the forge rounds,
/// the landings, the shutdown).
pub struct Records {
    store: QueueStore,
    /// The records as last read; every write through this handle keeps it current.
    view: Mutex<QueueView>,
    decisions: Arc<DecisionLog>,
}

impl Records {
    pub fn new(store: QueueStore, decisions: Arc<DecisionLog>) -> Records {
        Records {
            store,
            view: Mutex::new(QueueView::new()),
            decisions,
        }
    }

    /// The queue directory itself (reads, scans, lock files beside the records).
    pub fn store(&self) -> &QueueStore {
        &self.store
    }

    /// The queue view, locked. Hold it briefly: record writes wait for it.
    pub fn view(&self) -> MutexGuard<'_, QueueView> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a new record ([`QueueStore::insert`]) and reads it into the view.
    pub fn insert(&self, record: &Record) -> Result<String, StoreError> {
        let id = self.store.insert(record)?;
        self.view().written(&self.store, &id);
        Ok(id)
    }

    /// The daemon's one way to write a record: [`QueueStore::transition`], the file read
    /// into the view again, and when the status changed, a `status` line in the decision
    /// log (reason: the new `lastError`).
    pub fn transition(
        &self,
        m: Move<'_>,
        edit: impl FnOnce(&mut Record),
    ) -> Result<Record, StoreError> {
        let mut from = None;
        let updated = self
            .store
            .transition(m, |r| {
                from = Some(r.status);
                edit(r);
            })
            .inspect_err(|e| {
                // A producer holding the record's lock: skipped this tick, said out loud.
                if matches!(e, StoreError::Locked { .. }) {
                    tracing::warn!("skipped this tick: {e}");
                }
            });
        // Written or not, the file is re-read: a refused write means the view was stale.
        if !matches!(updated, Err(StoreError::BadId(_))) {
            self.view().written(&self.store, m.id);
        }
        let updated = updated?;
        if let Some(from) = from
            && from != updated.status
        {
            self.decisions.status_change(m.id, from, &updated);
        }
        Ok(updated)
    }
}
