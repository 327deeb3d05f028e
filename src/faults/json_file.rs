//! Reading the small JSON files of the faults dir (halt events, registries, learned
//! patterns, their lock) with a size cap, and telling "absent" from "there but unreadable":
//! an unreadable file is reported and left alone, never treated as empty and overwritten.
//!
//! Another process can write these directories, so a file is opened without blocking and
//! without following a symlink (`O_NONBLOCK | O_NOFOLLOW`), its type is checked on the open
//! handle, and at most the cap is read: a FIFO, a device or a link planted at the path (a
//! link to `/dev/zero`, say) is refused at once, never waited on or read until memory
//! runs out.

use std::fs::{File, Metadata};
use std::io;
use std::path::Path;

use serde_json::Value;

use super::parse_budget;
use crate::hostile_file::ReadError;
use crate::private_dir::PrivateDir;

/// Halt events and pattern files are kilobytes; anything this large is not ours.
pub const MAX_JSON_BYTES: u64 = 8 * 1024 * 1024;
/// What parsing one of these files may hold on the heap ([`parse_budget`]): 8 MiB of text
/// in a halt event's fields or 8 MiB of learned patterns hold a few times their size;
/// `[0],[0],…` would hold ~100×, and is refused part way.
pub const MAX_JSON_PARSE: usize = 64 * 1024 * 1024;

/// Why a JSON file of the faults dir cannot be used; the message follows the file's name.
#[derive(Debug, thiserror::Error)]
pub enum JsonFileError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Parse(#[from] parse_budget::ParseError),
}

/// `Ok(None)` if `path` does not exist; an error if it exists but is not a regular file of
/// valid JSON within [`MAX_JSON_BYTES`].
pub fn read_json(path: &Path) -> Result<Option<Value>, JsonFileError> {
    match read_text(path)? {
        None => Ok(None),
        Some(text) => parse(&text).map(Some),
    }
}

/// JSON text to a value.
pub fn parse(text: &str) -> Result<Value, JsonFileError> {
    Ok(parse_budget::from_slice(text.as_bytes(), MAX_JSON_PARSE)?)
}

/// The text of a regular file within [`MAX_JSON_BYTES`], `Ok(None)` if it is absent.
pub fn read_text(path: &Path) -> Result<Option<String>, ReadError> {
    // Another process writes this dir: no blocking open, no symlink, a bounded read.
    match crate::hostile_file::read_regular_string(path, MAX_JSON_BYTES) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`read_text`] of `name` in `dir`, by the directory's descriptor.
pub fn read_text_in(dir: &PrivateDir, name: &str) -> Result<Option<String>, ReadError> {
    read_capped_in(dir, name, MAX_JSON_BYTES)
}

/// The text of `name` in `dir` within `cap`, `Ok(None)` if it is absent.
pub fn read_capped_in(dir: &PrivateDir, name: &str, cap: u64) -> Result<Option<String>, ReadError> {
    match dir.open_regular(name, cap) {
        Ok(opened) => read_opened(opened, cap).map(Some),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`crate::hostile_file::open_regular`] with this module's answers: `Ok(None)` if nothing
/// is there, else the open file and its `fstat`, or the reason it was refused. For callers
/// that look at the file's identity before reading it ([`read_opened`]).
pub fn open_regular(path: &Path, cap: u64) -> Result<Option<(File, Metadata)>, ReadError> {
    match crate::hostile_file::open_regular(path, cap) {
        Ok(opened) => Ok(Some(opened)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The text of a file [`open_regular`] opened, read no further than `cap`.
pub fn read_opened(opened: (File, Metadata), cap: u64) -> Result<String, ReadError> {
    crate::hostile_file::read_from(opened, cap).and_then(crate::hostile_file::utf8)
}

/// Pretty JSON (2 spaces) and a trailing newline, as every gstack file is written.
pub fn pretty(value: &impl serde::Serialize) -> io::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn absent_unreadable_and_good_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        let err = |path: &Path| read_json(path).unwrap_err().to_string();
        assert!(read_json(&path).unwrap().is_none());
        fs::write(&path, b"{ nope").unwrap();
        assert!(err(&path).starts_with("not valid JSON"));
        fs::write(&path, b"\xff").unwrap();
        assert!(err(&path).starts_with("not UTF-8"));
        fs::write(&path, b"[1]").unwrap();
        assert_eq!(read_json(&path).unwrap(), Some(serde_json::json!([1])));
        assert!(err(dir.path()).contains("a directory"));
    }
}
