//! Keeps a held lane lock fresh from a tokio task while the landing runs.
//!
//! The landing watches [`Heartbeat::lost`] and aborts when it turns true (the lock was taken
//! over, or no refresh succeeded for longer than the TTL). When the landing ends — on every
//! path — the caller stops the heartbeat, which hands back the [`HeldLock`] with the sha of
//! the last successful refresh, and releases that:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use berth::lane_lock::*;
//! # async fn after_landing(client: Arc<LockClient>, heartbeat: Heartbeat) {
//! let held = heartbeat.stop().await;
//! let released = tokio::time::timeout(
//!     std::time::Duration::from_secs(4),
//!     tokio::task::spawn_blocking(move || client.release(&held)),
//! )
//! .await;
//! # }
//! ```
//!
//! Release only after `stop`: a refresh in flight changes the sha, and a release with the
//! old sha would find the ref "not ours" and leave the lock to expire.

use std::sync::{Arc, Weak};
use std::time::Instant;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{HeldLock, Lane, LockClient, LockError};
use crate::boot_clock::BootTime;
use crate::gstack_text;

/// The lock as last refreshed. A refresh works on a copy and publishes the result, so a
/// reader (the landing, the metrics) never waits for a push in flight, however long it
/// hangs.
type Published = watch::Sender<HeldLock>;

/// A running refresh loop for one held lock. Dropped without [`Heartbeat::stop`] (its
/// landing panicked), the loop stops too: a lock nobody means to release must expire on
/// its TTL, not be kept fresh for good.
#[derive(Debug)]
pub struct Heartbeat {
    held: Arc<Published>,
    lost: watch::Receiver<bool>,
    refreshed: watch::Receiver<Option<BootTime>>,
    stop: DropGuard,
    task: JoinHandle<()>,
}

impl Heartbeat {
    /// Refreshes `held` every `heartbeat_every` (sooner when the TTL deadline is nearer)
    /// until [`Heartbeat::stop`] is called, `shutdown` is cancelled, or the lock is lost.
    /// Must be called from within a tokio runtime.
    pub fn spawn(
        client: Arc<LockClient>,
        held: HeldLock,
        shutdown: &CancellationToken,
    ) -> Heartbeat {
        let held = Arc::new(watch::Sender::new(held));
        let (lost_tx, lost) = watch::channel(false);
        let (refreshed_tx, refreshed) = watch::channel(None);
        let stop = shutdown.child_token();
        let task = tokio::spawn(refresh_loop(
            client,
            Arc::clone(&held),
            Signals {
                lost_tx,
                refreshed_tx,
            },
            stop.clone(),
        ));
        Heartbeat {
            held,
            lost,
            refreshed,
            stop: stop.drop_guard(),
            task,
        }
    }

    /// Turns true (once, for good) when ownership is lost; `wait_for(|lost| *lost)` on it
    /// in a `select!` next to the landing to abort the landing promptly.
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// The `CLOCK_BOOTTIME` at which the last successful refresh started its write (taken
    /// before the write, so the remote's `expiresAt` is at least TTL after it): what a
    /// step's lease is extended by.
    pub fn refreshed(&self) -> watch::Receiver<Option<BootTime>> {
        self.refreshed.clone()
    }

    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// A copy of the lock as last refreshed (for status output); never waits for a
    /// refresh in flight.
    pub fn snapshot(&self) -> HeldLock {
        self.held.borrow().clone()
    }

    /// A handle that reports the lock's refresh age for as long as this heartbeat runs
    /// (for the metrics); it goes quiet once the heartbeat is stopped.
    pub fn watch(&self) -> LockWatch {
        LockWatch(Arc::downgrade(&self.held))
    }

    /// Stops refreshing and returns the lock to release. Waits for a refresh in flight to
    /// finish (at most a few remote timeouts), so the returned sha is the current one.
    pub async fn stop(self) -> HeldLock {
        let Heartbeat {
            held, stop, task, ..
        } = self;
        drop(stop);
        if let Err(e) = task.await {
            tracing::error!(error = %e, "lane lock heartbeat task failed");
        }
        held.borrow().clone()
    }
}

/// See [`Heartbeat::watch`].
#[derive(Clone, Debug)]
pub struct LockWatch(Weak<Published>);

impl LockWatch {
    /// The lane and the time since the last successful refresh; `None` once released.
    /// Never waits for a refresh in flight.
    pub fn age(&self, now: Instant) -> Option<(Lane, std::time::Duration)> {
        let published = self.0.upgrade()?;
        let held = published.borrow();
        Some((
            held.lane().clone(),
            now.saturating_duration_since(held.last_refresh()),
        ))
    }
}

/// What the refresh loop tells the landing.
struct Signals {
    lost_tx: watch::Sender<bool>,
    refreshed_tx: watch::Sender<Option<BootTime>>,
}

async fn refresh_loop(
    client: Arc<LockClient>,
    held: Arc<Published>,
    signals: Signals,
    stop: CancellationToken,
) {
    let Signals {
        lost_tx,
        refreshed_tx,
    } = signals;
    let every = client.settings().heartbeat_every;
    loop {
        // Wake at the TTL deadline at the latest, so a run of failed refreshes is reported
        // as a loss when it becomes one, not up to a heartbeat later.
        let wait = held.borrow().time_until_lost(Instant::now()).min(every);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let mut copy = held.borrow().clone();
        // A refresh that hangs (a remote trickling bytes past every socket timeout) must
        // not keep the lock "ours" past the TTL: the deadline is watched while it runs.
        let deadline = copy.time_until_lost(Instant::now());
        let task_client = Arc::clone(&client);
        let started = BootTime::now();
        let mut refresh = tokio::task::spawn_blocking(move || {
            let refreshed = task_client.heartbeat(&mut copy);
            (copy, refreshed)
        });
        let refreshed = tokio::select! {
            done = &mut refresh => done,
            () = tokio::time::sleep(deadline) => {
                tracing::error!("lane lock lost: no refresh succeeded within the TTL (one is still hanging); the landing must stop");
                lost_tx.send_replace(true);
                // Wait (without blocking a runtime thread) for the hung refresh, so `stop`
                // hands out the lock's final state.
                if let Ok((copy, _)) = refresh.await {
                    held.send_replace(copy);
                }
                return;
            }
        };
        match refreshed {
            Ok((copy, refreshed)) => {
                held.send_replace(copy);
                match refreshed {
                    Ok(()) => {
                        refreshed_tx.send_replace(Some(started));
                        let now = held.borrow();
                        tracing::debug!(
                            ref_name = now.ref_name(),
                            sha = now.sha(),
                            "lane lock refreshed"
                        );
                    }
                    Err(e) => tracing::warn!("{}", heartbeat_failed(&e)),
                }
            }
            Err(e) => tracing::error!(
                "{}",
                gstack_text::heartbeat_failed(format!("the refresh task failed: {e}"))
            ),
        }
        let snapshot = held.borrow().clone();
        if snapshot.is_lost(Instant::now()) {
            tracing::error!(
                ref_name = snapshot.ref_name(),
                "lane lock lost: the landing must stop"
            );
            lost_tx.send_replace(true);
            return;
        }
    }
}

/// gstack's `release lock heartbeat failed: <error>`, its reason for a lock someone took
/// (or deleted) first, then berth's error.
fn heartbeat_failed(e: &LockError) -> String {
    match e {
        LockError::Stolen { now_sha: None, .. } => {
            gstack_text::heartbeat_failed(format!("{}: {e}", gstack_text::LOCK_REF_DISAPPEARED))
        }
        LockError::Stolen { .. } => {
            gstack_text::heartbeat_failed(format!("{}: {e}", gstack_text::LOCK_NOT_OWNED))
        }
        _ => gstack_text::heartbeat_failed(e),
    }
}
