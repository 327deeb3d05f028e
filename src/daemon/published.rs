//! Lists the daemon publishes in its berth dir for other processes (`berth status`, the
//! queue page): written whole and atomically when they change, removed when empty, and
//! read back bounded, never through a symlink or blocking on a FIFO.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a published list could not be read; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReadPublishedError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", .path.display())]
    NotJson {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Rewrites `path` with `lines` (removed when there are none), and says whether it did: a
/// failure is logged, the daemon goes on, and its caller writes the list again later.
pub fn publish<T: Serialize>(path: &Path, lines: &[T]) -> bool {
    let written = if lines.is_empty() {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    } else {
        serde_json::to_vec_pretty(lines)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::atomic_file::write_atomic(path, &bytes, 0o600))
    };
    if let Err(e) = &written {
        tracing::warn!(file = %path.display(), "cannot publish the list: {e}");
    }
    written.is_ok()
}

/// [`publish`] of the longest head of `lines` whose file stays within `cap` bytes, the
/// most its readers read (the rest is dropped from `lines`).
pub fn publish_within<T: Serialize>(path: &Path, lines: &mut Vec<T>, cap: u64) -> bool {
    // Each pass keeps the share of lines that fit on average, so it ends within a few.
    while let Ok(bytes) = serde_json::to_vec_pretty(&*lines) {
        let size = bytes.len() as u64;
        if size <= cap || lines.is_empty() {
            break;
        }
        let fit = (lines.len() as u64).saturating_mul(cap) / size;
        lines.truncate(usize::try_from(fit).unwrap_or(0).min(lines.len() - 1));
    }
    publish(path, lines)
}

/// The list at `path` (none if no file); at most `cap` bytes are read, so a larger file
/// fails as JSON cut short.
pub fn read<T: DeserializeOwned>(path: &Path, cap: u64) -> Result<Vec<T>, ReadPublishedError> {
    use std::io::Read as _;
    let io = |source| ReadPublishedError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match crate::atomic_file::open_read_nofollow(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut text = String::new();
    file.take(cap).read_to_string(&mut text).map_err(io)?;
    serde_json::from_str(&text).map_err(|source| ReadPublishedError::NotJson {
        path: path.to_owned(),
        source,
    })
}
