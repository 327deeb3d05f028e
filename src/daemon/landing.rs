//! One landing, claim to settle (DESIGN §3 step 6). The task owns the record, the lane
//! lock, the heartbeat and the child processes, and releases the lock on every path.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::forge::{ForgeRepo, PrRef, verify_claim};
use crate::lane_lock::{Acquire, Heartbeat, HeldLock, Lane, Released};
use crate::record::Status;
use crate::runner::{LandingSequence, Step, StepResult, StepVars};
use crate::store::Expect;

use super::{Candidate, Shared, worktree};

/// DESIGN §6: the budget for releasing held locks once a signal arrived.
const RELEASE_BUDGET: Duration = Duration::from_secs(4);

/// How a landing task ended.
#[derive(Clone, Debug)]
pub struct LaneOutcome {
    pub lane: Lane,
    pub id: String,
    pub kind: OutcomeKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutcomeKind {
    Landed,
    Blocked(String),
    /// Put back in the queue for a transient reason (forge unreachable, lock error).
    Requeued(String),
    /// The lane lock is held by another owner: skip the lane this tick.
    LaneBusy(String),
    /// Stopped by a signal and put back in the queue.
    Interrupted,
    /// The record moved under us (an operator, another daemon); nothing was done.
    Skipped(String),
}

impl LaneOutcome {
    pub fn ended_blocked(&self) -> bool {
        matches!(self.kind, OutcomeKind::Blocked(_))
    }

    pub fn lane_was_busy(&self) -> bool {
        matches!(self.kind, OutcomeKind::LaneBusy(_))
    }
}

/// What to write when the landing stops short of a verdict.
enum Stop {
    Block(String),
    Requeue(String),
    LaneBusy(String),
}

/// Runs the whole landing of one candidate.
pub async fn land(
    shared: Arc<Shared>,
    candidate: Candidate,
    cancel: CancellationToken,
) -> LaneOutcome {
    let lane = Shared::lane_of(&candidate);
    let id = candidate.id.clone();
    let kind = land_inner(&shared, &candidate, &lane, &cancel).await;
    match &kind {
        OutcomeKind::Landed => tracing::info!(record = %id, "landed"),
        OutcomeKind::Blocked(why) => tracing::warn!(record = %id, "blocked: {why}"),
        OutcomeKind::Requeued(why) => tracing::warn!(record = %id, "back in the queue: {why}"),
        OutcomeKind::LaneBusy(why) => tracing::info!(record = %id, "lane skipped: {why}"),
        OutcomeKind::Interrupted => tracing::warn!(record = %id, "interrupted; back in the queue"),
        OutcomeKind::Skipped(why) => tracing::info!(record = %id, "skipped: {why}"),
    }
    LaneOutcome { lane, id, kind }
}

async fn land_inner(
    shared: &Arc<Shared>,
    c: &Candidate,
    lane: &Lane,
    cancel: &CancellationToken,
) -> OutcomeKind {
    let _worktree = match worktree::try_lock(shared, c) {
        Ok(guard) => guard,
        Err(busy) => return OutcomeKind::LaneBusy(busy),
    };
    let owner = shared.owner.clone();
    if let Err(e) = shared.store.transition(
        &c.id,
        Expect::OneOf(&[Status::Queued]),
        Status::Claiming,
        |r| {
            r.claimed_by = Some(owner);
        },
    ) {
        return OutcomeKind::Skipped(e.to_string());
    }
    let Some(origin_url) = c.gated.origin_url.clone() else {
        return settle_stop(
            shared,
            c,
            Stop::Block(format!(
                "repo {} has no `origin` remote to land to",
                c.gated.repo.path.display()
            )),
        );
    };

    if let Err(stop) = verify_on_forge(shared, c, &origin_url).await {
        return settle_stop(shared, c, stop);
    }
    if cancel.is_cancelled() {
        super::shutdown::revive(shared, &c.id);
        return OutcomeKind::Interrupted;
    }
    let held = match acquire_lock(shared, c, lane, &origin_url).await {
        Ok(held) => held,
        Err(stop) => return settle_stop(shared, c, stop),
    };
    let heartbeat = Heartbeat::spawn(Arc::clone(&shared.locks), held, cancel);
    let verdict = match worktree::prepare(shared, c) {
        Ok(place) => {
            let verdict = run_steps(shared, c, &place, &heartbeat, cancel).await;
            place.remove();
            verdict
        }
        Err(e) => Verdict::Stop(Stop::Block(format!("cannot prepare a worktree: {e:#}"))),
    };
    let held = heartbeat.stop().await;
    release_lock(shared, held).await;
    match verdict {
        Verdict::Interrupted => {
            super::shutdown::revive(shared, &c.id);
            OutcomeKind::Interrupted
        }
        Verdict::Stop(stop) => settle_stop(shared, c, stop),
        Verdict::Landed(kind) => kind,
    }
}

enum Verdict {
    Landed(OutcomeKind),
    Stop(Stop),
    Interrupted,
}

/// DESIGN §3.6: the PR must still be open, labelled, carry a valid marker, and have the
/// record's branches.
async fn verify_on_forge(
    shared: &Arc<Shared>,
    c: &Candidate,
    origin_url: &str,
) -> Result<(), Stop> {
    let forge = Arc::clone(&shared.forge);
    let repo = ForgeRepo::new(c.gated.identity.clone(), origin_url.to_owned());
    let (number, feature, base) = (
        c.record.pr_number,
        c.record.feature_branch.clone(),
        c.record.base_branch.clone(),
    );
    let checked = tokio::task::spawn_blocking(move || {
        let pr = PrRef {
            number,
            feature_branch: &feature,
            base_branch: &base,
        };
        forge
            .check_pr(&repo, &pr)
            .map(|check| verify_claim(&check, &pr))
    })
    .await;
    match checked {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(refusal))) => Err(Stop::Block(format!("claim check: {refusal}"))),
        Ok(Err(e)) => Err(Stop::Requeue(format!("could not check the PR: {e}"))),
        Err(e) => Err(Stop::Requeue(format!("claim check task failed: {e}"))),
    }
}

async fn acquire_lock(
    shared: &Arc<Shared>,
    c: &Candidate,
    lane: &Lane,
    origin_url: &str,
) -> Result<HeldLock, Stop> {
    let locks = Arc::clone(&shared.locks);
    let (url, lane, owner, repo) = (
        origin_url.to_owned(),
        lane.clone(),
        shared.owner.clone(),
        c.gated.repo.path.clone(),
    );
    let acquired =
        tokio::task::spawn_blocking(move || locks.acquire(&url, &lane, &owner, &repo)).await;
    match acquired {
        Ok(Ok(Acquire::Acquired(held))) => Ok(held),
        Ok(Ok(Acquire::HeldElsewhere { holder, .. })) => Err(Stop::LaneBusy(format!(
            "lane locked by {} until {}",
            holder.owner_id, holder.expires_at
        ))),
        Ok(Ok(Acquire::Unreadable { sha, reason })) => Err(Stop::LaneBusy(format!(
            "lane lock {sha} is unreadable ({reason}); inspect it with `berth lock status`"
        ))),
        Ok(Err(e)) => Err(Stop::Requeue(format!("could not take the lane lock: {e}"))),
        Err(e) => Err(Stop::Requeue(format!("lock task failed: {e}"))),
    }
}

/// `landing` → (drift: `drift_repairing` → ship → `landing`) → land → merge proof.
async fn run_steps(
    shared: &Arc<Shared>,
    c: &Candidate,
    place: &worktree::Place,
    heartbeat: &Heartbeat,
    cancel: &CancellationToken,
) -> Verdict {
    if let Err(e) = shared.store.transition(
        &c.id,
        Expect::OneOf(&[Status::Claiming]),
        Status::Landing,
        |_| {},
    ) {
        return Verdict::Stop(Stop::Requeue(e.to_string()));
    }
    let vars = StepVars {
        pr: c.record.pr_number,
        branch: c.record.feature_branch.clone(),
        base: c.record.base_branch.clone(),
        repo: c.gated.repo.path.clone(),
        worktree: place.path().to_owned(),
    };
    // A lost lane lock stops the step just as a signal does.
    let steps_cancel = cancel.child_token();
    let mut lost = heartbeat.lost();
    let lost_watch = {
        let steps_cancel = steps_cancel.clone();
        tokio::spawn(async move {
            while lost.changed().await.is_ok() {
                if *lost.borrow() {
                    steps_cancel.cancel();
                    return;
                }
            }
        })
    };
    let attempt = c.record.retries.unwrap_or(0) + 1;
    let mut sequence = LandingSequence::new(c.record.retries.unwrap_or(0));
    let mut step = Step::Land;
    let verdict = loop {
        let result = match shared
            .runner
            .run(step, &c.id, &vars, attempt, &steps_cancel)
            .await
        {
            Ok(result) => result,
            Err(e) => break Verdict::Stop(Stop::Block(e.to_string())),
        };
        if shared.stop.is_set() && !result.succeeded() {
            break Verdict::Interrupted;
        }
        if heartbeat.is_lost() {
            break Verdict::Stop(Stop::Block(format!(
                "lost the lane lock while the {} step ran (another daemon may own the lane); {result}",
                step.as_str()
            )));
        }
        let Some(next) = sequence.after(&result) else {
            break verdict_of(shared, c, &result).await;
        };
        let (from, to) = match next {
            Step::Ship => (Status::Landing, Status::DriftRepairing),
            Step::Land => (Status::DriftRepairing, Status::Landing),
        };
        let written = shared
            .store
            .transition(&c.id, Expect::OneOf(&[from]), to, |r| {
                if to == Status::DriftRepairing {
                    r.retries = Some(r.retries.unwrap_or(0) + 1);
                    r.last_error = Some(format!("drift repair: {result}"));
                }
            });
        if let Err(e) = written {
            break Verdict::Stop(Stop::Requeue(e.to_string()));
        }
        step = next;
    };
    lost_watch.abort();
    verdict
}

/// The last step's result decides: exit 0 **and** the forge reports merged → landed.
async fn verdict_of(shared: &Arc<Shared>, c: &Candidate, result: &StepResult) -> Verdict {
    if !result.succeeded() {
        return Verdict::Stop(Stop::Block(result.to_string()));
    }
    let forge = Arc::clone(&shared.forge);
    let repo = ForgeRepo::new(
        c.gated.identity.clone(),
        c.gated.origin_url.clone().unwrap_or_default(),
    );
    let (number, feature, base) = (
        c.record.pr_number,
        c.record.feature_branch.clone(),
        c.record.base_branch.clone(),
    );
    let proof = tokio::task::spawn_blocking(move || {
        forge.merge_proof(
            &repo,
            &PrRef {
                number,
                feature_branch: &feature,
                base_branch: &base,
            },
        )
    })
    .await;
    let checked_at = crate::clock::now_iso();
    let forge_name = if shared.forge.name() == "gh" {
        "GitHub"
    } else {
        "origin"
    };
    match proof {
        Ok(Ok(proof)) if proof.merged => {
            let written = shared.store.transition(
                &c.id,
                Expect::OneOf(&[Status::Landing]),
                Status::Landed,
                |r| {
                    r.last_error = None;
                    r.claimed_by = None;
                    r.last_github_checked_at = Some(checked_at);
                    r.last_github_state = Some("MERGED".into());
                },
            );
            match written {
                Ok(_) => Verdict::Landed(OutcomeKind::Landed),
                Err(e) => Verdict::Landed(OutcomeKind::Skipped(format!(
                    "landed, but the record moved: {e}"
                ))),
            }
        }
        Ok(Ok(proof)) => Verdict::Stop(Stop::Block(format!(
            "landing command exited 0 but {forge_name} reports PR #{} as {} (not merged); log: {}",
            c.record.pr_number,
            proof.state,
            result.log_path.display()
        ))),
        Ok(Err(e)) => Verdict::Stop(Stop::Block(format!(
            "landing command exited 0 but the merge could not be proven: {e}; log: {}",
            result.log_path.display()
        ))),
        Err(e) => Verdict::Stop(Stop::Block(format!("merge proof task failed: {e}"))),
    }
}

/// Writes a stop short of `landed`: blocked, or back to queued.
fn settle_stop(shared: &Shared, c: &Candidate, stop: Stop) -> OutcomeKind {
    let (to, reason, kind) = match stop {
        Stop::Block(reason) => (
            Status::Blocked,
            reason.clone(),
            OutcomeKind::Blocked(reason),
        ),
        Stop::Requeue(reason) => (
            Status::Queued,
            reason.clone(),
            OutcomeKind::Requeued(reason),
        ),
        Stop::LaneBusy(reason) => (
            Status::Queued,
            reason.clone(),
            OutcomeKind::LaneBusy(reason),
        ),
    };
    let written = shared
        .store
        .transition(&c.id, Expect::OneOf(&Status::IN_FLIGHT), to, |r| {
            r.claimed_by = None;
            r.last_error = Some(reason);
        });
    match written {
        Ok(_) => kind,
        Err(e) => OutcomeKind::Skipped(format!("record moved before it could be settled: {e}")),
    }
}

/// Releases the lane lock, bounded so a dead remote cannot hold up a shutdown.
async fn release_lock(shared: &Arc<Shared>, held: HeldLock) {
    let locks = Arc::clone(&shared.locks);
    let ref_name = held.ref_name().to_owned();
    let release = tokio::task::spawn_blocking(move || locks.release(&held));
    match tokio::time::timeout(RELEASE_BUDGET, release).await {
        Ok(Ok(Ok(Released::Deleted | Released::AlreadyGone))) => {}
        Ok(Ok(Ok(Released::NotOurs { now_sha }))) => {
            tracing::warn!(lock = %ref_name, "lock was taken over (now {now_sha}); left alone")
        }
        Ok(Ok(Err(e))) => {
            tracing::error!(lock = %ref_name, "release failed: {e}; it expires on its TTL")
        }
        Ok(Err(e)) => tracing::error!(lock = %ref_name, "release task failed: {e}"),
        Err(_) => tracing::error!(lock = %ref_name, "release timed out; it expires on its TTL"),
    }
}
