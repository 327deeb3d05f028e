//! The learned-patterns file, compiled again only when it changed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::super::json_file;
use super::{LearnedSet, SetError};
use crate::file_stamp::{FileStamp, ReadStart, Sighting};

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
/// says why, once per version of the file. A stamp too young to prove the content
/// ([`crate::file_stamp`]: a second write within the file system's timestamp granule
/// could leave it equal) is read again on the next call.
#[derive(Debug)]
pub struct LearnedSource {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The version the set was loaded from; `None` when it must be read again.
    version: Option<Version>,
    /// When the file's current stamp was first seen (dates a stamp the clock cannot).
    seen: Option<Sighting>,
    set: Arc<LearnedSet>,
}

impl LearnedSource {
    pub fn new(path: PathBuf) -> LearnedSource {
        let empty = Arc::new(LearnedSet::empty(&path));
        // No version yet, so the first call loads.
        LearnedSource {
            path,
            state: Mutex::new(State {
                version: None,
                seen: None,
                set: empty,
            }),
        }
    }

    /// The current set, recompiled if the file changed since the last call.
    pub fn current(&self) -> Arc<LearnedSet> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let start = ReadStart::now();
        let (version, opened) = match json_file::open_regular(&self.path, json_file::MAX_JSON_BYTES)
        {
            Ok(None) => (Version::Missing, None),
            Ok(Some(opened)) => (Version::File(FileStamp::of(&opened.1)), Some(Ok(opened))),
            Err(refused) => (Version::Refused(refused.to_string()), Some(Err(refused))),
        };
        if state.version.as_ref() == Some(&version) {
            return Arc::clone(&state.set);
        }
        let racy = match &version {
            Version::File(stamp) => {
                let (seen, racy) = start.judge(*stamp, state.seen.as_ref());
                state.seen = Some(seen);
                racy
            }
            _ => false,
        };
        let loaded = match opened {
            Some(Err(refused)) => Err(SetError::Read(refused)),
            None => Ok(LearnedSet::empty(&self.path)),
            Some(Ok(opened)) => LearnedSet::read(&self.path, opened),
        };
        state.version = (!racy).then_some(version);
        match loaded {
            Ok(set) => {
                for warning in &set.warnings {
                    tracing::warn!("learned patterns: {warning}");
                }
                state.set = Arc::new(set);
            }
            Err(reason) => tracing::error!(
                "learned patterns not reloaded, the last good set stays active: {}: {reason}",
                self.path.display()
            ),
        }
        Arc::clone(&state.set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written just before its read has a stamp a second write in the same
    /// timestamp granule could leave equal: it is read again on the next call, and only
    /// once its stamp is old enough does an unchanged file stop being read.
    #[test]
    fn a_file_read_too_soon_after_its_write_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learned-patterns.json");
        std::fs::write(&path, "[]").unwrap();
        let source = LearnedSource::new(path);
        let first = source.current();
        let again = source.current();
        assert!(
            !Arc::ptr_eq(&first, &again),
            "a stamp within its granule of the write was trusted"
        );
        std::thread::sleep(std::time::Duration::from_millis(150));
        let settled = source.current();
        assert!(Arc::ptr_eq(&settled, &source.current()));
    }
}
