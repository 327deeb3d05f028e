//! The nodes an earlier root berth made as root in another user's origin, given to that
//! user before a write.
//!
//! A root berth that wrote a lock ref as root (before it ran its writer as the origin's
//! owner, [`super`]) left `refs/gstack/release-locks/<identity>/…` directories and ref
//! files owned by root, mode 0755: the writer, now that owner, can make no `.lock` file
//! there, and the lane would fail until an operator chowned them. So right before a write
//! whose writer runs as the owner, berth walks the ref's path from the git dir (`refs` and
//! `refs/gstack` followed, the operator's layout; from `release-locks` down never through
//! a symlink), and gives each directory, and the ref file itself, that belongs to root to
//! the owner, through the descriptor the walk opened (never by path). Only berth's own
//! namespace, only root's nodes: anything else is left as it is, and the write goes on to
//! fail or succeed as it would have.

use std::ffi::CString;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::Path;

use nix::libc;

use super::Owner;
use crate::lane_lock::LOCK_REF_PREFIX;

/// Opened only as a place (nothing read, no device or FIFO opened); never inherited by
/// `git`.
const FLAGS: libc::c_int = libc::O_PATH | libc::O_CLOEXEC;

impl Owner {
    /// Gives the owner the root-owned directories of `ref_name` at and below
    /// [`LOCK_REF_PREFIX`], and the ref file, walked from `git_dir` (opened at
    /// `git_dir_path`); logs each one given. Stops quietly where the path is missing or not
    /// what git makes there: the write reports that.
    pub(in crate::lane_lock) fn take_over(
        &self,
        git_dir: &OwnedFd,
        git_dir_path: &Path,
        ref_name: &str,
    ) {
        let Some(below) = ref_name.strip_prefix(LOCK_REF_PREFIX) else {
            return;
        };
        let (dirs, leaf) = below.rsplit_once('/').unwrap_or(("", below));
        if below.split('/').any(|part| matches!(part, "" | "." | "..")) {
            return;
        }
        let locks = LOCK_REF_PREFIX.trim_end_matches('/');
        let (above, own) = locks.rsplit_once('/').unwrap_or(("", locks));
        let mut dir = match open(git_dir, above, libc::O_DIRECTORY) {
            Some(dir) => dir,
            None => return,
        };
        let mut walked = git_dir_path.join(above);
        let parts = std::iter::once(own).chain(dirs.split('/').filter(|part| !part.is_empty()));
        for part in parts {
            let Some(next) = open(&dir, part, libc::O_DIRECTORY | libc::O_NOFOLLOW) else {
                return;
            };
            walked.push(part);
            self.give(&next, &walked, libc::S_IFDIR);
            dir = next;
        }
        if let Some(file) = open(&dir, leaf, libc::O_NOFOLLOW) {
            self.give(&file, &walked.join(leaf), libc::S_IFREG);
        }
    }

    /// Gives `node` (at `path`, for the log) to the owner when it is of `kind` and root's.
    fn give(&self, node: &OwnedFd, path: &Path, kind: libc::mode_t) {
        let Ok(stat) = nix::sys::stat::fstat(node) else {
            return;
        };
        if stat.st_mode & libc::S_IFMT != kind || stat.st_uid != 0 {
            return;
        }
        // SAFETY: a descriptor, an empty NUL-terminated name (`AT_EMPTY_PATH`: the node the
        // descriptor names, which `O_PATH` alone cannot `fchown`) and ids.
        let given = unsafe {
            libc::fchownat(
                node.as_raw_fd(),
                c"".as_ptr(),
                self.uid,
                self.gid,
                libc::AT_EMPTY_PATH,
            )
        };
        match given {
            0 => tracing::info!(
                path = %path.display(),
                uid = self.uid,
                gid = self.gid,
                "gave an earlier root berth's lock-ref node to the origin's owner, whose writer writes it now"
            ),
            _ => tracing::warn!(
                path = %path.display(),
                error = %std::io::Error::last_os_error(),
                "cannot give an earlier root berth's lock-ref node to the origin's owner: its writer cannot write there"
            ),
        }
    }
}

/// `path` (plain names joined by `/`) in `dir`; each name but the last followed as the
/// operator's layout, the last opened with `flags`.
fn open(dir: &OwnedFd, path: &str, flags: libc::c_int) -> Option<OwnedFd> {
    let mut at = dir.try_clone().ok()?;
    let mut names = path.split('/').peekable();
    while let Some(name) = names.next() {
        let last = names.peek().is_none();
        let name = CString::new(name).ok()?;
        let flags = if last {
            FLAGS | flags
        } else {
            FLAGS | libc::O_DIRECTORY
        };
        // SAFETY: a directory descriptor, a NUL-terminated name and open flags.
        let fd = unsafe { libc::openat(at.as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the kernel just opened `fd`, and nothing else owns it.
        at = unsafe { OwnedFd::from_raw_fd(fd) };
    }
    Some(at)
}
