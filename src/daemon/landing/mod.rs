//! One landing, claim to release (DESIGN §3 step 6), as a state machine:
//!
//! ```text
//!  claim --> verify --> lock --> place --> run <--> judge --> settle --> release
//!    |          |         |        |        (drift repair)      ^
//!    +----------+---------+--------+----------------------------+  (an End: settle at once)
//! ```
//!
//! Each step is one file with an `async fn` that returns what the next step needs, or an
//! [`End`]: where the landing stopped. This driver alone decides what happens between the
//! steps: it checks for cancellation (a signal) between them, settles the record from the
//! `End` (a local write, first), then stops the heartbeat and releases the lane lock (a
//! network call, last) on every path that took it. The lane guarantee reads here: the run
//! step starts only with the lock held and its heartbeat running, and a lost heartbeat
//! stops it (`run.rs`).

mod ask;
mod claim;
mod judge;
mod lock;
mod outcome;
mod place;
mod release;
mod run;
mod settle;
mod verify;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::boot_clock::BootTime;
use crate::lane_lock::{Heartbeat, HeldLock, Lane};
use crate::runner::{Lease, follow_heartbeat};

use super::Candidate;
use super::crew::Crew;
use outcome::End;
pub use outcome::{LaneOutcome, OutcomeKind};
use release::ReleaseAt;

/// One landing's inputs, shared by its steps.
struct Landing {
    crew: Crew,
    c: Candidate,
    lane: Lane,
    /// Cancelled when the daemon stops: the steps wind down and the record is revived.
    cancel: CancellationToken,
}

impl Landing {
    /// A signal arrived: whatever a step concluded, the record goes back to the queue.
    fn interrupted(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Runs blocking work (a record write: up to 250 ms waiting for the record's lock, then
    /// an fsync; a log file claimed) on a blocking thread, so a slow disk never stalls the
    /// runtime's threads: the other lanes, the heartbeats, the main loop. A panic there is
    /// this landing's panic.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Crew) -> T + Send + 'static,
    ) -> T {
        let crew = self.crew.clone();
        match tokio::task::spawn_blocking(move || work(&crew)).await {
            Ok(done) => done,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

/// Runs the whole landing of one candidate.
pub async fn land(crew: Crew, candidate: Candidate, cancel: CancellationToken) -> LaneOutcome {
    let lane = candidate.gated.lane();
    let l = Landing {
        crew,
        c: candidate,
        lane,
        cancel,
    };
    let kind = drive(&l).await;
    l.crew.telemetry.landing_done(kind.label());
    kind.log(&l.c.id, l.c.record.pr_number);
    LaneOutcome {
        lane: l.lane,
        id: l.c.id,
        kind,
    }
}

/// The steps in order. Everything before the lock ends in [`settle`]; from the lock on,
/// the lock is released after the record is settled.
async fn drive(l: &Landing) -> OutcomeKind {
    // Registered before the claim is written, so a tick never sees our claim unregistered.
    let _registered = l
        .crew
        .active
        .register(&l.c.id, l.c.record.clone(), l.c.gated.identity());
    // From the claim on, the record is written every heartbeat, so no daemon strands it.
    let _touching = crate::daemon::record_touch::start(&l.crew, &l.c.id);
    let (held, leased_at) = match up_to_the_lock(l).await {
        Ok(held) => held,
        Err(end) => return settle::settle(l, end).await,
    };
    l.crew.tally.lock_taken();
    if l.interrupted() {
        let outcome = settle::settle(l, End::Interrupted).await;
        release::release(l, held, ReleaseAt::PreHeartbeat).await;
        return outcome;
    }
    let heartbeat = Heartbeat::spawn(Arc::clone(&l.crew.locks), held, &l.cancel);
    l.crew.telemetry.lock_held(heartbeat.watch());
    // The steps' guards hold the lease; each successful heartbeat extends it.
    let lease = Lease::new(leased_at, l.crew.locks.settings().ttl);
    let follow = tokio::spawn(follow_heartbeat(heartbeat.refreshed(), lease.clone()));
    let end = match place::prepare(l).await {
        Ok(place) => {
            let end = run::run(l, &place, &heartbeat, &lease).await;
            l.blocking(move |crew| place.finish(&crew.places)).await;
            end
        }
        Err(end) => end,
    };
    follow.abort();
    // The record is settled first (a local write), then the lock released (a network
    // call): a shutdown that runs out of budget must not leave the record in flight.
    let outcome = settle::settle(l, end).await;
    let held = heartbeat.stop().await;
    release::release(l, held, ReleaseAt::Settled).await;
    outcome
}

/// claim → verify → lock: the lane lock and the boot time its write started before (where
/// its lease counts from), or where the landing stopped before it.
async fn up_to_the_lock(l: &Landing) -> Result<(HeldLock, BootTime), End> {
    let origin_url = claim::claim(l).await?;
    let verified = verify::verify(l, &origin_url).await;
    if l.interrupted() {
        return Err(End::Interrupted);
    }
    verified?;
    let leased_at = BootTime::now();
    let held = lock::acquire(l, &origin_url).await.map_err(|end| {
        if l.interrupted() {
            End::Interrupted
        } else {
            end
        }
    })?;
    Ok((held, leased_at))
}
