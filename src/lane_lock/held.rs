//! A lock this process holds, and when it counts as lost.

use super::*;

/// A lock this process holds.
///
/// Cloning gives a snapshot: refresh one copy only, or the other will release with a stale
/// sha (which is safe — it is then reported [`Released::NotOurs`] and nothing is deleted).
#[derive(Debug, Clone)]
pub struct HeldLock {
    pub(super) origin_url: String,
    pub(super) ref_name: String,
    pub(super) lane: Lane,
    pub(super) sha: Oid,
    pub(super) payload: LockPayload,
    pub(super) ttl: Duration,
    /// Start of the last successful write: the remote's `expiresAt` is at least `ttl` after
    /// it, so treating the lock as lost at `last_refresh + ttl` never outlives the remote.
    pub(super) last_refresh: Instant,
    /// Set when a refresh saw the ref pointing elsewhere, or its write did not reach the
    /// origin: ownership is gone for good.
    pub(super) gone: Option<Gone>,
    /// The locks on the refs every spelling of the repository shares
    /// ([`lane_lock_refs`]), in the order they were taken with this one; the lane is held
    /// only while all are.
    pub(super) aliases: Vec<HeldLock>,
    /// Refreshes of this lock whose answer was lost: each may have moved the ref, and if
    /// one did, the lock it wrote is still this landing's.
    pub(super) unconfirmed: Vec<Unconfirmed>,
    /// How many of `aliases` were taken before this one (the rest after it): all are given
    /// back in the reverse of the order they were taken.
    pub(super) aliases_before: usize,
}

/// A refresh whose answer was lost: what it wrote, and when it started.
#[derive(Debug, Clone)]
pub(super) struct Unconfirmed {
    pub(super) sha: Oid,
    pub(super) payload: LockPayload,
    pub(super) started: Instant,
}

/// Why a held lock is lost for good.
#[derive(Debug, Clone)]
pub(super) enum Gone {
    /// A refresh found the ref no longer ours: what it held (`None`: it was deleted).
    Stolen(Option<String>),
    /// A refresh's write went through a path swapped since berth walked it
    /// ([`super::trail`]): why. What the origin holds is not known to be this lock.
    Redirected(String),
}

impl HeldLock {
    pub fn origin_url(&self) -> &str {
        &self.origin_url
    }

    pub fn ref_name(&self) -> &str {
        &self.ref_name
    }

    pub fn lane(&self) -> &Lane {
        &self.lane
    }

    /// The lock commit the ref pointed at after our last successful write.
    pub fn sha(&self) -> String {
        self.sha.to_string()
    }

    /// The payload of our last successful write.
    pub fn payload(&self) -> &LockPayload {
        &self.payload
    }

    /// The oldest of the last successful writes of this ref and its alias refs.
    pub fn last_refresh(&self) -> Instant {
        self.aliases
            .iter()
            .map(|alias| alias.last_refresh)
            .fold(self.last_refresh, Instant::min)
    }

    /// The refs every spelling of the repository shares, other than this one.
    pub fn alias_ref_names(&self) -> impl Iterator<Item = &str> {
        self.aliases.iter().map(HeldLock::ref_name)
    }

    /// True once a refresh found the ref (or an alias ref) taken over, or no refresh has
    /// succeeded for longer than the TTL. The caller must then stop landing: another
    /// daemon may own the lane.
    pub fn is_lost(&self, now: Instant) -> bool {
        self.own_lost(now) || self.aliases.iter().any(|alias| alias.own_lost(now))
    }

    pub(super) fn own_lost(&self, now: Instant) -> bool {
        self.gone.is_some() || now.saturating_duration_since(self.last_refresh) > self.ttl
    }

    /// Why ownership is lost, in gstack's words (`release lock ref disappeared`, `release
    /// lock is no longer owned by this daemon`, or `release lock heartbeat failed` when no
    /// refresh succeeded within the TTL); `None` while the lock is ours.
    pub fn loss(&self) -> Option<&'static str> {
        match &self.gone {
            Some(Gone::Stolen(None)) => Some(gstack_text::LOCK_REF_DISAPPEARED),
            Some(Gone::Stolen(Some(_)) | Gone::Redirected(_)) => Some(gstack_text::LOCK_NOT_OWNED),
            None => match self.aliases.iter().find_map(HeldLock::loss) {
                Some(loss) => Some(loss),
                None if self.is_lost(Instant::now()) => Some(gstack_text::LOCK_HEARTBEAT_FAILED),
                None => None,
            },
        }
    }

    /// Time left before [`HeldLock::is_lost`] turns true if no refresh succeeds.
    pub fn time_until_lost(&self, now: Instant) -> Duration {
        if self.gone.is_some() {
            return Duration::ZERO;
        }
        let own = (self.last_refresh + self.ttl).saturating_duration_since(now);
        self.aliases
            .iter()
            .map(|alias| alias.time_until_lost(now))
            .fold(own, Duration::min)
    }
}
