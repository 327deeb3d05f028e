//! Release: let go of the lane lock in the background, bounded so a dead remote cannot
//! hold up a shutdown. The landing ends (and its lane takes its next record) without
//! waiting for it; the lane's next lock write waits for it instead
//! ([`Releasing`](crate::daemon::releasing::Releasing)).

use std::sync::Arc;
use std::time::Duration;

use crate::daemon::crew::Crew;
use crate::daemon::releasing::InFlight;
use crate::daemon::stop::ReleaseEnd;
use crate::gstack_text;
use crate::lane_lock::{HeldLock, Released};

use super::Landing;

/// DESIGN §6: the budget for releasing held locks once a signal arrived.
const RELEASE_BUDGET: Duration = Duration::from_secs(4);

/// When a landing lets go of its lane lock: its failure is said in gstack's words for
/// that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReleaseAt {
    /// A signal came after the lock was taken, before its heartbeat started.
    PreHeartbeat,
    /// The record is settled (or put back after a signal).
    Settled,
}

/// How a release went wrong.
struct Failure {
    end: ReleaseEnd,
    why: String,
    /// The release task itself failed (panicked), as opposed to the remote refusing.
    threw: bool,
}

/// Starts releasing the lane lock and returns at once; the lane is marked as releasing
/// until the release's writer is done and its end is told.
pub(super) fn start(l: &Landing, held: HeldLock, at: ReleaseAt) {
    let crew = l.crew.clone();
    let in_flight = crew.releasing.begin(&l.c.key.lane);
    tokio::spawn(async move { release(&crew, held, at, in_flight).await });
}

/// Releases the lane lock. After a signal, the release counts toward gstack's
/// `signal <SIG>: released …` line.
async fn release(crew: &Crew, held: HeldLock, at: ReleaseAt, in_flight: InFlight) {
    let ref_name = held.ref_name().to_owned();
    let ended = release_within_budget(Arc::clone(&crew.locks), held, in_flight.clone()).await;
    let end = ended.as_ref().err().map_or(ReleaseEnd::Released, |f| f.end);
    crew.tally.release_ended(end, crew.stop.is_set());
    let Err(failure) = ended else {
        return;
    };
    let line = match (at, crew.stop.signal_name()) {
        (ReleaseAt::PreHeartbeat, _) => gstack_text::pre_heartbeat_release_failed(&failure.why),
        (ReleaseAt::Settled, Some(signal))
            if failure.end == ReleaseEnd::Failed && failure.threw =>
        {
            gstack_text::signal_release_threw(signal, format!("{ref_name}: {}", failure.why))
        }
        (ReleaseAt::Settled, Some(signal)) if failure.end == ReleaseEnd::Failed => {
            gstack_text::signal_release_failed(signal, format!("{} ({ref_name})", failure.why))
        }
        _ => gstack_text::could_not_release(&ref_name, &failure.why),
    };
    tracing::warn!("{line}");
}

/// The writer holds `in_flight` until it is done, past the budget too: the lane's next
/// lock write never runs beside it.
async fn release_within_budget(
    locks: Arc<crate::lane_lock::LockClient>,
    held: HeldLock,
    in_flight: InFlight,
) -> Result<(), Failure> {
    let ref_name = held.ref_name().to_owned();
    let release = tokio::task::spawn_blocking(move || {
        let released = locks.release(&held);
        drop(in_flight);
        released
    });
    let failed = |why: String| Failure {
        end: ReleaseEnd::Failed,
        why,
        threw: false,
    };
    match tokio::time::timeout(RELEASE_BUDGET, release).await {
        Ok(Ok(Ok(released @ (Released::Deleted | Released::AlreadyGone)))) => {
            tracing::debug!(lock = %ref_name, ?released, "lane lock released");
            Ok(())
        }
        Ok(Ok(Ok(Released::NotOurs { now_sha }))) => Err(failed(format!(
            "{}: it was taken over (now {now_sha}) and is left alone",
            gstack_text::LOCK_NOT_OWNED
        ))),
        Ok(Ok(Err(e))) => Err(failed(format!("{e}; it expires on its TTL"))),
        Ok(Err(e)) => Err(Failure {
            threw: true,
            ..failed(format!("the release task failed: {e}"))
        }),
        Err(_) => Err(Failure {
            end: ReleaseEnd::TimedOut,
            why: "timed out; it expires on its TTL".to_owned(),
            threw: false,
        }),
    }
}
