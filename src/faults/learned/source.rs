//! The learned-patterns file, compiled again only when it changed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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
/// (or [`LearnedSource::latest`], which compiles off the caller's thread) opens the file (never blocking, never through a link), compares the open file's identity
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
    /// A load compiling on a thread of its own, for a caller that does not wait for it.
    loading: Option<Loading>,
    /// Whether any version was loaded yet: the first load is always waited for, so the
    /// daemon's first tick (a `--once` run's only one) matches with the file's patterns.
    settled: bool,
}

/// A version being read and compiled off the caller's thread.
#[derive(Debug)]
struct Loading {
    version: Version,
    racy: bool,
    thread: JoinHandle<Result<LearnedSet, SetError>>,
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
                loading: None,
                settled: false,
            }),
        }
    }

    /// The current set, recompiled (waiting for it) if the file changed since the last call.
    pub fn current(&self) -> Arc<LearnedSet> {
        self.refresh(true)
    }

    /// The set as last compiled, for the daemon's tick: a file that changed is read and
    /// compiled on a thread of its own, and the set it makes is what a call returns once
    /// that is done. A file of thousands of patterns costs that thread seconds; the tick
    /// (and a record written meanwhile) never waits for it.
    pub fn latest(&self) -> Arc<LearnedSet> {
        self.refresh(false)
    }

    fn refresh(&self, wait: bool) -> Arc<LearnedSet> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let wait = wait || !state.settled;
        if let Some(loading) = state
            .loading
            .take_if(|loading| wait || loading.thread.is_finished())
        {
            let loaded = loading
                .thread
                .join()
                .unwrap_or_else(|_| Err(SetError::Panicked));
            self.settle(&mut state, loading.version, loading.racy, loaded);
        }
        let start = ReadStart::now();
        let (version, opened) = match json_file::open_regular(&self.path, json_file::MAX_JSON_BYTES)
        {
            Ok(None) => (Version::Missing, None),
            Ok(Some(opened)) => (Version::File(FileStamp::of(&opened.1)), Some(Ok(opened))),
            Err(refused) => (Version::Refused(refused.to_string()), Some(Err(refused))),
        };
        // A load in flight is waited out: the next call after it looks at the file again.
        if state.version.as_ref() == Some(&version) || state.loading.is_some() {
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
        let path = self.path.clone();
        let load = move || match opened {
            Some(Err(refused)) => Err(SetError::Read(refused)),
            None => Ok(LearnedSet::empty(&path)),
            Some(Ok(opened)) => LearnedSet::read(&path, opened),
        };
        if wait || !matches!(version, Version::File(_)) {
            self.settle(&mut state, version, racy, load());
            return Arc::clone(&state.set);
        }
        let spawned = std::thread::Builder::new()
            .name("learned-compile".into())
            .spawn(load);
        match spawned {
            Ok(thread) => {
                state.loading = Some(Loading {
                    version,
                    racy,
                    thread,
                })
            }
            // No thread to be had: the file is loaded again on the next call.
            Err(e) => tracing::warn!(
                "learned patterns not reloaded this tick (no thread to compile them: {e}): {}",
                self.path.display()
            ),
        }
        Arc::clone(&state.set)
    }

    /// Makes `loaded`, the set of `version`, the current one, or says why it is not.
    fn settle(
        &self,
        state: &mut State,
        version: Version,
        racy: bool,
        loaded: Result<LearnedSet, SetError>,
    ) {
        state.version = (!racy).then_some(version);
        state.settled = true;
        match loaded {
            Ok(mut set) => {
                set.carry_answers_from(&state.set);
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

    fn contains(category: &str) -> serde_json::Value {
        serde_json::json!({"category": category, "severity": "HIGH", "description": "d",
                           "matcherKind": "stdout_contains", "pattern": category})
    }

    /// The tick's call never compiles: a changed file is compiled on a thread of its own
    /// and the call that found the change returns the last set; a later one returns the new.
    /// Past [`super::super::MAX_PATTERNS`] entries the rest are skipped with one warning.
    #[test]
    fn the_tick_never_waits_for_a_compile_and_entries_past_the_cap_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learned-patterns.json");
        std::fs::write(&path, serde_json::json!([contains("A")]).to_string()).unwrap();
        let source = LearnedSource::new(path.clone());
        std::thread::sleep(std::time::Duration::from_millis(150));
        let first = source.latest();
        assert_eq!(first.patterns.len(), 1, "the first load is waited for");
        let many: Vec<_> = (0..super::super::MAX_PATTERNS + 5)
            .map(|i| contains(&format!("P{i}")))
            .collect();
        std::fs::write(&path, serde_json::Value::from(many).to_string()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert!(
            Arc::ptr_eq(&first, &source.latest()),
            "the call that found the change waited for its compile"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut latest = source.latest();
        while Arc::ptr_eq(&first, &latest) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            latest = source.latest();
        }
        assert_eq!(latest.patterns.len(), super::super::MAX_PATTERNS);
        let skipped = format!(
            "entries {} to {} skipped",
            super::super::MAX_PATTERNS,
            super::super::MAX_PATTERNS + 4
        );
        assert!(
            latest.warnings.iter().any(|w| w.contains(&skipped)),
            "{:?}",
            latest.warnings
        );
    }

    #[test]
    fn source_recompiles_on_change_and_keeps_the_last_good_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learned-patterns.json");
        let source = LearnedSource::new(path.clone());
        assert!(source.current().patterns.is_empty());
        std::fs::write(&path, serde_json::json!([contains("A")]).to_string()).unwrap();
        // Past the window in which a stamp proves nothing (read again until then).
        std::thread::sleep(std::time::Duration::from_millis(150));
        let first = source.current();
        assert_eq!(first.patterns.len(), 1);
        assert!(
            Arc::ptr_eq(&first, &source.current()),
            "an unchanged file is not recompiled"
        );
        std::fs::write(&path, "[ torn").unwrap();
        assert_eq!(source.current().patterns.len(), 1, "last good set stays");
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(source.current().patterns.len(), 1, "a FIFO is refused");
        std::fs::remove_file(&path).unwrap();
        std::fs::write(
            &path,
            serde_json::json!([contains("A"), contains("B")]).to_string(),
        )
        .unwrap();
        assert_eq!(source.current().patterns.len(), 2);
    }
}
