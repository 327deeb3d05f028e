//! Orchestrator state files, read for the fault watch: opened without blocking, refused past
//! [`MAX_STATE_BYTES`], and, through a [`StateCache`], parsed again only when the stamp of
//! the file at the path moved (device, inode, size, mtime, ctime, as queue records), so a
//! tick over an unchanged build-state dir parses nothing.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::parse_budget;
use super::state_jsonpath::Document;
use crate::file_stamp::{FileStamp, ReadStart, Sighting};

/// A state file past this is refused rather than parsed; a real 10,000-feature state is
/// 2 MB.
pub const MAX_STATE_BYTES: u64 = 4 * 1024 * 1024;

/// What one state file's parse may hold on the heap ([`parse_budget`]): a state whose
/// values cost more is refused part way, having held at most this. Parsed, a state costs up
/// to ~100× its size (4 MiB of `[0],[0],…`: 405 MiB with its compact form), real ones ~15×
/// (a 3.6 MB state of 60,000 phases: 56 MiB), so this refuses only hostile shapes.
pub const MAX_STATE_PARSE: usize = 160 * 1024 * 1024;

/// Opens a file named by a state file (data, not config) without ever blocking: with
/// O_NONBLOCK a FIFO opens at once, and the type is checked on the open handle, so a
/// path swapped for a FIFO between a check and the open cannot hang the tick.
pub(super) fn open_regular(path: &Path) -> std::io::Result<(File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok((file, meta))
}

/// Why a state file cannot be used; the reason, not the file.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot open: {0}")]
    Open(std::io::Error),
    #[error("file is {0} bytes, over the {MAX_STATE_BYTES}-byte limit for a state file")]
    TooLarge(u64),
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error(transparent)]
    Parse(#[from] parse_budget::ParseError),
}

/// The parsed state of an opened file with the heap bytes it holds, or why it cannot be
/// used.
fn parse_opened(file: File, len: u64) -> Result<(Value, usize), StateFileError> {
    if len > MAX_STATE_BYTES {
        return Err(StateFileError::TooLarge(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(StateFileError::Read)?;
    Ok(parse_budget::from_slice_counted(&bytes, MAX_STATE_PARSE)?)
}

/// A state file's JSON, read once; errors name the reason, not the file.
pub fn parse(path: &Path) -> Result<Value, StateFileError> {
    let (file, meta) = open_regular(path).map_err(StateFileError::Open)?;
    parse_opened(file, meta.len()).map(|(value, _)| value)
}

/// What the parsed states a [`StateCache`] keeps may cost in memory together, by
/// [`Document::heap_bytes`] (an upper bound of what glibc hands out for them). Past it the
/// least recently used are forgotten (and parsed again when next needed). It holds 8
/// states of 60,000 phases (3.6 MB, 56 MiB parsed each) or four 1 MiB worst-shape ones.
pub const STATE_CACHE_BUDGET: usize = 448 * 1024 * 1024;

/// The state files of the build-state dir as last parsed, each with the stamp it was read
/// at, within [`STATE_CACHE_BUDGET`]. A file that could not be parsed is remembered too, by
/// its stamp, so it is not read again until it changes.
#[derive(Default)]
pub struct StateCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    files: HashMap<PathBuf, Parsed>,
    /// The sum of the kept documents' [`Document::heap_bytes`].
    bytes: usize,
    /// Counts loads, to find the least recently used entry.
    clock: u64,
}

/// One state file as last parsed.
struct Parsed {
    seen: Sighting,
    /// Whether the stamp proves the content (it was not racy when read).
    trusted: bool,
    answer: Result<Arc<Document>, Arc<StateFileError>>,
    used: u64,
}

impl Parsed {
    fn bytes(&self) -> usize {
        self.answer.as_ref().map_or(0, |d| d.heap_bytes())
    }
}

/// What [`StateCache::load`] gives: the state (or why it cannot be used), and whether the
/// file was read for this call (`false`: the stamp of the file there is the one last read,
/// and this is that read's answer).
pub struct Loaded {
    pub state: Result<Arc<Document>, Arc<StateFileError>>,
    pub read: bool,
}

impl StateCache {
    /// The state at `path`, parsed again only when the stamp of the file there moved. A
    /// racy stamp is read again next time.
    pub fn load(&self, path: &Path) -> Loaded {
        let start = ReadStart::now();
        let (file, meta) = match open_regular(path) {
            Ok(opened) => opened,
            Err(e) => {
                self.forget(path);
                let state = Err(Arc::new(StateFileError::Open(e)));
                return Loaded { state, read: true };
            }
        };
        let stamp = FileStamp::of(&meta);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.clock += 1;
        let clock = inner.clock;
        let last = inner.files.get_mut(path);
        if let Some(last) = last
            && last.trusted
            && last.seen.stamp == stamp
        {
            last.used = clock;
            let state = last.answer.clone();
            return Loaded { state, read: false };
        }
        let (seen, racy) = start.judge(stamp, inner.files.get(path).map(|last| &last.seen));
        let answer = parse_opened(file, meta.len())
            .map(|(value, bytes)| Arc::new(Document::counted(value, bytes)))
            .map_err(Arc::new);
        let parsed = Parsed {
            seen,
            trusted: !racy,
            answer: answer.clone(),
            used: clock,
        };
        inner.remove(path);
        if parsed.bytes() <= STATE_CACHE_BUDGET {
            inner.bytes += parsed.bytes();
            inner.files.insert(path.to_owned(), parsed);
            inner.evict_past_budget();
        }
        Loaded {
            state: answer,
            read: true,
        }
    }

    /// Forgets every file of `dir` not in `paths` (removed since, or no longer a state
    /// file). Files of other dirs are left to the budget.
    pub fn keep_only(&self, dir: &Path, paths: &HashSet<PathBuf>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<PathBuf> = inner
            .files
            .keys()
            .filter(|path| path.parent() == Some(dir) && !paths.contains(*path))
            .cloned()
            .collect();
        for path in gone {
            inner.remove(&path);
        }
    }

    /// What the kept documents hold together, by [`Document::heap_bytes`]: at most
    /// [`STATE_CACHE_BUDGET`].
    pub fn kept_bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }

    fn forget(&self, path: &Path) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path);
    }
}

impl Entries {
    fn remove(&mut self, path: &Path) {
        if let Some(gone) = self.files.remove(path) {
            self.bytes -= gone.bytes();
        }
    }

    /// Forgets the least recently used documents until the rest fit the budget.
    fn evict_past_budget(&mut self) {
        while self.bytes > STATE_CACHE_BUDGET {
            let Some(oldest) = self
                .files
                .iter()
                .filter(|(_, parsed)| parsed.bytes() > 0)
                .min_by_key(|(_, parsed)| parsed.used)
                .map(|(path, _)| path.clone())
            else {
                return;
            };
            self.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_stamp::age_past_racy_window;

    #[test]
    fn a_state_file_is_parsed_again_only_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        std::fs::write(&path, r#"{"slug": "a"}"#).unwrap();
        age_past_racy_window();
        let cache = StateCache::default();
        let parses = |cache: &StateCache| (0..5).filter(|_| cache.load(&path).read).count();
        assert_eq!(
            parses(&cache),
            1,
            "the first load parses, the next four do not"
        );
        // A new file at the path (a new inode): parsed once more.
        std::fs::write(dir.path().join("new"), r#"{"slug": "b"}"#).unwrap();
        std::fs::rename(dir.path().join("new"), &path).unwrap();
        age_past_racy_window();
        assert_eq!(parses(&cache), 1);
        assert_eq!(cache.load(&path).state.unwrap().value()["slug"], "b");
        cache.keep_only(dir.path(), &HashSet::new());
        assert_eq!(parses(&cache), 1, "a forgotten file is parsed again");
    }
}
