//! Whether the lock objects the origin already had were freshened by their write.
//!
//! git's writer freshens a loose copy with `utime`; where that is refused (the copy is
//! another user's: an earlier root berth's in another user's `objects/`) it writes the
//! object anew, and where the new copy cannot replace the old one (it already exists)
//! git reports success all the same. The old copy then still looks unreferenced and old
//! to a concurrent `git gc`, which may prune it once the lock ref points at it. So each
//! loose copy in the origin's own `objects/` before the write must have been written
//! again by it. A copy only in a pack (or an alternate) has no loose file here: the
//! writer freshened its pack or wrote it loose, and said so by succeeding.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use git2::Oid;

/// How far a file time written during the write may lie before its start: libgit2 stamps
/// a freshened file with the current whole second (`time(2)`, from a clock that lags the
/// one `SystemTime::now` reads by up to a tick).
const CLOCK_SLACK: Duration = Duration::from_secs(2);

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
    #[error("its {what} {oid} at {path} went away during the write (a concurrent `git gc`?); the lock is not written on it", path = path.display())]
    Gone {
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

/// One lock object's loose copy in the origin, as found before the write.
struct Copy {
    what: &'static str,
    oid: Oid,
    path: PathBuf,
    written: SystemTime,
}

/// The loose copies, in `git_dir`'s `objects/`, of the lock objects before their write,
/// and when that write started.
pub(super) struct Before {
    objects: PathBuf,
    copies: Vec<Copy>,
    started: SystemTime,
}

impl Before {
    /// Reads (`lstat`) the loose copies of `objects` (named what they are) in `git_dir`.
    pub(super) fn look(git_dir: &Path, objects: &[(&'static str, Oid)]) -> Result<Self, Stale> {
        let objects_dir = git_dir.join("objects");
        let mut copies = Vec::new();
        for &(what, oid) in objects {
            let hex = oid.to_string();
            let path = objects_dir.join(&hex[..2]).join(&hex[2..]);
            if let Some(written) = written(what, oid, &path)? {
                copies.push(Copy {
                    what,
                    oid,
                    path,
                    written,
                });
            }
        }
        Ok(Self {
            objects: objects_dir,
            copies,
            started: SystemTime::now(),
        })
    }

    /// Checks that each copy found before the write was written again by it: its time
    /// moved (either way: libgit2 truncates it to the second), or is no earlier than the
    /// write's start less [`CLOCK_SLACK`]. A time that moved counts whatever the clocks
    /// say (a file server stamps with its own).
    pub(super) fn check(&self) -> Result<(), Stale> {
        let threshold = self
            .started
            .checked_sub(CLOCK_SLACK)
            .unwrap_or(self.started);
        for copy in &self.copies {
            let (what, oid, path) = (copy.what, copy.oid, copy.path.clone());
            let Some(now) = written(what, oid, &copy.path)? else {
                return Err(Stale::Gone { what, oid, path });
            };
            if now == copy.written && now < threshold {
                let age = self.started.duration_since(now).unwrap_or_default();
                return Err(Stale::Old {
                    what,
                    oid,
                    path,
                    objects: self.objects.clone(),
                    age_secs: age.as_secs(),
                });
            }
        }
        Ok(())
    }
}

/// When the loose copy at `path` was last written; `None`: there is none.
fn written(what: &'static str, oid: Oid, path: &Path) -> Result<Option<SystemTime>, Stale> {
    let unreadable = |source| Stale::Unreadable {
        what,
        oid,
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    if !meta.file_type().is_file() {
        return Err(Stale::NotAFile {
            what,
            oid,
            path: path.to_owned(),
        });
    }
    meta.modified().map(Some).map_err(unreadable)
}
