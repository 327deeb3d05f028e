//! The facts `berth status --json` prints and the queue page renders, read the same way for
//! both: the queue dir, why each queued record waits, the rule set, the daemon's health and
//! what it could not do. Another process's view: every part is read from files and origin,
//! never asked of a daemon. `story` is `berth explain`'s: one PR's decisions and moves.

mod daemon_view;
pub mod history;
pub mod log_index;
pub mod story;
mod waiting;

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::daemon::{PassedOverLine, ReadPublishedError, ReadUnsavedError, UnsavedLine};
use crate::gates::Allowlist;
use crate::lane_lock::survey::Reach;
use crate::record::Status;
use crate::rules::RulesStatus;
use crate::rules::fallbacks::Fallback;
use crate::store::{QueueStore, Scan, StoreError, StoredRecord};

/// The fields of a listed record that berth writes: a record's own of these names is left
/// out.
pub const BERTH_FIELDS: [&str; 2] = ["id", "waiting"];

pub use daemon_view::DaemonView;
pub use story::{Story, StoryError};
pub use waiting::{LaneBusy, Waiting, Waits, lock_client, lock_client_within};

/// What `berth status` shows about a queue and a berth dir.
pub struct QueueReport {
    pub scan: Scan,
    pub waits: Waits,
    /// Rule questions failing closed (DESIGN §8): why a record waits, while it lasts.
    pub fallbacks: std::io::Result<Vec<Fallback>>,
    /// Verdicts a daemon could not write (ENOSPC, EIO) and retries every tick.
    pub unsaved: Result<Vec<UnsavedLine>, ReadUnsavedError>,
    /// Queued records a daemon passes over until their file is written (a claim too large).
    pub passed_over: Result<Vec<PassedOverLine>, ReadPublishedError>,
    pub rules: std::io::Result<Option<RulesStatus>>,
    pub daemon: DaemonView,
}

impl QueueReport {
    /// Reads every part; only an unreadable queue dir fails (the rest is reported). Each
    /// origin's lane locks are listed within the default remote timeout.
    pub fn read(
        store: &QueueStore,
        allowlist: &Allowlist,
        berth_dir: &Path,
    ) -> Result<QueueReport, StoreError> {
        Self::read_reaching(store, allowlist, berth_dir, &Reach::default())
    }

    /// [`QueueReport::read`], asking origins as `reach` allows.
    pub fn read_reaching(
        store: &QueueStore,
        allowlist: &Allowlist,
        berth_dir: &Path,
        reach: &Reach<'_>,
    ) -> Result<QueueReport, StoreError> {
        Self::read_with(store, allowlist, berth_dir, reach, || {
            crate::rules::decisions::policy_waits(berth_dir)
        })
    }

    /// [`QueueReport::read`] with the policy waits of `index`, which follows the decision
    /// log instead of reading it whole (the queue page, asked again and again).
    pub fn read_indexed(
        store: &QueueStore,
        allowlist: &Allowlist,
        berth_dir: &Path,
        index: &log_index::DecisionIndex,
    ) -> Result<QueueReport, StoreError> {
        Self::read_with(store, allowlist, berth_dir, &Reach::default(), || {
            index.policy_waits(berth_dir)
        })
    }

    fn read_with(
        store: &QueueStore,
        allowlist: &Allowlist,
        berth_dir: &Path,
        reach: &Reach<'_>,
        policy_waits: impl FnOnce() -> std::io::Result<waiting::PolicyWaits>,
    ) -> Result<QueueReport, StoreError> {
        let scan = store.scan()?;
        let rules = RulesStatus::read(berth_dir);
        let fallbacks = crate::rules::fallbacks::read(berth_dir);
        let daemon = DaemonView::read(berth_dir);
        let waits = waiting::read(allowlist, berth_dir, &scan, reach, policy_waits);
        let unsaved = crate::daemon::read_unsaved(berth_dir);
        let passed_over = crate::daemon::read_passed_over(berth_dir);
        Ok(QueueReport {
            scan,
            waits,
            fallbacks,
            unsaved,
            passed_over,
            rules,
            daemon,
        })
    }

    /// A report of `scan` and `waits` alone: no fallbacks, unsaved verdicts, passed-over
    /// records, rule set or daemon, each read as none.
    #[cfg(test)]
    pub(crate) fn of(scan: Scan, waits: Waits) -> QueueReport {
        QueueReport {
            scan,
            waits,
            fallbacks: Ok(Vec::new()),
            unsaved: Ok(Vec::new()),
            passed_over: Ok(Vec::new()),
            rules: Ok(None),
            daemon: DaemonView {
                running: Ok(None),
                health: Ok(None),
            },
        }
    }

    pub fn fallbacks(&self) -> &[Fallback] {
        self.fallbacks.as_deref().unwrap_or_default()
    }

    pub fn unsaved(&self) -> &[UnsavedLine] {
        self.unsaved.as_deref().unwrap_or_default()
    }

    pub fn passed_over(&self) -> &[PassedOverLine] {
        self.passed_over.as_deref().unwrap_or_default()
    }

    /// `status --json`: `{"records": [{..., "waiting"}], "unreadable", "waitingUnknown",
    /// "ruleFallbacks", "unsavedVerdicts", "passedOver", "rules", "daemon"}`.
    pub fn to_json(&self) -> Value {
        let records = self.scan.records.iter().map(|stored| {
            let fields = serde_json::to_value(&stored.record).ok();
            self.record_json(
                stored,
                fields.into_iter().filter_map(object_fields).flatten(),
            )
        });
        self.to_json_with(records.collect())
    }

    /// One record as the document lists it: its id, `fields`, then why it waits.
    pub fn record_json(
        &self,
        stored: &StoredRecord,
        fields: impl IntoIterator<Item = (String, Value)>,
    ) -> Value {
        Value::Object(self.record_fields(stored, fields))
    }

    /// [`Self::record_json`]'s fields. The id is the file's and `waiting` is berth's: a
    /// record's own fields of those names are left out, never let name another record.
    pub fn record_fields(
        &self,
        stored: &StoredRecord,
        fields: impl IntoIterator<Item = (String, Value)>,
    ) -> Map<String, Value> {
        let mut object = Map::new();
        object.insert("id".into(), json!(stored.id));
        let own = fields
            .into_iter()
            .filter(|(key, _)| !BERTH_FIELDS.contains(&key.as_str()));
        object.extend(own);
        let waiting = self.waits.by_record.get(&stored.id);
        object.insert("waiting".into(), json!(waiting));
        object
    }

    /// The document with `records` as its records (all of them, or a bounded few).
    pub fn to_json_with(&self, records: Vec<Value>) -> Value {
        json!({
            "records": records,
            "unreadable": self.scan.unreadable,
            "waitingUnknown": self.waits.problems,
            "ruleFallbacks": self.fallbacks(),
            "unsavedVerdicts": self.unsaved(),
            "passedOver": self.passed_over(),
            "rules": match &self.rules {
                Ok(Some(status)) => json!(status),
                _ => Value::Null,
            },
            "daemon": self.daemon.as_json(),
        })
    }

    /// Something needs an operator: a blocked record, a refused reload, a rule failing
    /// closed, a verdict not saved, a record passed over, an unreadable queue file.
    pub fn needs_attention(&self) -> bool {
        let blocked = self
            .scan
            .records
            .iter()
            .any(|r| r.record.status == Status::Blocked);
        // A refused reload needs an operator as much as a blocked record does.
        let rules_failed = matches!(&self.rules, Ok(Some(status)) if !status.last_reload.ok);
        blocked
            || rules_failed
            || !self.fallbacks().is_empty()
            || !self.unsaved().is_empty()
            || !self.passed_over().is_empty()
            || !self.scan.unreadable.is_empty()
    }
}

/// An object's fields; nothing for any other value.
fn object_fields(value: Value) -> Option<serde_json::Map<String, Value>> {
    match value {
        Value::Object(fields) => Some(fields),
        _ => None,
    }
}
