//! A landing keeps its record fresh: every `heartbeat_secs` the record is written again
//! as it is, with a new `lastUpdatedAt` (and so a new ctime), for as long as it is in
//! flight in this daemon's name. Every daemon strands an in-flight record nobody has
//! written for the lock TTL ([`crate::ownership::stranded_reason`]), and `heartbeat_secs`
//! is shorter than the TTL, so a landing that runs for hours is never taken for a wedged one.

use std::sync::Arc;

use crate::store::{Expect, Move};

use super::crew::Crew;
use super::records::Records;

/// The touching task of one landing; dropping it stops the touches.
pub(super) struct Touching(tokio::task::JoinHandle<()>);

impl Drop for Touching {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts touching record `id` every `heartbeat_secs`, first one interval from now.
pub(super) fn start(crew: &Crew, id: &str) -> Touching {
    let every = crew.touch_every;
    let (records, owner, id) = (
        Arc::clone(&crew.records),
        Arc::clone(&crew.owner),
        id.to_owned(),
    );
    Touching(tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let (records, owner, id) = (Arc::clone(&records), Arc::clone(&owner), id.clone());
            let _ = tokio::task::spawn_blocking(move || touch(&records, &owner, &id)).await;
        }
    }))
}

/// Writes the record again if it is still in flight in this daemon's name, expecting
/// exactly what was read (a settle or a revival in between wins, and is left alone).
fn touch(records: &Records, owner: &str, id: &str) {
    let Ok(stored) = records.store().load(id) else {
        return;
    };
    let record = &stored.record;
    if !record.status.is_in_flight() || record.claimed_by.as_deref() != Some(owner) {
        return;
    }
    if let Err(e) = records.transition(Move::new(id, Expect::Claim(record), record.status), |_| {})
    {
        tracing::debug!(record = %id, "record not touched this time: {e}");
    }
}
