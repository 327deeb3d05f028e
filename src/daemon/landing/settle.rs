//! Settle: write where the landing ended onto its record (or put it back after a signal).
//! A verdict the store refuses while the record is still this landing's (its lock held by a
//! producer, an I/O error, a record grown past the cap) is kept and written again on later
//! ticks ([`super::super::unsaved`]): dropped, the record would be reclaimed and landed again.

use crate::record::Status;

use super::{End, Landing, OutcomeKind};
use crate::daemon::record_touch::Touching;
use crate::daemon::verdict::{self, Verdict};
use crate::daemon::{revive, unsaved};

/// Settles the record by `end`, once the landing's record touches have stopped; what the
/// main loop is told.
pub(super) async fn settle(l: &Landing, end: End, touching: Touching) -> OutcomeKind {
    // No touch after the verdict is decided: a touch has nothing to keep fresh once the
    // verdict is written, and a kept one waits on the record as the landing left it.
    touching.stop().await;
    let (verdict, kind) = match end {
        End::Skipped(why) => return OutcomeKind::Skipped(why),
        End::Interrupted => {
            let id = l.c.id.clone();
            l.blocking(move |crew| revive::revive(crew, &id)).await;
            return OutcomeKind::Interrupted;
        }
        End::Landed { checked_at } => (Verdict::Landed { checked_at }, OutcomeKind::Landed),
        End::Block(reason) => (
            settled(Status::Blocked, reason.clone(), None),
            OutcomeKind::Blocked(reason),
        ),
        End::Requeue(reason) => (
            settled(Status::Queued, reason.clone(), None),
            OutcomeKind::Requeued(reason),
        ),
        End::LaneBusy(reason) => (
            settled(Status::Queued, reason.clone(), None),
            OutcomeKind::LaneBusy(reason),
        ),
        End::Defer { reason, not_before } => {
            let kind = OutcomeKind::Requeued(format!("{reason}; not before {not_before}"));
            (settled(Status::Queued, reason, Some(not_before)), kind)
        }
    };
    let landed = matches!(verdict, Verdict::Landed { .. });
    let (id, token) = (l.c.id.clone(), l.token.clone());
    let written = l
        .blocking(move |crew| {
            // The landing runs: no other claim of the record by this daemon can be on disk
            // (selection skips an active record), so the verdict is written onto any claim
            // of this daemon's; a kept one, later, only onto this landing's token.
            let written = verdict.write(&crew.records, &crew.owner, &id, None);
            if let Err(e) = &written
                && verdict::kept_after(e)
            {
                unsaved::keep(&crew.unsaved, &crew.owner, &id, &token, verdict, e);
            }
            written
        })
        .await;
    match written {
        Ok(_) => kind,
        Err(e) if verdict::kept_after(&e) => OutcomeKind::Skipped(if landed {
            format!("landed, but the verdict could not be written yet: {e}")
        } else {
            format!("the verdict could not be written yet: {e}")
        }),
        Err(e) if landed => OutcomeKind::Skipped(format!("landed, but the record moved: {e}")),
        Err(e) => OutcomeKind::Skipped(format!("record moved before it could be settled: {e}")),
    }
}

fn settled(to: Status, reason: String, not_before: Option<String>) -> Verdict {
    Verdict::Settled {
        to,
        reason,
        not_before,
    }
}
