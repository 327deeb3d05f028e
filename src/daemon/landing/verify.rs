//! Verify: the forge still says the PR may land.

use std::sync::Arc;

use crate::forge::{ClaimRefusal, ForgeRepo, PrRef, PrState, verify_claim};
use crate::gstack_text;

use super::ask::ask;
use super::{End, Landing};
use crate::daemon::worktree;

/// DESIGN §3.6: the PR must still be open, labelled, carry a valid marker, and have the
/// record's branches.
pub(super) async fn verify(l: &Landing, origin_url: &str) -> Result<(), End> {
    let (c, cancel) = (&l.c, &l.cancel);
    let forge = Arc::clone(&l.crew.forge);
    let repo = ForgeRepo::new(c.gated.identity().to_string(), origin_url.to_owned());
    let candidate = c.clone();
    let checked = ask(cancel, move || {
        let record = &candidate.record;
        let pr = PrRef {
            number: record.pr_number,
            feature_branch: &record.feature_branch,
            base_branch: &record.base_branch,
        };
        forge.check_pr(&repo, &pr).map(|mut check| {
            // GitHub closes a PR whose head branch is deleted, and keeps the branch's
            // name: ask origin, so the refusal can say the branch is gone.
            if check.state == PrState::Closed && check.head_on_origin.is_none() {
                match worktree::feature_on_origin(&candidate) {
                    Ok(present) => check.head_on_origin = Some(present),
                    Err(e) => {
                        tracing::debug!(record = %candidate.id, "feature branch not looked up: {e}")
                    }
                }
            }
            verify_claim(&check, &pr)
        })
    })
    .await;
    match checked {
        Some(Ok(Ok(()))) => Ok(()),
        // gstack has no claim check for this; it fails at the fetch, with git's words.
        Some(Ok(Err(gone @ ClaimRefusal::BranchGone { .. }))) => Err(End::Block(gone.to_string())),
        Some(Ok(Err(refusal))) => Err(End::Block(gstack_text::marker_verification_failed(refusal))),
        Some(Err(e)) => Err(End::Requeue(format!("could not check the PR: {e}"))),
        None => Err(End::Requeue("the claim check did not finish".into())),
    }
}
