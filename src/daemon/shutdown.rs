//! Stopping on SIGTERM, SIGINT (and SIGHUP in `--once`; in `--watch` it reloads, see
//! `reload.rs`) (DESIGN §6): stop taking work, put every
//! in-flight record back in the queue, stop heartbeats, release locks, kill child groups
//! (the landings' and the forge calls').

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinSet;

use super::crew::Crew;
use super::releasing::Releasing;
use super::stop::StopSignal;

/// The three signal streams, installed before the first tick so none is missed.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    /// `--watch`: SIGHUP reloads (what a service manager's `reload` sends); `--once`:
    /// it stops, as gstack's daemon does.
    hup_reloads: bool,
}

/// What a signal asks of the main loop.
pub enum Heard {
    Stop(StopSignal),
    Reload,
}

impl Signals {
    pub fn install(hup_reloads: bool) -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            hup_reloads,
        })
    }

    pub async fn recv(&mut self) -> Heard {
        tokio::select! {
            _ = self.term.recv() => Heard::Stop(StopSignal::Term),
            _ = self.int.recv() => Heard::Stop(StopSignal::Int),
            _ = self.hup.recv() => if self.hup_reloads {
                Heard::Reload
            } else {
                Heard::Stop(StopSignal::Hup)
            },
        }
    }
}

/// Waits until every lane lock release in flight ended (or `deadline`), listening for
/// signals meanwhile: the stop signal heard first, if any.
pub async fn releases_or_signal(
    signals: &mut Signals,
    releasing: &Releasing,
    deadline: tokio::time::Instant,
) -> Option<StopSignal> {
    loop {
        tokio::select! {
            // A signal already heard wins over the releases ending at the same moment.
            biased;
            heard = signals.recv() => match heard {
                Heard::Stop(signal) => return Some(signal),
                Heard::Reload => {}
            },
            _ = releasing.wait_all(deadline) => return None,
        }
    }
}

/// Waits up to `budget` for the landings to wind down on their own (each kills its child
/// group, revives its record and starts releasing its lock) and for their locks' releases;
/// then revives whatever this process still holds in flight, so nothing is left claimed by
/// a process about to exit, except the records of verdicts still kept: those stay in
/// flight, listed for the next start on the berth dir ([`super::unsaved`]).
pub async fn drain<T: 'static>(crew: &Crew, landings: &mut JoinSet<T>, budget: Duration) {
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
    // The landings' lane lock releases run in the background: they count in the summary.
    crew.releasing.wait_all(deadline).await;
    // A kept verdict gets one more try: written, its record needs no revival. One still
    // refused stays listed with its record in flight, for the next daemon on the berth dir
    // to write: revived, the record would be landed again.
    super::unsaved::retry(&crew.unsaved, &crew.records);
    if let Ok(scan) = crew.records.store().scan() {
        for stored in scan.records {
            if stored.record.status.is_in_flight()
                && stored.record.claimed_by.as_deref() == Some(&*crew.owner)
                && !crew.unsaved.holds(&stored.id)
            {
                super::revive::revive(crew, &stored.id);
            }
        }
    }
    if let Some(signal) = crew.stop.signal_name() {
        crew.tally.log_summary(signal);
    }
}

/// How long a stopping daemon waits for the forge calls in flight (a round's, or one a
/// stopping landing stopped waiting for) to be killed and reaped: gh's grace between
/// SIGTERM and SIGKILL is 500 ms.
const FORGE_STOP_WAIT: Duration = Duration::from_secs(2);

/// Ends the forge calls in flight, killing and reaping their process groups, and refuses
/// new ones: nothing berth starts outlives it, and the runtime abandons the blocking
/// threads that would otherwise have ended them at their timeout. After the landings are
/// drained, so that none of them is refused the forge while it still winds down.
pub async fn end_forge_calls(forge: &Arc<dyn crate::forge::Forge>) {
    let forge = Arc::clone(forge);
    let ended = tokio::task::spawn_blocking(move || forge.stop_calls(FORGE_STOP_WAIT)).await;
    if !matches!(ended, Ok(true)) {
        tracing::error!(
            "a forge call still ran {} s after it was told to stop; exiting without it",
            FORGE_STOP_WAIT.as_secs()
        );
    }
}

/// A crash is recovered by the next start: the `gh` calls a SIGKILLed predecessor on this
/// berth dir left running are killed before the first tick.
pub fn end_leftover_forge_calls() {
    use crate::forge::leftover_calls::{CallMark, end_leftover_calls};
    let Some(mine) = CallMark::this_daemon() else {
        return;
    };
    match end_leftover_calls(&mine) {
        (0, _) => {}
        (killed, 0) => tracing::warn!("killed {killed} forge call(s) a killed daemon left running"),
        (killed, left) => tracing::error!(
            "killed {killed} forge call(s) a killed daemon left running; {left} still run after SIGKILL"
        ),
    }
}
