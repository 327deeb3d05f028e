//! Judge: the facts of a land step (with the forge's merge proof after an exit 0), judged
//! by the landing policy's `on_land_result`. Only "exit 0 **and** the forge proved the
//! merge" can come back as landed: the contract refuses anything else.

use std::sync::Arc;

use crate::forge::{ForgeRepo, PrRef};
use crate::gstack_text;
use crate::rules::contracts::landing::{LandDecision, LandFacts};
use crate::runner::StepResult;

use super::ask::ask;
use super::{End, Landing};
use crate::daemon::{policy, worktree};
use crate::forge_state::PrState;

/// The landing policy asked for a drift repair: ship, then land again.
pub(super) struct DriftRepair;

/// The policy's verdict on a land step: a drift repair, or where the landing ends.
pub(super) async fn judge(
    l: &Landing,
    result: &StepResult,
    retries: u32,
) -> Result<DriftRepair, End> {
    if let Err(why) = worktree::verify_dirs(&l.c, None) {
        return Err(End::Block(format!(
            "merge proof not asked: {why}; {result}"
        )));
    }
    let proof = if result.succeeded() {
        // `None`: stopping before the forge answered.
        merge_facts(l, result).await.ok_or(End::Interrupted)?
    } else {
        let failed = gstack_text::land_failed(
            result.exit_code(),
            result.timed_out(),
            result.log_path.display(),
        );
        MergeFacts {
            merged: false,
            forge_state: None,
            summary: format!("{failed}: {result}"),
        }
    };
    let checked_at = crate::clock::now_iso();
    let facts = LandFacts {
        succeeded: result.succeeded(),
        exit_code: result.exit_code(),
        timed_out: result.timed_out(),
        drift: result.drift_detected(),
        merged: proof.merged,
        forge_state: proof.forge_state,
        summary: proof.summary,
        log_path: result.log_path.display().to_string(),
        retries,
        attempt: result.attempt,
    };
    let (ask, id, record, lane) = (
        l.crew.clone(),
        l.c.id.clone(),
        l.c.record.clone(),
        l.lane.clone(),
    );
    let asked = facts.clone();
    let verdict = tokio::task::spawn_blocking(move || {
        let view = policy::QueueView::of(ask.records.view().live());
        policy::on_land_result(&ask.policy, view, (&id, &record), &lane, &asked)
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!(record = %l.c.id, "landing policy task failed: {e}; using the default");
        crate::rules::contracts::landing::default_verdict(&facts)
    });
    let with_log = |reason: String| {
        if reason.contains(&facts.log_path) {
            reason
        } else {
            format!("{reason} (log: {})", facts.log_path)
        }
    };
    Err(match verdict.decision {
        // The contract already refuses `landed` without the proof; this holds even if a
        // future contract forgot to.
        LandDecision::Landed if facts.succeeded && facts.merged => End::Landed { checked_at },
        LandDecision::Landed => End::Block(with_log(facts.summary.clone())),
        LandDecision::DriftRepair => return Ok(DriftRepair),
        LandDecision::Blocked => End::Block(with_log(verdict.reason)),
        LandDecision::Requeue(delay) => End::Defer {
            reason: with_log(verdict.reason),
            not_before: policy::not_before(&l.crew.policy.config, delay),
        },
    })
}

/// What the forge says of the merge after an exit 0.
struct MergeFacts {
    merged: bool,
    /// The PR's state as the forge reported it, if it answered.
    forge_state: Option<PrState>,
    /// The core's one-line account of it (the `lastError` a block writes).
    summary: String,
}

/// Asks the forge for the merge proof; `None` when stopping and it did not answer in time
/// (the record goes back to the queue; the next claim check or reconcile learns whether
/// it merged).
async fn merge_facts(l: &Landing, result: &StepResult) -> Option<MergeFacts> {
    let c = &l.c;
    let forge = Arc::clone(&l.crew.forge);
    let repo = ForgeRepo::new(
        c.gated.identity().to_string(),
        c.gated.origin_url().unwrap_or_default().to_owned(),
    );
    let (number, feature, base) = (
        c.record.pr_number,
        c.record.feature_branch.clone(),
        c.record.base_branch.clone(),
    );
    let proof = ask(&l.cancel, move || {
        forge.merge_proof(
            &repo,
            &PrRef {
                number,
                feature_branch: &feature,
                base_branch: &base,
            },
        )
    })
    .await?;
    let forge_name = l.crew.forge.kind().reporter();
    let log = result.log_path.display();
    Some(match proof {
        Ok(proof) if proof.merged => MergeFacts {
            merged: true,
            forge_state: Some(proof.state),
            summary: format!(
                "landing command exited 0 and {forge_name} reports PR #{number} merged; log: {log}"
            ),
        },
        Ok(proof) => MergeFacts {
            merged: false,
            forge_state: Some(proof.state),
            summary: gstack_text::forge_disagrees(
                forge_name,
                gstack_text::pr_not_merged(number, proof.state.gstack(), forge_name),
                log,
            ),
        },
        Err(e) => MergeFacts {
            merged: false,
            forge_state: None,
            summary: gstack_text::forge_disagrees(
                forge_name,
                format!("the merge could not be proven: {e}"),
                log,
            ),
        },
    })
}
