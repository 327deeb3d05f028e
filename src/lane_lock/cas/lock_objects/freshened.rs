//! Whether the lock objects the origin already had were freshened by their write.
//!
//! git's writer freshens a loose copy with `utime`; where that is refused (the copy is
//! another user's: an earlier root berth's in another user's `objects/`) it writes the
//! object anew, and where the new copy cannot replace the old one (it already exists)
//! git reports success all the same. The old copy then still looks unreferenced and old
//! to a concurrent `git gc`, which may prune it once the lock ref points at it. So after
//! the write each loose copy in the origin's own `objects/` must be no older than the
//! write. A copy only in a pack (or an alternate) has no loose file here: the writer
//! freshened its pack or wrote it loose, and said so by succeeding.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use git2::Oid;

/// How far a file time written during the write may lie before its start: the kernel
/// stamps files from a clock that lags the one `SystemTime::now` reads by up to a tick.
const CLOCK_SLACK: Duration = Duration::from_secs(1);

/// Why a lock object the origin had was not freshened.
#[derive(Debug, thiserror::Error)]
pub(super) enum Stale {
    #[error(
        "its {what} {oid} was already there as {path}, last written {age_secs} s before this write, and neither freshening nor rewriting it took (the file is another user's and its directory not the writer's to replace it in), so a concurrent `git gc` may prune it under the lock; as root, `chown -R <owner of objects/>: {objects}` mends it",
        path = path.display(),
        objects = objects.display()
    )]
    Old {
        what: &'static str,
        oid: Oid,
        path: PathBuf,
        objects: PathBuf,
        age_secs: u64,
    },
    #[error("its {what} {oid} was already there as {path}, which is not a regular file", path = path.display())]
    NotAFile {
        what: &'static str,
        oid: Oid,
        path: PathBuf,
    },
    #[error("cannot read the time of its {what} {oid} at {path}: {source}", path = path.display())]
    Unreadable {
        what: &'static str,
        oid: Oid,
        path: PathBuf,
        source: io::Error,
    },
}

/// Checks that every loose copy, in `git_dir`'s `objects/`, of the objects `had` (named
/// what they are) was written no earlier than `started`. Reads only file times (`lstat`).
pub(super) fn check(
    git_dir: &Path,
    had: &[(&'static str, Oid)],
    started: SystemTime,
) -> Result<(), Stale> {
    let objects = git_dir.join("objects");
    let threshold = started.checked_sub(CLOCK_SLACK).unwrap_or(started);
    for &(what, oid) in had {
        let hex = oid.to_string();
        let path = objects.join(&hex[..2]).join(&hex[2..]);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(Stale::Unreadable {
                    what,
                    oid,
                    path,
                    source,
                });
            }
        };
        if !meta.file_type().is_file() {
            return Err(Stale::NotAFile { what, oid, path });
        }
        let written = meta.modified().map_err(|source| Stale::Unreadable {
            what,
            oid,
            path: path.clone(),
            source,
        })?;
        if written < threshold {
            let age_secs = started
                .duration_since(written)
                .unwrap_or_default()
                .as_secs();
            return Err(Stale::Old {
                what,
                oid,
                path,
                objects,
                age_secs,
            });
        }
    }
    Ok(())
}
