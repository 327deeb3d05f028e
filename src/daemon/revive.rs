//! Putting an in-flight record this process holds back in the queue when the daemon stops
//! (DESIGN §6): from a landing that was interrupted, and from the shutdown's last sweep.

use crate::gstack_text;
use crate::record::Status;
use crate::store::{Expect, Move, StoreError};

use super::crew::Crew;
use super::stop::StopReason;

/// Puts one in-flight record back in the queue after a signal. It re-reads the record
/// under its lock: one that already settled (`landed`, `blocked`) is left alone, and once
/// it is `queued` no late write that expects an in-flight status can land on it.
pub fn revive(crew: &Crew, id: &str) {
    let stop = crew.stop.get().unwrap_or(StopReason::Requested);
    let (why, interrupted) = (stop.describe(), stop.interrupted());
    let run_id = run_id_of(crew, id);
    let mine = Expect::Mine(&Status::IN_FLIGHT, &crew.owner);
    let written = crew
        .records
        .transition(Move::new(id, mine, Status::Queued), |r| {
            if r.status == Status::DriftRepairing {
                r.retries = Some(0);
            }
            r.claimed_by = None;
            r.last_error = Some(interrupted.clone());
        });
    let tally = &crew.tally;
    let signal = crew.stop.signal_name();
    let failed = |error: String| {
        tally.failed();
        match signal {
            Some(signal) => tracing::error!(
                "{}; record {id}",
                gstack_text::failed_to_revive(signal, &run_id, error)
            ),
            None => tracing::error!(record = %id, "not revived: {error}"),
        }
    };
    match written {
        Ok(_) => {
            tally.revived();
            tracing::warn!(record = %id, "revived to queued after {why}")
        }
        Err(StoreError::NotFound { .. }) => match recreate(crew, id, &why, &interrupted) {
            Ok(()) => tally.revived(),
            Err(e) => failed(e.to_string()),
        },
        // Settled meanwhile (or queued again): whatever it is now stays.
        Err(StoreError::Moved { found, .. }) => {
            tally.skipped();
            match signal {
                Some(signal) => tracing::warn!(
                    "{}; record {id}",
                    gstack_text::skipping_revive(signal, &run_id, found)
                ),
                None => tracing::info!(record = %id, "not revived: already {found}"),
            }
        }
        // Claimed by another daemon since (this one was paused past the TTL): its landing.
        Err(e @ StoreError::Reclaimed { .. }) => {
            tally.skipped();
            tracing::warn!(record = %id, "not revived: {e}");
        }
        Err(e) => failed(e.to_string()),
    }
}

/// The record's `runId` (gstack's name for it in its lines): from the copy being landed,
/// else as last read, else its id.
fn run_id_of(crew: &Crew, id: &str) -> String {
    if let Some(claimed) = crew.active.copy_of(id) {
        return claimed.record.run_id;
    }
    let read = crew.records.view().get(id).map(|s| s.record.run_id.clone());
    read.unwrap_or_else(|| id.to_owned())
}

/// The record's file vanished mid-landing: write it again as `queued` from the copy this
/// process claimed (as gstack does), so the PR is not silently dropped from the queue.
/// `Err` says why it could not be.
fn recreate(crew: &Crew, id: &str, why: &str, interrupted: &str) -> Result<(), NotRecreated> {
    let Some(claimed) = crew.active.copy_of(id) else {
        return Err(NotRecreated::NoCopy);
    };
    let mut record = claimed.record;
    // A legacy record (no `repoIdentity`) is filed under its origin's identity by gstack,
    // or under `path:<repoPath>`: the copy is written back only under the id it came from.
    let filed_under = [record.identity_or_path(), claimed.identity.into()]
        .into_iter()
        .find(|identity| record.id_under(identity) == id)
        .ok_or_else(|| NotRecreated::OtherId(record.expected_id()))?;
    record.status = Status::Queued;
    record.retries = Some(0);
    record.claimed_by = None;
    record.last_error = Some(interrupted.to_owned());
    record.last_updated_at = Some(crate::clock::now_iso());
    match crew.records.store().insert_under(&filed_under, &record) {
        Ok(_) => {
            tracing::warn!(record = %id, "its file vanished mid-landing; recreated as queued after {why}");
            Ok(())
        }
        Err(e) => Err(NotRecreated::Store(e)),
    }
}

/// Why a record whose file vanished mid-landing was not written back.
#[derive(Debug, thiserror::Error)]
enum NotRecreated {
    #[error("its file vanished and no copy of it is held")]
    NoCopy,
    #[error("its file vanished and its copy names another id ({0})")]
    OtherId(String),
    #[error("its file vanished mid-landing and could not be recreated: {0}")]
    Store(StoreError),
}
