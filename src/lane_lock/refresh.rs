//! The heartbeat's refresh of a held lock.

use super::*;

impl LockClient {
    /// Rewrites our lock with `expiresAt = now + ttl`, compare-and-swap against our sha.
    ///
    /// On success `held` records the new sha and refresh time. If the ref points elsewhere
    /// the lock is marked stolen ([`LockError::Stolen`], and [`HeldLock::is_lost`] is true
    /// from then on). A lock already lost is never refreshed ([`LockError::Lost`]): the
    /// landing must stop even if nobody took the lane yet. Transport errors and rejections
    /// leave `held` untouched; the TTL decides when they amount to a loss.
    ///
    /// The alias refs are refreshed too; an error of gstack's ref is returned before one
    /// of the alias refs'.
    pub fn heartbeat(&self, held: &mut HeldLock) -> Result<(), LockError> {
        let mut aliases = Ok(());
        for alias in &mut held.aliases {
            aliases = aliases.and(self.refresh(alias));
        }
        let own = self.refresh(held);
        own.and(aliases)
    }

    fn refresh(&self, held: &mut HeldLock) -> Result<(), LockError> {
        let target = Target {
            url: &held.origin_url,
            ref_name: &held.ref_name,
        };
        if let Some(StolenTo(now_sha)) = &held.stolen {
            return Err(LockError::Stolen {
                ref_name: held.ref_name.clone(),
                url: redact_url(&held.origin_url),
                now_sha: now_sha.clone(),
            });
        }
        if held.own_lost(Instant::now()) {
            return Err(LockError::Lost {
                ref_name: held.ref_name.clone(),
                url: redact_url(&held.origin_url),
                ttl: held.ttl,
            });
        }
        let scratch = self.scratch()?;
        let started = Instant::now();
        // Like gstack's refresh, re-stamp `createdAt` too: it reads as "last refreshed at".
        let now = clock::now();
        let payload = LockPayload {
            created_at: Some(clock::iso(now)),
            expires_at: clock::iso(now + self.chrono_ttl()),
            ..held.payload.clone()
        };
        let sha = write_commit(
            &scratch,
            &target,
            &payload,
            gstack_text::HEARTBEAT_COMMIT_FAILED,
        )?;
        let outcome = self
            .swap(
                &scratch,
                &target,
                LockWrite::Refresh,
                Expect::At(held.sha),
                Some(sha),
            )
            .map_err(|e| target.remote_error("refresh", e))?;
        match outcome {
            PushOutcome::Applied => {
                held.sha = sha;
                held.payload = payload;
                held.last_refresh = started;
                Ok(())
            }
            PushOutcome::Refused { advertised } => {
                let now_sha = (!advertised.is_zero()).then(|| advertised.to_string());
                held.stolen = Some(StolenTo(now_sha.clone()));
                Err(LockError::Stolen {
                    ref_name: held.ref_name.clone(),
                    url: redact_url(&held.origin_url),
                    now_sha,
                })
            }
            PushOutcome::Rejected { status } => Err(LockError::Rejected {
                op: "refresh",
                ref_name: held.ref_name.clone(),
                url: redact_url(&held.origin_url),
                status,
            }),
        }
    }
}
