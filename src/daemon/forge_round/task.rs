//! The rounds in flight: one blocking task per [`Concern`] at most, all under one
//! cancellation token. Each forge call in them is bounded as everywhere
//! (`forge_timeout_secs`, `remote_timeout_secs`); cancelling stops a round before its next
//! call, and a stopping daemon ends the call in flight (its process group killed and
//! reaped, [`crate::forge::Forge::stop_calls`]) and drops its answer with the runtime.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::daemon::Shared;

use super::{Answered, Concern, Round};

pub struct Rounds {
    tasks: JoinSet<Answered>,
    concern_of_task: HashMap<tokio::task::Id, Concern>,
    cancel: CancellationToken,
}

impl Rounds {
    /// No round yet; `stop` (the daemon's) cancels every round.
    pub fn new(stop: &CancellationToken) -> Rounds {
        Rounds {
            tasks: JoinSet::new(),
            concern_of_task: HashMap::new(),
            cancel: stop.child_token(),
        }
    }

    /// Whether a round about `concern` is in flight.
    pub fn busy(&self, concern: Concern) -> bool {
        self.concern_of_task.values().any(|&c| c == concern)
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Starts `round` on a blocking thread (the tick planned it only if its concern was
    /// free).
    pub fn start(&mut self, shared: &Arc<Shared>, round: Round) {
        let concern = round.concern();
        let (shared, cancel) = (Arc::clone(shared), self.cancel.clone());
        let handle = self
            .tasks
            .spawn_blocking(move || round.run(&shared, &cancel));
        self.concern_of_task.insert(handle.id(), concern);
    }

    /// What the next round to end changed. A round that panicked changed nothing this loop
    /// knows of; its concern is free again and the next tick plans it anew.
    pub async fn next_done(&mut self) -> Option<Answered> {
        match self.tasks.join_next_with_id().await? {
            Ok((id, answered)) => {
                self.concern_of_task.remove(&id);
                Some(answered)
            }
            Err(error) => {
                tracing::error!("a forge round failed: {error}");
                self.concern_of_task.remove(&error.id());
                Some(Answered::default())
            }
        }
    }
}

impl Drop for Rounds {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
