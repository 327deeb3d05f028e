//! The landings the main loop runs: one task per lane, the lanes they hold, and the lanes
//! left alone for their backoff.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::task::JoinSet;

use crate::lane_lock::LaneKey;

use super::{LaneOutcome, lane_retry};

/// The running landings, the lanes they hold, and the lanes left alone for a while (a
/// write to the queue dir, berth's own requeue included, does not end their wait).
/// Lanes are keyed by their lock ref: branches that `safe_key` folds together (`rel/1`,
/// `rel-1`) share one lock, so they must never land at once.
pub struct Landings {
    pub tasks: JoinSet<LaneOutcome>,
    lane_of_task: HashMap<tokio::task::Id, String>,
    pub retry: lane_retry::LaneRetry,
}

impl Landings {
    /// A lane left alone waits at most `longest` (the poll interval).
    pub fn new(longest: Duration) -> Landings {
        Landings {
            tasks: JoinSet::new(),
            lane_of_task: HashMap::new(),
            retry: lane_retry::LaneRetry::new(longest),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    pub fn busy_lanes(&self) -> HashSet<String> {
        self.lane_of_task
            .values()
            .chain(self.retry.not_yet(tokio::time::Instant::now()))
            .cloned()
            .collect()
    }

    /// Starts `landing`, holding its lane by the `key` it was weighed under.
    pub fn start(
        &mut self,
        key: &LaneKey,
        landing: impl std::future::Future<Output = LaneOutcome> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(landing);
        self.lane_of_task.insert(handle.id(), key.lane.clone());
    }

    /// The next finished landing; a task that panicked frees its lane (left alone for its
    /// backoff) instead of holding it forever.
    pub async fn next_done(&mut self) -> Option<LaneOutcome> {
        loop {
            match self.tasks.join_next_with_id().await? {
                Ok((id, outcome)) => {
                    self.lane_of_task.remove(&id);
                    return Some(outcome);
                }
                Err(error) => {
                    tracing::error!(
                        "a landing task failed: {error}; its record is reclaimed once its owner is gone"
                    );
                    if let Some(lane) = self.lane_of_task.remove(&error.id()) {
                        self.retry.defer(lane, tokio::time::Instant::now());
                    }
                }
            }
        }
    }
}
