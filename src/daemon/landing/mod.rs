//! One landing, claim to release (DESIGN §3 step 6), as a state machine:
//!
//! ```text
//!                     +-> lock --+
//!  claim --> verify --+          +--> run <--> judge --> settle --> release
//!    |          |     +-> place -+     (drift repair)      ^   (beside them: the
//!    |          |          |                               |    scratch worktree kept)
//!    +----------+----------+-------------------------------+  (an End: settle at once)
//! ```
//!
//! Each step is one file with an `async fn` that returns what the next step needs, or an
//! [`End`]: where the landing stopped. This driver alone decides what happens between the
//! steps: it checks for cancellation (a signal) between them, settles the record from the
//! `End` (a local write, first), then stops the heartbeat and releases the lane lock (a
//! network call, last) on every path that took it. The lane guarantee reads here: the run
//! step starts only with the lock held and its heartbeat running, and a lost heartbeat
//! stops it (`run.rs`); a step starts only if, the moment before its spawn, the heartbeat
//! has not found the lock lost and the lease has time left. The lock and the place (the feature fetch and the checkout, which
//! need no lane) are made at once: berth's share of a landing is mostly waits on git.

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

use tokio::task::JoinHandle;
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
    /// Written into the record at its claim ([`crate::store::CLAIM_TOKEN_FIELD`]): the
    /// claim a verdict kept for this landing is written onto, and no other.
    token: String,
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
        token: claim::new_token(),
        cancel,
    };
    let kind = drive(&l).await;
    l.crew.telemetry.landing_done(kind.label());
    kind.log(&l.c.id, l.c.record.pr_number);
    LaneOutcome {
        key: l.c.key,
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
    // From the claim on, the record is written every heartbeat, so no daemon strands it;
    // settle stops the touches before it writes the verdict.
    let touching = crate::daemon::record_touch::start(&l.crew, &l.c.id);
    let origin_url = match claimed_and_verified(l).await {
        Ok(url) => url,
        Err(end) => return settle::settle(l, end, touching).await,
    };
    // The checkout is made while the lock is taken: the feature fetch and the scratch
    // worktree's reset read origin and write only the local repo, so neither needs the
    // lane. The step starts only once both are done, with the lock held and its heartbeat
    // running (from the moment the lock was taken, however long the fetch takes).
    let (locked, placed) = tokio::join!(lock_and_heartbeat(l, &origin_url), place::prepare(l));
    let (heartbeat, lease, follow) = match locked {
        Locked::Held {
            heartbeat,
            lease,
            follow,
        } => (heartbeat, lease, follow),
        Locked::Stopped { end, held } => {
            if let Ok(place) = placed {
                l.blocking(move |crew| place.finish(&crew.places)).await;
            }
            let outcome = settle::settle(l, end, touching).await;
            if let Some(held) = held {
                release::start(l, *held, ReleaseAt::PreHeartbeat);
            }
            return outcome;
        }
    };
    let (end, place) = match placed {
        Ok(place) => (run::run(l, &place, &heartbeat, &lease).await, Some(place)),
        Err(end) => (end, None),
    };
    follow.abort();
    // The record is settled first (a local write), then the lock's release started (a
    // network call, in the background): a shutdown that runs out of budget must not leave
    // the record in flight. The lane's next landing may then start at once; its lock
    // write waits for this release. Meanwhile the scratch worktree is checked and kept for
    // the repo's next landing, which this landing's outcome (reported once both are done)
    // may start.
    let finished = async {
        if let Some(place) = place {
            l.blocking(move |crew| place.finish(&crew.places)).await;
        }
    };
    let settled = async {
        let outcome = settle::settle(l, end, touching).await;
        let held = heartbeat.stop().await;
        release::start(l, held, ReleaseAt::Settled);
        outcome
    };
    tokio::join!(finished, settled).1
}

/// claim → verify: the origin URL to land to, or where the landing stopped.
async fn claimed_and_verified(l: &Landing) -> Result<String, End> {
    let origin_url = claim::claim(l).await?;
    let verified = verify::verify(l, &origin_url).await;
    if l.interrupted() {
        return Err(End::Interrupted);
    }
    verified?;
    Ok(origin_url)
}

/// Where taking the lane lock left the landing.
enum Locked {
    /// Held: its heartbeat runs, and the steps' lease follows each refresh.
    Held {
        heartbeat: Heartbeat,
        lease: Lease,
        follow: JoinHandle<()>,
    },
    /// Not taken (`held` is `None`), or taken as a signal came, before its heartbeat
    /// started (boxed: a held lock is large, and this the rare way).
    Stopped {
        end: End,
        held: Option<Box<HeldLock>>,
    },
}

/// Takes the lane lock (once the lane's previous release is over) and starts its
/// heartbeat; the lease counts from the boot time the lock's write started before.
async fn lock_and_heartbeat(l: &Landing, origin_url: &str) -> Locked {
    if let Err(end) = lock::same_repository(l).await {
        return Locked::Stopped { end, held: None };
    }
    if let Err(end) = lock::previous_release(l).await {
        return Locked::Stopped { end, held: None };
    }
    let leased_at = BootTime::now();
    let held = match lock::acquire(l, origin_url).await {
        Ok(held) => held,
        Err(end) => {
            let end = if l.interrupted() {
                End::Interrupted
            } else {
                end
            };
            return Locked::Stopped { end, held: None };
        }
    };
    l.crew.tally.lock_taken();
    if l.interrupted() {
        return Locked::Stopped {
            end: End::Interrupted,
            held: Some(Box::new(held)),
        };
    }
    let heartbeat = Heartbeat::spawn(Arc::clone(&l.crew.locks), held, &l.cancel);
    l.crew.telemetry.lock_held(heartbeat.watch());
    // The steps' guards hold the lease; each successful heartbeat extends it, and a lost
    // lock ends it for any step not yet started.
    let lease = Lease::new(leased_at, l.crew.locks.settings().ttl).ending_when(heartbeat.lost());
    let follow = tokio::spawn(follow_heartbeat(heartbeat.refreshed(), lease.clone()));
    Locked::Held {
        heartbeat,
        lease,
        follow,
    }
}
