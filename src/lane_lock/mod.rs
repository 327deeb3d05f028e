//! The lane lock: one ref per `(repoIdentity, baseBranch)` on `origin`, so berth daemons
//! on many machines (and gstack's TypeScript daemon) land one PR per lane at a time with
//! no coordinator but the git host's atomic ref updates (DESIGN.md §1, §4).
//!
//! - ref `refs/gstack/release-locks/<safe_key(identity)>/<safe_key(base)>`;
//! - object: a parentless commit of the empty tree whose message is `gstack release lock`,
//!   a blank line and the pretty JSON [`LockPayload`].
//!
//! Every move (create, takeover, refresh, release) is a compare-and-swap enforced where
//! the ref is written ([`cas`]): over the network the push carries the old value berth
//! read and the server re-checks it under its ref lock; for a local-path or `file://`
//! origin berth updates the bare repository's ref itself with libgit2's expected-old-value
//! calls, under the same ref lock file. A create expects the ref absent; a takeover,
//! refresh or release expects the sha berth read or holds, so a release never deletes a
//! lock it does not hold. A transport error is always an error, never "the ref is
//! absent"; every connect and socket read/write has a timeout.
//!
//! The API is blocking (libgit2); the async daemon calls it through `spawn_blocking`, and
//! [`Heartbeat`] keeps a held lock fresh from a tokio task.
//!
//! ```no_run
//! # use std::{path::Path, sync::Arc};
//! # use berth::lane_lock::*;
//! # async fn land(origin: &str) -> Result<(), LockError> {
//! let client = Arc::new(LockClient::new(Path::new("/var/lib/berth/lane-lock"), LockSettings::default())?);
//! let lane = Lane { repo_identity: "github.com/acme/widget".into(), base_branch: "main".into() };
//! if let Acquire::Acquired(held) = client.acquire(origin, &lane, "host-a:4242", Path::new("/src/widget"))? {
//!     let heartbeat = Heartbeat::spawn(Arc::clone(&client), held, &tokio_util::sync::CancellationToken::new());
//!     // ... land, aborting if `heartbeat.lost()` turns true ...
//!     let held = heartbeat.stop().await;
//!     client.release(&held)?;
//! }
//! # Ok(()) }
//! ```

mod acquire;
mod alias;
mod below_ref;
mod broken_above;
mod broken_ref;
mod cas;
mod error;
mod expiry_cap;
mod flock_holder;
mod foreign_writer;
mod heartbeat;
mod held;
mod in_the_way;
mod leftover;
mod leftover_seen;
mod listing;
mod local_deadline;
mod lock_dir;
mod origin_owner;
mod payload;
mod ref_writer;
mod refresh;
mod refs_look;
mod release;
pub mod repo_keys;
mod scratch_pool;
mod sightings;
mod standing;
pub mod survey;
mod trail;
mod transport;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use git2::{Oid, Reference};

use crate::atomic_file::ensure_private_dir;
use crate::clock;
use crate::gstack_text;
use crate::safe_key::safe_key;

pub use alias::{LaneKey, lane_key, lane_lock_refs};
pub use below_ref::MAX_BELOW_ENTRIES;
pub use broken_ref::MAX_REF_BYTES;
pub use cas::{LockWrite, WRITERS_BLOCKED};
pub use error::LockError;
pub use held::HeldLock;
pub use listing::{ListedLock, LockListing};
pub use refs_look::MAX_REFS_ENTRIES;
pub use refs_look::{MAX_OBJECTS_ENTRIES, keep_listings};

pub use foreign_writer::MAX_PROC_ENTRIES;
pub use heartbeat::{Heartbeat, LockWatch};
use held::{Gone, Unconfirmed};
pub use leftover::{LEFTOVER_AGE, LEFTOVERS_REMOVED};
pub use payload::{LOCK_SUBJECT, LockPayload};
use standing::holder_gone;

use cas::{Expect, WriteContext, WriteHook, compare_and_swap};
use payload::{PayloadError, ReadLock, lock_message, read_lock};
use scratch_pool::{Pooled, ScratchPool};
use transport::{PushOutcome, Scratch, fetch, redact_url};

/// The directory of a local origin (a path or `file://` URL), as libgit2 would choose its
/// local transport; `None` for a network URL.
pub(crate) use cas::local_path as local_origin;
/// An in-process access to a local origin from above the lock (the git forge's look at
/// it): run under a deadline ([`local_deadline`]), opening the origin only after the look
/// that refuses what would hang libgit2 ([`refs_look`]).
pub(crate) use local_deadline::{Overdue, run as run_on_local_origin};
pub(crate) use refs_look::open_looked as open_local_origin;
/// A look at and a fetch from `url` with berth's transport rules (credentials never from
/// the repo's config, the process-wide remote timeout); the landing fetches the feature
/// branch with them.
/// `url` with any password or token replaced by `***`, for messages.
pub(crate) use transport::redact_url as redact;
pub(crate) use transport::{LIST_ATTEMPTS, advertised, fetch_advertised, ref_vanished};

/// Namespace of every lane lock ref on the remote.
pub const LOCK_REF_PREFIX: &str = "refs/gstack/release-locks/";

/// How long a lock stays valid without a refresh (gstack's value).
pub const DEFAULT_TTL: Duration = Duration::from_secs(2 * 60 * 60);

/// The longest TTL a berth holds a lane lock with (gstack's), which every berth believes
/// ([`expiry_cap`]): a paused holder's lease then ends before any contender's cap fires.
pub const LONGEST_TTL: Duration = DEFAULT_TTL;

/// Refreshes per TTL: the one relationship between heartbeat and TTL (2 h / 8 = 15 min),
/// so a lock survives several failed refreshes in a row before it expires.
pub const HEARTBEATS_PER_TTL: u32 = 8;

/// Default bound on each connect and each socket read/write with the remote.
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads and updates retried when the ref keeps changing under us before giving up (the
/// lane is then simply skipped this tick).
const MAX_ATTEMPTS: u32 = 6;

/// A fetched lock could not be read back from the scratch repository (gstack has no
/// words for it: it reads straight from `git log`).
const READ_FAILED: &str = "could not read the fetched lane lock";

/// Where a fetched lock lands in the per-operation scratch repository.
const READ_REF: &str = "refs/berth/read";

/// Timing of the lane lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockSettings {
    /// Validity of a lock after each write (`expiresAt = write time + ttl`).
    pub ttl: Duration,
    /// Interval between refreshes; must be shorter than `ttl`.
    pub heartbeat_every: Duration,
    /// Bound on each connect and socket read/write. libgit2 keeps it process-wide: the
    /// first `LockClient` created in a process sets it for all.
    pub remote_timeout: Duration,
}

impl LockSettings {
    /// `ttl` with the heartbeat derived from it (`ttl / HEARTBEATS_PER_TTL`) and the
    /// default remote timeout.
    pub fn with_ttl(ttl: Duration) -> LockSettings {
        LockSettings {
            ttl,
            heartbeat_every: ttl / HEARTBEATS_PER_TTL,
            remote_timeout: DEFAULT_REMOTE_TIMEOUT,
        }
    }

    /// The longest one write (or delete) of a lock ref on a local origin may take: the
    /// remote timeout for its reads and the bounds of its git children, and the wait for a
    /// ref's writer child that started just before that ([`cas::COMMITTED_GRACE`]).
    pub fn longest_local_write(&self) -> Duration {
        ref_writer::local_write_deadline(self.remote_timeout).saturating_add(cas::COMMITTED_GRACE)
    }

    fn validate(&self) -> Result<(), LockError> {
        let problem = if self.ttl < Duration::from_millis(1) {
            "ttl must be at least 1 ms (expiresAt has millisecond precision)"
        } else if self.ttl > LONGEST_TTL {
            "ttl must be at most 2 h (gstack's TTL, the longest every contender believes)"
        } else if self.heartbeat_every.is_zero() || self.heartbeat_every >= self.ttl {
            "heartbeat_every must be non-zero and shorter than ttl"
        } else if self.remote_timeout < Duration::from_millis(1)
            || self.remote_timeout.as_millis() > i32::MAX as u128
        {
            "remote_timeout must be between 1 ms and i32::MAX ms"
        } else {
            return Ok(());
        };
        Err(LockError::InvalidSettings {
            settings: *self,
            problem,
        })
    }
}

impl Default for LockSettings {
    /// TTL 2 h, heartbeat 15 min, remote timeout 30 s.
    fn default() -> LockSettings {
        LockSettings::with_ttl(DEFAULT_TTL)
    }
}

/// A release lane: PRs against one base branch of one repository land one at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lane {
    pub repo_identity: String,
    pub base_branch: String,
}

/// `refs/gstack/release-locks/<safe_key(identity)>/<safe_key(base)>`, as gstack names it.
pub fn lock_ref_name(lane: &Lane) -> String {
    format!(
        "{LOCK_REF_PREFIX}{}/{}",
        safe_key(&lane.repo_identity),
        safe_key(&lane.base_branch)
    )
}

/// Outcome of [`LockClient::acquire`].
#[derive(Debug)]
pub enum Acquire {
    /// The lane is ours; keep it fresh with [`LockClient::heartbeat`] or [`Heartbeat`].
    Acquired(HeldLock),
    /// Someone holds a live lock: skip the lane until `holder.expires_at`.
    /// `ref_name` is the ref found held: gstack's, or one every spelling of the
    /// repository shares ([`lane_lock_refs`]).
    HeldElsewhere {
        holder: LockPayload,
        sha: String,
        ref_name: String,
    },
    /// A lock exists whose payload cannot be read: berth refuses the lane (fail closed)
    /// until an operator inspects it (`list`) and removes it (`force_release`).
    Unreadable { sha: String, reason: String },
}

/// Outcome of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// The ref pointed at the expected commit and is gone.
    Deleted,
    /// There was no ref: nothing to release.
    AlreadyGone,
    /// The ref points at another commit (someone took the lane over); it was left alone.
    NotOurs { now_sha: String },
}

/// Makes and updates lane locks. Cheap to share (`Arc`) across threads: every operation
/// works in its own scratch repository.
#[derive(Debug)]
pub struct LockClient {
    scratch_dir: PathBuf,
    settings: LockSettings,
    hook: WriteHook,
    /// The lock commits this client wrote and has not released: a lock in this process's
    /// name at one of them is a landing of this process, never an orphan.
    mine: Mutex<HashSet<Oid>>,
    /// Scratch repositories reused between operations.
    pool: ScratchPool,
    /// What this berth dir's processes have seen, kept beside the scratch dir.
    sightings: LockSightings,
}

/// The sightings a lock client keeps in its berth dir ([`sightings`]).
struct LockSightings {
    expiry: Arc<expiry_cap::ExpirySightings>,
    leftovers: Arc<leftover::LeftoverSightings>,
}

/// The file, beside a client's scratch dir, keeping the first sightings of far-future locks.
pub const EXPIRY_SIGHTINGS_FILE: &str = "lock-expiry-sightings.json";
/// The file, beside a client's scratch dir, keeping the sightings of ref `.lock` files.
pub const LEFTOVER_SIGHTINGS_FILE: &str = "ref-lock-sightings.json";

impl std::fmt::Debug for LockSightings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockSightings").finish_non_exhaustive()
    }
}

impl LockSightings {
    fn beside(scratch_dir: &Path) -> LockSightings {
        let dir = scratch_dir.parent().unwrap_or(Path::new("."));
        LockSightings {
            expiry: Arc::new(expiry_cap::ExpirySightings::at(
                dir.join(EXPIRY_SIGHTINGS_FILE),
            )),
            leftovers: Arc::new(leftover::LeftoverSightings::at(
                dir.join(LEFTOVER_SIGHTINGS_FILE),
            )),
        }
    }
}

/// Who takes a lane's lock: what a lock it writes says of its holder.
struct Taker<'a> {
    lane: &'a Lane,
    owner_id: &'a str,
    repo_path: &'a Path,
}

/// Per-operation context for error messages.
struct Target<'a> {
    url: &'a str,
    ref_name: &'a str,
    /// How long a local origin's access may take ([`local_deadline`]).
    deadline: Duration,
}

impl Target<'_> {
    fn remote_error(&self, op: &'static str, source: git2::Error) -> LockError {
        LockError::Remote {
            op,
            ref_name: self.ref_name.to_owned(),
            url: redact_url(self.url),
            source,
        }
    }

    fn local_error(&self, what: &'static str, source: git2::Error) -> LockError {
        LockError::LocalGit {
            what,
            ref_name: self.ref_name.to_owned(),
            source,
        }
    }

    fn redirected(&self, op: &'static str, reason: String) -> LockError {
        LockError::Redirected {
            op,
            ref_name: self.ref_name.to_owned(),
            url: redact_url(self.url),
            reason,
        }
    }

    fn contended(&self, why: &'static str, op: &'static str, last: String) -> LockError {
        LockError::Contended {
            why,
            op,
            ref_name: self.ref_name.to_owned(),
            url: redact_url(self.url),
            attempts: MAX_ATTEMPTS,
            last,
        }
    }
}

/// What the remote holds at a lock ref, read through a fetch.
enum RemoteLock {
    Absent,
    Present {
        sha: Oid,
        read: Result<ReadLock, PayloadError>,
    },
}

impl LockClient {
    /// A client working under `scratch_dir` (created 0700; per-operation scratch
    /// repositories live there). Also chooses `settings.remote_timeout` as libgit2's socket
    /// timeouts unless something chose earlier in this process ([`crate::git_timeouts`]).
    pub fn new(scratch_dir: &Path, settings: LockSettings) -> Result<LockClient, LockError> {
        settings.validate()?;
        ensure_private_dir(scratch_dir).map_err(|source| LockError::Scratch {
            path: scratch_dir.to_owned(),
            source,
        })?;
        let wanted = crate::git_timeouts::Timeouts {
            connect: settings.remote_timeout,
            io: settings.remote_timeout,
        };
        let in_force = crate::git_timeouts::choose(wanted);
        if in_force != wanted {
            tracing::warn!(
                requested = ?settings.remote_timeout,
                ?in_force,
                "libgit2 network timeouts are process-wide and were already set"
            );
        }
        let client = LockClient {
            scratch_dir: scratch_dir.to_owned(),
            settings,
            hook: WriteHook::default(),
            mine: Mutex::default(),
            pool: ScratchPool::default(),
            sightings: LockSightings::beside(scratch_dir),
        };
        scratch_pool::sweep_leftovers(&client.scratch_dir, settings.remote_timeout);
        Ok(client)
    }

    /// Makes one scratch repository for lock operations now, if none is idle, so the
    /// first lock a landing takes does not make it (one that starts meanwhile waits for
    /// it, briefly); a failure is left for that operation to meet.
    pub fn warm_up(&self) {
        if let Err(e) = self.pool.make_ahead(&self.scratch_dir) {
            tracing::debug!(dir = %self.scratch_dir.display(), "lock warm-up: {e}");
        }
    }

    pub fn settings(&self) -> &LockSettings {
        &self.settings
    }

    /// Runs `hook` in every lock write of this client after berth's last look at the ref
    /// and before the write is sent, the window the compare-and-swap closes. For tests that
    /// move the ref from another client there, deterministically; the daemon sets none.
    #[doc(hidden)]
    pub fn set_write_hook(&mut self, hook: cas::WriteHookFn) {
        self.hook = WriteHook::new(hook);
    }

    /// Whether `sha` is a lock this client wrote and has not released. Aliases of one
    /// repository that berth keys apart are two lanes of one process sharing a ref: finding
    /// that ref held in this process's name then means a running landing here, not an orphan.
    pub fn holds(&self, sha: &str) -> bool {
        Oid::from_str(sha).is_ok_and(|sha| self.mine().contains(&sha))
    }

    fn mine(&self) -> MutexGuard<'_, HashSet<Oid>> {
        self.mine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The one way a lock ref is written: see [`cas`]. Keeps [`LockClient::holds`] true of
    /// a new lock from before its write can be seen until its release was tried.
    fn swap(
        &self,
        scratch: &Scratch,
        target: &Target<'_>,
        write: LockWrite,
        expect: Expect,
        new: Option<Oid>,
    ) -> Result<PushOutcome, git2::Error> {
        if let Some(sha) = new {
            self.mine().insert(sha);
        }
        let outcome = compare_and_swap(
            &scratch.repo,
            target.url,
            target.ref_name,
            write,
            expect,
            new,
            WriteContext {
                hook: self.hook.clone(),
                seen: Arc::clone(&self.sightings.leftovers),
                expiry: Arc::clone(&self.sightings.expiry),
                deadline: self.settings.remote_timeout,
            },
        );
        let applied = matches!(outcome, Ok(PushOutcome::Applied));
        let mut mine = self.mine();
        // A create or takeover whose answer was lost may have landed with no landing
        // holding it: an orphan, which the next acquire removes. A refresh's may have
        // landed too, but its landing runs on: that lock stays this process's until the
        // landing's release ([`HeldLock::unconfirmed`]).
        let answer_lost = outcome.is_err() && write == LockWrite::Refresh;
        if let (Some(sha), false, false) = (new, applied, answer_lost) {
            mine.remove(&sha);
        }
        if let Expect::At(old) = expect
            && (applied || write == LockWrite::Release)
        {
            mine.remove(&old);
        }
        drop(mine);
        outcome
    }

    fn scratch(&self) -> Result<Pooled<'_>, LockError> {
        self.pool
            .take(&self.scratch_dir, READ_REF)
            .map_err(|source| LockError::Scratch {
                path: self.scratch_dir.clone(),
                source,
            })
    }

    fn chrono_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.ttl).unwrap_or(chrono::Duration::MAX)
    }

    /// Writes a fresh lock commit for `lane`; returns it with the instant its validity
    /// counts from (taken before `expiresAt` is computed).
    fn write_new_lock(
        &self,
        scratch: &Scratch,
        target: &Target<'_>,
        taker: &Taker<'_>,
    ) -> Result<(Oid, LockPayload, Instant), LockError> {
        let started = Instant::now();
        let created = clock::now();
        let payload = LockPayload {
            owner_id: taker.owner_id.to_owned(),
            repo_path: taker.repo_path.to_string_lossy().into_owned(),
            repo_identity: Some(taker.lane.repo_identity.clone()),
            base_branch: taker.lane.base_branch.clone(),
            created_at: Some(clock::iso(created)),
            expires_at: clock::iso(created + self.chrono_ttl()),
        };
        let sha = write_commit(scratch, target, &payload, gstack_text::LOCK_COMMIT_FAILED)?;
        Ok((sha, payload, started))
    }

    fn held(
        &self,
        target: &Target<'_>,
        lane: &Lane,
        sha: Oid,
        payload: LockPayload,
        started: Instant,
    ) -> HeldLock {
        tracing::info!(ref_name = target.ref_name, %sha, "acquired lane lock");
        HeldLock {
            origin_url: target.url.to_owned(),
            ref_name: target.ref_name.to_owned(),
            lane: lane.clone(),
            sha,
            payload,
            ttl: self.settings.ttl,
            last_refresh: started,
            gone: None,
            aliases: Vec::new(),
            aliases_before: 0,
            unconfirmed: Vec::new(),
        }
    }
}

/// Writes the lock commit for `payload`; `what` is gstack's words for its failure.
fn write_commit(
    scratch: &Scratch,
    target: &Target<'_>,
    payload: &LockPayload,
    what: &'static str,
) -> Result<Oid, LockError> {
    let message = lock_message(payload)
        .map_err(|e| target.local_error(what, git2::Error::from_str(&e.to_string())))?;
    scratch
        .write_lock_commit(&message)
        .map_err(|e| target.local_error(what, e))
}

/// Fetches the lock ref into the scratch repository and reads it. The sha returned is the
/// one fetched, so a later compare-and-swap is against exactly what was read.
fn read_remote_lock(scratch: &Scratch, target: &Target<'_>) -> Result<RemoteLock, LockError> {
    let refspec = format!("+{}:{READ_REF}", target.ref_name);
    fetch(&scratch.repo, target.url, &refspec, target.deadline)
        .map_err(|e| target.remote_error("read", e))?;
    let sha = match scratch.repo.refname_to_id(READ_REF) {
        Ok(sha) => sha,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(RemoteLock::Absent),
        Err(e) => return Err(target.local_error(READ_FAILED, e)),
    };
    // Leave the read ref empty for the next round of this operation.
    if let Ok(mut reference) = scratch.repo.find_reference(READ_REF) {
        reference
            .delete()
            .map_err(|e| target.local_error(READ_FAILED, e))?;
    }
    let read = read_lock(&sha.to_string(), scratch.commit_message(sha));
    Ok(RemoteLock::Present { sha, read })
}

/// The lane's lock ref, refused if git would reject it (e.g. a base branch ending in
/// `.lock` or a component starting with `.`), so the error names the lane, not a push.
fn checked_lock_ref(lane: &Lane) -> Result<String, LockError> {
    let ref_name = lock_ref_name(lane);
    if Reference::is_valid_name(&ref_name) {
        Ok(ref_name)
    } else {
        Err(LockError::InvalidRef {
            ref_name,
            problem: "git rejects this ref name (a component starts with '.' or ends with '.lock')",
        })
    }
}

fn parse_full_sha(sha: &str) -> Result<Oid, LockError> {
    let invalid = || LockError::InvalidSha {
        sha: sha.to_owned(),
    };
    // `Oid::from_str` pads short hex with zeros; only a full id names one commit.
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    Oid::from_str(sha).map_err(|_| invalid())
}

/// Jittered pause before a retry, so contenders that collided do not collide again.
fn backoff(attempt: u32) {
    if attempt == 0 {
        return;
    }
    let jitter = fastrand::u64(0..20);
    std::thread::sleep(Duration::from_millis(u64::from(attempt) * 10 + jitter));
}

#[cfg(test)]
mod tests;
