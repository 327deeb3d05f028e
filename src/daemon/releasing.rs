//! The lane locks being released in the background, one handle per lane: a landing's end
//! frees its lane for the next record at once, and that record's lock write waits here
//! until the previous release of the lane is over. So one daemon never has two lock
//! operations of one lane at a time, and the next acquire sees the old lock exactly as it
//! would after an awaited release (gone, or, when the release failed, this process's own
//! leftover).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

/// The releases in flight, by lane key ([`crate::lane_lock::lane_key`]). A lane may have
/// more than one (a lock write that answered too late, still to be released, beside the
/// release of the lock before it): waiting for the lane waits for all of them.
#[derive(Debug, Default)]
pub struct Releasing {
    lanes: Mutex<HashMap<String, Vec<watch::Receiver<()>>>>,
}

/// One release in flight: it ends when the last clone of its handle drops (the release's
/// blocking writer and the task that reports how it went each hold one), whichever way.
#[derive(Clone, Debug)]
pub struct InFlight {
    _open: Arc<watch::Sender<()>>,
}

/// How waiting for a lane's previous release ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// None in flight, or it ended.
    Over,
    /// Still in flight after the wait.
    TimedOut,
}

impl Releasing {
    /// Marks `lane`'s release as in flight until the returned handle and all its clones
    /// drop, beside any other of the lane's still in flight. Releases that ended are
    /// forgotten on the way.
    pub fn begin(&self, lane: &str) -> InFlight {
        let (sender, receiver) = watch::channel(());
        let mut lanes = self.lanes();
        lanes.retain(|_, flights| {
            flights.retain(|r| !ended(r));
            !flights.is_empty()
        });
        lanes.entry(lane.to_owned()).or_default().push(receiver);
        InFlight {
            _open: Arc::new(sender),
        }
    }

    /// Waits until `lane`'s releases in flight, if any, have ended, at most `limit`.
    pub async fn wait_for(&self, lane: &str, limit: Duration) -> Waited {
        let receivers = self.lanes().get(lane).cloned().unwrap_or_default();
        if !receivers.iter().all(ended) {
            tracing::debug!(lane, "waiting for the lane's previous lock release");
        }
        match tokio::time::timeout(limit, all_closed(receivers)).await {
            Ok(()) => Waited::Over,
            Err(_) => Waited::TimedOut,
        }
    }

    /// Waits until every release in flight has ended, or `deadline` (those left are
    /// logged); how many are left.
    pub async fn wait_all(&self, deadline: tokio::time::Instant) -> usize {
        let receivers: Vec<_> = self.lanes().values().flatten().cloned().collect();
        let _ = tokio::time::timeout_at(deadline, all_closed(receivers)).await;
        let left = self.in_flight();
        if left > 0 {
            tracing::error!(
                "{left} lane lock release(s) did not finish in time; each lock expires on its TTL"
            );
        }
        left
    }

    /// How many releases are in flight now.
    pub fn in_flight(&self) -> usize {
        self.lanes()
            .values()
            .flatten()
            .filter(|r| !ended(r))
            .count()
    }

    fn lanes(&self) -> MutexGuard<'_, HashMap<String, Vec<watch::Receiver<()>>>> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether the release behind `receiver` ended (every handle dropped).
fn ended(receiver: &watch::Receiver<()>) -> bool {
    receiver.has_changed().is_err()
}

/// Resolves once every handle of the releases behind `receivers` dropped (nothing is ever
/// sent: the channel closing is the one event).
async fn all_closed(receivers: Vec<watch::Receiver<()>>) {
    for mut receiver in receivers {
        while receiver.changed().await.is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lane_waits_until_every_handle_of_its_release_dropped() {
        let releasing = Releasing::default();
        let first = releasing.begin("a");
        let second = first.clone();
        assert_eq!(releasing.in_flight(), 1);
        drop(first);
        let wait = Duration::from_millis(1);
        assert_eq!(releasing.wait_for("a", wait).await, Waited::TimedOut);
        assert_eq!(releasing.wait_for("b", wait).await, Waited::Over);
        drop(second);
        assert_eq!(releasing.wait_for("a", wait).await, Waited::Over);
        assert_eq!(releasing.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_second_release_of_a_lane_does_not_hide_the_first() {
        let releasing = Releasing::default();
        let first = releasing.begin("a");
        let second = releasing.begin("a");
        assert_eq!(releasing.in_flight(), 2);
        drop(second);
        let wait = Duration::from_millis(1);
        assert_eq!(releasing.wait_for("a", wait).await, Waited::TimedOut);
        drop(first);
        assert_eq!(releasing.wait_for("a", wait).await, Waited::Over);
        assert_eq!(releasing.in_flight(), 0);
    }

    #[tokio::test]
    async fn waiting_for_all_counts_those_left_at_the_deadline() {
        let releasing = Releasing::default();
        let held = releasing.begin("a");
        drop(releasing.begin("b"));
        let soon = tokio::time::Instant::now() + Duration::from_millis(1);
        assert_eq!(releasing.wait_all(soon).await, 1);
        drop(held);
        assert_eq!(releasing.wait_all(tokio::time::Instant::now()).await, 0);
    }
}
