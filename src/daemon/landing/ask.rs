//! Blocking forge, lock and worktree work run off the runtime's threads, bounded once the
//! landing is told to stop.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long a stopping landing still waits for a forge or lock answer already asked for:
/// long enough for a healthy forge, short enough to stay inside the shutdown budget.
const ANSWER_GRACE: Duration = Duration::from_secs(1);

/// Runs blocking forge or lock work on its own thread. If `cancel` fires first, waits at
/// most [`ANSWER_GRACE`] more; `None` when the answer did not come (or the task failed).
pub(super) async fn ask<T: Send + 'static>(
    cancel: &CancellationToken,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    ask_or_clean_up(cancel, work, |_| {}).await
}

/// [`ask`], and when the caller has stopped waiting, hands the late answer to `late` (on a
/// blocking thread): e.g. a lane lock taken after a signal is released, not orphaned.
pub(super) async fn ask_or_clean_up<T: Send + 'static>(
    cancel: &CancellationToken,
    work: impl FnOnce() -> T + Send + 'static,
    late: impl FnOnce(T) + Send + 'static,
) -> Option<T> {
    let mut task = tokio::task::spawn_blocking(work);
    tokio::select! {
        done = &mut task => done.ok(),
        () = cancel.cancelled() => match tokio::time::timeout(ANSWER_GRACE, &mut task).await {
            Ok(done) => done.ok(),
            Err(_) => {
                tokio::spawn(async move {
                    if let Ok(answer) = task.await {
                        let _ = tokio::task::spawn_blocking(move || late(answer)).await;
                    }
                });
                None
            }
        },
    }
}
