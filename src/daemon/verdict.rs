//! A verdict to write on an in-flight record: the proven merge, or a stop short of it.
//! The landing writes it when it settles; [`super::unsaved`] keeps one the store refused
//! and writes it again later.

use crate::record::{Record, Status};
use crate::store::{Expect, Move, StoreError};

use super::policy;
use super::records::Records;
use crate::forge_state::{GithubState, PrState};

/// Serialized into `unsaved-verdicts.json` for the next daemon on the berth dir.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
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
    /// Writes it onto record `id` in flight in `owner`'s name; with `token`, only onto the
    /// claim that wrote it ([`Expect::Token`]: a kept verdict must not land on a later
    /// landing of the same record by the same daemon). An error [`kept_after`] says may pass
    /// means it is written again later.
    pub fn write(
        &self,
        records: &Records,
        owner: &str,
        id: &str,
        token: Option<&str>,
    ) -> Result<Record, StoreError> {
        let expect = |statuses: &'static [Status]| match token {
            Some(token) => Expect::Token(statuses, owner, token),
            None => Expect::Mine(statuses, owner),
        };
        match self {
            Verdict::Landed { checked_at } => {
                let landed = |github: bool| {
                    records.transition(
                        Move::new(id, expect(&[Status::Landing]), Status::Landed),
                        |r| {
                            r.last_error = None;
                            r.claimed_by = None;
                            // Without them, none is left as an older check saw the PR.
                            let merged = Some(GithubState::Pr(PrState::Merged));
                            r.last_github_checked_at = github.then(|| checked_at.clone());
                            r.last_github_state = if github { merged } else { None };
                        },
                    )
                };
                match landed(true) {
                    // Without the GitHub fields the verdict is smaller than another daemon's
                    // reclaim (which keeps the record's and adds a `lastError`, cut to fit): it fits
                    // whenever a reclaim would, so a reclaim never requeues a merged PR
                    // whose verdict the cap refused. Refused even so, it is kept.
                    Err(StoreError::TooLarge { .. }) => landed(false),
                    written => written,
                }
            }
            Verdict::Settled {
                to,
                reason,
                not_before,
            } => records.transition(Move::new(id, expect(&Status::IN_FLIGHT), *to), |r| {
                r.claimed_by = None;
                r.last_error = Some(reason.clone());
                if let Some(at) = not_before {
                    r.extra
                        .insert(policy::NOT_BEFORE_FIELD.to_owned(), &serde_json::json!(at));
                }
            }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue_view::Refresh;
    use crate::record::sample;
    use crate::store::{MAX_RECORD_BYTES, QueueStore};

    /// Another daemon on the same queue.
    const OWNER: &str = "host~boot~1~2.3.4:42:7";

    /// A `landed` verdict the cap refuses (it adds the GitHub state to a record a producer
    /// grew) must not leave the record to another daemon's reclaim, which only adds a
    /// `lastError` the store cuts to fit: that reclaim would queue the record again and
    /// the merged PR would be landed again. The verdict is written again without the GitHub
    /// fields, smaller than any reclaim, so the record ends `landed` and no daemon
    /// reclaims it.
    #[test]
    fn another_daemons_reclaim_does_not_pass_where_the_kept_landed_verdict_is_too_large() {
        let (queue, berth) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store = QueueStore::new(queue.path());
        let id = store.insert(&sample::queued(5)).unwrap();
        let mut record = store.load(&id).unwrap().record;
        record.status = Status::Landing;
        record.claimed_by = Some(OWNER.to_owned());
        // Untouched past the default TTL (2 h): the landing ended with its verdict kept.
        let old = crate::clock::now() - chrono::Duration::hours(3);
        record.last_updated_at = Some(crate::clock::iso(old));
        // What the landed verdict would write, less the padding a producer adds.
        let mut landed = record.clone();
        landed.claimed_by = None;
        landed.last_error = None;
        landed.last_github_checked_at = Some(crate::clock::now_iso());
        landed.last_github_state = Some(GithubState::Pr(PrState::Merged));
        let pad = |r: &mut Record, len: usize| {
            r.extra
                .insert("notes".to_owned(), &serde_json::json!("n".repeat(len)));
        };
        pad(&mut landed, 0);
        // The verdict's record is a few bytes past the cap: the producer's notes did it.
        let len = MAX_RECORD_BYTES as usize - landed.to_compact_json().len() + 16;
        pad(&mut record, len);
        // A record any producer may write: under the cap, as the landing's claim left it.
        assert!(record.to_compact_json().len() as u64 <= MAX_RECORD_BYTES);
        std::fs::write(
            queue.path().join(format!("{id}.json")),
            record.to_compact_json(),
        )
        .unwrap();

        let decisions = std::sync::Arc::new(crate::rules::DecisionLog::new(berth.path()));
        let owners_view = Records::new(QueueStore::new(queue.path()), decisions);
        let verdict = Verdict::Landed {
            checked_at: crate::clock::now_iso(),
        };
        let written = verdict.write(&owners_view, OWNER, &id, None).unwrap();
        assert_eq!(written.status, Status::Landed);
        assert_eq!(written.last_github_state, None);

        // The other daemon's tick; nobody shortened the record.
        let other = crate::daemon::Shared::on_queue(queue.path(), berth.path(), "other");
        let (report, _) =
            crate::daemon::bookkeeping(&other, crate::daemon::Wake::Poll, &Refresh::Sweep);
        // (`status` may be past `queued`: this queue's repo fails the other daemon's gates.)
        let now = store.load(&id).unwrap().record;
        let again = verdict.write(&owners_view, OWNER, &id, None);
        assert_eq!(
            report.reclaimed,
            0,
            "another daemon reclaimed the record while its kept landed verdict is still too large; the record is now {} ({}), the owner's retry: {again:?}",
            now.status,
            now.last_error.unwrap_or_default()
        );
    }
}
