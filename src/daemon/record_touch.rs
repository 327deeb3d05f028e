//! A landing keeps its record fresh: every `heartbeat_secs` the record is written again
//! as it is, with a new `lastUpdatedAt` (and so a new ctime), for as long as it is in
//! flight in this daemon's name. Every daemon strands an in-flight record nobody has
//! written for the lock TTL ([`crate::ownership::stranded_reason`]), and `heartbeat_secs`
//! is shorter than the TTL, so a landing that runs for hours is never taken for a wedged one.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::store::{Expect, Move};

use super::crew::Crew;
use super::records::Records;

/// The touching task of one landing; [`Touching::stop`] ends it, dropping it aborts it.
pub(super) struct Touching {
    task: Option<tokio::task::JoinHandle<()>>,
    stop: CancellationToken,
}

impl Touching {
    /// Stops the touches and waits out one under way: none is written after this returns.
    /// The landing stops them before it writes its verdict: a touch after it would move the
    /// record under a verdict the store refused and kept ([`super::unsaved`]).
    pub(super) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Touching {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
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
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stopped.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let (records, owner, id) = (Arc::clone(&records), Arc::clone(&owner), id.clone());
            let _ = tokio::task::spawn_blocking(move || touch(&records, &owner, &id)).await;
        }
    });
    Touching {
        task: Some(task),
        stop,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Status, sample};
    use crate::store::QueueStore;

    /// A landing stops its record touches before it writes its verdict: a touch after
    /// [`Touching::stop`] would move a record whose verdict was kept. The record's
    /// `lastUpdatedAt` is set to a mark no touch writes: before the stop a touch replaces
    /// it (the touches run), after it none does, however many intervals pass.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_touch_is_written_once_the_touches_are_stopped() {
        let (queue, berth) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store = QueueStore::new(queue.path());
        let shared = crate::daemon::Shared::on_queue(queue.path(), berth.path(), "berth");
        let mut crew = shared.crew();
        crew.touch_every = std::time::Duration::from_millis(1);
        let id = store.insert(&sample::queued(5)).unwrap();
        for to in [Status::Claiming, Status::Landing] {
            store
                .transition(Move::new(&id, Expect::Any, to), |r| {
                    r.claimed_by = Some(crew.owner.to_string());
                })
                .unwrap();
        }
        let file = queue.path().join(format!("{id}.json"));
        const MARK: &str = "2000-01-01T00:00:00.000Z";
        let mark = || {
            let mut record = store.load(&id).unwrap().record;
            record.last_updated_at = Some(MARK.to_owned());
            std::fs::write(&file, record.to_compact_json()).unwrap();
        };
        let marked = || store.load(&id).unwrap().record.last_updated_at.as_deref() == Some(MARK);
        let pause = || tokio::time::sleep(std::time::Duration::from_millis(2));

        let touching = start(&crew, &id);
        mark();
        let mut waits = 0;
        while marked() && waits < 5_000 {
            pause().await;
            waits += 1;
        }
        assert!(
            !marked(),
            "no touch in {waits} waits: the touches never ran"
        );
        touching.stop().await;
        mark();
        for _ in 0..50 {
            pause().await;
        }
        assert!(
            marked(),
            "the record was touched after the touches were stopped"
        );
    }
}
