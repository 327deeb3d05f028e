//! Step 1 (DESIGN §3): a blocked record the forge now reports merged becomes `landed`; a
//! `landed` one not yet proven is audited. Each record is due at most once per
//! `reconcile_every_secs`, and every due record of one repo is answered by that repo's one
//! shared listing.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::forge::{ForgeRepo, MergeProof, PrRef};
use crate::forge_state::GithubState;
use crate::gstack_text;
use crate::record::Status;
use crate::store::{Expect, Move, StoredRecord};

use super::{pr_ref, states};
use crate::daemon::memory::{Refused, TickMemory};
use crate::daemon::tick_gates::TickGates;
use crate::daemon::{Records, Shared};

/// One repo's records due for a re-check.
pub struct Due {
    repo: ForgeRepo,
    records: Vec<StoredRecord>,
}

/// Groups the records due for a re-check by the repo their gate resolved. Only records
/// that pass the gates are ever asked about: a planted record's identity must not become
/// a `gh --repo` argument.
pub fn plan(
    shared: &Shared,
    gates: &mut TickGates,
    memory: &mut TickMemory,
    due: &[StoredRecord],
) -> Vec<Due> {
    let mut by_repo: BTreeMap<String, Due> = BTreeMap::new();
    for stored in due {
        let gated = match gates.record(&shared.allowlist(), &stored.record) {
            Ok(gated) => {
                memory.passed(&Refused::Record(stored.id.clone()));
                gated
            }
            Err(refusal) => {
                refused(memory, stored, &refusal.reason);
                continue;
            }
        };
        by_repo
            .entry(gated.identity().to_string())
            .or_insert_with(|| {
                let origin = gated.origin_url().unwrap_or_default().to_owned();
                Due {
                    repo: ForgeRepo::new(gated.identity().to_string(), origin),
                    records: Vec::new(),
                }
            })
            .records
            .push(stored.clone());
    }
    by_repo.into_values().collect()
}

/// Asks each repo's shared listing and writes what it says; how many records changed.
pub fn run(shared: &Shared, due: &[Due], cancel: &CancellationToken) -> usize {
    let every = Duration::from_secs(shared.config().reconcile_every_secs.max(1));
    let mut changed = 0;
    for Due { repo, records } in due {
        if cancel.is_cancelled() {
            break;
        }
        let wanted: Vec<PrRef<'_>> = records.iter().map(|s| pr_ref(&s.record)).collect();
        let proofs = states(shared, repo, &wanted, every);
        for stored in records {
            if let Some(proof) = proofs.get(&stored.record.pr_number) {
                changed += usize::from(apply(
                    &shared.crew.records,
                    shared.forge().name(),
                    stored,
                    proof,
                ));
            }
        }
    }
    changed
}

/// A record due for a re-check that fails the gate, once per record and reason (gstack
/// repeats it every tick, G19): a blocked one in gstack's words.
fn refused(memory: &mut TickMemory, stored: &StoredRecord, reason: &str) {
    if !memory.first_refusal(Refused::Record(stored.id.clone()), reason) {
        return;
    }
    let pr = stored.record.pr_number;
    match stored.record.status {
        Status::Blocked => {
            tracing::warn!(record = %stored.id, "{}", gstack_text::skipping_reconciliation(pr, reason))
        }
        _ => {
            tracing::warn!(record = %stored.id, "warning: skipping landed PR #{pr} audit: {reason}")
        }
    }
}

/// Writes what the forge said about one due record; whether its status changed. The
/// write expects the status the tick planned it with: a record that moved since (an
/// operator's `retry`) is left alone.
fn apply(records: &Records, forge: &str, stored: &StoredRecord, proof: &MergeProof) -> bool {
    let checked_at = crate::clock::now_iso();
    let state = GithubState::Pr(proof.state);
    let from = stored.record.status;
    let result = match (from, proof.merged) {
        (Status::Blocked, true) => {
            records.transition(
                Move::new(&stored.id, Expect::OneOf(&[from]), Status::Landed),
                |r| {
                    // The block's reason no longer holds (gstack test 70).
                    r.last_error = None;
                    r.reconciled_at = Some(checked_at.clone());
                    r.last_github_checked_at = Some(checked_at.clone());
                    r.last_github_state = Some(state.clone());
                },
            )
        }
        (Status::Landed, false) => records.transition(
            Move::new(&stored.id, Expect::OneOf(&[from]), Status::Blocked),
            |r| {
                r.last_github_checked_at = Some(checked_at.clone());
                r.last_github_state = Some(state.clone());
                r.last_error = Some(format!(
                    "audit: recorded as landed but {} reports PR #{} as {} (not merged)",
                    forge, r.pr_number, proof.state
                ));
            },
        ),
        _ => records.transition(Move::new(&stored.id, Expect::OneOf(&[from]), from), |r| {
            r.last_github_checked_at = Some(checked_at.clone());
            r.last_github_state = Some(state.clone());
        }),
    };
    match result {
        Ok(updated) => {
            if updated.status != from {
                tracing::info!(record = %stored.id, "reconciled: {from} -> {}", updated.status);
            }
            updated.status != from
        }
        Err(e) => {
            tracing::warn!(record = %stored.id, "reconcile write skipped: {e}");
            false
        }
    }
}
