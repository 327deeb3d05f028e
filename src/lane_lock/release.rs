//! Giving a lock back, and the operator's forced release.

use super::*;

impl LockClient {
    /// Deletes our lock if the ref still points at our commit; anything else is left alone.
    /// Call it on every path out of a landing (after stopping the [`Heartbeat`]).
    /// The alias refs are released the same way, each ref in the reverse of the order
    /// they were taken, so a contender taking them in order never gets a later ref while
    /// an earlier one is still held here.
    pub fn release(&self, held: &HeldLock) -> Result<Released, LockError> {
        let (before, after) = held
            .aliases
            .split_at(held.aliases_before.min(held.aliases.len()));
        self.release_aliases(after);
        let released = self.release_one(held);
        self.release_aliases(before);
        released
    }

    /// Deletes `held`'s ref if it holds our last confirmed write, or else a refresh of ours
    /// whose answer was lost; then none of those writes is this process's any more.
    fn release_one(&self, held: &HeldLock) -> Result<Released, LockError> {
        let mut released = self.delete_if_at(&held.origin_url, &held.ref_name, held.sha);
        if let Ok(Released::NotOurs { now_sha }) = &released
            && let Some(lost) = held
                .unconfirmed
                .iter()
                .find(|w| w.sha.to_string() == *now_sha)
        {
            released = self.delete_if_at(&held.origin_url, &held.ref_name, lost.sha);
        }
        let mut mine = self.mine();
        for lost in &held.unconfirmed {
            mine.remove(&lost.sha);
        }
        released
    }

    /// Gives alias locks back, the last taken first; a failure is logged (the lock then
    /// expires on its TTL).
    pub(super) fn release_aliases(&self, aliases: &[HeldLock]) {
        for alias in aliases.iter().rev() {
            self.release_alias(alias);
        }
    }

    pub(super) fn release_alias(&self, alias: &HeldLock) {
        match self.release_one(alias) {
            Ok(Released::Deleted | Released::AlreadyGone) => {}
            Ok(Released::NotOurs { now_sha }) => tracing::warn!(
                ref_name = alias.ref_name,
                now_sha,
                "the repository's alias lane lock was taken over; left alone"
            ),
            Err(e) => tracing::warn!("could not release the repository's alias lane lock: {e}"),
        }
    }

    /// Operator tool: deletes `ref_name` only if it still points at `expected_sha` (the sha
    /// the operator was shown), so a lock retaken since is never removed by mistake.
    pub fn force_release(
        &self,
        origin_url: &str,
        ref_name: &str,
        expected_sha: &str,
    ) -> Result<Released, LockError> {
        let problem = if !ref_name.starts_with(LOCK_REF_PREFIX) {
            Some("only refs under refs/gstack/release-locks/ are lane locks")
        } else if !Reference::is_valid_name(ref_name) {
            Some("it is not a valid git ref name")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(LockError::InvalidRef {
                ref_name: ref_name.to_owned(),
                problem,
            });
        }
        let expected = parse_full_sha(expected_sha)?;
        self.delete_if_at(origin_url, ref_name, expected)
    }

    fn delete_if_at(
        &self,
        origin_url: &str,
        ref_name: &str,
        expected: Oid,
    ) -> Result<Released, LockError> {
        let target = Target {
            url: origin_url,
            ref_name,
            deadline: self.settings.remote_timeout,
        };
        let scratch = self.scratch()?;
        let mut last = String::new();
        for attempt in 0..MAX_ATTEMPTS {
            backoff(attempt);
            let outcome = self
                .swap(
                    &scratch,
                    &target,
                    LockWrite::Release,
                    Expect::At(expected),
                    None,
                )
                .map_err(|e| target.remote_error("release", e))?;
            match outcome {
                PushOutcome::Applied => return Ok(Released::Deleted),
                PushOutcome::Refused { advertised } if advertised.is_zero() => {
                    return Ok(Released::AlreadyGone);
                }
                PushOutcome::Refused { advertised } => {
                    return Ok(Released::NotOurs {
                        now_sha: advertised.to_string(),
                    });
                }
                // Never tried again through a path that led elsewhere.
                PushOutcome::Redirected { reason } => {
                    return Err(target.redirected("release", reason));
                }
                // The ref moved between advertisement and update: look again.
                PushOutcome::Rejected { status } => last = format!("delete rejected: {status}"),
            }
        }
        Err(target.contended("the release failed", "release", last))
    }
}
