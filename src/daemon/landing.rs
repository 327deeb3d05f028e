//! One landing, claim to settle (DESIGN §3 step 6). The task owns the record, the lane
//! lock, the heartbeat and the child processes, and releases the lock on every path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::boot_clock::BootTime;
use crate::forge::{ClaimRefusal, ForgeRepo, PrRef, PrState, verify_claim};
use crate::gstack_text;
use crate::lane_lock::{Acquire, Heartbeat, HeldLock, Lane, Released, lock_ref_name};
use crate::record::{Record, Status};
use crate::rules::contracts::landing::{LandDecision, LandFacts};
use crate::runner::{Fence, Lease, Outcome, Step, StepResult, StepVars, follow_heartbeat};
use crate::store::{Expect, StoreError};

use super::shutdown::ReleaseEnd;
use super::{Candidate, Shared, policy, worktree};

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

impl OutcomeKind {
    /// The metrics label: `landed`, `blocked`, `requeued`, `lane_busy`, `interrupted`,
    /// `skipped`.
    pub fn label(&self) -> &'static str {
        match self {
            OutcomeKind::Landed => "landed",
            OutcomeKind::Blocked(_) => "blocked",
            OutcomeKind::Requeued(_) => "requeued",
            OutcomeKind::LaneBusy(_) => "lane_busy",
            OutcomeKind::Interrupted => "interrupted",
            OutcomeKind::Skipped(_) => "skipped",
        }
    }
}

impl LaneOutcome {
    pub fn ended_blocked(&self) -> bool {
        matches!(self.kind, OutcomeKind::Blocked(_))
    }

    /// Whether the landing took its record in hand (claimed it and got to an outcome), as
    /// opposed to finding the lane busy or the record moved.
    pub fn took_the_record(&self) -> bool {
        !matches!(
            self.kind,
            OutcomeKind::LaneBusy(_) | OutcomeKind::Skipped(_)
        )
    }

    /// Whether the lane may take its next record in this same tick: yes after a verdict,
    /// no when the lane is locked elsewhere or the record went back for a transient reason
    /// (retrying at once would hammer the forge in a loop).
    pub fn lane_may_retry_this_tick(&self) -> bool {
        matches!(
            self.kind,
            OutcomeKind::Landed | OutcomeKind::Blocked(_) | OutcomeKind::Interrupted
        )
    }
}

/// What to write when the landing stops short of a verdict.
enum Stop {
    Block(String),
    Requeue(String),
    LaneBusy(String),
    /// The landing policy asked for another try later (`berthNotBefore`, ISO time).
    Defer {
        reason: String,
        not_before: String,
    },
}

/// How long a stopping landing still waits for a forge or lock answer already asked for:
/// long enough for a healthy forge, short enough to stay inside the shutdown budget.
const ANSWER_GRACE: Duration = Duration::from_secs(1);

/// Runs blocking forge or lock work on its own thread. If `cancel` fires first, waits at
/// most [`ANSWER_GRACE`] more; `None` when the answer did not come (or the task failed).
async fn ask<T: Send + 'static>(
    cancel: &CancellationToken,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    ask_or_clean_up(cancel, work, |_| {}).await
}

/// [`ask`], and when the caller has stopped waiting, hands the late answer to `late` (on a
/// blocking thread): e.g. a lane lock taken after a signal is released, not orphaned.
async fn ask_or_clean_up<T: Send + 'static>(
    cancel: &CancellationToken,
    work: impl FnOnce() -> T + Send + 'static,
    late: impl FnOnce(T) + Send + 'static,
) -> Option<T> {
    let mut task = tokio::task::spawn_blocking(work);
    tokio::select! {
        done = &mut task => done.ok(),
        () = cancel.cancelled() => match tokio::time::timeout(ANSWER_GRACE, &mut task).await {
            Ok(done) => done.ok(),
            Err(_) => {
                tokio::spawn(async move {
                    if let Ok(answer) = task.await {
                        let _ = tokio::task::spawn_blocking(move || late(answer)).await;
                    }
                });
                None
            }
        },
    }
}

/// The records this process is landing, each with the copy it claimed. The tick tells
/// this daemon's real landings from a record planted in its name by it, and a signal
/// revives a record whose file vanished mid-landing from this copy (gstack test 44).
#[derive(Debug, Default)]
pub struct Active {
    landing: Mutex<HashMap<String, Record>>,
    /// Verdicts the store could not write yet.
    pub(super) unsaved: Mutex<HashMap<String, super::unsaved::Unsaved>>,
}

impl Active {
    /// Whether this process is landing `id` right now, or holds its unwritten verdict.
    pub fn holds(&self, id: &str) -> bool {
        self.map().contains_key(id) || super::unsaved::holds(self, id)
    }

    /// The copy of `id` this process claimed, if it is landing it.
    pub fn copy_of(&self, id: &str) -> Option<Record> {
        self.map().get(id).cloned()
    }

    /// Registers a landing until the returned guard drops (on every path out of it).
    fn register(&self, id: &str, record: Record) -> Registered<'_> {
        self.map().insert(id.to_owned(), record);
        Registered {
            active: self,
            id: id.to_owned(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.landing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Registered<'a> {
    active: &'a Active,
    id: String,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.active.map().remove(&self.id);
    }
}

/// Why an in-flight record no live process owns is stranded ([`crate::ownership`]), or
/// claimed in this daemon's own name while no landing of it runs here (a planted claim).
pub(super) fn stranded_reason(
    shared: &Shared,
    stored: &crate::store::StoredRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let record = &stored.record;
    if record.status.is_in_flight()
        && record.claimed_by.as_deref() == Some(shared.owner.as_str())
        && !shared.active.holds(&stored.id)
    {
        return Some(format!(
            "claimed in this daemon's name ({}) but no landing of it runs here",
            shared.owner
        ));
    }
    crate::ownership::stranded_reason(record, shared.config.lock_ttl(), now)
}

/// Before a stranded record goes back to the queue: whatever its gone owner still runs
/// for it on this host is killed (the step's guard normally did so already).
pub(super) fn end_strays(stored: &crate::store::StoredRecord) -> Result<(), String> {
    match stored.record.claimed_by.as_deref() {
        Some(owner) => crate::runner::end_strays(&record_mark_of(stored), owner).map(|_| ()),
        None => Ok(()),
    }
}

/// The landing mark of a stored record ([`crate::runner::record_mark`]).
fn record_mark_of(stored: &crate::store::StoredRecord) -> std::path::PathBuf {
    let queue_dir = stored.path.parent().unwrap_or(std::path::Path::new("."));
    crate::runner::record_mark(queue_dir, &stored.id)
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
    shared.telemetry.landing_done(kind.label());
    // gstack's `PR #<N>: <status>`, then why.
    let pr = |status: Status| gstack_text::pr_status(candidate.record.pr_number, status);
    match &kind {
        OutcomeKind::Landed => tracing::info!(record = %id, "{}", pr(Status::Landed)),
        OutcomeKind::Blocked(why) => {
            tracing::warn!(record = %id, "{}: {why}", pr(Status::Blocked))
        }
        // gstack logs why (e.g. the lock's answer) on its own line, then the status.
        OutcomeKind::Requeued(why) => {
            tracing::warn!(record = %id, "{why}");
            tracing::warn!(record = %id, "{}: back in the queue", pr(Status::Queued))
        }
        OutcomeKind::LaneBusy(why) => {
            tracing::info!(record = %id, "{why}");
            tracing::info!(record = %id, "{}: lane skipped", pr(Status::Queued))
        }
        OutcomeKind::Interrupted => {
            tracing::warn!(record = %id, "{}: interrupted; back in the queue", pr(Status::Queued))
        }
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
    // Registered before the claim is written, so a tick never sees our claim unregistered.
    let _registered = shared.active.register(&c.id, c.record.clone());
    if let Err(e) = shared.transition(
        &c.id,
        Expect::OneOf(&[Status::Queued]),
        Status::Claiming,
        |r| {
            r.claimed_by = Some(owner);
            r.extra.remove(policy::NOT_BEFORE_FIELD);
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

    let verified = verify_on_forge(shared, c, &origin_url, cancel).await;
    if cancel.is_cancelled() {
        super::shutdown::revive(shared, &c.id);
        return OutcomeKind::Interrupted;
    }
    if let Err(stop) = verified {
        return settle_stop(shared, c, stop);
    }
    // Before the lock write starts, so the step's lease never outlasts the lock.
    let leased_at = BootTime::now();
    let held = match acquire_lock(shared, c, lane, &origin_url, cancel).await {
        Ok(held) => {
            shared.tally.lock_taken();
            held
        }
        Err(_) if cancel.is_cancelled() => {
            super::shutdown::revive(shared, &c.id);
            return OutcomeKind::Interrupted;
        }
        Err(stop) => return settle_stop(shared, c, stop),
    };
    if cancel.is_cancelled() {
        super::shutdown::revive(shared, &c.id);
        release_lock(shared, held, ReleaseAt::PreHeartbeat).await;
        return OutcomeKind::Interrupted;
    }
    let heartbeat = Heartbeat::spawn(Arc::clone(&shared.locks), held, cancel);
    shared.telemetry.lock_held(heartbeat.watch());
    let (prep_shared, prep_c) = (Arc::clone(shared), c.clone());
    let prepared = ask_or_clean_up(
        cancel,
        move || worktree::prepare(&prep_shared, &prep_c),
        |late| {
            if let Ok(place) = late {
                place.remove();
            }
        },
    )
    .await;
    let verdict = match prepared {
        Some(Ok(place)) => {
            let verdict = run_steps(shared, c, &place, (&heartbeat, leased_at), cancel).await;
            place.remove();
            verdict
        }
        Some(Err(e)) => Verdict::Stop(Stop::Block(
            match e.downcast_ref::<worktree::BranchGone>() {
                Some(gone) => gone.to_string(),
                None => format!("cannot prepare a worktree: {e:#}"),
            },
        )),
        None if cancel.is_cancelled() => Verdict::Interrupted,
        None => Verdict::Stop(Stop::Requeue(
            "preparing the worktree did not finish".into(),
        )),
    };
    // The record is settled first (a local write), then the lock released (a network
    // call): a shutdown that runs out of budget must not leave the record in flight.
    let outcome = match verdict {
        Verdict::Interrupted => {
            super::shutdown::revive(shared, &c.id);
            OutcomeKind::Interrupted
        }
        Verdict::Stop(stop) => settle_stop(shared, c, stop),
        Verdict::Landed(kind) => kind,
    };
    let held = heartbeat.stop().await;
    release_lock(shared, held, ReleaseAt::Settled).await;
    outcome
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
    cancel: &CancellationToken,
) -> Result<(), Stop> {
    let forge = Arc::clone(&shared.forge);
    let repo = ForgeRepo::new(c.gated.identity.clone(), origin_url.to_owned());
    let candidate = c.clone();
    let checked = ask(cancel, move || {
        let record = &candidate.record;
        let pr = PrRef {
            number: record.pr_number,
            feature_branch: &record.feature_branch,
            base_branch: &record.base_branch,
        };
        forge.check_pr(&repo, &pr).map(|mut check| {
            // GitHub closes a PR whose head branch is deleted, and keeps the branch's
            // name: ask origin, so the refusal can say the branch is gone.
            if check.state == PrState::Closed && check.head_on_origin.is_none() {
                match worktree::feature_on_origin(&candidate) {
                    Ok(present) => check.head_on_origin = Some(present),
                    Err(e) => tracing::debug!(record = %candidate.id, "feature branch not looked up: {e:#}"),
                }
            }
            verify_claim(&check, &pr)
        })
    })
    .await;
    match checked {
        Some(Ok(Ok(()))) => Ok(()),
        // gstack has no claim check for this; it fails at the fetch, with git's words.
        Some(Ok(Err(gone @ ClaimRefusal::BranchGone { .. }))) => Err(Stop::Block(gone.to_string())),
        Some(Ok(Err(refusal))) => Err(Stop::Block(gstack_text::marker_verification_failed(
            refusal,
        ))),
        Some(Err(e)) => Err(Stop::Requeue(format!("could not check the PR: {e}"))),
        None => Err(Stop::Requeue("the claim check did not finish".into())),
    }
}

async fn acquire_lock(
    shared: &Arc<Shared>,
    c: &Candidate,
    lane: &Lane,
    origin_url: &str,
    cancel: &CancellationToken,
) -> Result<HeldLock, Stop> {
    let locks = Arc::clone(&shared.locks);
    let (url, lane, owner, repo) = (
        origin_url.to_owned(),
        lane.clone(),
        shared.owner.clone(),
        c.gated.repo.path.clone(),
    );
    tracing::debug!(lock = %lock_ref_name(&lane), origin = %url, "taking the lane lock");
    let releaser = Arc::clone(&shared.locks);
    let release_late = move |late: Result<Acquire, crate::lane_lock::LockError>| {
        if let Ok(Acquire::Acquired(held)) = late {
            let _ = releaser.release(&held);
        }
    };
    let acquired = ask_or_clean_up(cancel, move || match locks.acquire(&url, &lane, &owner, &repo)? {
        // This process runs one landing per lane, and this one has not taken the lock yet:
        // a live lock in our own name is an orphan (a release that failed, or a create
        // whose answer was lost). Remove exactly it, then take the lane properly.
        Acquire::HeldElsewhere { holder, sha } if holder.owner_id == owner => {
            tracing::warn!(lock = %lock_ref_name(&lane), %sha, "removing this process's own orphaned lane lock");
            locks.force_release(&url, &lock_ref_name(&lane), &sha)?;
            locks.acquire(&url, &lane, &owner, &repo)
        }
        other => Ok(other),
    }, release_late)
    .await;
    match acquired {
        Some(Ok(Acquire::Acquired(held))) => Ok(held),
        Some(Ok(Acquire::HeldElsewhere { holder, .. })) => {
            Err(Stop::LaneBusy(gstack_text::lock_unavailable(
                &c.record.base_branch,
                gstack_text::lock_held_by(&holder.owner_id, &holder.expires_at),
            )))
        }
        Some(Ok(Acquire::Unreadable { reason, .. })) => {
            Err(Stop::LaneBusy(gstack_text::lock_unavailable(
                &c.record.base_branch,
                format!("{reason}; inspect it with `berth lock status`"),
            )))
        }
        // gstack logs every lock it did not get this way, errors included.
        Some(Err(e)) => Err(Stop::Requeue(gstack_text::lock_unavailable(
            &c.record.base_branch,
            e,
        ))),
        None => Err(Stop::Requeue(
            "taking the lane lock did not finish; if it was taken, it expires on its TTL".into(),
        )),
    }
}

/// `landing` → land → merge proof → the landing policy's verdict; on `drift_repair`:
/// `drift_repairing` → ship → `landing` → land again.
async fn run_steps(
    shared: &Arc<Shared>,
    c: &Candidate,
    place: &worktree::Place,
    (heartbeat, leased_at): (&Heartbeat, BootTime),
    cancel: &CancellationToken,
) -> Verdict {
    if let Err(e) = shared.transition(
        &c.id,
        Expect::OneOf(&[Status::Claiming]),
        Status::Landing,
        |_| {},
    ) {
        return Verdict::Stop(Stop::Requeue(e.to_string()));
    }
    let mut vars = StepVars {
        pr: c.record.pr_number,
        branch: c.record.feature_branch.clone(),
        base: c.record.base_branch.clone(),
        repo: c.gated.repo.path.clone(),
        worktree: place.path().to_owned(),
        lock_ref: heartbeat.snapshot().ref_name().to_owned(),
        lock_sha: String::new(),
    };
    // Each successful heartbeat extends the lease the steps' guards hold.
    let lease = Lease::new(leased_at, shared.locks.settings().ttl);
    let follow = tokio::spawn(follow_heartbeat(heartbeat.refreshed(), lease.clone()));
    let fence = Fence {
        repo: &c.gated.repo.pin,
        worktree: place.dir(),
        lease: &lease,
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
    let mut retries = c.record.retries.unwrap_or(0);
    let attempt = match shared.runner.claim_attempt(&c.id, retries + 1) {
        Ok(attempt) => attempt,
        Err(e) => {
            lost_watch.abort();
            follow.abort();
            return Verdict::Stop(Stop::Block(e.to_string()));
        }
    };
    let mut step = Step::Land;
    let verdict = loop {
        if let Err(why) = worktree::verify_dirs(c, Some(place)) {
            break Verdict::Stop(Stop::Block(format!(
                "{} step not started: {why}",
                step.as_str()
            )));
        }
        vars.lock_sha = heartbeat.snapshot().sha();
        let result = match shared
            .runner
            .run_in(step, &c.id, &vars, Some(&fence), attempt, &steps_cancel)
            .await
        {
            Ok(result) => result,
            Err(e) => break Verdict::Stop(Stop::Block(e.to_string())),
        };
        if shared.stop.is_set() && !result.succeeded() {
            break Verdict::Interrupted;
        }
        if heartbeat.is_lost() {
            let why = heartbeat
                .snapshot()
                .loss()
                .unwrap_or(gstack_text::LOCK_HEARTBEAT_FAILED);
            break Verdict::Stop(Stop::Block(gstack_text::lock_ownership_lost(format!(
                "{why}; the {} step was stopped (another daemon may own the lane): {result}",
                step.as_str()
            ))));
        }
        if result.outcome == Outcome::LeaseExpired {
            break Verdict::Stop(Stop::Block(gstack_text::lock_ownership_lost(format!(
                "the {} step was stopped by its lease: {}; it may have done part of its work: check the PR before `berth retry`",
                step.as_str(),
                result
            ))));
        }
        let next = match step {
            // A ship that failed is the verdict; one that worked is followed by a land.
            Step::Ship if result.succeeded() => Step::Land,
            Step::Ship => {
                break Verdict::Stop(Stop::Block(format!(
                    "{}: {result}",
                    gstack_text::drift_ship_failed(result.exit_code(), result.timed_out())
                )));
            }
            Step::Land => match judge_land(shared, c, &result, retries, cancel).await {
                Judged::Landed { checked_at } => break write_landed(shared, c, checked_at),
                Judged::Repair => Step::Ship,
                Judged::Stop(stop) => break Verdict::Stop(stop),
                Judged::Interrupted => break Verdict::Interrupted,
            },
        };
        let (from, to) = match next {
            Step::Ship => (Status::Landing, Status::DriftRepairing),
            Step::Land => (Status::DriftRepairing, Status::Landing),
        };
        let written = shared.transition(&c.id, Expect::OneOf(&[from]), to, |r| {
            if to == Status::DriftRepairing {
                r.retries = Some(r.retries.unwrap_or(0) + 1);
                r.last_error = Some(format!("drift repair: {result}"));
            }
        });
        if let Err(e) = written {
            break Verdict::Stop(Stop::Requeue(e.to_string()));
        }
        if to == Status::DriftRepairing {
            retries += 1;
        }
        step = next;
    };
    lost_watch.abort();
    follow.abort();
    verdict
}

/// What the landing policy made of a land step.
enum Judged {
    Landed {
        checked_at: String,
    },
    Repair,
    Stop(Stop),
    /// Stopping before the forge answered.
    Interrupted,
}

/// The facts of a land step (with the forge's merge proof after an exit 0), judged by the
/// landing policy's `on_land_result`. Only "exit 0 **and** the forge proved the merge"
/// can come back as landed: the contract refuses anything else.
async fn judge_land(
    shared: &Arc<Shared>,
    c: &Candidate,
    result: &StepResult,
    retries: u32,
    cancel: &CancellationToken,
) -> Judged {
    if let Err(why) = worktree::verify_dirs(c, None) {
        return Judged::Stop(Stop::Block(format!(
            "merge proof not asked: {why}; {result}"
        )));
    }
    let (merged, forge_state, summary) = if result.succeeded() {
        match merge_facts(shared, c, result, cancel).await {
            Some(facts) => facts,
            None => return Judged::Interrupted,
        }
    } else {
        let failed = gstack_text::land_failed(
            result.exit_code(),
            result.timed_out(),
            result.log_path.display(),
        );
        (false, None, format!("{failed}: {result}"))
    };
    let checked_at = crate::clock::now_iso();
    let facts = LandFacts {
        succeeded: result.succeeded(),
        exit_code: result.exit_code(),
        timed_out: result.timed_out(),
        drift: result.drift_detected(),
        merged,
        forge_state,
        summary,
        log_path: result.log_path.display().to_string(),
        retries,
        attempt: result.attempt,
    };
    let (ask, id, record, lane) = (
        Arc::clone(shared),
        c.id.clone(),
        c.record.clone(),
        Shared::lane_of(c),
    );
    let asked = facts.clone();
    let verdict = tokio::task::spawn_blocking(move || {
        policy::on_land_result(&ask, &id, &record, &lane, &asked)
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!(record = %c.id, "landing policy task failed: {e}; using the default");
        crate::rules::contracts::landing::default_verdict(&facts)
    });
    let with_log = |reason: String| {
        if reason.contains(&facts.log_path) {
            reason
        } else {
            format!("{reason} (log: {})", facts.log_path)
        }
    };
    match verdict.decision {
        // The contract already refuses `landed` without the proof; this holds even if a
        // future contract forgot to.
        LandDecision::Landed if facts.succeeded && facts.merged => Judged::Landed { checked_at },
        LandDecision::Landed => Judged::Stop(Stop::Block(with_log(facts.summary.clone()))),
        LandDecision::DriftRepair => Judged::Repair,
        LandDecision::Blocked => Judged::Stop(Stop::Block(with_log(verdict.reason))),
        LandDecision::Requeue(delay) => Judged::Stop(Stop::Defer {
            reason: with_log(verdict.reason),
            not_before: policy::not_before(shared, delay),
        }),
    }
}

/// After an exit 0: whether the forge proves the merge, its state, and the core's one-line
/// account of it (the `lastError` a block writes).
async fn merge_facts(
    shared: &Arc<Shared>,
    c: &Candidate,
    result: &StepResult,
    cancel: &CancellationToken,
) -> Option<(bool, Option<String>, String)> {
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
    let proof = ask(cancel, move || {
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
    let forge_name = if shared.forge.name() == "gh" {
        "GitHub"
    } else {
        "origin"
    };
    let log = result.log_path.display();
    let Some(proof) = proof else {
        // Stopping, and the forge did not answer in time: the record goes back to the
        // queue; the next claim check or reconcile learns whether it merged.
        return None;
    };
    Some(match proof {
        Ok(proof) if proof.merged => (
            true,
            Some(proof.state.to_string()),
            format!(
                "landing command exited 0 and {forge_name} reports PR #{} merged; log: {log}",
                c.record.pr_number
            ),
        ),
        Ok(proof) => (
            false,
            Some(proof.state.to_string()),
            gstack_text::forge_disagrees(
                forge_name,
                gstack_text::pr_not_merged(
                    c.record.pr_number,
                    proof.state.to_string().to_uppercase(),
                    forge_name,
                ),
                log,
            ),
        ),
        Err(e) => (
            false,
            None,
            gstack_text::forge_disagrees(
                forge_name,
                format!("the merge could not be proven: {e}"),
                log,
            ),
        ),
    })
}

/// The proven merge, written (or kept to be written on later ticks, see [`super::unsaved`]).
fn write_landed(shared: &Shared, c: &Candidate, checked_at: String) -> Verdict {
    let verdict = Kept::Landed { checked_at };
    match verdict.write(shared, &c.id) {
        Ok(_) => Verdict::Landed(OutcomeKind::Landed),
        Err(e @ StoreError::Io { .. }) => {
            super::unsaved::keep(shared, &c.id, verdict, &e);
            Verdict::Landed(OutcomeKind::Skipped(format!(
                "landed, but the verdict could not be written yet: {e}"
            )))
        }
        Err(e) => Verdict::Landed(OutcomeKind::Skipped(format!(
            "landed, but the record moved: {e}"
        ))),
    }
}

/// Writes a stop short of `landed`: blocked, or back to queued.
fn settle_stop(shared: &Shared, c: &Candidate, stop: Stop) -> OutcomeKind {
    let mut not_before = None;
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
        Stop::Defer {
            reason,
            not_before: at,
        } => {
            let kind = OutcomeKind::Requeued(format!("{reason}; not before {at}"));
            not_before = Some(at);
            (Status::Queued, reason, kind)
        }
    };
    let verdict = Kept::Settled {
        to,
        reason,
        not_before,
    };
    match verdict.write(shared, &c.id) {
        Ok(_) => kind,
        Err(e @ StoreError::Io { .. }) => {
            super::unsaved::keep(shared, &c.id, verdict, &e);
            OutcomeKind::Skipped(format!("the verdict could not be written yet: {e}"))
        }
        Err(e) => OutcomeKind::Skipped(format!("record moved before it could be settled: {e}")),
    }
}

/// A verdict to write on an in-flight record: the proven merge, or a stop short of it.
#[derive(Clone, Debug)]
pub enum Kept {
    Landed {
        checked_at: String,
    },
    Settled {
        to: Status,
        reason: String,
        not_before: Option<String>,
    },
}

impl Kept {
    /// Writes it; an `Io` error (ENOSPC, EIO) means it may be written again later.
    pub fn write(&self, shared: &Shared, id: &str) -> Result<Record, StoreError> {
        match self {
            Kept::Landed { checked_at } => {
                shared.transition(id, Expect::OneOf(&[Status::Landing]), Status::Landed, |r| {
                    r.last_error = None;
                    r.claimed_by = None;
                    r.last_github_checked_at = Some(checked_at.clone());
                    r.last_github_state = Some("MERGED".into());
                })
            }
            Kept::Settled {
                to,
                reason,
                not_before,
            } => shared.transition(id, Expect::OneOf(&Status::IN_FLIGHT), *to, |r| {
                r.claimed_by = None;
                r.last_error = Some(reason.clone());
                if let Some(at) = not_before {
                    r.extra
                        .insert(policy::NOT_BEFORE_FIELD.to_owned(), serde_json::json!(at));
                }
            }),
        }
    }

    /// "landed", "blocked", "queued": what the verdict makes of the record.
    pub fn status(&self) -> Status {
        match self {
            Kept::Landed { .. } => Status::Landed,
            Kept::Settled { to, .. } => *to,
        }
    }
}

/// When a landing lets go of its lane lock: its failure is said in gstack's words for
/// that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReleaseAt {
    /// A signal came after the lock was taken, before its heartbeat started.
    PreHeartbeat,
    /// The record is settled (or put back after a signal).
    Settled,
}

/// Releases the lane lock, bounded so a dead remote cannot hold up a shutdown. After a
/// signal, the release counts toward gstack's `signal <SIG>: released …` line.
async fn release_lock(shared: &Arc<Shared>, held: HeldLock, at: ReleaseAt) {
    let locks = Arc::clone(&shared.locks);
    let ref_name = held.ref_name().to_owned();
    let release = tokio::task::spawn_blocking(move || locks.release(&held));
    // (how it ended, why it failed, whether it crashed)
    let (end, failure, threw) = match tokio::time::timeout(RELEASE_BUDGET, release).await {
        Ok(Ok(Ok(released @ (Released::Deleted | Released::AlreadyGone)))) => {
            tracing::debug!(lock = %ref_name, ?released, "lane lock released");
            (ReleaseEnd::Released, String::new(), false)
        }
        Ok(Ok(Ok(Released::NotOurs { now_sha }))) => (
            ReleaseEnd::Failed,
            format!(
                "{}: it was taken over (now {now_sha}) and is left alone",
                gstack_text::LOCK_NOT_OWNED
            ),
            false,
        ),
        Ok(Ok(Err(e))) => (
            ReleaseEnd::Failed,
            format!("{e}; it expires on its TTL"),
            false,
        ),
        Ok(Err(e)) => (
            ReleaseEnd::Failed,
            format!("the release task failed: {e}"),
            true,
        ),
        Err(_) => (
            ReleaseEnd::TimedOut,
            "timed out; it expires on its TTL".to_owned(),
            false,
        ),
    };
    let signal = shared.stop.signal_name();
    shared.tally.release_ended(end, shared.stop.is_set());
    if end == ReleaseEnd::Released {
        return;
    }
    let line = match (at, signal) {
        (ReleaseAt::PreHeartbeat, _) => gstack_text::pre_heartbeat_release_failed(&failure),
        (ReleaseAt::Settled, Some(signal)) if end == ReleaseEnd::Failed && threw => {
            gstack_text::signal_release_threw(signal, format!("{ref_name}: {failure}"))
        }
        (ReleaseAt::Settled, Some(signal)) if end == ReleaseEnd::Failed => {
            gstack_text::signal_release_failed(signal, format!("{failure} ({ref_name})"))
        }
        _ => gstack_text::could_not_release(&ref_name, &failure),
    };
    tracing::warn!("{line}");
}
