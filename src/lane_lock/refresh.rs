//! The heartbeat's refresh of a held lock.

use super::*;

impl LockClient {
    /// Rewrites our lock with `expiresAt = now + ttl`, compare-and-swap against our sha.
    ///
    /// On success `held` records the new sha and refresh time. If the ref points elsewhere
    /// the lock is marked stolen ([`LockError::Stolen`], and [`HeldLock::is_lost`] is true
    /// from then on); so is one whose write went through a path swapped since berth walked
    /// it ([`LockError::Redirected`]). A lock already lost is never refreshed ([`LockError::Lost`]): the
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
            deadline: self.settings.remote_timeout,
        };
        match &held.gone {
            Some(Gone::Stolen(now_sha)) => {
                return Err(LockError::Stolen {
                    ref_name: held.ref_name.clone(),
                    url: redact_url(&held.origin_url),
                    now_sha: now_sha.clone(),
                });
            }
            Some(Gone::Redirected(reason)) => {
                return Err(target.redirected("refresh", reason.clone()));
            }
            None => {}
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
        let outcome = match self.swap(
            &scratch,
            &target,
            LockWrite::Refresh,
            Expect::At(held.sha),
            Some(sha),
        ) {
            Ok(outcome) => outcome,
            Err(e) => {
                held.unconfirmed.push(Unconfirmed {
                    sha,
                    payload,
                    started,
                });
                return Err(target.remote_error("refresh", e));
            }
        };
        match outcome {
            PushOutcome::Applied => {
                held.sha = sha;
                held.payload = payload;
                held.last_refresh = started;
                Ok(())
            }
            // An earlier refresh whose answer was lost did move the ref: go on from it.
            PushOutcome::Refused { advertised }
                if held.unconfirmed.iter().any(|w| w.sha == advertised) =>
            {
                self.adopt(held, advertised);
                self.refresh(held)
            }
            PushOutcome::Refused { advertised } => {
                let now_sha = (!advertised.is_zero()).then(|| advertised.to_string());
                held.gone = Some(Gone::Stolen(now_sha.clone()));
                Err(LockError::Stolen {
                    ref_name: held.ref_name.clone(),
                    url: redact_url(&held.origin_url),
                    now_sha,
                })
            }
            // The write went elsewhere: the lock in the origin is not known to be this
            // one any more, so the landing stops.
            PushOutcome::Redirected { reason } => {
                held.gone = Some(Gone::Redirected(reason.clone()));
                Err(target.redirected("refresh", reason))
            }
            PushOutcome::Rejected { status } => Err(LockError::Rejected {
                op: "refresh",
                ref_name: held.ref_name.clone(),
                url: redact_url(&held.origin_url),
                status,
            }),
        }
    }

    /// Takes the refresh of `held` that wrote `sha`, whose answer was lost, as its last
    /// confirmed write.
    fn adopt(&self, held: &mut HeldLock, sha: Oid) {
        let Some(at) = held.unconfirmed.iter().position(|w| w.sha == sha) else {
            return;
        };
        let landed = held.unconfirmed.remove(at);
        self.mine().remove(&held.sha);
        held.sha = landed.sha;
        held.payload = landed.payload;
        held.last_refresh = landed.started;
    }
}
