//! Stopping on SIGTERM, SIGINT or SIGHUP (DESIGN §6): stop taking work, put every
//! in-flight record back in the queue, stop heartbeats, release locks, kill child groups.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinSet;

use crate::gstack_text;
use crate::record::Status;
use crate::store::{Expect, StoreError};

use super::{LaneOutcome, Shared};

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
    fn describe(self) -> String {
        match self {
            StopReason::Signal(signal) => format!("signal {}", signal.name()),
            StopReason::Requested => "a stop request".to_owned(),
        }
    }

    /// The revived record's `lastError`: gstack's after a signal.
    fn interrupted(self) -> String {
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

    fn count(counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// gstack's revival line (when anything was counted) and lock line (always).
    fn log_summary(&self, signal: &str) {
        let get = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        let (revived, skipped, failed) =
            (get(&self.revived), get(&self.skipped), get(&self.failed));
        if revived + skipped + failed > 0 {
            tracing::warn!(
                "{}",
                gstack_text::revived_summary(signal, revived, skipped, failed)
            );
        }
        tracing::warn!(
            "{}",
            gstack_text::released_summary(
                signal,
                get(&self.released),
                get(&self.release_failed),
                get(&self.held)
            )
        );
    }
}

/// The three signal streams, installed before the first tick so none is missed.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub async fn recv(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.term.recv() => StopSignal::Term,
            _ = self.int.recv() => StopSignal::Int,
            _ = self.hup.recv() => StopSignal::Hup,
        }
    }
}

/// Puts one in-flight record back in the queue after a signal. It re-reads the record
/// under its lock: one that already settled (`landed`, `blocked`) is left alone, and once
/// it is `queued` no late write that expects an in-flight status can land on it.
pub fn revive(shared: &Shared, id: &str) {
    let stop = shared.stop.get().unwrap_or(StopReason::Requested);
    let (why, interrupted) = (stop.describe(), stop.interrupted());
    let run_id = run_id_of(shared, id);
    let written = shared.transition(id, Expect::OneOf(&Status::IN_FLIGHT), Status::Queued, |r| {
        if r.status == Status::DriftRepairing {
            r.retries = Some(0);
        }
        r.claimed_by = None;
        r.last_error = Some(interrupted.clone());
    });
    let tally = &shared.tally;
    let signal = shared.stop.signal_name();
    let failed = |error: String| {
        Tally::count(&tally.failed);
        match signal {
            Some(signal) => tracing::error!(
                "{}; record {id}",
                gstack_text::failed_to_revive(signal, &run_id, error)
            ),
            None => tracing::error!(record = %id, "not revived: {error}"),
        }
    };
    match written {
        Ok(_) => {
            Tally::count(&tally.revived);
            tracing::warn!(record = %id, "revived to queued after {why}")
        }
        Err(StoreError::NotFound { .. }) => match recreate(shared, id, &why, &interrupted) {
            Ok(()) => Tally::count(&tally.revived),
            Err(e) => failed(e),
        },
        // Settled meanwhile (or queued again): whatever it is now stays.
        Err(StoreError::Moved { found, .. }) => {
            Tally::count(&tally.skipped);
            match signal {
                Some(signal) => tracing::warn!(
                    "{}; record {id}",
                    gstack_text::skipping_revive(signal, &run_id, found)
                ),
                None => tracing::info!(record = %id, "not revived: already {found}"),
            }
        }
        Err(e) => failed(e.to_string()),
    }
}

/// The record's `runId` (gstack's name for it in its lines): from the copy being landed,
/// else as last read, else its id.
fn run_id_of(shared: &Shared, id: &str) -> String {
    if let Some(record) = shared.active.copy_of(id) {
        return record.run_id;
    }
    let read = shared.view().get(id).map(|s| s.record.run_id.clone());
    read.unwrap_or_else(|| id.to_owned())
}

/// The record's file vanished mid-landing: write it again as `queued` from the copy this
/// process claimed (as gstack does), so the PR is not silently dropped from the queue.
/// `Err` says why it could not be.
fn recreate(shared: &Shared, id: &str, why: &str, interrupted: &str) -> Result<(), String> {
    let Some(mut record) = shared.active.copy_of(id) else {
        return Err("its file vanished and no copy of it is held".to_owned());
    };
    if record.expected_id() != id {
        return Err(format!(
            "its file vanished and its copy names another id ({})",
            record.expected_id()
        ));
    }
    record.status = Status::Queued;
    record.retries = Some(0);
    record.claimed_by = None;
    record.last_error = Some(interrupted.to_owned());
    record.last_updated_at = Some(crate::clock::now_iso());
    match shared.store.insert(&record) {
        Ok(_) => {
            tracing::warn!(record = %id, "its file vanished mid-landing; recreated as queued after {why}");
            Ok(())
        }
        Err(e) => Err(format!(
            "its file vanished mid-landing and could not be recreated: {e}"
        )),
    }
}

/// Waits up to `budget` for the landings to wind down on their own (each kills its child
/// group, revives its record and releases its lock); then revives whatever this process
/// still holds in flight, so nothing is left claimed by a process about to exit.
pub async fn drain(shared: &Shared, landings: &mut JoinSet<LaneOutcome>, budget: Duration) {
    let deadline = tokio::time::Instant::now() + budget;
    while !landings.is_empty() {
        match tokio::time::timeout_at(deadline, landings.join_next()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::error!(
                    "{} landing(s) did not stop in time; reviving their records",
                    landings.len()
                );
                landings.abort_all();
                break;
            }
        }
    }
    // A kept verdict gets one more try: written, its record needs no revival.
    super::unsaved::retry(shared);
    if let Ok(scan) = shared.store.scan() {
        for stored in scan.records {
            if stored.record.status.is_in_flight()
                && stored.record.claimed_by.as_deref() == Some(shared.owner.as_str())
            {
                revive(shared, &stored.id);
            }
        }
    }
    if let Some(signal) = shared.stop.signal_name() {
        shared.tally.log_summary(signal);
    }
}
