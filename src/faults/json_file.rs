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

/// Why berth did not write a faults-dir file it would read back.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Past what berth reads back ([`MAX_JSON_BYTES`]), berth would refuse its own file on
    /// the next read: nothing is written, the file there (if any) is kept.
    #[error(
        "would be over the {cap} bytes berth reads back, even as compact JSON; not written, the file there is kept"
    )]
    TooLarge { cap: u64 },
    #[error("cannot encode: {0}")]
    Encode(serde_json::Error),
}

impl From<WriteError> for io::Error {
    fn from(e: WriteError) -> io::Error {
        match e {
            WriteError::TooLarge { .. } => io::Error::new(io::ErrorKind::FileTooLarge, e),
            WriteError::Encode(_) => io::Error::other(e),
        }
    }
}

/// The text of a faults-dir file berth must read back, within `cap`: [`pretty`] when that
/// fits, else the same JSON compact (pretty indents each nested value by its depth, so a
/// deeply nested unknown field kept by a rewrite takes ~100× its compact size; readers
/// parse either alike), else refused. Builds at most `cap` bytes of either.
pub fn within(value: &impl serde::Serialize, cap: u64) -> Result<Vec<u8>, WriteError> {
    let pretty = |out: &mut Capped<Vec<u8>>| serde_json::to_writer_pretty(out, value);
    if let Some(written) = capped(Vec::new(), cap, pretty)? {
        return Ok(written.out);
    }
    let compact = |out: &mut Capped<Vec<u8>>| serde_json::to_writer(out, value);
    match capped(Vec::new(), cap, compact)? {
        Some(written) => Ok(written.out),
        None => Err(WriteError::TooLarge { cap }),
    }
}

/// How many bytes [`pretty`] writes of `value`, counted as they are written and never
/// held: `None` once past `cap` (the count stops there) or if it cannot be encoded, so
/// measuring a value that pretty prints to gigabytes costs what `cap` allows.
pub fn pretty_len_within(value: &impl serde::Serialize, cap: u64) -> Option<u64> {
    let count = |out: &mut Capped<io::Sink>| serde_json::to_writer_pretty(out, value);
    capped(io::sink(), cap, count)
        .ok()
        .flatten()
        .map(|written| written.written)
}

/// `value` written by `write` and a newline into `out`, unless that passes `cap`:
/// `Ok(None)` then, with no more than `cap` bytes handed to `out`.
fn capped<W: io::Write>(
    out: W,
    cap: u64,
    write: impl FnOnce(&mut Capped<W>) -> serde_json::Result<()>,
) -> Result<Option<Capped<W>>, WriteError> {
    use io::Write as _;
    let mut capped = Capped {
        out,
        written: 0,
        cap,
    };
    let written =
        write(&mut capped).and_then(|()| capped.write_all(b"\n").map_err(serde_json::Error::io));
    match written {
        Ok(()) => Ok(Some(capped)),
        Err(_) if capped.written > cap => Ok(None),
        Err(e) => Err(WriteError::Encode(e)),
    }
}

/// A writer that counts what passes through it and fails once the count is past `cap`,
/// before handing the bytes on.
struct Capped<W> {
    out: W,
    written: u64,
    cap: u64,
}

impl<W: io::Write> io::Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written = self.written.saturating_add(buf.len() as u64);
        if self.written > self.cap {
            return Err(io::ErrorKind::FileTooLarge.into());
        }
        self.out.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The bytes `c` takes inside a JSON string as serde_json writes it.
pub fn escaped_len(c: char) -> u64 {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if u32::from(c) < 0x20 => 6,
        c => c.len_utf8() as u64,
    }
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

    /// A file berth reads back is written pretty when that fits, compact when only that
    /// fits (nested arrays pretty print to ~their depth × their size), else not at all;
    /// measuring it counts what pretty writes, whole or up to the cap.
    #[test]
    fn what_berth_writes_fits_what_it_reads_back() {
        let mut nested = serde_json::json!(0);
        for _ in 0..50 {
            nested = serde_json::json!([nested]);
        }
        let whole = pretty(&nested).unwrap();
        let compact = format!("{nested}\n");
        let len = whole.len() as u64;
        assert_eq!(pretty_len_within(&nested, len), Some(len));
        assert_eq!(pretty_len_within(&nested, len - 1), None);
        assert_eq!(within(&nested, len).unwrap(), whole);
        assert_eq!(within(&nested, len - 1).unwrap(), compact.as_bytes());
        let cap = compact.len() as u64;
        assert_eq!(within(&nested, cap).unwrap(), compact.as_bytes());
        assert!(matches!(
            within(&nested, cap - 1),
            Err(WriteError::TooLarge { cap: c }) if c == cap - 1
        ));
    }
}
