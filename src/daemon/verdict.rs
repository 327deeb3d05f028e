//! A verdict to write on an in-flight record: the proven merge, or a stop short of it.
//! The landing writes it when it settles; [`super::unsaved`] keeps one the store refused
//! and writes it again later.

use crate::record::{Record, Status};
use crate::store::{Expect, Move, StoreError};

use super::policy;
use super::records::Records;
use crate::forge_state::{GithubState, PrState};

#[derive(Clone, Debug)]
pub enum Verdict {
    Landed {
        checked_at: String,
    },
    Settled {
        to: Status,
        reason: String,
        not_before: Option<String>,
    },
}

impl Verdict {
    /// Writes it; an error [`kept_after`] says may pass means it is written again later.
    pub fn write(&self, records: &Records, owner: &str, id: &str) -> Result<Record, StoreError> {
        match self {
            Verdict::Landed { checked_at } => {
                let mine = Expect::Mine(&[Status::Landing], owner);
                records.transition(Move::new(id, mine, Status::Landed), |r| {
                    r.last_error = None;
                    r.claimed_by = None;
                    r.last_github_checked_at = Some(checked_at.clone());
                    r.last_github_state = Some(GithubState::Pr(PrState::Merged));
                })
            }
            Verdict::Settled {
                to,
                reason,
                not_before,
            } => records.transition(
                Move::new(id, Expect::Mine(&Status::IN_FLIGHT, owner), *to),
                |r| {
                    r.claimed_by = None;
                    r.last_error = Some(reason.clone());
                    if let Some(at) = not_before {
                        r.extra
                            .insert(policy::NOT_BEFORE_FIELD.to_owned(), &serde_json::json!(at));
                    }
                },
            ),
        }
    }

    /// "landed", "blocked", "queued": what the verdict makes of the record.
    pub fn status(&self) -> Status {
        match self {
            Verdict::Landed { .. } => Status::Landed,
            Verdict::Settled { to, .. } => *to,
        }
    }
}

/// Whether a verdict the store refused with `error` is kept and written again on later
/// ticks ([`super::unsaved`]): always, unless the record is no longer this landing's
/// (moved to another status, claimed by another daemon, gone). Dropping a verdict leaves
/// its record in flight in this daemon's name with nothing holding it, so the next tick
/// reclaims it and lands it again; keeping one only holds its lane until the write passes.
/// So a lock held by a producer, a full disk, a record a producer grew past the cap (an
/// operator shortens it: the error says so) or an unreadable file keep it, and the variants
/// that cannot come of a transition are kept too: the match names each one, so a new
/// variant is decided here and not dropped by default.
pub fn kept_after(error: &StoreError) -> bool {
    match error {
        StoreError::Moved { .. } | StoreError::Reclaimed { .. } | StoreError::NotFound { .. } => {
            false
        }
        StoreError::Locked { .. }
        | StoreError::Io { .. }
        | StoreError::TooLarge { .. }
        | StoreError::Unreadable { .. }
        | StoreError::IllegalMove { .. }
        | StoreError::AlreadyExists { .. }
        | StoreError::BadId(_)
        | StoreError::IdTooLong { .. } => true,
    }
}
