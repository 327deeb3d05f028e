//! A lock's `expiresAt` is believed only as far ahead as a holder could have written it.
//!
//! A holder writes `expiresAt` as its write time plus its TTL, and its clock may be ahead
//! of this host's by up to [`MAX_CLOCK_SKEW`]. So a lock that expires further ahead than
//! the longest TTL berth accepts from a holder ([`LockClient::longest_ttl`]) plus that
//! skew was written by no holder berth knows: a planted ref, or a clock set years ahead.
//! Believed, it would hold the lane until someone ran `berth lock release --force`.
//! Instead it is judged to expire that long after berth first saw that exact lock (its
//! commit), and the log names the ref and why, once.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use git2::Oid;

use super::payload::ReadLock;
use crate::ownership::MAX_CLOCK_SKEW;

/// The most lock commits berth remembers having first seen past the bound; past it, the
/// one seen least recently is forgotten (its cap restarts from its next sighting).
const MAX_REMEMBERED: usize = 4096;

/// When berth first and last saw each lock commit whose `expiresAt` lay past the bound.
static FIRST_SEEN: LazyLock<Mutex<HashMap<Oid, Sighting>>> = LazyLock::new(Default::default);

#[derive(Clone, Copy)]
struct Sighting {
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

/// Whether a look at a lock may start its first sighting.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Look {
    /// A try to take the lane: the lanes this daemon has due records for, so the
    /// sightings remembered are bounded by its queue, not by what an origin holds.
    Take,
    /// A listing of every lock of an origin (status, detectors): reads a sighting, never
    /// starts one, so refs planted by the thousand cannot crowd out a lane's.
    List,
}

/// `lock` (the commit `sha` on `ref_name`), with its expiry capped at the first sighting
/// plus `longest_ttl` plus [`MAX_CLOCK_SKEW`] when it lies further ahead of `now`.
pub(super) fn capped(
    mut lock: ReadLock,
    sha: Oid,
    ref_name: &str,
    longest_ttl: Duration,
    now: DateTime<Utc>,
    look: Look,
) -> ReadLock {
    let bound = bound(longest_ttl);
    if lock.expires_at <= now + bound {
        return lock;
    }
    let (first, new) = sighting(sha, now, look);
    if new {
        tracing::warn!(
            ref_name,
            %sha,
            holder = lock.payload.owner_id,
            expires_at = lock.payload.expires_at,
            judged_to_expire_at = %crate::clock::iso(now + bound),
            "a lane lock expires further ahead than any holder writes one (the longest TTL berth accepts, {} s, plus the {} s clock skew bound): judged to expire that long after berth first saw it",
            longest_ttl.as_secs(),
            MAX_CLOCK_SKEW.as_secs()
        );
    }
    lock.expires_at = lock.expires_at.min(first + bound);
    lock
}

/// When a commit that is no lock at all (`sha`, standing in the way of a lane's lock ref)
/// is judged to expire: as a lock of the furthest expiry, the first sighting (started
/// now: only a try to take a lane judges one) plus `longest_ttl` plus [`MAX_CLOCK_SKEW`].
pub(super) fn unreadable_expiry(
    sha: Oid,
    longest_ttl: Duration,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    sighting(sha, now, Look::Take).0 + bound(longest_ttl)
}

/// How far ahead of now an `expiresAt` is believed.
fn bound(longest_ttl: Duration) -> chrono::Duration {
    chrono::Duration::from_std(longest_ttl.saturating_add(MAX_CLOCK_SKEW))
        .unwrap_or(chrono::Duration::MAX)
}

/// When berth first saw `sha` (now, for a commit never seen), and whether this look started
/// that sighting (only a [`Look::Take`] does).
fn sighting(sha: Oid, now: DateTime<Utc>, look: Look) -> (DateTime<Utc>, bool) {
    let mut seen = FIRST_SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(sighting) = seen.get_mut(&sha) {
        sighting.last = sighting.last.max(now);
        return (sighting.first, false);
    }
    if look == Look::List {
        return (now, false);
    }
    if seen.len() >= MAX_REMEMBERED
        && let Some(stalest) = seen.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| *k)
    {
        seen.remove(&stalest);
    }
    seen.insert(
        sha,
        Sighting {
            first: now,
            last: now,
        },
    );
    (now, true)
}

/// Dates berth's first sighting of `sha` back to `first`, as if it had been seen then.
#[cfg(test)]
pub(super) fn seen_since(sha: Oid, first: DateTime<Utc>) {
    let mut seen = FIRST_SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    seen.insert(sha, Sighting { first, last: first });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane_lock::payload::{LockPayload, lock_message, read_lock};

    fn planted(expires_at: DateTime<Utc>) -> ReadLock {
        let payload = LockPayload {
            owner_id: "planted".into(),
            repo_path: "/r".into(),
            repo_identity: None,
            base_branch: "main".into(),
            created_at: None,
            expires_at: crate::clock::iso(expires_at),
        };
        read_lock("0", Ok(lock_message(&payload).unwrap())).unwrap()
    }

    #[test]
    fn an_expiry_past_the_longest_ttl_and_skew_counts_from_first_sight() {
        let ttl = Duration::from_secs(3600);
        let bound = chrono::Duration::from_std(ttl + MAX_CLOCK_SKEW).unwrap();
        let now = crate::clock::now();
        let sha = Oid::from_str("1234567890123456789012345678901234567890").unwrap();
        let year = planted(now + chrono::Duration::days(365));
        let first = capped(year.clone(), sha, "refs/x", ttl, now, Look::Take);
        assert_eq!(first.expires_at, now + bound);
        // Seen again later, it still counts from the first sighting.
        let later = capped(year, sha, "refs/x", ttl, now + bound, Look::List);
        assert_eq!(later.expires_at, now + bound);
        assert!(!later.is_live_at(now + bound));
        // Within the bound, an expiry is believed as written.
        let fair = planted(now + bound - chrono::Duration::seconds(1));
        let other = Oid::from_str("2234567890123456789012345678901234567890").unwrap();
        let kept = capped(fair.clone(), other, "refs/x", ttl, now, Look::Take);
        assert_eq!(kept.expires_at, fair.expires_at);
    }

    /// The daemon lists every lock ref of an origin (`forge_round::faults` -> `list`): an
    /// origin where more than the remembered number of far-future locks were planted (one
    /// push of refs under `refs/gstack/release-locks/`) must not make the planted lock on a
    /// real lane "first seen" again each pass, so that it never expires.
    #[test]
    fn many_planted_locks_do_not_restart_a_lanes_first_sighting() {
        let ttl = Duration::from_secs(7200);
        let bound = chrono::Duration::from_std(ttl + MAX_CLOCK_SKEW).unwrap();
        let start = crate::clock::now();
        let year = planted(start + chrono::Duration::days(365));
        let lane = Oid::from_str("5234567890123456789012345678901234567890").unwrap();
        let mut now = start;
        // One listing pass per TTL for five TTLs: the lane's lock, then 1,100 others.
        for _pass in 0..5 {
            capped(
                year.clone(),
                lane,
                "refs/gstack/release-locks/real/main",
                ttl,
                now,
                Look::Take,
            );
            for i in 0..1100u64 {
                let sha = Oid::from_str(&format!("6{:039x}", i)).unwrap();
                capped(
                    year.clone(),
                    sha,
                    "refs/gstack/release-locks/planted/x",
                    ttl,
                    now,
                    Look::List,
                );
            }
            now += chrono::Duration::from_std(ttl).unwrap();
        }
        let judged = capped(
            year,
            lane,
            "refs/gstack/release-locks/real/main",
            ttl,
            now,
            Look::Take,
        );
        assert!(
            !judged.is_live_at(now),
            "the planted lock first seen at {start} still holds the lane at {now} (bound {bound}): judged to expire at {}",
            judged.expires_at
        );
    }
}
