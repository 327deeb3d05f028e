//! Reading the small JSON files of the faults dir (halt events, registries, learned
//! patterns) with a size cap, and telling "absent" from "there but unreadable": an
//! unreadable file is reported and left alone, never treated as empty and overwritten.

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
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("not valid JSON: {e}")),
    }
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
        assert!(read_json(dir.path()).unwrap_err().contains("regular file"));
    }
}
