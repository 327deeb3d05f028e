//! How a lock found on the origin stands for a contender: live, expired, or held by a
//! berth of this host proven gone.

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
    /// How `lock` (the commit `sha` at `ref_name`) stands for a contender, its `expiresAt`
    /// capped ([`expiry_cap`]). A gone holder's stragglers are killed first, expired or not.
    pub(super) fn standing(&self, lock: ReadLock, sha: Oid, ref_name: &str) -> Standing {
        let lock = expiry_cap::capped(
            lock,
            sha,
            ref_name,
            expiry_cap::Seen {
                sightings: &self.sightings.expiry,
                now: clock::now(),
                look: expiry_cap::Look::Take,
            },
        );
        let gone = holder_gone_and_stopped(&lock);
        match gone {
            _ if !lock.is_live_at(clock::now()) => Standing::Expired(lock),
            Some(why) => Standing::HolderGone(lock, why),
            None => Standing::Live(lock),
        }
    }
}

/// How a lock found on the origin stands for a contender.
pub(super) enum Standing {
    /// Past its (capped) `expiresAt`: may be taken over.
    Expired(ReadLock),
    /// Live, but held by a berth of this host proven gone (why), whose processes are dead.
    HolderGone(ReadLock, String),
    /// Live and held: the lane is busy.
    Live(ReadLock),
}
