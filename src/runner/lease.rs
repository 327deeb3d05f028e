//! The lease: how long a landing's steps may run on the strength of the lane lock.
//!
//! The lock on `origin` says "mine until `expiresAt`"; another daemon takes the lane once
//! that time has passed. The heartbeat that pushes `expiresAt` forward runs inside berth,
//! so a berth that is stopped (SIGSTOP, Ctrl-Z), suspended or starved cannot stop its own
//! step in time. The lease moves that duty to the step's guard ([`super::guard`]), which
//! runs whatever berth does: it holds the lease's deadline on `CLOCK_BOOTTIME` and, once it
//! passes, terminates the step's process group. Each successful heartbeat extends the
//! deadline down the guard's pipe.
//!
//! The deadline is the start of the last successful lock write (taken before the write, so
//! the remote's `expiresAt` is never earlier) plus the TTL, minus [`margin`]: the group gets
//! SIGTERM then, and SIGKILL after [`Lease::kill_grace`], both before the lock expires.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::boot_clock::BootTime;

/// How long before the lock expires the guard starts stopping the step (or a quarter of
/// the TTL, if that is shorter). It covers the SIGTERM grace inside the lease (at most
/// half the margin) and clock skew between this host and the next daemon's.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The margin for a lock of `ttl`: [`LEASE_MARGIN`], or `ttl / 4` when that is shorter,
/// so a short test TTL still leaves the step three quarters of it.
pub fn margin(ttl: Duration) -> Duration {
    LEASE_MARGIN.min(ttl / 4)
}

/// One landing's lease, shared by the heartbeat hook (which extends it) and the step's
/// supervisor (which hands each new deadline to the guard).
#[derive(Debug, Clone)]
pub struct Lease {
    ttl: Duration,
    deadline: Arc<watch::Sender<BootTime>>,
    /// The lock's heartbeat's word that the lock is lost ([`Lease::ending_when`]).
    lost: Option<watch::Receiver<bool>>,
}

/// Why no step may start under a lease any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The lane lock's heartbeat found the lock lost (taken over, deleted, or not
    /// refreshed within its TTL).
    LockLost,
    /// The deadline passed on `CLOCK_BOOTTIME` (so the lock itself expires within the
    /// margin): berth did not refresh the lock in time.
    Expired,
}

impl Lease {
    /// The lease of a lock of `ttl` whose write started at `written_at`.
    pub fn new(written_at: BootTime, ttl: Duration) -> Lease {
        let (deadline, _) = watch::channel(deadline_for(written_at, ttl));
        Lease {
            ttl,
            deadline: Arc::new(deadline),
            lost: None,
        }
    }

    /// The lease also ends, for any step not yet started, once `lost` (the lock's
    /// heartbeat's) turns true. A step already running is stopped by the landing, which
    /// watches the same signal.
    #[must_use]
    pub fn ending_when(mut self, lost: watch::Receiver<bool>) -> Lease {
        self.lost = Some(lost);
        self
    }

    /// Whether a step may start under the lease right now: `None` while the lock is not
    /// known lost and the deadline is ahead; read the moment before a spawn.
    pub fn ended(&self) -> Option<Ended> {
        if self.lost.as_ref().is_some_and(|lost| *lost.borrow()) {
            Some(Ended::LockLost)
        } else if self.expired() {
            Some(Ended::Expired)
        } else {
            None
        }
    }

    /// A lock write that started at `written_at` succeeded: the deadline moves to match it
    /// (never backwards: a late answer to an older write does not shorten the lease).
    pub fn extend(&self, written_at: BootTime) {
        let new = deadline_for(written_at, self.ttl);
        self.deadline.send_if_modified(|deadline| {
            let later = new > *deadline;
            if later {
                *deadline = new;
            }
            later
        });
    }

    /// When the guard starts stopping the step, unless the lease is extended first.
    pub fn deadline(&self) -> BootTime {
        *self.deadline.borrow()
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        BootTime::now() >= self.deadline()
    }

    /// Wakes on every extension.
    pub fn watch(&self) -> watch::Receiver<BootTime> {
        self.deadline.subscribe()
    }

    /// SIGTERM to SIGKILL when the lease runs out: the step's usual grace, cut to half the
    /// margin so the SIGKILL too lands before the lock expires.
    pub fn kill_grace(&self, grace: Duration) -> Duration {
        grace.min(margin(self.ttl) / 2)
    }
}

fn deadline_for(written_at: BootTime, ttl: Duration) -> BootTime {
    written_at.after(ttl).before(margin(ttl))
}

/// The hook from the heartbeat to the lease: every successful refresh (the boot time its
/// write started at) extends `lease`. Ends when the heartbeat does.
pub async fn follow(mut refreshed: watch::Receiver<Option<BootTime>>, lease: Lease) {
    while refreshed.changed().await.is_ok() {
        let written_at = *refreshed.borrow_and_update();
        if let Some(written_at) = written_at {
            lease.extend(written_at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_five_seconds_or_a_quarter_of_a_short_ttl() {
        assert_eq!(margin(Duration::from_secs(7200)), Duration::from_secs(5));
        assert_eq!(margin(Duration::from_secs(8)), Duration::from_secs(2));
        let lease = Lease::new(BootTime::now(), Duration::from_secs(8));
        assert_eq!(
            lease.kill_grace(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_lease_only_moves_forward() {
        let start = BootTime::now();
        let ttl = Duration::from_secs(60);
        let lease = Lease::new(start, ttl);
        assert_eq!(lease.deadline(), start.after(Duration::from_secs(55)));
        let mut watch = lease.watch();
        lease.extend(start.after(Duration::from_secs(10)));
        assert_eq!(lease.deadline(), start.after(Duration::from_secs(65)));
        assert!(watch.has_changed().unwrap());
        watch.mark_unchanged();
        lease.extend(start);
        assert_eq!(lease.deadline(), start.after(Duration::from_secs(65)));
        assert!(!watch.has_changed().unwrap(), "an older write moved it");
    }
}
