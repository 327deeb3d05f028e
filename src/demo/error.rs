//! Why the demo could not run (as opposed to a check that did not hold, which it reports).
//! Each case keeps the text and cause chain of what failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("running git {args:?} (is git installed?)")]
    GitSpawn {
        args: Vec<String>,
        #[source]
        source: std::io::Error,
    },
    #[error("git {args:?} in {} failed: {stderr}", cwd.display())]
    Git {
        args: Vec<String>,
        cwd: PathBuf,
        stderr: String,
    },
    #[error("starting git daemon on 127.0.0.1")]
    GitDaemon(#[source] std::io::Error),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Locks(#[from] crate::lane_lock::LockError),
    #[error(transparent)]
    Start(#[from] crate::daemon::StartError),
    #[error(transparent)]
    Rules(#[from] crate::rules::LoadFailure),
    #[error(transparent)]
    Template(#[from] crate::runner::TemplateError),
    #[error(transparent)]
    Reload(#[from] crate::rules::reload::AwaitError),
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    #[error("daemon task")]
    DaemonTask(#[source] tokio::task::JoinError),
    #[error("the freeze does not load: {0}")]
    FreezeRefused(crate::rules::LoadFailure),
    #[error("the daemon refused a valid rule edit: {0}")]
    EditRefused(String),
    #[error("the shipped {0} no longer has the admit line the demo edits")]
    AdmitLineGone(&'static str),
}
