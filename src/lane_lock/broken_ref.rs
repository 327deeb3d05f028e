//! A broken ref where git needs room for a lane's lock ref in a local origin.
//!
//! At and below `refs/gstack/release-locks`, git makes only directories and loose refs (a
//! file under a valid ref name holding an id, or `ref: <name>`). Anything else on a lock
//! ref's path ([`super::broken_above`]) or below it ([`super::below_ref`]) is a broken ref:
//! an empty file a crash left, garbage, a symlink (dangling or not: git would follow it),
//! a FIFO or a name git refuses (one that is not UTF-8, say). git lists none, so no ref in
//! the way names it, and every create of the lock ref fails on it. So it is judged like a
//! commit that is no lock: it holds the lane, named, until as long after berth first saw
//! that node (this origin, this path, its device and inode) as any lock could last
//! ([`expiry_cap::unreadable_expiry`]); then it is moved whole, under the writers' lock and
//! only while it is still the node judged, out of `refs/` to
//! `<git dir>/berth-set-aside-<dev>-<inode>`: a rename never follows a symlink, and nothing
//! is deleted or read beyond [`MAX_REF_BYTES`] of a regular file (opened without blocking).

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::Read as _;
use std::os::fd::AsRawFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use git2::Repository;
use nix::libc;

use super::expiry_cap::{self, ExpirySightings};
use super::leftover::{self, FileId};
use super::{below_ref, lock_dir};
use crate::{atomic_file, clock};

/// The most of a file in the way that is read to tell a ref from a broken one: a loose
/// ref is an id or `ref: <name>` and a newline; a larger file is broken unread.
pub const MAX_REF_BYTES: u64 = 4096;

/// How long the writers' lock is waited for before setting a broken ref aside; a busy one
/// leaves it for a later write.
const WRITERS_WAIT: Duration = Duration::from_millis(250);

/// What stands at a path below a local origin's git dir.
pub(super) enum Node {
    Missing,
    Directory,
    /// A loose ref git lists: judged as a ref in the way ([`super::in_the_way`]).
    Ref,
    Broken(FileId),
}

/// What is at `name` (relative to `git_dir`), not following a final symlink.
pub(super) fn judge(git_dir: &Path, name: &Path) -> Node {
    let path = git_dir.join(name);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return Node::Missing;
    };
    if meta.is_dir() {
        return Node::Directory;
    }
    let valid_name = name.to_str().is_some_and(git2::Reference::is_valid_name);
    if meta.is_file() && valid_name && reads_as_ref(&path) {
        Node::Ref
    } else {
        Node::Broken(FileId::of(&meta))
    }
}

/// Whether the regular file at `path` holds what git reads as a loose ref.
fn reads_as_ref(path: &Path) -> bool {
    read_bounded(path).is_some_and(|bytes| is_loose_ref(&bytes))
}

/// The bytes of the regular file at `path` (opened without following a symlink or
/// blocking) when it holds at most [`MAX_REF_BYTES`]: a loose ref's whole reading.
pub(super) fn read_bounded(path: &Path) -> Option<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file
        .metadata()
        .is_ok_and(|meta| meta.is_file() && meta.len() <= MAX_REF_BYTES)
    {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_REF_BYTES + 1).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// git's reading of a loose ref: `ref: <valid name>`, or a SHA-1 id in hex followed by
/// nothing or whitespace.
fn is_loose_ref(bytes: &[u8]) -> bool {
    if let Some(target) = bytes.strip_prefix(b"ref:") {
        return std::str::from_utf8(target)
            .is_ok_and(|target| git2::Reference::is_valid_name(target.trim()));
    }
    let hex = bytes.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    hex == 40 && bytes.get(hex).is_none_or(u8::is_ascii_whitespace)
}

/// Where a broken ref is judged: one write of `lock_ref` in `origin`.
pub(super) struct Room<'a> {
    pub origin: &'a Repository,
    pub lock_ref: &'a str,
    pub writers_lock: &'a Path,
    pub expiry: &'a ExpirySightings,
}

impl Room<'_> {
    /// When the broken ref `file` at `name` is set aside: as long after berth first saw
    /// that node (this origin, this path, its device and inode) as any lock lasts.
    fn until(&self, name: &Path, file: FileId) -> DateTime<Utc> {
        let key = format!(
            "broken ref {} {}",
            self.origin.path().join(name).display(),
            file.aside_name().trim_start_matches("berth-set-aside-")
        );
        expiry_cap::unreadable_expiry(self.expiry, &key, clock::now())
    }

    /// Why the broken ref `file` at `name` holds the lane, and until when.
    pub fn holds(&self, name: &Path, file: FileId) -> String {
        let until = self.until(name, file);
        self.held(
            name,
            file,
            &format!(
                "berth moves it out of refs/ at {} if it is still there",
                clock::iso(until)
            ),
        )
    }

    fn held(&self, name: &Path, file: FileId, why: &str) -> String {
        format!(
            "`{}` ({}) is a {}, no ref git can read, standing where git needs room for the lane's lock ref `{}`; {why}",
            name.display(),
            self.origin.path().join(name).display(),
            file.kind_name(),
            self.lock_ref
        )
    }

    /// Holds the lane while the broken ref `file` at `name` has been seen for less than
    /// any lock lasts (`Err` naming it and when it goes); after that, sets it aside.
    pub fn settle(&self, name: &Path, file: FileId) -> Result<(), git2::Error> {
        if clock::now() < self.until(name, file) {
            return Err(git2::Error::from_str(&self.holds(name, file)));
        }
        self.set_aside(name, file).map_err(|e| {
            let why = format!("seen as long as any lock lasts, but {e}");
            git2::Error::from_str(&self.held(name, file, &why))
        })
    }

    /// Renames `name` to the git dir while holding the writers' lock, only while it is
    /// `judged`; one that changed meanwhile is judged afresh on a later write.
    fn set_aside(&self, name: &Path, judged: FileId) -> Result<(), SetAside> {
        let git_dir = self.origin.path();
        let writers = leftover::open_shared(self.origin, self.writers_lock)
            .and_then(|file| {
                atomic_file::lock_open_file_within(file, self.writers_lock, WRITERS_WAIT)
            })
            .map_err(SetAside::WritersLock)?;
        let git_dir_fd = lock_dir::open_git_dir(git_dir).map_err(SetAside::GitDir)?;
        let Some(parent) =
            lock_dir::open_parent_of(&git_dir_fd, git_dir, name).map_err(SetAside::Walk)?
        else {
            return Ok(());
        };
        let base = name.file_name().unwrap_or_default().as_bytes();
        let Ok(base) = CString::new(base) else {
            return Ok(());
        };
        if FileId::at(parent.as_raw_fd(), &base) != Some(judged) {
            return Ok(());
        }
        let aside = judged.aside_in(git_dir);
        let aside_name = CString::new(judged.aside_name()).unwrap_or_default();
        // SAFETY: valid directory descriptors and NUL-terminated names.
        let renamed = unsafe {
            libc::renameat2(
                parent.as_raw_fd(),
                base.as_ptr(),
                git_dir_fd.as_raw_fd(),
                aside_name.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        drop(writers);
        if renamed != 0 {
            return Err(SetAside::Rename(aside, std::io::Error::last_os_error()));
        }
        tracing::warn!(
            file = %git_dir.join(name).display(),
            aside = %aside.display(),
            kind = judged.kind_name(),
            lock_ref = self.lock_ref,
            "moved a broken ref out of refs/: git cannot read it as a ref, it stood where git needs room for the lane's lock ref, and it was seen as long as any lock lasts"
        );
        Ok(())
    }
}

/// Why a broken ref seen as long as any lock lasts was not set aside.
#[derive(Debug, thiserror::Error)]
enum SetAside {
    #[error("the writers' lock cannot be had: {0}")]
    WritersLock(std::io::Error),
    #[error("the git dir cannot be opened: {0}")]
    GitDir(std::io::Error),
    #[error("{}", .0.message())]
    Walk(git2::Error),
    #[error("it cannot be moved to {}: {}", .0.display(), .1)]
    Rename(PathBuf, std::io::Error),
}

/// The broken refs below `room`'s lock ref: every node there that is neither a directory,
/// a `.lock` file nor a ref git lists, at most [`super::MAX_BELOW_ENTRIES`] entries looked at.
pub(super) fn below(room: &Room<'_>) -> Vec<(PathBuf, FileId)> {
    let git_dir = room.origin.path();
    let mut nodes = Vec::new();
    below_ref::each_below(&git_dir.join(room.lock_ref), |path| {
        if !below_ref::is_lock_file(&path)
            && let Ok(name) = path.strip_prefix(git_dir)
        {
            nodes.push(name.to_owned());
        }
    });
    nodes
        .into_iter()
        .filter_map(|name| match judge(git_dir, &name) {
            Node::Broken(file) => Some((name, file)),
            _ => None,
        })
        .collect()
}

/// Judges every broken ref below `room`'s lock ref: each holds the lane (the first named
/// in the `Err`) until the cap, then is set aside.
pub(super) fn clear_below(room: &Room<'_>) -> Result<(), git2::Error> {
    below(room)
        .into_iter()
        .map(|(name, file)| room.settle(&name, file))
        .fold(Ok(()), Result::and)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loose_ref_is_an_id_or_a_symbolic_ref_and_nothing_else() {
        let id = "0123456789abcdef0123456789abcdef01234567";
        assert!(is_loose_ref(id.as_bytes()));
        assert!(is_loose_ref(format!("{id}\n").as_bytes()));
        assert!(is_loose_ref(b"ref: refs/heads/main\n"));
        for broken in [
            "".to_owned(),
            "junk\n".to_owned(),
            format!("{id}0\n"),
            format!("{id}x"),
            id[1..].to_owned(),
            "ref: not a ref\n".to_owned(),
        ] {
            assert!(!is_loose_ref(broken.as_bytes()), "{broken:?}");
        }
    }

    #[test]
    fn only_a_readable_loose_ref_under_a_valid_name_is_a_ref() {
        let dir = tempfile::tempdir().unwrap();
        let git_dir = dir.path();
        let id = "0123456789abcdef0123456789abcdef01234567\n";
        std::fs::create_dir_all(git_dir.join("refs/x")).unwrap();
        std::fs::write(git_dir.join("refs/x/ok"), id).unwrap();
        std::fs::write(git_dir.join("refs/x/bad..name"), id).unwrap();
        std::fs::write(git_dir.join("refs/x/empty"), "").unwrap();
        std::fs::write(
            git_dir.join("refs/x/large"),
            vec![b'0'; MAX_REF_BYTES as usize + 1],
        )
        .unwrap();
        std::os::unix::fs::symlink(git_dir.join("refs/x/ok"), git_dir.join("refs/x/link")).unwrap();
        nix::unistd::mkfifo(&git_dir.join("refs/x/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let judged = |name: &str| judge(git_dir, Path::new(name));
        assert!(matches!(judged("refs/x/ok"), Node::Ref));
        assert!(matches!(judged("refs/x"), Node::Directory));
        assert!(matches!(judged("refs/x/none"), Node::Missing));
        for broken in ["bad..name", "empty", "large", "link", "fifo"] {
            assert!(
                matches!(judged(&format!("refs/x/{broken}")), Node::Broken(_)),
                "{broken}"
            );
        }
    }
}

#[cfg(test)]
mod fifo_at_the_lock_ref {
    use crate::lane_lock::tests::{BareOrigin, widget_main};
    use crate::lane_lock::{Acquire, lock_ref_name};

    /// A FIFO at a local origin's lock ref (planted by any writer of the origin) is a
    /// broken ref git and libgit2 open with a blocking `open()`: berth's own look at the
    /// ref (`find_reference`, the listing of the local transport) never returns, so the
    /// daemon's tick that tries the lane hangs for good instead of holding the lane named.
    #[test]
    fn a_fifo_at_the_lock_ref_does_not_hang_the_acquire() {
        let origin = BareOrigin::new();
        let lock_ref = origin.bare.join(lock_ref_name(&widget_main()));
        std::fs::create_dir_all(lock_ref.parent().unwrap()).unwrap();
        nix::unistd::mkfifo(&lock_ref, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let url = origin.url.clone();
        let client = origin.client();
        std::thread::spawn(move || {
            let outcome = client.acquire(&url, &widget_main(), "me", std::path::Path::new("/a"));
            let _ = tx.send(matches!(outcome, Ok(Acquire::Acquired(_))));
        });
        let answered = rx.recv_timeout(std::time::Duration::from_secs(60));
        assert!(
            answered.is_ok(),
            "an acquire with a FIFO at {} never returned",
            lock_ref.display()
        );
    }
}
