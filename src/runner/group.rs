//! A step's process group from spawn to reap: waited for with `waitid(WNOWAIT)`, signalled
//! as a group (SIGTERM, a grace, SIGKILL), reaped last, and killed on drop until then.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::guard::Guard;
use super::process::{EXIT_POLL, Outcome, human_duration};
use crate::boot_clock::BootTime;

/// Why [`ProcessGroup::wait_for_leader`] returned.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    LeaderExited,
    Deadline,
    Cancelled,
    /// The guard could not be told of an extended lease: nothing fences the step.
    GuardLost,
}

/// A spawned child leading its own process group, killed on drop until it is reaped.
pub(super) struct ProcessGroup {
    pub(super) child: Child,
    pub(super) pgid: Pid,
    /// Set once the leader is reaped: from then on the pgid may be reused, so the group
    /// must not be signalled again.
    pub(super) reaped: bool,
    pub(super) sigchld: Option<tokio::signal::unix::Signal>,
    /// Ends the group if berth dies; stopped before the leader is reaped, when it ends
    /// what left the group.
    pub(super) guard: Guard,
    /// Each lease extension, passed on to the guard.
    pub(super) lease: Option<watch::Receiver<BootTime>>,
}

impl ProcessGroup {
    pub(super) async fn supervise(
        &mut self,
        timeout: Duration,
        grace: Duration,
        cancel: &CancellationToken,
    ) -> Outcome {
        let deadline = Instant::now() + timeout;
        match self.wait_for_leader(deadline, Some(cancel)).await {
            Wake::LeaderExited => {
                self.signal(Signal::SIGKILL);
                let outcome = match self.reap().await {
                    Some(status) => Outcome::Exited {
                        code: status.code(),
                        signal: status.signal(),
                    },
                    None => Outcome::Exited {
                        code: None,
                        signal: None,
                    },
                };
                // A command that did not succeed once the lease was over was (or may
                // have been) stopped by its guard: say so, not just "killed by SIGTERM".
                let lease_over = self
                    .lease
                    .as_ref()
                    .is_some_and(|lease| BootTime::now() >= *lease.borrow());
                if lease_over && !outcome.success() {
                    Outcome::LeaseExpired
                } else {
                    outcome
                }
            }
            Wake::GuardLost => {
                tracing::error!(pgid = %self.pgid, "the step's guard is gone and its lease cannot be extended; terminating its process group");
                self.terminate(grace).await;
                Outcome::LeaseExpired
            }
            Wake::Deadline => {
                tracing::warn!(pgid = %self.pgid, "step timed out after {}; terminating its process group", human_duration(timeout));
                self.terminate(grace).await;
                Outcome::TimedOut { after: timeout }
            }
            Wake::Cancelled => {
                tracing::info!(pgid = %self.pgid, "step cancelled; terminating its process group");
                self.terminate(grace).await;
                Outcome::Cancelled
            }
        }
    }

    /// SIGTERM to the group, SIGKILL when the leader has gone or `grace` is up, reap.
    pub(super) async fn terminate(&mut self, grace: Duration) {
        self.signal(Signal::SIGTERM);
        let wake = self.wait_for_leader(Instant::now() + grace, None).await;
        if wake != Wake::LeaderExited {
            tracing::warn!(pgid = %self.pgid, "process group ignored SIGTERM for {}; sending SIGKILL", human_duration(grace));
        }
        self.signal(Signal::SIGKILL);
        self.reap().await;
    }

    /// Waits until the leader has exited (leaving it unreaped), `deadline`, or `cancel`.
    async fn wait_for_leader(
        &mut self,
        deadline: Instant,
        cancel: Option<&CancellationToken>,
    ) -> Wake {
        let until = sleep_until(deadline);
        tokio::pin!(until);
        loop {
            if self.leader_exited() {
                return Wake::LeaderExited;
            }
            tokio::select! {
                () = &mut until => return Wake::Deadline,
                () = cancelled(cancel) => return Wake::Cancelled,
                () = next_sigchld(&mut self.sigchld) => {}
                deadline = next_extension(&mut self.lease) => {
                    if let Err(err) = self.guard.extend(deadline) {
                        tracing::warn!(pgid = %self.pgid, "could not extend the step's lease: {err}");
                        return Wake::GuardLost;
                    }
                }
                () = sleep(EXIT_POLL) => {}
            }
        }
    }

    /// Whether the leader has exited, without reaping it.
    fn leader_exited(&self) -> bool {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
        loop {
            match waitid(Id::Pid(self.pgid), flags) {
                Ok(WaitStatus::StillAlive) => return false,
                Ok(_) => return true,
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    // ECHILD: something else reaped it. Nothing is left to wait for.
                    tracing::warn!(pgid = %self.pgid, "cannot watch step process: {err}");
                    return true;
                }
            }
        }
    }

    fn signal(&self, signal: Signal) {
        match killpg(self.pgid, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(err) => {
                tracing::warn!(pgid = %self.pgid, "could not send {signal} to the step's process group: {err}");
            }
        }
    }

    async fn reap(&mut self) -> Option<std::process::ExitStatus> {
        self.guard.stop();
        let status = self.child.wait().await;
        // Reaped or lost: either way the pgid is no longer ours to signal.
        self.reaped = true;
        match status {
            Ok(status) => Some(status),
            Err(err) => {
                tracing::warn!(pgid = %self.pgid, "could not reap step process: {err}");
                None
            }
        }
    }
}

impl Drop for ProcessGroup {
    /// A dropped `run_step` future (its task aborted, an outer timeout) must not leave a
    /// landing running unsupervised. The unreaped leader still pins the pgid, and tokio
    /// reaps the dropped child in the background. What left the group is not reached by
    /// the group's SIGKILL: the guard kills it by the step's mark, as it would had berth
    /// died (the runner's own end-of-step sweep never runs for a dropped step).
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(Signal::SIGKILL);
            self.guard.stop();
        }
    }
}

async fn cancelled(cancel: Option<&CancellationToken>) {
    match cancel {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

/// The next lease deadline; never, without a lease or once its sender is gone.
async fn next_extension(lease: &mut Option<watch::Receiver<BootTime>>) -> BootTime {
    if let Some(watch) = lease {
        if watch.changed().await.is_ok() {
            return *watch.borrow_and_update();
        }
        *lease = None;
    }
    std::future::pending().await
}

async fn next_sigchld(listener: &mut Option<tokio::signal::unix::Signal>) {
    match listener {
        Some(listener) => {
            if listener.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
