//! Verdicts the store could not write while their record was still this daemon's (a
//! producer holding the record's lock, ENOSPC, EIO, a record grown past the cap: see
//! [`super::verdict::kept_after`]): kept in memory and written again on every later tick,
//! said once when kept, and shown by `berth status` while they wait.
//!
//! The record stays in flight on disk, claimed by this live daemon, so its lane stays
//! taken and no reclaim puts it back in the queue (a merged PR must not be landed again).
//! The waiting verdicts are listed in `<berth dir>/unsaved-verdicts.json`, which berth's
//! own dir holds (the queue's disk may be the full one), each with what writing it takes:
//! the verdict, the owner stamp and the claim token of its landing, and the queue dir of
//! its record (the berth dir is one per user, whatever queue its daemon serves). A daemon
//! that stops
//! leaves their records in flight (its shutdown does not revive them), and the next daemon
//! on the berth dir takes the list over at its start: it writes each verdict at its first
//! tick, before any reclaim, onto the same claim (status, its predecessor's `claimedBy`,
//! the token), and keeps it as its own while it is refused. The lines of other queues it
//! leaves listed, untouched, for the next daemon of their queue. Another daemon that finds
//! such a record claimed by its stopped owner leaves it to the lock TTL
//! ([`left_listed`]), so the next start writes it first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::records::Records;
use super::verdict::Verdict;
use crate::store::{CLAIM_TOKEN_FIELD, StoreError, StoredRecord};

/// The file `berth status` reads.
pub const UNSAVED_FILE: &str = "unsaved-verdicts.json";

/// A larger status file is not berth's own: `status` refuses to read it.
const MAX_UNSAVED_FILE_BYTES: u64 = 1024 * 1024;

/// The verdicts waiting to be written, by record id, and the file that lists them.
#[derive(Debug)]
pub struct Waiting {
    kept: Mutex<HashMap<String, Unsaved>>,
    /// The listed verdicts of other queues: left as they are, listed again on each write.
    others: Vec<Listed>,
    /// The file may not list what is kept: its last write failed.
    stale: AtomicBool,
    file: PathBuf,
    /// The queue dir this daemon serves ([`queue_id`]).
    queue: PathBuf,
}

impl Waiting {
    /// The verdicts a previous daemon on `berth_dir` left listed in [`UNSAVED_FILE`] for
    /// records of `queue_dir` wait here, to be written onto their landings' claims at the
    /// first tick; those of other queues stay listed as they are. A line without what
    /// writing it takes (an older berth's list) is logged as lost, its record handled as
    /// stranded; one without a queue (a list of the berth before queues were named) is
    /// taken as this queue's.
    pub fn new(berth_dir: &Path, queue_dir: &Path) -> Waiting {
        let mut waiting = Waiting {
            kept: Mutex::default(),
            others: Vec::new(),
            stale: AtomicBool::new(true),
            file: berth_dir.join(UNSAVED_FILE),
            queue: queue_id(queue_dir),
        };
        let listed: Result<Vec<Listed>, _> =
            super::published::read(&waiting.file, MAX_UNSAVED_FILE_BYTES);
        match listed {
            Ok(listed) => {
                for listed in listed {
                    if listed.claim.as_ref().is_some_and(|claim| {
                        claim.queue.as_ref().is_some_and(|q| *q != waiting.queue)
                    }) {
                        waiting.others.push(listed);
                        continue;
                    }
                    let Listed { line, claim } = listed;
                    let Some(claim) = claim else {
                        tracing::warn!(record = %line.record, "a previous daemon ended without writing its {} verdict ({}, since {}): the verdict is lost, its record handled as stranded", line.verdict, line.error, line.since);
                        continue;
                    };
                    tracing::warn!(record = %line.record, "a previous daemon ended without writing its {} verdict ({}, since {}): written at the first tick, onto its landing's claim", line.verdict, line.error, line.since);
                    let unsaved = Unsaved {
                        verdict: claim.verdict,
                        owner: claim.owner,
                        token: claim.token,
                        error: line.error,
                        since: line.since,
                    };
                    waiting.map().insert(line.record, unsaved);
                }
            }
            Err(e) => tracing::warn!("a previous daemon's unsaved verdicts are unreadable: {e}"),
        }
        publish(&waiting);
        waiting
    }

    /// Whether a verdict for `id` waits here (its record stays this daemon's).
    pub fn holds(&self, id: &str) -> bool {
        self.map().contains_key(id)
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Unsaved>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One verdict waiting to be written.
#[derive(Clone, Debug)]
struct Unsaved {
    verdict: Verdict,
    /// The claim token its landing wrote ([`crate::store::CLAIM_TOKEN_FIELD`]): the verdict
    /// is written onto that claim only, never onto a later landing of the record by this
    /// same daemon (an operator's `retry` in between, then a claim: same owner stamp, a new
    /// token), whatever else was written on the record meanwhile (the producer that held
    /// its lock, a touch). A writer that dropped the token fails it closed: the verdict
    /// meets `Reclaimed` and is dropped, logged, as on any claim that is no longer its own.
    token: String,
    /// The `claimedBy` of its landing: this daemon's stamp, or the previous daemon's on
    /// the berth dir for a verdict taken over from its list.
    owner: String,
    error: String,
    since: String,
}

/// One line of [`UNSAVED_FILE`]: what `status` shows, and what the next daemon on the berth
/// dir needs to write the verdict (`status` reads the line as an [`UnsavedLine`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Listed {
    #[serde(flatten)]
    line: UnsavedLine,
    /// Absent in a list an older berth wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claim: Option<ListedClaim>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ListedClaim {
    verdict: Verdict,
    owner: String,
    token: String,
    /// The queue dir of the record ([`queue_id`]); absent in a list an older berth wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queue: Option<PathBuf>,
}

/// What `berth status` shows for one waiting verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsavedLine {
    pub record: String,
    pub verdict: String,
    pub error: String,
    pub since: String,
}

/// Keeps `verdict` for `id` after the store refused to write it, with the claim its landing
/// made: `owner`, this daemon's stamp, and the token it wrote.
pub(super) fn keep(
    waiting: &Waiting,
    owner: &str,
    id: &str,
    token: &str,
    verdict: Verdict,
    error: &StoreError,
) {
    tracing::error!(record = %id, "the {} verdict could not be written: {error}; kept, and written again on every tick", verdict.status());
    waiting.map().insert(
        id.to_owned(),
        Unsaved {
            verdict,
            token: token.to_owned(),
            owner: owner.to_owned(),
            error: error.to_string(),
            since: crate::clock::now_iso(),
        },
    );
    publish(waiting);
}

/// Writes every kept verdict again; the ones that still fail stay, with their new error.
pub(super) fn retry(waiting: &Waiting, records: &Records) {
    let kept: Vec<(String, Unsaved)> = waiting
        .map()
        .iter()
        .map(|(id, u)| (id.clone(), u.clone()))
        .collect();
    if kept.is_empty() && !waiting.stale.load(Ordering::Relaxed) {
        return;
    }
    for (id, unsaved) in kept {
        match unsaved
            .verdict
            .write(records, &unsaved.owner, &id, Some(&unsaved.token))
        {
            Ok(_) => {
                tracing::info!(record = %id, "the kept {} verdict is written", unsaved.verdict.status());
                waiting.map().remove(&id);
            }
            // Still refused (the lock still held, the disk still full): it waits, and the
            // error `status` shows is the latest; the log said it once, when it was kept.
            Err(e) if super::verdict::kept_after(&e) => {
                if let Some(kept) = waiting.map().get_mut(&id) {
                    kept.error = e.to_string();
                }
            }
            Err(e) => {
                tracing::warn!(record = %id, "the kept verdict is dropped: {e}");
                waiting.map().remove(&id);
            }
        }
    }
    publish(waiting);
}

/// Rewrites the status file (removed when nothing waits); a failed write is made again at
/// the next retry.
fn publish(waiting: &Waiting) {
    let mut lines: Vec<Listed> = waiting
        .map()
        .iter()
        .map(|(id, u)| Listed {
            line: UnsavedLine {
                record: id.clone(),
                verdict: u.verdict.status().to_string(),
                error: u.error.clone(),
                since: u.since.clone(),
            },
            claim: Some(ListedClaim {
                verdict: u.verdict.clone(),
                owner: u.owner.clone(),
                token: u.token.clone(),
                queue: Some(waiting.queue.clone()),
            }),
        })
        .chain(waiting.others.iter().cloned())
        .collect();
    lines.sort_by(|a, b| a.line.record.cmp(&b.line.record));
    let written =
        super::published::publish_within(&waiting.file, &mut lines, MAX_UNSAVED_FILE_BYTES);
    waiting.stale.store(!written, Ordering::Relaxed);
}

/// A queue dir as the list names it: resolved (symlinks, `..`), so that two daemons that
/// name one queue differently find the same lines; as given when it cannot be resolved.
fn queue_id(queue_dir: &Path) -> PathBuf {
    std::fs::canonicalize(queue_dir).unwrap_or_else(|_| queue_dir.to_owned())
}

/// Whether the daemon whose instance lock is `lock` left the verdict of `stored`'s landing
/// listed for its next start: [`UNSAVED_FILE`] beside that lock lists the record with the
/// owner stamp (`claimedBy`) and claim token it carries, and its queue (a line without
/// one: any queue). That file is data another user may have written: it is read bounded,
/// never through a symlink or blocking on a FIFO, and an unreadable or absent one lists
/// nothing. A forged line only delays a reclaim until the lock TTL.
pub fn left_listed(stored: &StoredRecord, lock: &Path) -> bool {
    let record = &stored.record;
    let (Some(owner), Some(token)) = (
        record.claimed_by.as_deref(),
        record.extra.get_str(CLAIM_TOKEN_FIELD),
    ) else {
        return false;
    };
    let listed: Vec<Listed> = match super::published::read(
        &lock.with_file_name(UNSAVED_FILE),
        MAX_UNSAVED_FILE_BYTES,
    ) {
        Ok(listed) => listed,
        Err(e) => {
            tracing::debug!(record = %stored.id, "its gone owner's unsaved verdicts are unreadable: {e}");
            return false;
        }
    };
    let queue = stored.path.parent().map(queue_id);
    listed.iter().any(|Listed { line, claim }| {
        claim.as_ref().is_some_and(|claim| {
            line.record == stored.id
                && claim.owner == owner
                && claim.token == token
                && claim
                    .queue
                    .as_ref()
                    .is_none_or(|q| Some(q) == queue.as_ref())
        })
    })
}

/// Why the published unsaved verdicts could not be read; each names the file.
pub type ReadUnsavedError = super::published::ReadPublishedError;

/// The waiting verdicts a daemon published in `berth_dir` (none if no file).
pub fn read(berth_dir: &Path) -> Result<Vec<UnsavedLine>, ReadUnsavedError> {
    super::published::read(&berth_dir.join(UNSAVED_FILE), MAX_UNSAVED_FILE_BYTES)
}

#[cfg(test)]
mod tests;
