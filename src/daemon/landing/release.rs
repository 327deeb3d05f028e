//! Release: let go of the lane lock, bounded so a dead remote cannot hold up a shutdown.

use std::sync::Arc;
use std::time::Duration;

use crate::gstack_text;
use crate::lane_lock::{HeldLock, Released};

use super::Landing;
use crate::daemon::stop::ReleaseEnd;

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

/// Releases the lane lock. After a signal, the release counts toward gstack's
/// `signal <SIG>: released …` line.
pub(super) async fn release(l: &Landing, held: HeldLock, at: ReleaseAt) {
    let crew = &l.crew;
    let ref_name = held.ref_name().to_owned();
    let ended = release_within_budget(Arc::clone(&crew.locks), held).await;
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

async fn release_within_budget(
    locks: Arc<crate::lane_lock::LockClient>,
    held: HeldLock,
) -> Result<(), Failure> {
    let ref_name = held.ref_name().to_owned();
    let release = tokio::task::spawn_blocking(move || locks.release(&held));
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
