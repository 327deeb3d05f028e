//! Whether an in-flight record is stranded, and ending what its gone owner left running.

use crate::runner::StraysError;
use crate::store::StoredRecord;

use super::crew::Crew;

/// Why an in-flight record no live process owns is stranded ([`crate::ownership`]), or
/// claimed in this daemon's own name while no landing of it runs here (a planted claim).
/// A landing this daemon runs (or whose verdict it keeps, its own or one taken over) is
/// never stranded here, however long it takes: this process is its owner and knows it is
/// alive. A gone owner's record whose verdict it left listed for its next start
/// ([`super::unsaved::left_listed`]) is judged by the lock TTL only.
/// `lock_ttl`: how long a record nobody writes stays its owner's.
pub(super) fn stranded_reason(
    crew: &Crew,
    lock_ttl: std::time::Duration,
    stored: &StoredRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    // Whatever its `claimedBy`: a verdict taken over from the previous daemon on the berth
    // dir is written onto that daemon's claim, which names it, not this one.
    if crew.holds(&stored.id) {
        return None;
    }
    let record = &stored.record;
    if record.status.is_in_flight() && record.claimed_by.as_deref() == Some(&*crew.owner) {
        return Some(format!(
            "claimed in this daemon's name ({}) but no landing of it runs here",
            crew.owner
        ));
    }
    crate::ownership::stranded_reason(stored, lock_ttl, now, &super::unsaved::left_listed)
}

/// Before a stranded record goes back to the queue: whatever its gone owner still runs
/// for it on this host is killed (the step's guard normally did so already).
pub(super) fn end_strays(stored: &StoredRecord) -> Result<(), StraysError> {
    match stored.record.claimed_by.as_deref() {
        Some(owner) => crate::runner::end_strays(&record_mark_of(stored), owner).map(|_| ()),
        None => Ok(()),
    }
}

/// The landing mark of a stored record ([`crate::runner::record_mark`]).
fn record_mark_of(stored: &StoredRecord) -> std::path::PathBuf {
    let queue_dir = stored.path.parent().unwrap_or(std::path::Path::new("."));
    crate::runner::record_mark(queue_dir, &stored.id)
}
