//! Taking a lane's lock: create-only, or an expired or gone holder's taken over by
//! compare-and-swap.

use super::broken_ref::{self, Room};
use super::expiry_cap::ExpirySightings;
use super::in_the_way::InTheWay;
use super::standing::Standing;
use super::*;
use super::{broken_above, leftover, local_deadline, refs_look};

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
        let taker = Taker {
            lane,
            owner_id,
            repo_path,
        };
        let mut taken: Vec<HeldLock> = Vec::new();
        for lock_ref in lane_lock_refs(origin_url, lane) {
            match self.acquire_ref(origin_url, lock_ref, &taker) {
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
        taker: &Taker<'_>,
    ) -> Result<Acquire, LockError> {
        let target = Target {
            url: origin_url,
            ref_name: &ref_name,
            deadline: self.settings.remote_timeout,
        };
        let scratch = self.scratch()?;
        let mut last = String::new();
        // gstack's words for the step that failed last.
        let mut why = gstack_text::LOCK_ALREADY_HELD;
        for attempt in 0..MAX_ATTEMPTS {
            backoff(attempt);
            match self.create(&scratch, &target, taker)? {
                Created::Done(acquire) => return Ok(*acquire),
                Created::Retry(failed) => {
                    (why, last) = (gstack_text::LOCK_ALREADY_HELD, failed);
                    continue;
                }
                Created::Exists => {}
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
            let lock = match read {
                Err(reason) => {
                    return Ok(Acquire::Unreadable {
                        sha: current.to_string(),
                        reason: reason.to_string(),
                    });
                }
                Ok(lock) => lock,
            };
            match self.standing(lock, current, &ref_name) {
                Standing::Expired(lock) => tracing::info!(
                    ref_name,
                    holder = lock.payload.owner_id,
                    expired_at = lock.payload.expires_at,
                    "taking over an expired lane lock"
                ),
                // A crashed berth on this host: recovered by this start, not by the TTL.
                Standing::HolderGone(lock, why) => tracing::warn!(
                    ref_name,
                    holder = lock.payload.owner_id,
                    "taking over a live lane lock whose holder is gone: {why}"
                ),
                Standing::Live(lock) => {
                    return Ok(Acquire::HeldElsewhere {
                        holder: lock.payload,
                        sha: current.to_string(),
                        ref_name,
                    });
                }
            }
            let (sha, payload, started) = self.write_new_lock(&scratch, &target, taker)?;
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
                        self.held(&target, taker.lane, sha, payload, started),
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
                PushOutcome::Redirected { reason } => {
                    return Err(target.redirected("takeover", reason));
                }
            }
        }
        Err(target.contended(why, "acquire", last))
    }

    /// Creates the lock where the ref is absent. A create that failed may have met a ref
    /// in the way of the lock ref (git's directory/file conflict): those are judged and
    /// cleared, or hold the lane ([`in_the_way`]). Over the network the server rejects
    /// such a create (a rejection is looked into; a transport failure is not, where a
    /// second listing would cost a second timeout); a local origin's writer fails with
    /// git's words (a listing of local files), and rejects a create only for a `.lock`.
    fn create(
        &self,
        scratch: &Scratch,
        target: &Target<'_>,
        taker: &Taker<'_>,
    ) -> Result<Created, LockError> {
        let (sha, payload, started) = self.write_new_lock(scratch, target, taker)?;
        let created = self.swap(
            scratch,
            target,
            LockWrite::Create,
            Expect::Absent,
            Some(sha),
        );
        let failed = match created {
            Ok(PushOutcome::Applied) => {
                let held = self.held(target, taker.lane, sha, payload, started);
                return Ok(Created::Done(Box::new(Acquire::Acquired(held))));
            }
            Ok(PushOutcome::Refused { .. }) => return Ok(Created::Exists),
            Ok(PushOutcome::Redirected { reason }) => {
                return Err(target.redirected("create", reason));
            }
            // A local origin's writer reports a `.lock` in the way as a rejection, and
            // git's directory/file conflict as a failure: only the latter is looked into.
            Ok(PushOutcome::Rejected { status }) if local_origin(target.url).is_some() => {
                return Ok(Created::Retry(format!("create rejected: {status}")));
            }
            Ok(PushOutcome::Rejected { status }) => Ok(format!("create rejected: {status}")),
            // An origin that did not answer is asked nothing more.
            Err(e) if local_deadline::is_overdue(&e) => {
                return Err(target.remote_error("create", e));
            }
            Err(e) if local_origin(target.url).is_some() => Err(e),
            Err(e) => return Err(target.remote_error("create", e)),
        };
        // A local listing refuses an origin with a node it would hang on: one on the lock
        // ref's path is a broken ref, named as such.
        let way = match (self.clear_the_way(scratch, target), &failed) {
            (Err(listing), Err(_)) => match self.broken_ref(target) {
                Some(holds) => return Ok(Created::Done(Box::new(holds))),
                None => return Err(listing),
            },
            (way, _) => way?,
        };
        match way {
            InTheWay::Holds(acquire) => Ok(Created::Done(acquire)),
            InTheWay::Cleared => Ok(Created::Retry(
                "a ref in the way of the lock ref was cleared".to_owned(),
            )),
            InTheWay::Nothing => match failed {
                Ok(failed) => Ok(Created::Retry(failed)),
                Err(e) => match self.broken_ref(target) {
                    Some(holds) => Ok(Created::Done(Box::new(holds))),
                    None => Err(target.remote_error("create", e)),
                },
            },
        }
    }

    /// How a broken ref on or below a local origin's lock ref holds the lane
    /// ([`broken_ref`]): git's own error names nothing that ends. Read on a thread of its
    /// own under the deadline ([`local_deadline`]); `None` past it.
    fn broken_ref(&self, target: &Target<'_>) -> Option<Acquire> {
        let path = local_origin(target.url)?.ok()?;
        let (at, lock_ref) = (path.clone(), target.ref_name.to_owned());
        let expiry = Arc::clone(&self.sightings.expiry);
        let found = local_deadline::run(&path, target.deadline, None, move || {
            broken_ref_at(&at, &lock_ref, &expiry)
        });
        let reason = found.ok().flatten()?;
        Some(Acquire::Unreadable {
            sha: Oid::ZERO_SHA1.to_string(),
            reason,
        })
    }
}

/// Why a broken ref on or below `lock_ref` of the local origin at `path` holds the lane.
fn broken_ref_at(path: &Path, lock_ref: &str, expiry: &ExpirySightings) -> Option<String> {
    // Opening it reads its config and objects: not while a node there would hang it.
    let origin = refs_look::open_looked(path).ok()?;
    let writers_lock = origin.path().join(leftover::WRITERS_LOCK);
    let room = Room {
        origin: &origin,
        lock_ref,
        writers_lock: &writers_lock,
        expiry,
    };
    let lock_path = Path::new(lock_ref);
    let at = || refs_look::blocks_at(origin.path(), lock_path).map(|f| (lock_path.into(), f));
    let (name, file) = broken_above::find(&room)
        .or_else(at)
        .or_else(|| broken_ref::below(&room).into_iter().next())?;
    Some(room.holds(&name, file))
}

/// What a try to create the lock came to.
enum Created {
    /// Taken, or a ref in the lock ref's way holds the lane.
    Done(Box<Acquire>),
    /// The ref exists: read it.
    Exists,
    /// Try again (why the create failed).
    Retry(String),
}
