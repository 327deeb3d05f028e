//! Claim: `queued → claiming` in this process's name. The write expects `queued` on disk,
//! so of two daemons that picked the same record only one claims it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::record::Status;
use crate::store::{CLAIM_ROOM, CLAIM_TOKEN_FIELD, Expect, Move, StoreError};

use super::{End, Landing};
use crate::daemon::policy;

/// A claim token no other landing of this process has: with `claimedBy`, this process's
/// owner stamp, it names one landing of one daemon.
pub(super) fn new_token() -> String {
    static CLAIMS: AtomicU64 = AtomicU64::new(0);
    (CLAIMS.fetch_add(1, Ordering::Relaxed) + 1).to_string()
}

/// Claims the record; the origin URL to land to, or where the landing stopped.
pub(super) async fn claim(l: &Landing) -> Result<String, End> {
    let (id, token) = (l.c.id.clone(), l.token.clone());
    l.blocking(move |crew| {
        let owner = crew.owner.to_string();
        crew.records.transition(
            Move::new(&id, Expect::OneOf(&[Status::Queued]), Status::Claiming).leaving(CLAIM_ROOM),
            |r| {
                r.claimed_by = Some(owner);
                r.extra
                    .insert(CLAIM_TOKEN_FIELD.to_owned(), &serde_json::json!(token));
                r.extra.remove(policy::NOT_BEFORE_FIELD);
            },
        )
    })
    .await
    .map_err(|e| {
        if let StoreError::TooLarge {
            file,
            size,
            cap,
            room,
            read: Some(read),
        } = &e
        {
            // The limit a claim is held to: the cap less the room its verdict needs.
            let limit = cap.saturating_sub(*room);
            l.crew
                .unclaimable
                .refused(&l.c.id, file, **read, *size, limit);
        }
        End::Skipped(e.to_string())
    })?;
    l.c.gated.origin_url().map(str::to_owned).ok_or_else(|| {
        End::Block(format!(
            "repo {} has no `origin` remote to land to",
            l.c.gated.repo().path().display()
        ))
    })
}
