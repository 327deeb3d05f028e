//! Orchestrator state files, read for the fault watch: opened without blocking, refused past
//! [`MAX_STATE_BYTES`], and, through a [`StateCache`], parsed again only when the stamp of
//! the file at the path moved (device, inode, size, mtime, ctime, as queue records), so a
//! tick over an unchanged build-state dir parses nothing.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::state_jsonpath::Document;
use crate::file_stamp::{FileStamp, ReadStart, Sighting};

/// A state file past this is refused rather than parsed. Parsed, a state costs up to ~110×
/// its size (measured: 4 MiB of `[0],[0],…` peaks at 458 MiB RSS, a 64 MiB one at 3.7 GiB),
/// so this cap keeps the worst case under 512 MiB; a real 10,000-feature state is 2 MB.
pub const MAX_STATE_BYTES: u64 = 4 * 1024 * 1024;

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
    #[error("not valid JSON: {0}")]
    NotJson(#[from] serde_json::Error),
}

/// The parsed state of an opened file, or why it cannot be used.
fn parse_opened(file: File, len: u64) -> Result<Value, StateFileError> {
    if len > MAX_STATE_BYTES {
        return Err(StateFileError::TooLarge(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(StateFileError::Read)?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// A state file's JSON, read once; errors name the reason, not the file.
pub fn parse(path: &Path) -> Result<Value, StateFileError> {
    let (file, meta) = open_regular(path).map_err(StateFileError::Open)?;
    parse_opened(file, meta.len())
}

/// The state files of the build-state dir as last parsed, each with the stamp it was read
/// at. Holds only the files of the latest pass ([`StateCache::keep_only`]).
#[derive(Default)]
pub struct StateCache {
    entries: Mutex<HashMap<PathBuf, Parsed>>,
}

/// One state file as last parsed.
struct Parsed {
    seen: Sighting,
    /// Whether the stamp proves the content (it was not racy when read).
    trusted: bool,
    document: Arc<Document>,
}

impl StateCache {
    /// The state at `path` and whether it was parsed for this call (`false`: the stamp of
    /// the file there is the one last parsed). A racy stamp is parsed again next time.
    pub fn load(&self, path: &Path) -> Result<(Arc<Document>, bool), StateFileError> {
        let start = ReadStart::now();
        let (file, meta) = open_regular(path).map_err(StateFileError::Open)?;
        let stamp = FileStamp::of(&meta);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let last = entries.get(path);
        if let Some(last) = last
            && last.trusted
            && last.seen.stamp == stamp
        {
            return Ok((Arc::clone(&last.document), false));
        }
        let (seen, racy) = start.judge(stamp, last.map(|last| &last.seen));
        let document = match parse_opened(file, meta.len()) {
            Ok(value) => Arc::new(Document::new(value)),
            Err(reason) => {
                entries.remove(path);
                return Err(reason);
            }
        };
        let parsed = Parsed {
            seen,
            trusted: !racy,
            document: Arc::clone(&document),
        };
        entries.insert(path.to_owned(), parsed);
        Ok((document, true))
    }

    /// Forgets every file not in `paths` (removed since, or no longer a state file).
    pub fn keep_only(&self, paths: &[PathBuf]) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|path, _| paths.contains(path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lets a file's stamp age past the racy window (a stamp that young is never trusted).
    fn age() {
        std::thread::sleep(std::time::Duration::from_nanos(
            crate::file_stamp::RACY_NS as u64 + 20_000_000,
        ));
    }

    #[test]
    fn a_state_file_is_parsed_again_only_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        std::fs::write(&path, r#"{"slug": "a"}"#).unwrap();
        age();
        let cache = StateCache::default();
        let parses = |cache: &StateCache| (0..5).filter(|_| cache.load(&path).unwrap().1).count();
        assert_eq!(
            parses(&cache),
            1,
            "the first load parses, the next four do not"
        );
        // A new file at the path (a new inode): parsed once more.
        std::fs::write(dir.path().join("new"), r#"{"slug": "b"}"#).unwrap();
        std::fs::rename(dir.path().join("new"), &path).unwrap();
        age();
        assert_eq!(parses(&cache), 1);
        assert_eq!(cache.load(&path).unwrap().0.value()["slug"], "b");
        cache.keep_only(&[]);
        assert_eq!(parses(&cache), 1, "a forgotten file is parsed again");
    }
}
