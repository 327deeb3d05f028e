//! The learned-patterns file, compiled again only when it changed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::super::json_file;
use super::digest::PatternsDigest;
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
    /// Versions read so far, and sets compiled of them (a rewrite that changed only hit
    /// counts compiles none).
    reads: usize,
    compiles: usize,
}

/// A version being read and compiled off the caller's thread.
#[derive(Debug)]
struct Loading {
    version: Version,
    racy: bool,
    thread: JoinHandle<Result<Reread, SetError>>,
}

/// What reading a changed file came to.
#[derive(Debug)]
enum Reread {
    /// Its patterns are the current set's (only hit counts changed): nothing compiled.
    Same,
    New(Box<LearnedSet>),
}

/// The set in an opened file, compiled only when its patterns differ from `current`'s.
fn reread(
    path: &std::path::Path,
    opened: (std::fs::File, std::fs::Metadata),
    current: Option<PatternsDigest>,
) -> Result<Reread, SetError> {
    let text = json_file::read_opened(opened, json_file::MAX_JSON_BYTES)?;
    let value = json_file::parse(&text)?;
    if matches!(value, serde_json::Value::Array(_)) && Some(PatternsDigest::of(&value)) == current {
        return Ok(Reread::Same);
    }
    LearnedSet::from_value(path, &value).map(|set| Reread::New(Box::new(set)))
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
                reads: 0,
                compiles: 0,
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
        state.reads += 1;
        let path = self.path.clone();
        let current = state.set.digest;
        let load = move || match opened {
            Some(Err(refused)) => Err(SetError::Read(refused)),
            None if current.is_none() => Ok(Reread::Same),
            None => Ok(Reread::New(Box::new(LearnedSet::empty(&path)))),
            Some(Ok(opened)) => reread(&path, opened, current),
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
        loaded: Result<Reread, SetError>,
    ) {
        state.version = (!racy).then_some(version);
        state.settled = true;
        match loaded {
            Ok(Reread::Same) => {}
            Ok(Reread::New(mut set)) => {
                state.compiles += 1;
                set.carry_answers_from(&state.set);
                for warning in &set.warnings {
                    tracing::warn!("learned patterns: {warning}");
                }
                state.set = Arc::from(set);
            }
            Err(reason) => tracing::error!(
                "learned patterns not reloaded, the last good set stays active: {}: {reason}",
                self.path.display()
            ),
        }
    }
}

#[cfg(test)]
impl LearnedSource {
    /// How many versions were read, and how many sets compiled, so far.
    fn counts(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (state.reads, state.compiles)
    }

    fn compiles(&self) -> usize {
        self.counts().1
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
        source.current();
        source.current();
        assert_eq!(
            source.counts().0,
            2,
            "a stamp within its granule of the write was trusted"
        );
        std::thread::sleep(std::time::Duration::from_millis(150));
        source.current();
        source.current();
        assert_eq!(source.counts().0, 3, "a settled stamp was read again");
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

    fn regex(category: &str, pattern: &str) -> serde_json::Value {
        serde_json::json!({"category": category, "severity": "HIGH", "description": "d",
                           "matcherKind": "stdout_regex", "pattern": pattern})
    }

    /// berth's own hit-count rewrite and gstack's (only `hitCount` and `lastHit` change, in
    /// gstack's formatting) keep the compiled set; a rewrite that changes a pattern compiles.
    #[test]
    fn a_hit_count_rewrite_keeps_the_compiled_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learned-patterns.json");
        let entries = serde_json::json!([regex("A", "boom"), contains("B")]);
        std::fs::write(&path, entries.to_string()).unwrap();
        let source = LearnedSource::new(path.clone());
        let first = source.current();
        super::super::record_hits(&path, &["A"]).unwrap();
        assert!(
            Arc::ptr_eq(&first, &source.current()),
            "berth's hit count rewrite compiled the set again"
        );
        let mut gstacks: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        gstacks[1]["hitCount"] = 7.into();
        gstacks[1]["lastHit"] = "2026-12-05T00:00:00.000Z".into();
        std::fs::write(&path, serde_json::to_string(&gstacks).unwrap()).unwrap();
        assert!(
            Arc::ptr_eq(&first, &source.current()),
            "gstack's hit count rewrite compiled the set again"
        );
        assert_eq!(source.compiles(), 1);
        gstacks[0]["pattern"] = "bang".into();
        std::fs::write(&path, gstacks.to_string()).unwrap();
        let changed = source.current();
        assert_eq!(changed.patterns[0].pattern, "bang");
        assert_eq!(source.compiles(), 2);
    }

    /// Under a budget that runs one regex a tick, with the hits of every tick written back
    /// to the file (as the fault watch does), each pattern gets its turn: after as many
    /// ticks as patterns, every one has answered.
    #[test]
    fn every_pattern_runs_across_ticks_under_a_budget_cut_while_hits_are_written() {
        use crate::faults::learned_match::{Budget, Texts};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learned-patterns.json");
        const PATTERNS: usize = 6;
        let entries: Vec<_> = (0..PATTERNS)
            .map(|i| regex(&format!("P{i}"), &format!("x|never{i}")))
            .collect();
        std::fs::write(&path, serde_json::Value::from(entries).to_string()).unwrap();
        let source = LearnedSource::new(path.clone());
        let run = dir.path().join("run-1.json");
        let texts = Texts {
            stdout: Some("x"),
            ..Texts::default()
        };
        let state = crate::faults::state_jsonpath::Document::new(serde_json::json!({}));
        let mut matched = 0;
        for _tick in 0..PATTERNS {
            let set = source.current();
            let mut cut = Budget::of(std::time::Duration::from_nanos(1));
            let fired = set.matching_within(Some(&run), &texts, &state, &mut cut);
            matched = fired.len();
            let categories: Vec<&str> = fired.iter().map(|p| p.category.as_str()).collect();
            super::super::record_hits(&path, &categories).unwrap();
        }
        assert_eq!(
            matched, PATTERNS,
            "after {PATTERNS} ticks of one regex each, only {matched} patterns have answered"
        );
        assert_eq!(source.compiles(), 1);
    }
}
