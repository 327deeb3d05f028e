//! Why a store operation did not happen, with the words an operator acts on.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::file_stamp::FileStamp;
use crate::record::Status;

use super::RecordError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no record `{id}` in {dir}")]
    NotFound { id: String, dir: PathBuf },
    #[error("{file}: {reason}; the file was left untouched, fix or remove it by hand")]
    Unreadable { file: PathBuf, reason: RecordError },
    #[error("record `{id}`: illegal move {from} -> {to}")]
    IllegalMove {
        id: String,
        from: Status,
        to: Status,
    },
    #[error("record `{id}` is {found} on disk, not {}; it was left as it is", expected_list(.expected))]
    Moved {
        id: String,
        found: Status,
        expected: Vec<Status>,
    },
    #[error(
        "record `{id}` changed since it was read (was {read}, now {found}); it was left as it is: look again with `berth status`"
    )]
    Reclaimed {
        id: String,
        read: String,
        found: String,
    },
    #[error("record `{id}` already exists ({status}); use `berth retry` to queue it again")]
    AlreadyExists { id: String, status: String },
    #[error("`{0}` is not a record id (ids are safe file names)")]
    BadId(String),
    #[error("record `{id}`: {reason}")]
    IdTooLong { id: String, reason: String },
    #[error(
        "record `{id}` is locked by another process ({}); nothing was written. Try again, or find the holder with `fuser {}`",
        held_for(*.waited),
        .lock.display()
    )]
    Locked {
        id: String,
        lock: PathBuf,
        /// How long the write waited for the lock (zero: it only tried once).
        waited: Duration,
    },
    #[error(
        "{}: the record would be {size} bytes even as compact JSON, over the {cap}-byte limit every reader holds it to{}; nothing was written and the file was left as it is: shorten its fields by hand",
        .file.display(),
        room_text(*.room)
    )]
    TooLarge {
        file: PathBuf,
        size: usize,
        cap: u64,
        /// Bytes the write had to leave free under `cap` (a claim's room for its verdict).
        room: u64,
        /// The stamp of the version of the file the write read and refused to replace
        /// (none for a new record). Boxed: every `StoreError` would carry its size.
        read: Option<Box<FileStamp>>,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn expected_list(statuses: &[Status]) -> String {
    statuses
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// What a refused write had to leave free, for [`StoreError::TooLarge`].
fn room_text(room: u64) -> String {
    if room == 0 {
        String::new()
    } else {
        format!(" less the {room} bytes a claim leaves for the writes after it")
    }
}

/// How long a lock was found held, for [`StoreError::Locked`].
fn held_for(waited: Duration) -> String {
    if waited.is_zero() {
        "held; this write does not wait for it".to_owned()
    } else {
        format!("still held after {} ms", waited.as_millis())
    }
}

impl StoreError {
    /// A [`StoreError::TooLarge`] of a write that read the version stamped `stamp`.
    pub(super) fn of_version(self, stamp: Option<FileStamp>) -> StoreError {
        match self {
            StoreError::TooLarge {
                file,
                size,
                cap,
                room,
                ..
            } => StoreError::TooLarge {
                file,
                size,
                cap,
                room,
                read: stamp.map(Box::new),
            },
            other => other,
        }
    }

    pub(super) fn io<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> StoreError + 'a {
        move |source| StoreError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}
