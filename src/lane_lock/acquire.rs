//! Taking a lane's lock: create-only, or an expired or gone holder's taken over by
//! compare-and-swap.

use super::*;

/// Why a lock's holder is known to be gone (a dead berth process of this host).
pub(super) fn holder_gone(lock: &ReadLock) -> Option<String> {
    crate::ownership::gone_owner(&lock.payload.owner_id)
}

/// [`holder_gone`], once nothing the holder started still runs on this host: a step's
/// child that left its group outlives the holder and its guard, so every process marked
/// as the holder's is killed first ([`crate::runner::end_gone_owners_processes`]). A
/// holder whose processes cannot all be seen is not taken for gone: its lock waits for
/// its TTL.
fn holder_gone_and_stopped(lock: &ReadLock) -> Option<String> {
    let why = holder_gone(lock)?;
    match crate::runner::end_gone_owners_processes(&lock.payload.owner_id) {
        Ok(_) => Some(why),
        Err(e) => {
            tracing::warn!(
                holder = lock.payload.owner_id,
                "a lane lock's holder is gone, but not all it started can be seen to be: waiting for the lock's TTL: {e}"
            );
            None
        }
    }
}

impl LockClient {
    /// Takes the lane's lock, or says who holds it.
    ///
    /// Absent ref: create it (fails if someone created it first, then re-reads). Present:
    /// fetch and read it; unreadable → [`Acquire::Unreadable`]; live → [`Acquire::HeldElsewhere`];
    /// expired, or held by a berth of this host whose process is gone (pid and start
    /// time, [`crate::ownership::gone_owner`]) → take it over with a compare-and-swap
    /// against the sha read.
    ///
    /// gstack's ref and the refs every spelling of the repository shares are taken in the
    /// order of [`lane_lock_refs`]; the answer is the first that is not
    /// [`Acquire::Acquired`] (the locks taken are then given back), or all held as one
    /// [`HeldLock`] on gstack's ref.
    pub fn acquire(
        &self,
        origin_url: &str,
        lane: &Lane,
        owner_id: &str,
        repo_path: &Path,
    ) -> Result<Acquire, LockError> {
        let ref_name = checked_lock_ref(lane)?;
        let mut taken: Vec<HeldLock> = Vec::new();
        for lock_ref in lane_lock_refs(origin_url, lane) {
            match self.acquire_ref(origin_url, lock_ref, lane, owner_id, repo_path) {
                Ok(Acquire::Acquired(held)) => taken.push(held),
                other => {
                    self.release_aliases(&taken);
                    return other;
                }
            }
        }
        // `lane_lock_refs` always holds gstack's ref; were it missing, the lane would not
        // be held as gstack knows it, so nothing is kept.
        let Some(own) = taken.iter().position(|held| held.ref_name == ref_name) else {
            self.release_aliases(&taken);
            return Err(LockError::InvalidRef {
                ref_name,
                problem: "not among the lane's lock refs",
            });
        };
        let mut held = taken.remove(own);
        held.aliases = taken;
        held.aliases_before = own;
        Ok(Acquire::Acquired(held))
    }

    fn acquire_ref(
        &self,
        origin_url: &str,
        ref_name: String,
        lane: &Lane,
        owner_id: &str,
        repo_path: &Path,
    ) -> Result<Acquire, LockError> {
        let target = Target {
            url: origin_url,
            ref_name: &ref_name,
        };
        let scratch = self.scratch()?;
        let mut last = String::new();
        // gstack's words for the step that failed last.
        let mut why = gstack_text::LOCK_ALREADY_HELD;
        for attempt in 0..MAX_ATTEMPTS {
            backoff(attempt);
            // Create: only where the ref is absent.
            let (sha, payload, started) =
                self.write_new_lock(&scratch, &target, lane, owner_id, repo_path)?;
            let outcome = self
                .swap(
                    &scratch,
                    &target,
                    LockWrite::Create,
                    Expect::Absent,
                    Some(sha),
                )
                .map_err(|e| target.remote_error("create", e))?;
            match outcome {
                PushOutcome::Applied => {
                    return Ok(Acquire::Acquired(
                        self.held(&target, lane, sha, payload, started),
                    ));
                }
                PushOutcome::Rejected { status } => {
                    (why, last) = (
                        gstack_text::LOCK_ALREADY_HELD,
                        format!("create rejected: {status}"),
                    );
                    continue;
                }
                PushOutcome::Refused { .. } => {}
            }
            let (current, read) = match read_remote_lock(&scratch, &target)? {
                RemoteLock::Absent => {
                    (why, last) = (
                        gstack_text::LOCK_ALREADY_HELD,
                        "the lock vanished while being read".to_owned(),
                    );
                    continue;
                }
                RemoteLock::Present { sha, read } => (sha, read),
            };
            let expired = match read {
                Err(reason) => {
                    return Ok(Acquire::Unreadable {
                        sha: current.to_string(),
                        reason: reason.to_string(),
                    });
                }
                Ok(lock) => expiry_cap::capped(
                    lock,
                    current,
                    &ref_name,
                    expiry_cap::Seen {
                        sightings: &self.sightings.expiry,
                        longest_ttl: self.longest_ttl(),
                        now: clock::now(),
                        look: expiry_cap::Look::Take,
                    },
                ),
            };
            match holder_gone_and_stopped(&expired) {
                _ if !expired.is_live_at(clock::now()) => tracing::info!(
                    ref_name,
                    holder = expired.payload.owner_id,
                    expired_at = expired.payload.expires_at,
                    "taking over an expired lane lock"
                ),
                // A crashed berth on this host: recovered by this start, not by the TTL.
                Some(why) => tracing::warn!(
                    ref_name,
                    holder = expired.payload.owner_id,
                    "taking over a live lane lock whose holder is gone: {why}"
                ),
                None => {
                    return Ok(Acquire::HeldElsewhere {
                        holder: expired.payload,
                        sha: current.to_string(),
                        ref_name,
                    });
                }
            }
            let (sha, payload, started) =
                self.write_new_lock(&scratch, &target, lane, owner_id, repo_path)?;
            let outcome = self
                .swap(
                    &scratch,
                    &target,
                    LockWrite::Takeover,
                    Expect::At(current),
                    Some(sha),
                )
                .map_err(|e| target.remote_error("takeover", e))?;
            match outcome {
                PushOutcome::Applied => {
                    return Ok(Acquire::Acquired(
                        self.held(&target, lane, sha, payload, started),
                    ));
                }
                PushOutcome::Refused { advertised } => {
                    (why, last) = (
                        gstack_text::STALE_STEAL_FAILED,
                        format!("takeover lost: the lock moved from {current} to {advertised}"),
                    );
                }
                PushOutcome::Rejected { status } => {
                    (why, last) = (
                        gstack_text::STALE_STEAL_FAILED,
                        format!("takeover rejected: {status}"),
                    );
                }
            }
        }
        Err(target.contended(why, "acquire", last))
    }
}
