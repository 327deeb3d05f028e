//! The one write path for an existing record, and what a write expects to find on disk.

use std::time::Duration;

use super::fit::encode_cutting_last_error;
use super::names::check_id;
use super::{QueueStore, StoreError};
use crate::atomic_file;
use crate::record::{Record, Status};

/// The record field a landing writes at its claim, a value only that landing has: what a
/// kept verdict is matched on ([`Expect::Token`]). It lives as long as the claim: a write
/// that leaves the record unclaimed removes it. gstack's writes keep it (they write the
/// shallow merge of the record read and their patch, unknown fields carried along:
/// `../shared/gstack/release-daemon.md` §2.3); a re-queue by gstack writes a new record
/// without it.
pub const CLAIM_TOKEN_FIELD: &str = "berthClaim";

/// Which on-disk statuses a write may start from. The daemon always names them, so a
/// record that moved under it (an operator's retry, a signal revival) is left alone.
#[derive(Clone, Copy, Debug)]
pub enum Expect<'a> {
    Any,
    OneOf(&'a [Status]),
    /// Exactly the claim that was read: the same status, `claimedBy` and `lastUpdatedAt`.
    /// A move of a record judged unowned must not land on a record a daemon claimed since
    /// (same status, new owner), nor on one its owner touched since (it is not stranded).
    Claim(&'a Record),
    /// One of these statuses, claimed by this owner stamp: a landing's own moves. A daemon
    /// paused past the TTL finds its record stranded and claimed by another daemon since
    /// (same status, another owner); its late verdict must not land on that claim.
    Mine(&'a [Status], &'a str),
    /// One of these statuses, claimed by this owner stamp under this claim token
    /// ([`CLAIM_TOKEN_FIELD`]): the one landing that wrote the token at its claim, whatever
    /// else was written since (a producer's note, its own record touch). A kept verdict's
    /// write: neither a later landing of the same record by the same daemon (a new token)
    /// nor a record whose token a writer dropped matches.
    Token(&'a [Status], &'a str, &'a str),
}

impl Expect<'_> {
    /// Whether `on_disk`, the record `id` as read under its lock, is what the write expects.
    fn check(&self, id: &str, on_disk: &Record) -> Result<(), StoreError> {
        let moved = |expected: &[Status]| StoreError::Moved {
            id: id.to_owned(),
            found: on_disk.status,
            expected: expected.to_vec(),
        };
        match *self {
            Expect::Any => Ok(()),
            Expect::OneOf(expected) if !expected.contains(&on_disk.status) => Err(moved(expected)),
            Expect::OneOf(_) => Ok(()),
            Expect::Mine(expected, _) if !expected.contains(&on_disk.status) => {
                Err(moved(expected))
            }
            Expect::Mine(_, owner) if on_disk.claimed_by.as_deref() != Some(owner) => {
                Err(StoreError::Reclaimed {
                    id: id.to_owned(),
                    read: format!("{}, claimed by {owner}", on_disk.status),
                    found: claim_text(on_disk),
                })
            }
            Expect::Mine(..) => Ok(()),
            Expect::Token(expected, _, _) if !expected.contains(&on_disk.status) => {
                Err(moved(expected))
            }
            Expect::Token(_, owner, token) => {
                let token_on_disk = on_disk.extra.get_str(CLAIM_TOKEN_FIELD);
                if on_disk.claimed_by.as_deref() == Some(owner)
                    && token_on_disk.as_deref() == Some(token)
                {
                    Ok(())
                } else {
                    Err(StoreError::Reclaimed {
                        id: id.to_owned(),
                        read: format!("{}, claimed by {owner}, claim {token}", on_disk.status),
                        found: format!(
                            "{}, claim {}",
                            claim_text(on_disk),
                            token_on_disk.as_deref().unwrap_or("none")
                        ),
                    })
                }
            }
            Expect::Claim(read) => {
                let same = read.status == on_disk.status
                    && read.claimed_by == on_disk.claimed_by
                    && read.last_updated_at == on_disk.last_updated_at;
                if same {
                    Ok(())
                } else {
                    Err(StoreError::Reclaimed {
                        id: id.to_owned(),
                        read: claim_text(read),
                        found: claim_text(on_disk),
                    })
                }
            }
        }
    }
}

/// One write of an existing record: which record, what the write expects on disk, the
/// status it moves to, how long it waits for the record's lock, and how many bytes it must
/// leave free under the record cap.
#[derive(Clone, Copy, Debug)]
pub struct Move<'a> {
    pub id: &'a str,
    pub expect: Expect<'a>,
    pub to: Status,
    pub wait: Duration,
    pub room: u64,
}

impl<'a> Move<'a> {
    /// The move of `id` to `to`, waiting the usual [`atomic_file::LOCK_WAIT`] for its lock.
    pub fn new(id: &'a str, expect: Expect<'a>, to: Status) -> Move<'a> {
        Move {
            id,
            expect,
            to,
            wait: atomic_file::LOCK_WAIT,
            room: 0,
        }
    }

    /// The same move, refused as too large unless the record leaves `room` bytes free
    /// under the cap ([`super::CLAIM_ROOM`]: a claim keeps room for its verdict).
    pub fn leaving(self, room: u64) -> Move<'a> {
        Move { room, ..self }
    }

    /// The same move, waiting at most `wait` for the record's lock (a tick that must not
    /// stall behind a producer).
    pub fn waiting(self, wait: Duration) -> Move<'a> {
        Move { wait, ..self }
    }
}

impl QueueStore {
    /// The one write path for an existing record: under the record's lock, re-read it,
    /// check the on-disk record against what the move expects and the state machine, apply
    /// `edit`, set `status` and `lastUpdatedAt`, and replace the file atomically. The
    /// record's `lastError` (berth's text) is cut to fit the record under the cap less the
    /// move's room, so a verdict or release of a record claimed with [`super::CLAIM_ROOM`]
    /// is never refused for size, nor a claim or a GitHub check for berth's own text.
    pub fn transition(
        &self,
        m: Move<'_>,
        edit: impl FnOnce(&mut Record),
    ) -> Result<Record, StoreError> {
        check_id(m.id)?;
        let path = self.path_of(m.id);
        let _guard = self.lock(m.id, m.wait)?;
        let (stored, stamp) = self.load_stamped(m.id)?;
        let mut record = stored.record;
        m.expect.check(m.id, &record)?;
        if !record.status.can_move_to(m.to) {
            return Err(StoreError::IllegalMove {
                id: m.id.to_owned(),
                from: record.status,
                to: m.to,
            });
        }
        edit(&mut record);
        if record.claimed_by.is_none() {
            record.extra.remove(CLAIM_TOKEN_FIELD);
        }
        record.status = m.to;
        record.last_updated_at = Some(crate::clock::now_iso());
        let text = encode_cutting_last_error(&mut record, &path, m.room)
            .map_err(|e| e.of_version(stamp))?;
        atomic_file::write_atomic(&path, text.as_bytes(), 0o600)
            .map_err(StoreError::io("write", &path))?;
        Ok(record)
    }
}

/// `landing, claimed by host:42:7, updated 2026-…` or `blocked, unclaimed, updated …`.
fn claim_text(record: &Record) -> String {
    let updated = record.last_updated_at.as_deref().unwrap_or("never");
    match &record.claimed_by {
        Some(owner) => format!("{}, claimed by {owner}, updated {updated}", record.status),
        None => format!("{}, unclaimed, updated {updated}", record.status),
    }
}
