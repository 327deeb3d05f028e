//! A landing keeps its record fresh: every `heartbeat_secs` the record is written again
//! as it is, with a new `lastUpdatedAt` (and so a new ctime), for as long as it is in
//! flight in this daemon's name. Every daemon strands an in-flight record nobody has
//! written for the lock TTL ([`crate::ownership::stranded_reason`]), and `heartbeat_secs`
//! is shorter than the TTL, so a landing that runs for hours is never taken for a wedged one.

use std::sync::Arc;
use std::time::Duration;

use crate::store::{Expect, Move};

use super::Shared;

/// The touching task of one landing; dropping it stops the touches.
pub(super) struct Touching(tokio::task::JoinHandle<()>);

impl Drop for Touching {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts touching record `id` every `heartbeat_secs`, first one interval from now.
pub(super) fn start(shared: &Arc<Shared>, id: &str) -> Touching {
    let every = Duration::from_secs(shared.config.heartbeat_secs.max(1));
    let (shared, id) = (Arc::clone(shared), id.to_owned());
    Touching(tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let (shared, id) = (Arc::clone(&shared), id.clone());
            let _ = tokio::task::spawn_blocking(move || touch(&shared, &id)).await;
        }
    }))
}

/// Writes the record again if it is still in flight in this daemon's name, expecting
/// exactly what was read (a settle or a revival in between wins, and is left alone).
fn touch(shared: &Shared, id: &str) {
    let Ok(stored) = shared.records.store().load(id) else {
        return;
    };
    let record = &stored.record;
    if !record.status.is_in_flight() || record.claimed_by.as_deref() != Some(shared.owner.as_str())
    {
        return;
    }
    if let Err(e) = shared
        .records
        .transition(Move::new(id, Expect::Claim(record), record.status), |_| {})
    {
        tracing::debug!(record = %id, "record not touched this time: {e}");
    }
}
