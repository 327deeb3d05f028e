//! A step an access to a local origin commits to before it takes it: past its deadline the
//! caller either leaves first (the access, asking after, does not take the step) or waits
//! for the committed step a bounded grace more, so the caller's answer and what the access
//! did agree.
//!
//! A lock write's `git update-ref` child is such a step: a write whose caller left could
//! still set the lock ref after the take was reported failed, holding the lane for no
//! landing. The check and the caller's leaving are one decision under one lock; the step
//! itself has a bound of its own (its child is killed past it), which the grace covers.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Where an access and its caller stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The caller waits; nothing is committed.
    Open,
    /// The access took its step; the caller waits for it past its deadline.
    Committed,
    /// The caller stopped waiting before the access committed.
    Left,
}

/// Shared by an access (its own thread) and its caller ([`super::run_committed`]).
#[derive(Debug)]
pub(crate) struct Commitment {
    stage: Mutex<Stage>,
    /// How long past its deadline a caller waits for a committed step.
    grace: Duration,
}

impl Commitment {
    pub(crate) fn new(grace: Duration) -> Arc<Commitment> {
        Arc::new(Commitment {
            stage: Mutex::new(Stage::Open),
            grace,
        })
    }

    fn stage(&self) -> MutexGuard<'_, Stage> {
        self.stage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// On the access's thread, before its step: whether the caller still waits, and will
    /// for the step (up to the grace past its deadline). `false`: it left, take no step.
    pub(crate) fn commit(&self) -> bool {
        let mut stage = self.stage();
        if *stage == Stage::Left {
            return false;
        }
        *stage = Stage::Committed;
        true
    }

    /// Whether the caller stopped waiting (an access may ask before work it need not do).
    pub(crate) fn left(&self) -> bool {
        *self.stage() == Stage::Left
    }

    /// The caller, at its deadline: leaves unless the access committed first, and then
    /// returns the grace it waits for the step.
    pub(super) fn leave_unless_committed(&self) -> Option<Duration> {
        let mut stage = self.stage();
        if *stage == Stage::Committed {
            return Some(self.grace);
        }
        *stage = Stage::Left;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decision is one: whichever of the two comes first wins, and the other sees it.
    #[test]
    fn an_access_that_committed_keeps_its_caller_and_one_whose_caller_left_may_not_commit() {
        let committed = Commitment::new(Duration::from_secs(3));
        assert!(committed.commit());
        assert_eq!(
            committed.leave_unless_committed(),
            Some(Duration::from_secs(3))
        );
        assert!(!committed.left());
        let left = Commitment::new(Duration::from_secs(3));
        assert_eq!(left.leave_unless_committed(), None);
        assert!(left.left());
        assert!(!left.commit());
    }
}
