//! Whether the lock objects the origin already had were freshened by their write.
//!
//! git's writer freshens a loose copy with `utime`; where that is refused (the copy is
//! another user's: an earlier root berth's in another user's `objects/`) it writes the
//! object anew, and where the new copy cannot replace the old one (it already exists)
//! git reports success all the same. The old copy then still looks unreferenced and old
//! to a concurrent `git gc`, which may prune it once the lock ref points at it. So each
//! loose copy in the origin's own `objects/` before the write must have been written
//! again by it, or its object freshened in a pack: git and libgit2 try the packs first
//! and stop there ([`super::packed`]). A copy only in a pack (or an alternate) has no
//! loose file here: the writer freshened its pack or wrote it loose, and said so by
//! succeeding, unless a cruft pack holds it: writing to that only touches the cruft
//! `.pack` (libgit2), which git does not count ([`super::packed`]). Such an object must
//! come out of the write as a fresh loose copy (git's writer makes one) or in a fresh
//! pack that is not cruft, here or in an objects dir the origin borrows from (git's
//! writer freshens that copy, if it finds one, and writes none here).
//!
//! A time counts as fresh measured against two clocks: berth's, at the write's start
//! (libgit2 stamps with the writing process's clock), and the file system's, read off the
//! lock commit the write itself created (git's `utime(NULL)` and a new file both take the
//! file server's time, which may lag berth's by any amount). A copy in an objects dir the
//! origin borrows from may sit on yet another file server: there a time that moved during
//! the write counts, which needs no clock.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use git2::Oid;

use super::packed;
use crate::lane_lock::refs_look::alternate_objects_dirs;

/// How far a file time written during the write may lie before its start (or before the
/// lock commit's time): libgit2 stamps a freshened file with the current whole second
/// (`time(2)`, from a clock that lags the one `SystemTime::now` reads by up to a tick).
const CLOCK_SLACK: Duration = Duration::from_secs(2);

/// Why a lock object the origin had was not freshened.
#[derive(Debug, thiserror::Error)]
pub(super) enum Stale {
    #[error(
        "its {what} {oid} was already there as {path} (owned by uid {file_uid}), last written {age_secs} s before this write, and neither freshening it (nor a pack holding it) nor rewriting it took (the writer may not set the file's time nor replace it in its directory), so a concurrent `git gc` may prune it under the lock; where the file is not the writer's, as root, `chown -R <owner of objects/>: {objects}` mends it",
        path = path.display(),
        objects = objects.display()
    )]
    Old {
        what: &'static str,
        oid: Oid,
        path: PathBuf,
        file_uid: u32,
        objects: PathBuf,
        age_secs: u64,
    },
    #[error("its {what} {oid} was already there as {path}, which is not a regular file", path = path.display())]
    NotAFile {
        what: &'static str,
        oid: Oid,
        path: PathBuf,
    },
    #[error(
        "its {what} {oid} was held only in a cruft pack (whose objects git ages by the pack's `.mtimes`, which no write moves), and the write left neither a loose copy at {path} nor a pack holding it that is not cruft, so a concurrent `git gc --cruft` may prune it under the lock",
        path = path.display()
    )]
    OnlyCruft {
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

/// One lock object's loose copy in the origin, as found before the write (`written`:
/// `None`, it had none, only a cruft pack holding the object).
struct Copy {
    what: &'static str,
    oid: Oid,
    path: PathBuf,
    written: Option<SystemTime>,
    in_cruft: bool,
    /// Its object's copies, in each of [`Before::places`], before the write.
    seen: Vec<Times>,
}

/// When an objects dir's copies of an object were last written: its loose copy, and the
/// newest pack holding it that is not cruft.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Times {
    loose: Option<SystemTime>,
    pack: Option<SystemTime>,
}

impl Times {
    fn read(objects: &Path, oid: Oid) -> Self {
        Self {
            loose: written("object", oid, &loose_path(objects, oid))
                .ok()
                .flatten()
                .map(|(time, _)| time),
            pack: packed::newest_pack_holding(objects, oid).and_then(|held| held.newest),
        }
    }
}

/// The loose copies, in `git_dir`'s `objects/`, of the lock objects before their write
/// (and those held by a cruft pack with no loose copy),
/// when that write started, and where the write's new lock commit lands (`None`: it was
/// there before, so its time tells nothing of the file system's clock).
pub(super) struct Before {
    objects: PathBuf,
    /// Where git's writer may freshen a lock object: the origin's objects dir and every
    /// objects dir it borrows from.
    places: Vec<PathBuf>,
    copies: Vec<Copy>,
    started: SystemTime,
    witness: Option<(Oid, PathBuf)>,
}

impl Before {
    /// Reads (`lstat`) the loose copies of `objects` (named what they are) in `git_dir`,
    /// and which of them a cruft pack holds;
    /// `commit` is the lock commit the write creates, whose new file's time is the file
    /// system's clock at the write.
    pub(super) fn look(
        git_dir: &Path,
        objects: &[(&'static str, Oid)],
        commit: Oid,
    ) -> Result<Self, Stale> {
        let objects_dir = git_dir.join("objects");
        let mut places = vec![objects_dir.clone()];
        places.extend(alternate_objects_dirs(&objects_dir));
        let mut copies = Vec::new();
        for &(what, oid) in objects {
            let path = loose_path(&objects_dir, oid);
            let written = written(what, oid, &path)?.map(|(time, _)| time);
            let in_cruft =
                packed::newest_pack_holding(&objects_dir, oid).is_some_and(|held| held.in_cruft);
            if written.is_some() || in_cruft {
                let seen = places.iter().map(|at| Times::read(at, oid)).collect();
                copies.push(Copy {
                    what,
                    oid,
                    path,
                    written,
                    in_cruft,
                    seen,
                });
            }
        }
        let witness = (!copies
            .iter()
            .any(|c| c.oid == commit && c.written.is_some()))
        .then(|| (commit, loose_path(&objects_dir, commit)));
        Ok(Self {
            objects: objects_dir,
            places,
            copies,
            started: SystemTime::now(),
            witness,
        })
    }

    /// Whether a cruft pack holds a lock object: only git's writer freshens it then.
    pub(super) fn in_cruft(&self) -> bool {
        self.copies.iter().any(|copy| copy.in_cruft)
    }

    /// Checks that each copy found before the write was written again by it: its time
    /// moved (either way: libgit2 truncates it to the second), or a copy of its object
    /// where git's writer may have freshened it ([`Self::freshened_somewhere`]) was.
    /// An object only a cruft pack held must have a loose copy now, or such a copy.
    pub(super) fn check(&self) -> Result<(), Stale> {
        let threshold = self.threshold();
        for copy in &self.copies {
            let (what, oid, path) = (copy.what, copy.oid, copy.path.clone());
            let (now, file_uid) = match (written(what, oid, &copy.path)?, copy.written) {
                (Some(found), _) => found,
                (None, None) if self.freshened_somewhere(copy, threshold) => continue,
                (None, None) => return Err(Stale::OnlyCruft { what, oid, path }),
                (None, Some(_)) => return Err(Stale::Gone { what, oid, path }),
            };
            if Some(now) != copy.written
                || now >= threshold
                || self.freshened_somewhere(copy, threshold)
            {
                continue;
            }
            let age = self.started.duration_since(now).unwrap_or_default();
            return Err(Stale::Old {
                what,
                oid,
                path,
                file_uid,
                objects: self.objects.clone(),
                age_secs: age.as_secs(),
            });
        }
        Ok(())
    }

    /// Whether, in the origin's objects dir or one it borrows from (git's writer looks in
    /// every pack first, then loose, and freshens the first copy it finds that is not
    /// cruft), a loose copy of `copy`'s object or a pack holding it that is not cruft was
    /// written by the write: its time moved, which needs no clock (a pool on another file
    /// server stamps with that server's), or it is no earlier than `threshold`.
    fn freshened_somewhere(&self, copy: &Copy, threshold: SystemTime) -> bool {
        self.places.iter().zip(&copy.seen).any(|(at, before)| {
            let now = Times::read(at, copy.oid);
            let took = |time: Option<SystemTime>, was: Option<SystemTime>| {
                time.is_some_and(|time| time >= threshold || Some(time) != was)
            };
            took(now.loose, before.loose) || took(now.pack, before.pack)
        })
    }

    /// The earliest time a file the write freshened may carry: [`CLOCK_SLACK`] before the
    /// earlier of the write's start and the new lock commit's file time.
    fn threshold(&self) -> SystemTime {
        let file_system_now = self
            .witness
            .as_ref()
            .and_then(|(oid, path)| written("lock commit", *oid, path).ok().flatten())
            .map(|(time, _)| time);
        let reference = file_system_now.map_or(self.started, |time| time.min(self.started));
        reference.checked_sub(CLOCK_SLACK).unwrap_or(reference)
    }
}

fn loose_path(objects: &Path, oid: Oid) -> PathBuf {
    let hex = oid.to_string();
    objects.join(&hex[..2]).join(&hex[2..])
}

/// When the loose copy at `path` was last written, and its owner; `None`: there is none.
fn written(what: &'static str, oid: Oid, path: &Path) -> Result<Option<(SystemTime, u32)>, Stale> {
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
    let time = meta.modified().map_err(unreadable)?;
    Ok(Some((time, meta.uid())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::ObjectType;

    /// Writes an empty loose file for `oid` under `git_dir`, last written at `when`.
    fn put(git_dir: &Path, oid: Oid, when: SystemTime) {
        let path = loose_path(&git_dir.join("objects"), oid);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::File::create(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    fn lock_objects() -> (Oid, Oid) {
        (
            Oid::hash_object(ObjectType::Commit, b"a lock commit").unwrap(),
            Oid::hash_object(ObjectType::Tree, b"").unwrap(),
        )
    }

    /// A file server whose clock lags berth's by 10 s stamps the tree it freshens, and the
    /// new lock commit, with its own time; with whole-second file times, acquire's second
    /// lock write within that second leaves the tree's time where the first one put it.
    /// The tree is fresh by the file system's clock, which the new lock commit shows.
    #[test]
    fn a_tree_freshened_by_a_lagging_file_servers_clock_counts_as_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let (commit, tree) = lock_objects();
        let server_now = SystemTime::now() - Duration::from_secs(10);
        put(dir.path(), tree, server_now);
        let named = [("lock commit", commit), ("tree", tree)];
        let before = Before::look(dir.path(), &named, commit).unwrap();
        put(dir.path(), commit, server_now);
        let checked = before.check();
        assert!(checked.is_ok(), "{checked:?}");
    }

    /// By either clock, a tree a month old that the write left alone stays old: the lock
    /// write fails, naming the file's owner.
    #[test]
    fn a_tree_the_write_left_a_month_old_is_stale_by_either_clock() {
        let dir = tempfile::tempdir().unwrap();
        let (commit, tree) = lock_objects();
        let server_now = SystemTime::now() - Duration::from_secs(10);
        put(
            dir.path(),
            tree,
            server_now - Duration::from_secs(30 * 24 * 3600),
        );
        let named = [("lock commit", commit), ("tree", tree)];
        let before = Before::look(dir.path(), &named, commit).unwrap();
        put(dir.path(), commit, server_now);
        let checked = before.check();
        let uid = nix::unistd::getuid().as_raw();
        assert!(
            matches!(&checked, Err(Stale::Old { file_uid, .. }) if *file_uid == uid),
            "{checked:?}"
        );
        let said = checked.unwrap_err().to_string();
        assert!(said.contains(&format!("owned by uid {uid}")), "{said}");
        assert!(!said.contains("another user"), "{said}");
    }
    /// A lock commit the origin already had (same holder, same second), a month old, that
    /// the write left alone: judged as its tree is, so the lock write fails,
    /// naming the lock commit.
    #[test]
    fn an_old_lock_commit_the_write_left_alone_fails_named() {
        let dir = tempfile::tempdir().unwrap();
        let (commit, _) = lock_objects();
        let month_ago = SystemTime::now() - Duration::from_secs(30 * 24 * 3600);
        put(dir.path(), commit, month_ago);
        let before = Before::look(dir.path(), &[("lock commit", commit)], commit).unwrap();
        let checked = before.check();
        assert!(
            matches!(&checked, Err(Stale::Old { what: "lock commit", oid, .. }) if *oid == commit),
            "{checked:?}"
        );
    }
}

#[cfg(test)]
mod cruft_tests;
