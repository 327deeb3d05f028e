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

/// Halt events and pattern files are kilobytes; anything this large is not ours.
pub const MAX_JSON_BYTES: u64 = 8 * 1024 * 1024;

/// `Ok(None)` if `path` does not exist; `Err(reason)` if it exists but is not a regular
/// file of valid JSON within [`MAX_JSON_BYTES`].
pub fn read_json(path: &Path) -> Result<Option<Value>, String> {
    match read_text(path)? {
        None => Ok(None),
        Some(text) => parse(&text).map(Some),
    }
}

/// JSON text to a value, with the reason a caller puts after the file's name.
pub fn parse(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
}

/// The text of a regular file within [`MAX_JSON_BYTES`], `Ok(None)` if it is absent.
pub fn read_text(path: &Path) -> Result<Option<String>, String> {
    // Another process writes this dir: no blocking open, no symlink, a bounded read.
    match crate::hostile_file::read_regular_string(path, MAX_JSON_BYTES) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::hostile_file::reason(&e)),
    }
}

/// [`crate::hostile_file::open_regular`] with this module's answers: `Ok(None)` if nothing
/// is there, else the open file and its `fstat`, or the reason it was refused. For callers
/// that look at the file's identity before reading it ([`read_opened`]).
pub fn open_regular(path: &Path, cap: u64) -> Result<Option<(File, Metadata)>, String> {
    match crate::hostile_file::open_regular(path, cap) {
        Ok(opened) => Ok(Some(opened)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::hostile_file::reason(&e)),
    }
}

/// The text of a file [`open_regular`] opened, read no further than `cap`.
pub fn read_opened(opened: (File, Metadata), cap: u64) -> Result<String, String> {
    crate::hostile_file::read_from(opened, cap)
        .and_then(crate::hostile_file::utf8)
        .map_err(|e| crate::hostile_file::reason(&e))
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
        assert_eq!(read_json(&path), Ok(None));
        fs::write(&path, b"{ nope").unwrap();
        assert!(read_json(&path).unwrap_err().starts_with("not valid JSON"));
        fs::write(&path, b"\xff").unwrap();
        assert!(read_json(&path).unwrap_err().starts_with("not UTF-8"));
        fs::write(&path, b"[1]").unwrap();
        assert_eq!(read_json(&path), Ok(Some(serde_json::json!([1]))));
        assert!(read_json(dir.path()).unwrap_err().contains("a directory"));
    }
}
