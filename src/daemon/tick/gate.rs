//! Step 4 (DESIGN §3): every queued record that fails a gate is blocked, with gstack's
//! words for a refused repo path.

use crate::forge::ForgeRepo;
use crate::gates::{Gate, GateError};
use crate::gstack_text;
use crate::record::{Record, Status};
use crate::store::{Expect, Move, StoredRecord};

use crate::daemon::Shared;
use crate::daemon::tick_gates::TickGates;

/// Step 4: every queued record that fails a gate is blocked by its full id; so is every
/// in-flight one this process is not landing (a planted `landing` record must not hold a
/// lane it could never land in).
pub fn gate_queued(shared: &Shared, gates: &mut TickGates) -> usize {
    let candidates: Vec<StoredRecord> = shared
        .crew
        .records
        .view()
        .live()
        .filter(|s| {
            s.record.status == Status::Queued
                || (s.record.status.is_in_flight() && !shared.holds(&s.id))
        })
        .cloned()
        .collect();
    let mut blocked = 0;
    for stored in &candidates {
        let gated = gates.record(&shared.allowlist(), &stored.record);
        if let (Ok(gated), Status::Queued) = (&gated, stored.record.status) {
            shared.warm_up.once(
                &shared.crew.forge,
                &shared.crew.locks,
                crate::daemon::worktree::root(&shared.berth_dir),
                ForgeRepo::new(
                    gated.identity().to_string(),
                    gated.origin_url().unwrap_or_default(),
                ),
            );
            crate::daemon::worktree::make_ahead(
                &shared.crew.places,
                &stored.id,
                gated,
                &stored.record.feature_branch,
            );
        }
        if let Err(refusal) = gated {
            let reason = gate_block_text(&stored.record, &refusal);
            match shared.crew.records.transition(
                Move::new(
                    &stored.id,
                    Expect::OneOf(&[stored.record.status]),
                    Status::Blocked,
                )
                .waiting(super::PRODUCER_LOCK_WAIT),
                |r| {
                    r.last_error = Some(reason.clone());
                },
            ) {
                Ok(_) => {
                    tracing::warn!(record = %stored.id, "{}", gate_block_log(&stored.record, &refusal));
                    blocked += 1;
                }
                Err(e) => tracing::warn!(record = %stored.id, "gate block not written: {e}"),
            }
        }
    }
    blocked
}

/// A refused repo path on a legacy record (no `repoIdentity`): gstack blocks it before
/// deriving an id from its repo, with its own text.
fn legacy_path_refusal(record: &Record, refusal: &GateError) -> bool {
    record.repo_identity.is_none() && matches!(refusal.gate, Gate::RepoPath | Gate::GitDir)
}

/// The `lastError` of a record blocked at the gate, in gstack's words.
fn gate_block_text(record: &Record, refusal: &GateError) -> String {
    if legacy_path_refusal(record, refusal) {
        gstack_text::repo_rejected_pre_id(&refusal.reason)
    } else {
        refusal.to_string()
    }
}

/// The log line for a record blocked at the gate: gstack's for a repo-path refusal.
fn gate_block_log(record: &Record, refusal: &GateError) -> String {
    match refusal.gate {
        Gate::RepoPath | Gate::GitDir => gstack_text::blocking_pr(
            record.pr_number,
            &refusal.reason,
            legacy_path_refusal(record, refusal),
        ),
        _ => format!("blocking PR #{}: {refusal}", record.pr_number),
    }
}
