//! The records a tick has something to do with, copied out of the view, and when a
//! blocked (or landed, unproven) record is next due for a re-check.

use crate::record::{Record, Status};
use crate::store::StoredRecord;

use crate::daemon::Shared;
use crate::daemon::memory::TickMemory;

/// The records a tick has something to do with, copied out of the view.
#[derive(Default)]
pub struct Work {
    /// Blocked records due for a re-check, landed ones not yet proven and due.
    pub due: Vec<StoredRecord>,
    pub in_flight: Vec<StoredRecord>,
    pub queued: Vec<StoredRecord>,
}

impl Work {
    /// Queued and in-flight records come from the view's live set. The records due for a
    /// re-check take a walk over every non-settled record, which `memory` spares while
    /// the view is unchanged and none can have come due yet.
    pub fn of(
        shared: &Shared,
        memory: &mut TickMemory,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Work {
        let every = shared.config().reconcile_every_secs as i64;
        let view = shared.crew.records.view();
        let mut work = Work::default();
        for stored in view.live() {
            if stored.record.status == Status::Queued {
                work.queued.push(stored.clone());
            } else {
                work.in_flight.push(stored.clone());
            }
        }
        if memory.nothing_due(view.generation(), now) {
            return work;
        }
        let mut next_due: Option<chrono::DateTime<chrono::Utc>> = None;
        for stored in view.active() {
            let record = &stored.record;
            if !matches!(record.status, Status::Blocked | Status::Landed) {
                continue;
            }
            match due_at(record, every) {
                Some(at) if at > now => next_due = Some(next_due.map_or(at, |n| n.min(at))),
                _ => work.due.push(stored.clone()),
            }
        }
        // Records due now are re-checked this tick, and a re-check writes the record
        // (a new generation); so the earliest future due time is the next one to wait for.
        memory.remember_next_due(view.generation(), work.due.is_empty(), next_due);
        work
    }
}

/// When a blocked record, or a landed one not proven merged, is next due for a re-check
/// (`every` seconds after the forge was last asked); `None` when it is due at once (never
/// asked, or an unreadable time). An interval that reaches past the last representable
/// date (a config meaning "never again") is never due, not a panic.
fn due_at(record: &Record, every: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    record
        .last_github_checked_at
        .as_deref()
        .and_then(crate::clock::parse_iso)
        .map(|at| {
            chrono::TimeDelta::try_seconds(every)
                .and_then(|every| at.checked_add_signed(every))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
        })
}
