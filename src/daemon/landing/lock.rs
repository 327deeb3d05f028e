//! Lock: the lane lock on `origin` (DESIGN §4), the guarantee that one lane has one
//! landing at a time across every daemon sharing the origin.

use std::sync::Arc;

use std::time::Duration;

use crate::daemon::releasing::Waited;
use crate::gstack_text;
use crate::lane_lock::repo_keys::{Relearnt, relearn};
use crate::lane_lock::{Acquire, HeldLock, LockSettings, lock_ref_name};

use super::ask::{ask, ask_or_clean_up};
use super::{End, Landing};

/// A lane is held through at most three refs: gstack's, the repository's own `+repo` ref
/// and the canonical spelling's ref ([`crate::lane_lock::lane_lock_refs`]).
const LOCK_REFS_PER_LANE: u32 = 3;

/// How long a landing waits for its lane's previous release before it gives up without
/// writing the lock: as long as a local origin's release of every ref of the lane can
/// take, each ref's delete bounded by its reads' deadline and its git child's. Past it (a
/// network origin that does not answer, a ref that moved and is deleted again) the record
/// goes back to the queue and is tried again on the lane's backoff.
fn previous_release_wait(settings: &LockSettings) -> Duration {
    settings
        .longest_local_write()
        .saturating_mul(LOCK_REFS_PER_LANE)
}

/// Looks at the repository a local origin reaches again, off the loop (waiting at most the
/// local-access deadline), before the lane is taken: a key learnt earlier must not go
/// stale silently. If the path now reaches another repository, this landing, which the
/// daemon holds under the old key, does not go on: the record goes back to the queue and
/// the next tick weighs it under the new key against every lane in flight, so no moment
/// lets the old and the new key both be free for one landing. Fails closed when the origin
/// does not answer.
pub(super) async fn same_repository(l: &Landing) -> Result<(), End> {
    let (identity, keyed_by) = (l.lane.repo_identity.clone(), l.c.key.repo.clone());
    let looked = ask(&l.cancel, move || relearn(&identity, &keyed_by)).await;
    let why = match looked {
        Some(Ok(Relearnt::Same)) => return Ok(()),
        Some(Ok(Relearnt::Changed { was, now })) => {
            tracing::warn!(origin = %l.lane.repo_identity, %was, %now, "a local origin now reaches another repository; its lane is keyed by the new one from now on");
            format!(
                "the local origin {} now reaches another repository than when this landing started; it is weighed again under that one",
                l.lane.repo_identity
            )
        }
        Some(Err(overdue)) => overdue.to_string(),
        None if l.interrupted() => return Err(End::Interrupted),
        None => "the look at the local origin did not finish".into(),
    };
    Err(End::Requeue(gstack_text::lock_unavailable(
        &l.c.record.base_branch,
        why,
    )))
}

/// Waits until this lane's previous release (a landing of this process that ended just
/// before) is over, so that the lock is written only once the old one is gone or, if its
/// release failed, stands as this process's own leftover. Fails closed: past the wait, the
/// record goes back to the queue and nothing is written.
pub(super) async fn previous_release(l: &Landing) -> Result<(), End> {
    let lane = l.c.key.lane.clone();
    let wait = previous_release_wait(l.crew.locks.settings());
    let waited = tokio::select! {
        waited = l.crew.releasing.wait_for(&lane, wait) => waited,
        () = l.cancel.cancelled() => return Err(End::Interrupted),
    };
    match waited {
        Waited::Over => Ok(()),
        Waited::TimedOut => Err(End::Requeue(gstack_text::lock_unavailable(
            &l.c.record.base_branch,
            format!(
                "this daemon's previous release of the lane lock is still running after {} s",
                wait.as_secs()
            ),
        ))),
    }
}

/// Takes the lane lock on `origin`, or says why not (held elsewhere: the lane is busy).
pub(super) async fn acquire(l: &Landing, origin_url: &str) -> Result<HeldLock, End> {
    let (crew, c, lane, cancel) = (&l.crew, &l.c, &l.lane, &l.cancel);
    let locks = Arc::clone(&crew.locks);
    let (url, lane, owner, repo) = (
        origin_url.to_owned(),
        lane.clone(),
        crew.owner.clone(),
        c.gated.repo().path().to_owned(),
    );
    tracing::debug!(lock = %lock_ref_name(&lane), origin = %url, "taking the lane lock");
    let releaser = Arc::clone(&crew.locks);
    // The write counts as a release in flight until it answered and, if that answer came
    // too late, its lock was released: a stopping daemon waits for both (its writer child
    // runs on without it), so a clean stop leaves no lock behind.
    let in_flight = crew.releasing.begin(&c.key.lane);
    let release_late = move |late: Result<Acquire, crate::lane_lock::LockError>| {
        if let Ok(Acquire::Acquired(held)) = late {
            let _ = releaser.release(&held);
        }
        drop(in_flight);
    };
    let acquired = ask_or_clean_up(
        cancel,
        move || {
            // A live lock in our own name that no landing of this process holds
            // (`holds`: aliases berth keys apart share a ref) is an orphan (a release that
            // failed, or a create whose answer was lost). Remove exactly it, then take the
            // lane properly; at most once per ref of the lane.
            let mut outcome = locks.acquire(&url, &lane, &owner, &repo)?;
            for _ in 0..LOCK_REFS_PER_LANE {
                let Acquire::HeldElsewhere { holder, sha, ref_name } = &outcome else {
                    break;
                };
                if *holder.owner_id != *owner || locks.holds(sha) {
                    break;
                }
                tracing::warn!(lock = %ref_name, %sha, "removing this process's own orphaned lane lock");
                locks.force_release(&url, ref_name, sha)?;
                outcome = locks.acquire(&url, &lane, &owner, &repo)?;
            }
            Ok(outcome)
        },
        release_late,
    )
    .await;
    match acquired {
        Some(Ok(Acquire::Acquired(held))) => Ok(held),
        Some(Ok(Acquire::HeldElsewhere { holder, .. })) => {
            Err(End::LaneBusy(gstack_text::lock_unavailable(
                &c.record.base_branch,
                gstack_text::lock_held_by(&holder.owner_id, &holder.expires_at),
            )))
        }
        Some(Ok(Acquire::Unreadable { reason, .. })) => {
            Err(End::LaneBusy(gstack_text::lock_unavailable(
                &c.record.base_branch,
                format!("{reason}; inspect it with `berth lock status`"),
            )))
        }
        // gstack logs every lock it did not get this way, errors included.
        Some(Err(e)) => Err(End::Requeue(gstack_text::lock_unavailable(
            &c.record.base_branch,
            e,
        ))),
        None => Err(End::Requeue(
            "taking the lane lock did not finish; if it was taken, it expires on its TTL".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local origin's release deletes each of the lane's three refs, each under the
    /// 30 s remote timeout plus 9 s for each of the write's two git children, and 10 s
    /// more for a ref's writer child that started just before that (docs/limits.md): a
    /// wait shorter than that sends the lane's next record back to the queue while its
    /// previous release is still running normally.
    #[test]
    fn the_wait_for_a_previous_release_outlasts_a_local_release_of_every_lock_ref() {
        let settings = LockSettings::default();
        let per_ref = Duration::from_secs(30 + 2 * 9 + 10);
        assert!(previous_release_wait(&settings) >= 3 * per_ref);
        let slower = LockSettings {
            remote_timeout: Duration::from_secs(60),
            ..settings
        };
        assert!(previous_release_wait(&slower) >= 3 * Duration::from_secs(60 + 2 * 9 + 10));
    }
}
