//! What rules may write to berth's log (`print`, `debug`, `log`), bounded: a detector
//! that printed a 4 MiB string in a loop wrote 1.3 GB of log in one tick. Each line is cut
//! to [`MAX_LINE_BYTES`], each call may write [`MAX_CALL_BYTES`], and all calls together
//! [`MAX_TICK_BYTES`] per tick (per command, outside the daemon); past a bound one note
//! says output was cut, and the rest is dropped until the next call or tick.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Bytes of one `print`/`debug`/`log` line that reach the log.
pub const MAX_LINE_BYTES: usize = 1024;
/// Bytes one rule call may write to the log.
pub const MAX_CALL_BYTES: usize = 16 * 1024;
/// Bytes all rule calls together may write per tick.
pub const MAX_TICK_BYTES: usize = 256 * 1024;

static TICK_BYTES: AtomicUsize = AtomicUsize::new(0);
static TICK_NOTED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static CALL_BYTES: Cell<usize> = const { Cell::new(0) };
    static CALL_NOTED: Cell<bool> = const { Cell::new(false) };
}

/// The daemon's tick starts: rules may write [`MAX_TICK_BYTES`] again.
pub fn next_tick() {
    TICK_BYTES.store(0, Ordering::Relaxed);
    TICK_NOTED.store(false, Ordering::Relaxed);
}

/// A rule call starts on this thread.
pub(crate) fn start_call() {
    CALL_BYTES.set(0);
    CALL_NOTED.set(false);
}

#[derive(Clone, Copy)]
pub(crate) enum Level {
    Info,
    Debug,
}

/// Writes one line from `file`'s rule, if the budgets allow.
pub(crate) fn emit(level: Level, file: &str, text: &str) {
    let line = cut(text);
    let len = line.len();
    if CALL_BYTES.get() + len > MAX_CALL_BYTES {
        if !CALL_NOTED.replace(true) {
            tracing::warn!(rule = %file, "rule output over {MAX_CALL_BYTES} bytes in one call: the rest of this call's output is dropped");
        }
        return;
    }
    if TICK_BYTES.fetch_add(len, Ordering::Relaxed) + len > MAX_TICK_BYTES {
        if !TICK_NOTED.swap(true, Ordering::Relaxed) {
            tracing::warn!(rule = %file, "rule output over {MAX_TICK_BYTES} bytes this tick: the rest is dropped until the next tick");
        }
        return;
    }
    CALL_BYTES.set(CALL_BYTES.get() + len);
    match level {
        Level::Info => tracing::info!(rule = %file, "{line}"),
        Level::Debug => tracing::debug!(rule = %file, "{line}"),
    }
}

/// `text` cut to [`MAX_LINE_BYTES`] on a character boundary, with a note of what was cut.
fn cut(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_LINE_BYTES {
        return text.into();
    }
    let end = (0..=MAX_LINE_BYTES)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}… ({} more bytes cut)", &text[..end], text.len() - end).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        assert_eq!(cut("short"), "short");
        let long = "é".repeat(MAX_LINE_BYTES);
        let line = cut(&long);
        assert!(line.starts_with(&"é".repeat(MAX_LINE_BYTES / 2)));
        assert!(line.ends_with(&format!("({} more bytes cut)", MAX_LINE_BYTES)));
    }
}
