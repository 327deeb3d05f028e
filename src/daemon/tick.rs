//! The bookkeeping half of a tick (DESIGN §3 steps 1–5): reconcile and audit, reclaim,
//! discover, gate, select. Plain blocking code over the store, the gates and the forge.

use std::collections::{BTreeMap, HashSet};

use crate::forge::{ForgeRepo, PrRef, QueuedPr};
use crate::gates::{Gate, GateError, GatedRecord};
use crate::gstack_text;
use crate::lane_lock::{Lane, lock_ref_name};
use crate::record::{Record, Status};
use crate::rules::contracts::landing::Admit;
use crate::store::{Expect, StoredRecord};

use super::{Shared, policy};

/// A queued record that passed every gate this tick, with the values the gates resolved.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: String,
    pub record: Record,
    pub gated: GatedRecord,
}

/// What the bookkeeping did, for logs and for `--once`'s exit code.
#[derive(Debug, Default)]
pub struct PrepareReport {
    pub reconciled: usize,
    pub reclaimed: usize,
    pub discovered: usize,
    pub gate_blocked: usize,
}

impl PrepareReport {
    /// `1 reconciled, 0 reclaimed, 0 discovered, 0 blocked at the gates`.
    pub fn summary(&self) -> String {
        format!(
            "{} reconciled, {} reclaimed, {} discovered, {} blocked at the gates",
            self.reconciled, self.reclaimed, self.discovered, self.gate_blocked
        )
    }
}

/// Steps 1–4: reconcile blocked records, audit landed ones, reclaim stranded ones,
/// discover remote PRs, and block every queued record that fails a gate.
pub fn prepare(shared: &Shared) -> PrepareReport {
    // Verdicts the store refused earlier (ENOSPC, EIO) are written first.
    super::unsaved::retry(shared);
    let mut report = PrepareReport::default();
    // A rule fallback not seen again during this tick and the next stops being listed.
    shared
        .decisions
        .fallbacks()
        .next_tick(shared.rules.current().hash());
    let records = match shared.store.scan() {
        Ok(scan) => {
            for bad in &scan.unreadable {
                tracing::warn!(file = %bad.file, "unreadable queue record: {}", bad.reason);
            }
            scan.records
        }
        Err(e) => {
            tracing::error!("cannot scan the queue: {e}");
            return report;
        }
    };
    let now = crate::clock::now();
    for stored in &records {
        match stored.record.status {
            Status::Blocked | Status::Landed => {
                report.reconciled += usize::from(reconcile(shared, stored, now))
            }
            s if s.is_in_flight() => report.reclaimed += usize::from(reclaim(shared, stored, now)),
            _ => {}
        }
    }
    report.discovered = discover(shared, &records);
    report.gate_blocked = gate_queued(shared);
    // Faults (DESIGN §7): detectors over the build-state runs and the queue, halt events.
    crate::faults::watch::tick(shared);
    if report.reconciled + report.reclaimed + report.discovered + report.gate_blocked > 0 {
        tracing::info!(?report, "tick bookkeeping");
    }
    report
}

/// Step 1: a blocked record the forge now reports merged becomes `landed`; a `landed` one
/// not yet proven is audited. Each record is asked at most once per `reconcile_every_secs`.
fn reconcile(shared: &Shared, stored: &StoredRecord, now: chrono::DateTime<chrono::Utc>) -> bool {
    let record = &stored.record;
    if record.status == Status::Landed && record.last_github_state.as_deref() == Some("MERGED") {
        return false;
    }
    let due = record
        .last_github_checked_at
        .as_deref()
        .and_then(crate::clock::parse_iso)
        .is_none_or(|at| (now - at).num_seconds() >= shared.config.reconcile_every_secs as i64);
    if !due {
        return false;
    }
    // Only records that pass the gates are ever asked about: a planted record's identity
    // must not become a `gh --repo` argument.
    let Ok(gated) = shared.allowlist.gate_record(record) else {
        return false;
    };
    let repo = ForgeRepo::new(
        gated.identity.clone(),
        gated.origin_url.clone().unwrap_or_default(),
    );
    let pr = PrRef {
        number: record.pr_number,
        feature_branch: &record.feature_branch,
        base_branch: &record.base_branch,
    };
    let proof = match shared.forge.merge_proof(&repo, &pr) {
        Ok(proof) => proof,
        Err(e) => {
            tracing::warn!(record = %stored.id, "reconcile: {e}");
            return false;
        }
    };
    let checked_at = crate::clock::now_iso();
    let state = proof.state.to_string().to_uppercase();
    let from = record.status;
    let result = match (from, proof.merged) {
        (Status::Blocked, true) => {
            shared.transition(&stored.id, Expect::OneOf(&[from]), Status::Landed, |r| {
                // The block's reason no longer holds (gstack test 70).
                r.last_error = None;
                r.reconciled_at = Some(checked_at.clone());
                r.last_github_checked_at = Some(checked_at.clone());
                r.last_github_state = Some(state.clone());
            })
        }
        (Status::Landed, false) => {
            shared.transition(&stored.id, Expect::OneOf(&[from]), Status::Blocked, |r| {
                r.last_github_checked_at = Some(checked_at.clone());
                r.last_github_state = Some(state.clone());
                r.last_error = Some(format!(
                    "audit: recorded as landed but {} reports PR #{} as {} (not merged)",
                    shared.forge.name(),
                    r.pr_number,
                    proof.state
                ));
            })
        }
        _ => shared.transition(&stored.id, Expect::OneOf(&[from]), from, |r| {
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

/// Step 2: an in-flight record that no live process owns goes back to `queued`.
fn reclaim(shared: &Shared, stored: &StoredRecord, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Some(reason) = super::landing::stranded_reason(shared, stored, now) else {
        return false;
    };
    if let Err(e) = super::landing::end_strays(stored) {
        tracing::error!(record = %stored.id, "not reclaimed: {e}");
        return false;
    }
    let from = stored.record.status;
    let result = shared.transition(&stored.id, Expect::OneOf(&[from]), Status::Queued, |r| {
        if from == Status::DriftRepairing {
            r.retries = Some(0);
        }
        r.claimed_by = None;
        r.last_error = Some(format!("reclaimed: {reason}"));
    });
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

/// Step 3: one forge listing per distinct repo identity in the queue; a labelled PR with a
/// valid marker and no local record becomes a local `queued` record. Local wins.
fn discover(shared: &Shared, records: &[StoredRecord]) -> usize {
    // Only repos of records that pass every gate are asked about, by the identity read
    // from their origin: a planted record's claimed identity never becomes a `gh --repo`
    // (or a `GH_HOST`).
    let mut repos: BTreeMap<String, &StoredRecord> = BTreeMap::new();
    for stored in records {
        if let Ok(gated) = shared.allowlist.gate_record(&stored.record) {
            repos.entry(gated.identity).or_insert(stored);
        }
    }
    let known: HashSet<&str> = records.iter().map(|s| s.id.as_str()).collect();
    let mut added = 0;
    for (identity, example) in repos {
        let repo = ForgeRepo::new(identity.clone(), String::new());
        let prs = match shared.forge.list_queued(&repo) {
            Ok(prs) => prs,
            Err(e) => {
                // One repo's failure never hides the others.
                tracing::warn!(repo = %identity, "{}", gstack_text::could_not_discover(&example.record.repo_path, &e));
                continue;
            }
        };
        for pr in prs {
            let id = crate::safe_key::record_id(&identity, &pr.base_branch, pr.number);
            if known.contains(id.as_str()) {
                continue;
            }
            // The forge found it labelled, marked and not a fork; the rule may narrow that.
            if !super::policy::accept_pr(shared, &identity, &id, &pr) {
                continue;
            }
            let record = record_from_remote(&identity, &pr, &example.record);
            match shared.store.insert(&record) {
                Ok(id) => {
                    tracing::info!(record = %id, "discovered PR #{} on {identity}", pr.number);
                    added += 1;
                }
                Err(e) => tracing::warn!(repo = %identity, "PR #{}: not recorded: {e}", pr.number),
            }
        }
    }
    added
}

/// A local record for a PR found only on the forge, for the repo of a local record.
fn record_from_remote(identity: &str, pr: &QueuedPr, example: &Record) -> Record {
    // Paths come from the local record of the same repo, never from the PR body: whoever
    // can edit a PR could otherwise point the landing at any checkout.
    let mut record = Record::queued(
        &example.repo_path,
        &pr.base_branch,
        &pr.head_branch,
        pr.number,
    );
    record.run_id = pr.marker.run_id().to_owned();
    record.version = pr.marker.version().to_owned();
    if crate::clock::parse_iso(pr.marker.queued_at()).is_some() {
        record.queued_at = pr.marker.queued_at().to_owned();
    }
    record.worktree_path = example.repo_path.clone();
    record.repo_identity = Some(identity.to_owned());
    record.pr_url = pr.url.clone();
    record
}

/// Step 4: every queued record that fails a gate is blocked by its full id; so is every
/// in-flight one this process is not landing (a planted `landing` record must not hold a
/// lane it could never land in).
fn gate_queued(shared: &Shared) -> usize {
    let Ok(scan) = shared.store.scan() else {
        return 0;
    };
    let mut blocked = 0;
    for stored in scan.records.iter().filter(|s| {
        s.record.status == Status::Queued
            || (s.record.status.is_in_flight() && !shared.active.holds(&s.id))
    }) {
        if let Err(refusal) = shared.allowlist.gate_record(&stored.record) {
            let reason = gate_block_text(&stored.record, &refusal);
            match shared.transition(
                &stored.id,
                Expect::OneOf(&[stored.record.status]),
                Status::Blocked,
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

/// Step 5: at most the rules' `max_lanes` minus `running` candidates: the head of every
/// free lane, in the rules' `order`, each admitted by the rules' `admit`. A lane with a
/// record in flight (here or in another live daemon) or listed in `skip` is passed over,
/// never waited on; so is a record the rules asked to wait, or deferred by a `requeue`.
pub fn select(shared: &Shared, skip: &HashSet<String>, running: usize) -> Selection {
    let mut selection = Selection::default();
    let Ok(scan) = shared.store.scan() else {
        return selection;
    };
    let view = policy::QueueView::of(&scan.records);
    let free = policy::max_lanes(shared, view).saturating_sub(running);
    if free == 0 {
        return selection;
    }
    // Lanes are told apart by their lock ref: two branches that `safe_key` folds together
    // (`rel/1`, `rel-1`) share one lock, so they are one lane here too.
    let lane_key = |r: &Record| {
        lock_ref_name(&Lane {
            repo_identity: r.identity_or_path(),
            base_branch: r.base_branch.clone(),
        })
    };
    let in_flight: HashSet<String> = scan
        .records
        .iter()
        .filter(|s| s.record.status.is_in_flight())
        .map(|s| lane_key(&s.record))
        .collect();
    let now = crate::clock::now();
    let queued: Vec<&StoredRecord> = scan
        .records
        .iter()
        .filter(|s| s.record.status == Status::Queued && !policy::deferred(&s.record, now))
        .collect();
    let ordered = policy::order(shared, &queued);
    let mut seen_lanes: HashSet<String> = HashSet::new();
    for (position, stored) in ordered.iter().map(|&i| queued[i]).enumerate() {
        if selection.candidates.len() == free {
            break;
        }
        if in_flight.contains(&lane_key(&stored.record)) {
            continue;
        }
        // Gated again right before use: the bookkeeping pass may be seconds old.
        let Ok(gated) = shared.allowlist.gate_record(&stored.record) else {
            continue;
        };
        let lane = Lane {
            repo_identity: gated.identity.clone(),
            base_branch: stored.record.base_branch.clone(),
        };
        let lane_ref = lock_ref_name(&lane);
        if skip.contains(&lane_ref) || seen_lanes.contains(&lane_ref) {
            continue;
        }
        let admission = policy::admit(shared, stored, &lane, view);
        match admission.decision {
            Admit::Go => {}
            // Left queued and untouched (a write would wake `--watch` again at once); the
            // lane stays open to the next record.
            Admit::Wait => continue,
            Admit::Block => {
                if block_by_policy(shared, &stored.id, &admission.reason) {
                    selection.policy_blocked += 1;
                }
                continue;
            }
        }
        policy::selected(shared, stored, position, queued.len());
        seen_lanes.insert(lane_ref);
        selection.candidates.push(Candidate {
            id: stored.id.clone(),
            record: stored.record.clone(),
            gated,
        });
    }
    selection
}

/// What one selection pass chose, and how many records the landing policy blocked.
#[derive(Debug, Default)]
pub struct Selection {
    pub candidates: Vec<Candidate>,
    pub policy_blocked: usize,
}

/// `admit` said block: blocked by its full id, with the rule's reason. Whether it was
/// written.
fn block_by_policy(shared: &Shared, id: &str, reason: &str) -> bool {
    let written = shared.transition(id, Expect::OneOf(&[Status::Queued]), Status::Blocked, |r| {
        r.last_error = Some(format!("policy: {reason}"));
    });
    match written {
        Ok(_) => {
            tracing::warn!(record = %id, "blocked by the landing policy: {reason}");
            true
        }
        Err(e) => {
            tracing::warn!(record = %id, "policy block not written: {e}");
            false
        }
    }
}
