//! Who holds an in-flight record, and whether that holder is still alive.
//!
//! A daemon stamps `claimedBy` with its owner stamp ([`stamp`]) when it claims a record:
//! its machine, pid, start time and the instance lock it holds for its whole life. A stamp
//! of this machine is judged by what can be proven:
//!
//! - **gone**: the named instance lock is free (the probe could take it), or held by
//!   another daemon (its file names another pid or start), and the path still names the
//!   file the owner locked (its stamp's device and inode) or the owner's pid no longer runs
//!   it (a path can be unlinked and made again while the owner keeps its lock on the
//!   unlinked file; an older stamp names no file, so its free lock proves only a dead
//!   pid gone); for a stamp without a lock, the
//!   pid runs no process here ([`crate::process_probe`]: `/proc` shows this process, not
//!   that pid, and `kill` answers `ESRCH`), or runs a later process (another start time);
//! - **alive**: the named instance lock is held, its file names the stamp's pid and start,
//!   and that process runs: a berth that still runs;
//! - **unknown**: everything else: a process `/proc` hides (`hidepid=2`, another pid
//!   namespace), a stamp that names no instance lock (an older berth's) and whose pid may
//!   run, and a dead daemon whose lock is still held by the guards of its steps (they
//!   release it once those steps' process groups are dead).
//!
//! Stamps of other machines (another host, boot, pid or mount namespace, root directory;
//! gstack's owner ids) are unknown too. Only "gone" puts a record back at once. Whatever
//! the stamp says, a record nobody has written for the lock TTL is stranded: a live berth
//! touches its landings every `heartbeat_secs`, so an untouched one is wedged or planted.

mod stamp;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::instance::Probe;
use crate::process_probe::Seen;
use crate::store::StoredRecord;

pub use stamp::{Stamp, machine, this_process};

/// How far ahead of this host's clock a timestamp may be before it counts as invalid:
/// clocks of machines sharing a queue or a remote drift a little, never by minutes.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// What can be proven about the holder named by an owner stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A berth of this machine that still holds the instance lock its stamp names.
    Alive,
    /// Proven gone, and how.
    Gone(String),
    /// Cannot be told (another machine, a hidden process, an older stamp), and why.
    Unknown(String),
}

/// Judges the holder named by `stamp` ([`Owner`]).
///
/// A daemon's steps outlive it by their guard's grace, and each guard keeps the daemon's
/// instance lock held until its step's process group is dead ([`crate::instance`]). So
/// when the stamp names an instance lock, the daemon is gone only once that lock is free
/// (or held by a later daemon): a held lock whose holder died is "unknown", however dead
/// the pid.
pub fn owner_state(text: &str) -> Owner {
    let Some(stamp) = Stamp::parse(text) else {
        return Owner::Unknown("not a berth owner stamp".into());
    };
    if stamp.machine != machine() {
        return Owner::Unknown("stamped on another machine or boot, in another pid or mount namespace or under another root directory, or by an older berth".into());
    }
    let pid_gone = match crate::process_probe::probe(stamp.pid) {
        Seen::Gone => Some(format!("owner {text} is no longer running")),
        Seen::Running { start_ticks } if stamp.start != 0 && start_ticks != stamp.start => Some(
            format!("owner {text} is gone (its pid now belongs to another process)"),
        ),
        Seen::Running { .. } | Seen::Unknown(_) => None,
    };
    let unknown_or_gone = |why: String| match &pid_gone {
        Some(gone) => Owner::Gone(gone.clone()),
        None => Owner::Unknown(why),
    };
    let Some(lock) = stamp.daemon_lock else {
        return unknown_or_gone("the stamp names no instance lock (an older berth's)".into());
    };
    // Only a file of that name is opened: a stamp is data, and must not make berth open
    // whatever path it likes. No berth wrote such a stamp, so no guard of it can run.
    if lock.file_name() != Some(crate::instance::LOCK_FILE.as_ref()) {
        return unknown_or_gone(format!("{} is not a berth instance lock", lock.display()));
    }
    let (probe, file) = match crate::instance::probe_file(lock) {
        Ok(probed) => probed,
        Err(e) if e.is_not_found() => {
            return unknown_or_gone("its instance lock does not exist".into());
        }
        Err(e) => return Owner::Unknown(format!("its instance lock cannot be probed: {e}")),
    };
    // Whether the path still names the file the owner locked (`None`: an older stamp does
    // not say). Another file there (the owner's unlinked, a later daemon's made) says
    // nothing of the owner: it keeps its lock on the unlinked file.
    let same_file = stamp.lock_id.map(|id| id.file == file);
    match probe {
        Probe::Free if pid_gone.is_some() || same_file == Some(true) => {
            Owner::Gone(format!("owner {text} is gone (its instance lock is free)"))
        }
        Probe::Free => Owner::Unknown(format!(
            "the instance lock of owner {text} is free, but the owner still runs: {}",
            match same_file {
                Some(_) => "its lock file was replaced",
                None =>
                    "its lock file may have been replaced (an older stamp does not say which file it locked)",
            }
        )),
        Probe::Held(Some(holder))
            if holder.pid == stamp.pid
                && holder
                    .start_ticks
                    .is_none_or(|start| stamp.start == 0 || start == stamp.start) =>
        {
            match pid_gone {
                None => Owner::Alive,
                Some(_) => Owner::Unknown(format!(
                    "owner {text} is no longer running, but a landing step it started is still being stopped (its guard holds the instance lock)"
                )),
            }
        }
        Probe::Held(Some(holder)) if same_file == Some(false) && pid_gone.is_none() => {
            Owner::Unknown(format!(
                "owner {text} still runs, and its lock file was replaced by one {holder} holds"
            ))
        }
        Probe::Held(Some(holder)) => Owner::Gone(format!(
            "owner {text} is gone (its instance lock is held by another daemon, {holder})"
        )),
        Probe::Held(None) => Owner::Unknown("its instance lock names no holder yet".into()),
    }
}

/// Why the holder named by `stamp` is known to be gone ([`Owner::Gone`]); `None` when it is
/// alive or cannot be told.
pub fn gone_owner(stamp: &str) -> Option<String> {
    match owner_state(stamp) {
        Owner::Gone(reason) => Some(reason),
        Owner::Alive | Owner::Unknown(_) => None,
    }
}

/// Why an in-flight record is stranded (its owner is gone, or nobody has written it for
/// the lock TTL), or `None` if it is not in flight or someone may still work on it.
///
/// The record's age is the earlier of its `lastUpdatedAt` and its file's ctime: the first is
/// data anyone can write (within the clock skew), the second the kernel sets on every
/// write and nobody can set back or ahead, so a planted file ages from when it was planted.
///
/// `left_listed(stored, lock)`: whether the gone owner whose instance lock is `lock` left
/// the record for its own next start (a verdict it could not write, listed beside that
/// lock). Such a record is not stranded at once: like one of an unknown owner, only once
/// nobody has written it for the TTL.
pub fn stranded_reason(
    stored: &StoredRecord,
    ttl: Duration,
    now: DateTime<Utc>,
    left_listed: &dyn Fn(&StoredRecord, &std::path::Path) -> bool,
) -> Option<String> {
    let record = &stored.record;
    if !record.status.is_in_flight() {
        return None;
    }
    let owner = record.claimed_by.as_deref().map(owner_state);
    if let Some(Owner::Gone(reason)) = &owner {
        let lock = record
            .claimed_by
            .as_deref()
            .and_then(Stamp::parse)
            .and_then(|stamp| stamp.daemon_lock)
            // A stamp is data: only a berth instance lock's dir is looked in.
            .filter(|lock| lock.file_name() == Some(crate::instance::LOCK_FILE.as_ref()));
        if !lock.is_some_and(|lock| left_listed(stored, lock)) {
            return Some(reason.clone());
        }
    }
    let claimed = record
        .last_updated_at
        .as_deref()
        .and_then(crate::clock::parse_iso);
    let skew = chrono::Duration::from_std(MAX_CLOCK_SKEW).unwrap_or_default();
    let touched = match claimed {
        // A time in the future would hold the lane for as long as it is ahead: invalid.
        Some(at) if at > now + skew => {
            return Some(format!(
                "{} with lastUpdatedAt {} in the future (more than {} min ahead of this host's clock), so its owner cannot be judged",
                record.status,
                crate::clock::iso(at),
                MAX_CLOCK_SKEW.as_secs() / 60
            ));
        }
        Some(at) => stored.changed_at.map_or(at, |changed| changed.min(at)),
        None => return Some(format!("{} with no readable lastUpdatedAt", record.status)),
    };
    if (now - touched).to_std().unwrap_or_default() <= ttl {
        return None;
    }
    let owner_note = match owner {
        Some(Owner::Alive) => "; its owner still runs but stopped touching it",
        Some(Owner::Gone(_)) => "; its gone owner left its verdict listed for its next start",
        _ => "",
    };
    Some(format!(
        "{} untouched since {} (longer than the lock TTL of {}s){owner_note}",
        record.status,
        crate::clock::iso(touched),
        ttl.as_secs()
    ))
}

#[cfg(test)]
mod tests;
