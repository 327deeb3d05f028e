//! Step 2 (DESIGN §3): an in-flight record that no live process owns goes back to `queued`.

use crate::record::Status;
use crate::store::{Expect, Move, StoredRecord};

use crate::daemon::{Shared, stranded};

/// Step 2: an in-flight record that no live process owns goes back to `queued`, unless it
/// changed since it was judged (its owner touched it: not stranded after all).
pub fn reclaim(shared: &Shared, stored: &StoredRecord, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Some(reason) =
        stranded::stranded_reason(&shared.crew, shared.config().lock_ttl(), stored, now)
    else {
        return false;
    };
    if let Err(e) = stranded::end_strays(stored) {
        tracing::error!(record = %stored.id, "not reclaimed: {e}");
        return false;
    }
    let from = stored.record.status;
    let result = shared.crew.records.transition(
        Move::new(&stored.id, Expect::Claim(&stored.record), Status::Queued)
            .waiting(super::PRODUCER_LOCK_WAIT),
        |r| {
            if from == Status::DriftRepairing {
                r.retries = Some(0);
            }
            r.claimed_by = None;
            r.last_error = Some(format!("reclaimed: {reason}"));
        },
    );
    match result {
        Ok(_) => {
            tracing::warn!(record = %stored.id, "reclaimed stranded record: {reason}");
            true
        }
        Err(e) => {
            tracing::warn!(record = %stored.id, "reclaim skipped: {e}");
            false
        }
    }
}
