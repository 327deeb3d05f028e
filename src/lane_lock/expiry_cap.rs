//! A lock's `expiresAt` is believed only as far ahead as a holder could have written it.
//!
//! A holder writes `expiresAt` as its write time plus its TTL, and its clock may be ahead
//! of this host's by up to [`MAX_CLOCK_SKEW`]. Neither gstack nor berth holds a lock
//! longer than [`super::LONGEST_TTL`] (2 h; berth's config lowers a longer
//! `lock_ttl_secs` to it), so a holder's lease, which ends before its lock expires, ends
//! before any berth's cap fires; and a lock that expires further ahead than that TTL plus
//! the skew was written by no holder berth knows: a planted ref, or a clock set years
//! ahead. Believed, it would hold the lane until someone ran `berth lock release --force`.
//! Instead it is judged to expire that long after berth first saw that exact lock (its
//! commit), and the log names the ref and why, once per berth process. That first sighting
//! is kept in berth's dir ([`super::sightings`]), so a new process (`berth run --once`, a
//! restarted daemon) counts from it too instead of starting the wait again.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use git2::Oid;
use serde::{Deserialize, Serialize};

use super::LONGEST_TTL;
use super::payload::ReadLock;
use super::sightings::{MAX_SIGHTINGS, Sighted, Sightings};
use crate::ownership::MAX_CLOCK_SKEW;

/// How long a kept sighting's "last seen" may lag before a look writes it anew: it only
/// orders which sighting is forgotten first.
const LAST_SEEN_GRAIN: chrono::Duration = chrono::Duration::minutes(1);

/// When berth first and last saw one lock commit whose `expiresAt` lay past the bound
/// (Unix nanoseconds).
#[derive(Clone, Copy, Serialize, Deserialize)]
pub(super) struct Sighting {
    first: i64,
    last: i64,
}

impl Sighted for Sighting {
    fn last_seen(&self) -> i64 {
        self.last
    }
}

/// The first sightings of far-future locks, and which this process has named in its log.
pub(super) struct ExpirySightings {
    kept: Sightings<Sighting>,
    announced: Mutex<HashSet<Oid>>,
}

impl ExpirySightings {
    /// Kept in `path`, shared by every berth process on its directory.
    pub fn at(path: PathBuf) -> ExpirySightings {
        ExpirySightings {
            kept: Sightings::at(path),
            announced: Mutex::default(),
        }
    }

    /// Kept in this process only.
    #[cfg(test)]
    pub fn in_memory() -> ExpirySightings {
        ExpirySightings {
            kept: Sightings::in_memory(),
            announced: Mutex::default(),
        }
    }

    /// When berth first saw what `key` names, starting its sighting at `now` on a
    /// [`Look::Take`]. A first sighting after `now` (the clock was stepped back) starts
    /// again at `now`.
    fn first_seen(&self, key: &str, now: DateTime<Utc>, look: Look) -> DateTime<Utc> {
        let now_ns = unix_nanos(now);
        let first = self.kept.with(|known| match known.get_mut(key) {
            Some(seen) if seen.first <= now_ns => {
                let stale = now_ns.saturating_sub(seen.last)
                    >= LAST_SEEN_GRAIN.num_nanoseconds().unwrap_or(i64::MAX);
                seen.last = seen.last.max(now_ns);
                (seen.first, stale)
            }
            _ if look == Look::List => (now_ns, false),
            _ => {
                let seen = Sighting {
                    first: now_ns,
                    last: now_ns,
                };
                known.insert(key.to_owned(), seen);
                (now_ns, true)
            }
        });
        DateTime::from_timestamp_nanos(first)
    }

    /// Dates berth's first sighting of `sha` back to `first`, as if it had been seen then.
    #[cfg(test)]
    pub fn seen_since(&self, sha: Oid, first: DateTime<Utc>) {
        let first = unix_nanos(first);
        self.kept.with(|known| {
            known.insert(sha.to_string(), Sighting { first, last: first });
            ((), true)
        });
    }

    /// Dates every first sighting kept back to `first`, as if all had been seen then.
    #[cfg(test)]
    pub fn all_seen_since(&self, first: DateTime<Utc>) {
        let first = unix_nanos(first);
        self.kept.with(|known| {
            for seen in known.values_mut() {
                *seen = Sighting { first, last: first };
            }
            ((), true)
        });
    }

    /// Whether this process has yet to name `sha` in its log (and now has).
    fn announce(&self, sha: Oid) -> bool {
        let mut announced = self
            .announced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if announced.len() >= MAX_SIGHTINGS {
            announced.clear();
        }
        announced.insert(sha)
    }
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

/// What a look at one lock ([`capped`]) needs besides the lock.
pub(super) struct Seen<'a> {
    pub sightings: &'a ExpirySightings,
    pub now: DateTime<Utc>,
    pub look: Look,
}

/// `lock` (the commit `sha` on `ref_name`), with its expiry capped at the first sighting
/// plus [`LONGEST_TTL`] plus [`MAX_CLOCK_SKEW`] when it lies further ahead of `now`.
pub(super) fn capped(mut lock: ReadLock, sha: Oid, ref_name: &str, seen: Seen<'_>) -> ReadLock {
    let bound = bound();
    if lock.expires_at <= seen.now + bound {
        return lock;
    }
    let first = seen
        .sightings
        .first_seen(&sha.to_string(), seen.now, seen.look);
    let judged = lock.expires_at.min(first + bound);
    if seen.look == Look::Take && seen.sightings.announce(sha) {
        tracing::warn!(
            ref_name,
            %sha,
            holder = lock.payload.owner_id,
            expires_at = lock.payload.expires_at,
            first_seen_at = %crate::clock::iso(first),
            judged_to_expire_at = %crate::clock::iso(judged),
            "a lane lock expires further ahead than any holder writes one (the longest TTL berth accepts, {} s, plus the {} s clock skew bound): judged to expire that long after berth first saw it",
            LONGEST_TTL.as_secs(),
            MAX_CLOCK_SKEW.as_secs()
        );
    }
    lock.expires_at = judged;
    lock
}

/// When something that is no lock at all, standing in the way of a lane's lock ref (a
/// commit, named by its id; a broken ref, by where it is and what, [`super::broken_ref`]),
/// is judged to expire: as a lock of the furthest expiry, the first sighting of `key`
/// (started now: only a try to take a lane judges one) plus [`LONGEST_TTL`] plus
/// [`MAX_CLOCK_SKEW`].
pub(super) fn unreadable_expiry(
    sightings: &ExpirySightings,
    key: &str,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    sightings.first_seen(key, now, Look::Take) + bound()
}

/// `at` in nanoseconds since the Unix epoch (saturating past 2262).
fn unix_nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// How far ahead of now an `expiresAt` is believed.
fn bound() -> chrono::Duration {
    chrono::Duration::from_std(LONGEST_TTL.saturating_add(MAX_CLOCK_SKEW))
        .unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane_lock::payload::{LockPayload, lock_message, read_lock};
    use std::time::Duration;

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

    fn look(sightings: &ExpirySightings, now: DateTime<Utc>, look: Look) -> Seen<'_> {
        Seen {
            sightings,
            now,
            look,
        }
    }

    #[test]
    fn an_expiry_past_the_longest_ttl_and_skew_counts_from_first_sight() {
        let seen = ExpirySightings::in_memory();
        let ttl = LONGEST_TTL;
        let bound = chrono::Duration::from_std(ttl + MAX_CLOCK_SKEW).unwrap();
        let now = crate::clock::now();
        let sha = Oid::from_str("1234567890123456789012345678901234567890").unwrap();
        let year = planted(now + chrono::Duration::days(365));
        let first = capped(year.clone(), sha, "refs/x", look(&seen, now, Look::Take));
        assert_eq!(first.expires_at, now + bound);
        // Seen again later, it still counts from the first sighting.
        let later = capped(year, sha, "refs/x", look(&seen, now + bound, Look::List));
        assert_eq!(later.expires_at, now + bound);
        assert!(!later.is_live_at(now + bound));
        // Within the bound, an expiry is believed as written.
        let fair = planted(now + bound - chrono::Duration::seconds(1));
        let other = Oid::from_str("2234567890123456789012345678901234567890").unwrap();
        let kept = capped(fair.clone(), other, "refs/x", look(&seen, now, Look::Take));
        assert_eq!(kept.expires_at, fair.expires_at);
    }

    /// A berth whose config asks `lock_ttl_secs = 21600` (6 h: a file berth loads, with its
    /// `heartbeat_secs` of 900) takes a lane at `t0` and is then paused (SIGSTOP, a
    /// suspend): its step's guard lets the step run until its lease ends (the TTL it holds
    /// the lock with, less the margin), then kills it within half the margin. A berth with
    /// the default TTL (the bound it believes: 2 h + 5 min) first sees the lock at `t0`:
    /// the lock must still hold the lane when that kill lands, or the second berth lands
    /// while the first one's step still runs.
    #[test]
    fn a_paused_holders_longer_ttl_lock_holds_the_lane_while_its_lease_runs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(&file, "lock_ttl_secs = 21600\nheartbeat_secs = 900\n").unwrap();
        let holder = crate::config::Config::load(Some(&file)).unwrap();
        let holders_ttl = holder.lock_ttl();
        crate::lane_lock::LockSettings {
            heartbeat_every: Duration::from_secs(holder.heartbeat_secs),
            ..crate::lane_lock::LockSettings::with_ttl(holders_ttl)
        }
        .validate()
        .expect("the holder's lock client takes the TTL its config gives");
        let margin = crate::runner::lease_margin(holders_ttl);
        let killed = chrono::Duration::from_std(holders_ttl - margin + margin / 2).unwrap();

        let seen = ExpirySightings::in_memory();
        let t0 = crate::clock::now();
        let sha = Oid::from_str("3234567890123456789012345678901234567890").unwrap();
        let lock = planted(t0 + chrono::Duration::from_std(holders_ttl).unwrap());
        let step_dead = t0 + killed;
        let first = capped(
            lock.clone(),
            sha,
            "refs/gstack/release-locks/x/main",
            look(&seen, t0, Look::Take),
        );
        assert!(first.is_live_at(t0));
        let judged = capped(
            lock,
            sha,
            "refs/gstack/release-locks/x/main",
            look(&seen, step_dead, Look::Take),
        );
        assert!(
            judged.is_live_at(step_dead),
            "judged to expire at {}, while the paused holder's step runs until {step_dead}",
            judged.expires_at
        );
    }

    /// The daemon lists every lock ref of an origin (`forge_round::faults` -> `list`): an
    /// origin where more than the remembered number of far-future locks were planted (one
    /// push of refs under `refs/gstack/release-locks/`) must not make the planted lock on a
    /// real lane "first seen" again each pass, so that it never expires.
    #[test]
    fn many_planted_locks_do_not_restart_a_lanes_first_sighting() {
        let seen = ExpirySightings::in_memory();
        let ttl = LONGEST_TTL;
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
                look(&seen, now, Look::Take),
            );
            for i in 0..1100u64 {
                let sha = Oid::from_str(&format!("6{:039x}", i)).unwrap();
                capped(
                    year.clone(),
                    sha,
                    "refs/gstack/release-locks/planted/x",
                    look(&seen, now, Look::List),
                );
            }
            now += chrono::Duration::from_std(ttl).unwrap();
        }
        let judged = capped(
            year,
            lane,
            "refs/gstack/release-locks/real/main",
            look(&seen, now, Look::Take),
        );
        assert!(
            !judged.is_live_at(now),
            "the planted lock first seen at {start} still holds the lane at {now} (bound {bound}): judged to expire at {}",
            judged.expires_at
        );
    }
}
