//! What a stopping daemon knows: which signal (or request) stopped it, and what its
//! shutdown did with records and lane locks, for gstack's summary lines (DESIGN §6).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::gstack_text;

/// The signals that stop the daemon gracefully. SIGKILL cannot be caught: the reclaim
/// step and the lock TTL cover it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Int,
    Hup,
}

impl StopSignal {
    pub fn number(self) -> i32 {
        match self {
            StopSignal::Term => 15,
            StopSignal::Int => 2,
            StopSignal::Hup => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Int => "SIGINT",
            StopSignal::Hup => "SIGHUP",
        }
    }

    /// The conventional exit status of a process stopped by this signal.
    pub fn exit_code(self) -> u8 {
        128 + self.number() as u8
    }
}

/// Set once, when the first stop signal arrives; landings read it to tell a shutdown
/// from a failure.
#[derive(Debug, Default)]
pub struct StopFlag(OnceLock<StopReason>);

/// Why the daemon is stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Signal(StopSignal),
    /// The embedding program asked (`berth demo` at its end).
    Requested,
}

impl StopReason {
    /// Completes "revived to queued after …".
    pub(super) fn describe(self) -> String {
        match self {
            StopReason::Signal(signal) => format!("signal {}", signal.name()),
            StopReason::Requested => "a stop request".to_owned(),
        }
    }

    /// The revived record's `lastError`: gstack's after a signal.
    pub(super) fn interrupted(self) -> String {
        match self {
            StopReason::Signal(signal) => gstack_text::interrupted_by_signal(signal.name()),
            StopReason::Requested => "interrupted by a stop request mid-landing".to_owned(),
        }
    }
}

impl StopFlag {
    pub fn set(&self, reason: StopReason) {
        let _ = self.0.set(reason);
    }

    pub fn get(&self) -> Option<StopReason> {
        self.0.get().copied()
    }

    pub fn is_set(&self) -> bool {
        self.0.get().is_some()
    }

    /// The signal's name (`SIGTERM`) once a signal stopped the daemon: its lines are then
    /// said in gstack's words.
    pub fn signal_name(&self) -> Option<&'static str> {
        match self.get() {
            Some(StopReason::Signal(signal)) => Some(signal.name()),
            _ => None,
        }
    }
}

/// What a shutdown did with records and lane locks, for gstack's two summary lines.
#[derive(Debug, Default)]
pub struct Tally {
    revived: AtomicUsize,
    skipped: AtomicUsize,
    failed: AtomicUsize,
    released: AtomicUsize,
    release_failed: AtomicUsize,
    /// Lane locks taken and not yet let go: those left at the end of a shutdown are the
    /// ones its budget ran out on.
    held: AtomicUsize,
}

/// How one release of a lane lock ended, for [`Tally::release_ended`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseEnd {
    Released,
    Failed,
    /// Its time ran out: the lock may still be on origin until its TTL.
    TimedOut,
}

impl Tally {
    pub fn lock_taken(&self) {
        self.held.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a release; only those after a stop count toward the summary.
    pub fn release_ended(&self, end: ReleaseEnd, stopping: bool) {
        if end != ReleaseEnd::TimedOut {
            // Saturating: never below zero, whatever the order of events.
            let _ = self
                .held
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
        if stopping {
            match end {
                ReleaseEnd::Released => self.released.fetch_add(1, Ordering::Relaxed),
                ReleaseEnd::Failed => self.release_failed.fetch_add(1, Ordering::Relaxed),
                ReleaseEnd::TimedOut => 0,
            };
        }
    }

    /// A record put back in the queue.
    pub fn revived(&self) {
        self.revived.fetch_add(1, Ordering::Relaxed);
    }

    /// A record left alone because it had settled meanwhile.
    pub fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// A record that could not be put back.
    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// gstack's revival line (when anything was counted) and lock line (when a lock was
    /// held; a daemon that held none says so instead of naming a budget it never used). A
    /// plain shutdown is INFO; a record or lock that could not be let go is WARN.
    pub(super) fn log_summary(&self, signal: &str) {
        let get = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        let (revived, skipped, failed) =
            (get(&self.revived), get(&self.skipped), get(&self.failed));
        if revived + skipped + failed > 0 {
            let line = gstack_text::revived_summary(signal, revived, skipped, failed);
            log_at(failed > 0, &line);
        }
        let (released, release_failed, deferred) = (
            get(&self.released),
            get(&self.release_failed),
            get(&self.held),
        );
        if released + release_failed + deferred == 0 {
            tracing::info!("signal {signal}: no lane lock to release");
            return;
        }
        let line = gstack_text::released_summary(signal, released, release_failed, deferred);
        log_at(release_failed + deferred > 0, &line);
    }
}

fn log_at(warn: bool, line: &str) {
    if warn {
        tracing::warn!("{line}");
    } else {
        tracing::info!("{line}");
    }
}
