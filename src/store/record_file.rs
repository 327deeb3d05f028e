//! One queue file read as a record: a producer writes the queue dir, so the read is
//! bounded and never blocks or follows a link, and a file that is not a record says why.

use std::fs;
use std::path::Path;

use crate::hostile_file::ReadError;
use crate::record::{FieldError, Record};

use super::MAX_RECORD_BYTES;

/// Why a queue file is not a record: a reason fit for an operator, after the file's name.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("JSON nested deeper than {MAX_JSON_DEPTH} levels")]
    TooDeep,
    #[error("not valid JSON: {0}")]
    NotJson(serde_json::Error),
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// `serde_json`'s nesting limit: the 128th open array or map is refused.
const MAX_JSON_DEPTH: usize = 128;

/// Reads and validates one file. A producer writes this dir: the open never blocks or
/// follows a link, and the read is bounded. The record at `path` is read through
/// `buffer`; `opened` gets the `fstat` of the file when it could be opened.
pub(super) fn read_record(
    path: &Path,
    buffer: &mut Vec<u8>,
    opened: &mut Option<fs::Metadata>,
) -> Result<Record, RecordError> {
    use crate::hostile_file::{open_regular, read_into, utf8_str};
    open_regular(path, MAX_RECORD_BYTES).and_then(|(file, meta)| {
        *opened = Some(meta.clone());
        read_into((file, meta), MAX_RECORD_BYTES, buffer)
    })?;
    let text = utf8_str(buffer)?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        if stopped_at_depth_limit(text, &e) {
            RecordError::TooDeep
        } else {
            RecordError::NotJson(e)
        }
    })?;
    Ok(Record::from_json(value)?)
}

/// Whether `error` is `serde_json`'s nesting limit, which it reports as a plain syntax
/// error: the text opens its 128th level (outside strings) no later than where the parse
/// stopped. Parsing is sequential, so a text that reached that depth first stopped there.
fn stopped_at_depth_limit(text: &str, error: &serde_json::Error) -> bool {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(error.line().saturating_sub(1))
        .map(str::len)
        .sum();
    let stop = (line_start + error.column()).min(text.len());
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for byte in &text.as_bytes()[..stop] {
        match (in_string, escaped, byte) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'[' | b'{') => {
                depth += 1;
                if depth >= MAX_JSON_DEPTH {
                    return true;
                }
            }
            (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
            (false, _, _) => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exactly `serde_json`'s limit is told apart: 127 levels parse, 128 are too deep, and
    /// brackets inside a string or after an earlier syntax error do not count.
    #[test]
    fn the_depth_limit_is_told_from_other_json_errors() {
        let too_deep = |text: &str| {
            let error = serde_json::from_str::<serde_json::Value>(text).unwrap_err();
            stopped_at_depth_limit(text, &error)
        };
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(serde_json::from_str::<serde_json::Value>(&nested(127)).is_ok());
        assert!(too_deep(&nested(128)));
        assert!(too_deep(&format!("{{\"a\":\n {}", nested(200))));
        assert!(!too_deep(&format!("{{ nope {}", nested(200))));
        assert!(!too_deep(&format!("[\"{}\", x]", "[".repeat(300))));
    }
}
