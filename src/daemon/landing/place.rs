//! Place: fetch the feature branch and pick the checkout to land in
//! ([`super::super::worktree`]).

use std::sync::Arc;

use super::ask::ask_or_clean_up;
use super::{End, Landing};
use crate::daemon::worktree::{self, Place, WorktreeError};

/// The checkout to run the steps in (a scratch one made after the landing stopped waiting
/// for it is removed, not left behind).
pub(super) async fn prepare(l: &Landing) -> Result<Place, End> {
    let (places, forge, c) = (
        Arc::clone(&l.crew.places),
        Arc::clone(&l.crew.forge),
        l.c.clone(),
    );
    let prepared = ask_or_clean_up(
        &l.cancel,
        move || worktree::prepare(&places, forge.as_ref(), &c),
        |late| {
            if let Ok(place) = late {
                place.remove();
            }
        },
    )
    .await;
    match prepared {
        Some(Ok(place)) => Ok(place),
        Some(Err(WorktreeError::BranchGone(gone))) => Err(End::Block(gone.to_string())),
        Some(Err(e)) => Err(End::Block(format!("cannot prepare a worktree: {e}"))),
        None if l.interrupted() => Err(End::Interrupted),
        None => Err(End::Requeue("preparing the worktree did not finish".into())),
    }
}
