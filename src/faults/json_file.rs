//! Reading the small JSON files of the faults dir (halt events, registries, learned
//! patterns) with a size cap, and telling "absent" from "there but unreadable": an
//! unreadable file is reported and left alone, never treated as empty and overwritten.

use std::fs;
use std::io::{self, Read};
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
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot stat: {e}")),
    };
    if !meta.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_JSON_BYTES {
        return Err(format!(
            "file is {} bytes, over the {MAX_JSON_BYTES}-byte limit",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    fs::File::open(path)
        .and_then(|f| f.take(MAX_JSON_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read: {e}"))?;
    String::from_utf8(bytes).map(Some).map_err(|e| {
        format!(
            "not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
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
