//! The round in flight: one blocking task with its own cancellation token. Each forge
//! call in it is bounded as everywhere (`forge_timeout_secs`, `remote_timeout_secs`);
//! cancelling stops the round before its next call, and a stopping daemon never waits for
//! the call in flight (its answer is dropped with the runtime).

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Answered, Plan, run};
use crate::daemon::Shared;

pub struct RoundTask {
    handle: JoinHandle<Answered>,
    cancel: CancellationToken,
}

impl RoundTask {
    /// Starts `plan` on a blocking thread; `stop` (the daemon's) cancels it too.
    pub fn start(shared: &Arc<Shared>, plan: Plan, stop: &CancellationToken) -> RoundTask {
        let cancel = stop.child_token();
        let (shared, token) = (Arc::clone(shared), cancel.clone());
        let handle = tokio::task::spawn_blocking(move || run(&shared, &plan, &token));
        RoundTask { handle, cancel }
    }

    /// What the round changed, once it ends. A round that panicked changed nothing this
    /// loop knows of; the next poll plans again.
    pub async fn done(&mut self) -> Answered {
        match (&mut self.handle).await {
            Ok(answered) => answered,
            Err(error) => {
                tracing::error!("a forge round failed: {error}");
                Answered::default()
            }
        }
    }
}

impl Drop for RoundTask {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
