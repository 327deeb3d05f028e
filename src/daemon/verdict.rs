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
    /// Writes it; an `Io` error (ENOSPC, EIO) means it may be written again later.
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
