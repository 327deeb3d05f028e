//! The learned-patterns file, compiled again only when it changed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::super::json_file;
use super::{LearnedSet, SetError};
use crate::file_stamp::FileStamp;

/// What was at the path last time.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Version {
    Missing,
    File(FileStamp),
    /// Refused (a FIFO, a link, an unreadable file): the reason, logged once.
    Refused(String),
}

/// The learned-patterns file, compiled once per version: every [`LearnedSource::current`]
/// opens the file (never blocking, never through a link), compares the open file's identity
/// with the last one (device, inode, size, mtime, ctime) and reads and compiles it only
/// when it changed. A file that stops being loadable keeps the last good set active and
/// says why, once per version of the file.
#[derive(Debug)]
pub struct LearnedSource {
    path: PathBuf,
    state: Mutex<(Option<Version>, Arc<LearnedSet>)>,
}

impl LearnedSource {
    pub fn new(path: PathBuf) -> LearnedSource {
        let empty = Arc::new(LearnedSet::empty(&path));
        // No version yet, so the first call loads.
        LearnedSource {
            path,
            state: Mutex::new((None, empty)),
        }
    }

    /// The current set, recompiled if the file changed since the last call.
    pub fn current(&self) -> Arc<LearnedSet> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (version, opened) = match json_file::open_regular(&self.path, json_file::MAX_JSON_BYTES)
        {
            Ok(None) => (Version::Missing, None),
            Ok(Some(opened)) => (Version::File(FileStamp::of(&opened.1)), Some(Ok(opened))),
            Err(refused) => (Version::Refused(refused.to_string()), Some(Err(refused))),
        };
        if state.0.as_ref() == Some(&version) {
            return Arc::clone(&state.1);
        }
        let loaded = match opened {
            Some(Err(refused)) => Err(SetError::Read(refused)),
            None => Ok(LearnedSet::empty(&self.path)),
            Some(Ok(opened)) => LearnedSet::read(&self.path, opened),
        };
        state.0 = Some(version);
        match loaded {
            Ok(set) => {
                for warning in &set.warnings {
                    tracing::warn!("learned patterns: {warning}");
                }
                state.1 = Arc::new(set);
            }
            Err(reason) => tracing::error!(
                "learned patterns not reloaded, the last good set stays active: {}: {reason}",
                self.path.display()
            ),
        }
        Arc::clone(&state.1)
    }
}
