//! Run: `claiming → landing`, the land step, and the landing policy's verdict on it; on
//! `drift_repair`: `landing → drift_repairing`, the ship step, `→ landing`, land again.
//! A step runs only while the lane lock is held: it starts only if the lock is not known
//! lost and the lease has time left the moment before its spawn (the runner looks), and a
//! lost heartbeat cancels it.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::gstack_text;
use crate::lane_lock::Heartbeat;
use crate::record::{Record, Status};
use crate::runner::{Fence, Lease, Outcome, Step, StepResult, StepVars};
use crate::store::{Expect, Move, StoreError};

use super::judge::{self, DriftRepair};
use super::{End, Landing};
use crate::daemon::worktree::{self, Place};

/// Runs the steps in `place` until the landing ends.
pub(super) async fn run(l: &Landing, place: &Place, heartbeat: &Heartbeat, lease: &Lease) -> End {
    let id = l.c.id.clone();
    let landing = l
        .blocking(move |crew| {
            crew.records.transition(
                Move::new(
                    &id,
                    Expect::Mine(&[Status::Claiming], &crew.owner),
                    Status::Landing,
                ),
                |_| {},
            )
        })
        .await;
    if let Err(e) = landing {
        return End::Requeue(e.to_string());
    }
    // A lost lane lock stops the step just as a signal does.
    let steps_cancel = l.cancel.child_token();
    let lost_watch = cancel_on_loss(heartbeat, steps_cancel.clone());
    let held = Held { heartbeat, lease };
    let end = steps(l, place, held, &steps_cancel).await;
    lost_watch.abort();
    end
}

/// Cancels `steps_cancel` once the heartbeat reports the lock lost.
fn cancel_on_loss(heartbeat: &Heartbeat, steps_cancel: CancellationToken) -> JoinHandle<()> {
    let mut lost = heartbeat.lost();
    tokio::spawn(async move {
        while lost.changed().await.is_ok() {
            if *lost.borrow() {
                steps_cancel.cancel();
                return;
            }
        }
    })
}

/// The lane lock as the steps hold it: its heartbeat, and the lease their guards enforce.
#[derive(Clone, Copy)]
struct Held<'a> {
    heartbeat: &'a Heartbeat,
    lease: &'a Lease,
}

async fn steps(
    l: &Landing,
    place: &Place,
    held: Held<'_>,
    steps_cancel: &CancellationToken,
) -> End {
    let c = &l.c;
    let mut vars = StepVars {
        pr: c.record.pr_number,
        branch: c.record.feature_branch.clone(),
        base: c.record.base_branch.clone(),
        repo: c.gated.repo().path().to_owned(),
        worktree: place.path().to_owned(),
        lock_ref: held.heartbeat.snapshot().ref_name().to_owned(),
        lock_sha: String::new(),
    };
    let mut retries = c.record.retries.unwrap_or(0);
    let id = c.id.clone();
    let attempt = l.blocking(move |crew| crew.runner.claim_attempt(&id, retries + 1));
    let attempt = match attempt.await {
        Ok(attempt) => attempt,
        Err(e) => return End::Block(e.to_string()),
    };
    let mut step = Step::Land;
    loop {
        // The lock commit this step starts under (a heartbeat since the last step moved it).
        vars.lock_sha = held.heartbeat.snapshot().sha();
        let run = Run {
            step,
            vars: &vars,
            attempt,
        };
        let result = match run_one(l, place, held, run, steps_cancel).await {
            Ok(result) => result,
            Err(end) => return end,
        };
        let next = match step {
            // A ship that failed is the verdict; one that worked is followed by a land.
            Step::Ship if result.succeeded() => Step::Land,
            Step::Ship => {
                return End::Block(format!(
                    "{}: {result}",
                    gstack_text::drift_ship_failed(result.exit_code(), result.timed_out())
                ));
            }
            Step::Land => match judge::judge(l, &result, retries).await {
                Ok(DriftRepair) => Step::Ship,
                Err(end) => return end,
            },
        };
        if let Err(e) = move_to(l, next, &result).await {
            return End::Requeue(e.to_string());
        }
        if next == Step::Ship {
            retries += 1;
        }
        step = next;
    }
}

/// Which step of which attempt, with what.
#[derive(Clone, Copy)]
struct Run<'a> {
    step: Step,
    vars: &'a StepVars,
    attempt: u32,
}

/// One step: its directories checked before, a stop or a lost lock checked after.
async fn run_one(
    l: &Landing,
    place: &Place,
    held: Held<'_>,
    run: Run<'_>,
    steps_cancel: &CancellationToken,
) -> Result<StepResult, End> {
    let heartbeat = held.heartbeat;
    let step = run.step;
    if let Err(why) = worktree::verify_dirs(&l.c, Some(place)) {
        return Err(End::Block(format!(
            "{} step not started: {why}",
            step.as_str()
        )));
    }
    let fence = Fence {
        repo: l.c.gated.repo().pin(),
        worktree: place.dir(),
        lease: held.lease,
    };
    let result = l
        .crew
        .runner
        .run_in(
            step,
            &l.c.id,
            run.vars,
            Some(&fence),
            run.attempt,
            steps_cancel,
        )
        .await
        .map_err(|e| End::Block(e.to_string()))?;
    if l.interrupted() && !result.succeeded() {
        return Err(End::Interrupted);
    }
    if result.outcome == Outcome::LeaseExpired {
        await_verdict(heartbeat).await;
    }
    if heartbeat.is_lost() {
        let why = heartbeat
            .snapshot()
            .loss()
            .unwrap_or(gstack_text::LOCK_HEARTBEAT_FAILED);
        let stopped = match result.outcome {
            Outcome::LockLost => "never started",
            _ => "stopped",
        };
        return Err(End::Block(gstack_text::lock_ownership_lost(format!(
            "{why}; the {} step was {stopped} (another daemon may own the lane): {result}",
            step.as_str()
        ))));
    }
    // The lease runs out only when no heartbeat succeeded in time: gstack's words for that,
    // then what the guard did.
    if result.outcome == Outcome::LeaseExpired {
        return Err(End::Block(gstack_text::lock_ownership_lost(format!(
            "{}; the {} step was stopped by its lease: {result}; it may have done part of its work: check the PR before `berth retry`",
            gstack_text::LOCK_HEARTBEAT_FAILED,
            step.as_str()
        ))));
    }
    Ok(result)
}

/// How long past the lock's TTL a heartbeat may take to say the lock is lost (its last
/// refresh attempt, bounded by the TTL deadline it watches).
const VERDICT_SLACK: Duration = Duration::from_secs(1);

/// A lease runs out a margin before the lock's TTL: within that margin (plus
/// [`VERDICT_SLACK`]) the heartbeat says whether the lock is lost, and why (taken over,
/// deleted, no refresh within the TTL), or a late refresh kept it.
async fn await_verdict(heartbeat: &Heartbeat) {
    let left = heartbeat.snapshot().time_until_lost(Instant::now());
    let mut lost = heartbeat.lost();
    let _ = tokio::time::timeout(left + VERDICT_SLACK, lost.wait_for(|lost| *lost)).await;
}

/// Moves the record to the status of the `next` step (`drift_repairing` counts a retry).
async fn move_to(l: &Landing, next: Step, result: &StepResult) -> Result<Record, StoreError> {
    let (from, to) = match next {
        Step::Ship => (Status::Landing, Status::DriftRepairing),
        Step::Land => (Status::DriftRepairing, Status::Landing),
    };
    let (id, repaired) = (l.c.id.clone(), format!("drift repair: {result}"));
    l.blocking(move |crew| {
        crew.records.transition(
            Move::new(&id, Expect::Mine(&[from], &crew.owner), to),
            |r| {
                if to == Status::DriftRepairing {
                    r.retries = Some(r.retries.unwrap_or(0) + 1);
                    r.last_error = Some(repaired);
                }
            },
        )
    })
    .await
}
