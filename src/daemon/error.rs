//! Why the daemon could not start: its parts could not be wired, or the loop could not
//! listen for signals and writes. Each case keeps the message and cause chain of the part
//! that failed, which the CLI prints.

use std::path::PathBuf;

use crate::lane_lock::LockError;
use crate::rules::LoadFailure;
use crate::rules::reload::WatchError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The berth dir or the queue dir could not be made private.
    #[error(transparent)]
    Dir(std::io::Error),
    #[error(transparent)]
    Locks(#[from] LockError),
    #[error(transparent)]
    Rules(#[from] LoadFailure),
    /// The signal handlers could not be installed.
    #[error(transparent)]
    Signals(std::io::Error),
    /// The queue dir's watch did not start; the watcher's own error is part of the text.
    #[error("cannot watch {}: {error}", path.display())]
    QueueWatch { path: PathBuf, error: notify::Error },
    #[error(transparent)]
    RulesWatch(#[from] WatchError),
}
