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
//! namespace, only root's nodes, only nodes reached from the git dir through no symlink at
//! all (not even at `refs` or `refs/gstack`, where the writer may follow the operator's
//! layout: the owner can point a symlink there into another origin whose nodes are root's
//! too), on the git dir's device, and only a ref file with one link (a hard link could be
//! another origin's ref): anything else is left as it is, and the write goes on to fail or
//! succeed as it would have.

use std::ffi::CString;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::Path;

use nix::libc;

use super::Owner;
use crate::lane_lock::LOCK_REF_PREFIX;

/// Opened only as a place (nothing read, no device or FIFO opened), a symlink as itself;
/// never inherited by `git`.
const FLAGS: libc::c_int = libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW;

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
        if below.split('/').any(|part| matches!(part, "" | "." | "..")) {
            return;
        }
        let Ok(device) = nix::sys::stat::fstat(git_dir).map(|stat| stat.st_dev) else {
            return;
        };
        let (dirs, leaf) = below.rsplit_once('/').unwrap_or(("", below));
        let above = LOCK_REF_PREFIX.trim_end_matches('/').split('/');
        let given_from = above.clone().count() - 1;
        let parts = above.chain(dirs.split('/').filter(|part| !part.is_empty()));
        let mut dir = match git_dir.try_clone() {
            Ok(dir) => dir,
            Err(_) => return,
        };
        let mut walked = git_dir_path.to_path_buf();
        for (at, part) in parts.enumerate() {
            walked.push(part);
            let Some((next, stat)) = open(&dir, part, &walked) else {
                return;
            };
            if stat.st_mode & libc::S_IFMT != libc::S_IFDIR || stat.st_dev != device {
                return;
            }
            if at >= given_from {
                self.give(&next, &stat, &walked);
            }
            dir = next;
        }
        walked.push(leaf);
        if let Some((file, stat)) = open(&dir, leaf, &walked) {
            let regular = stat.st_mode & libc::S_IFMT == libc::S_IFREG;
            if regular && stat.st_dev == device && stat.st_nlink == 1 {
                self.give(&file, &stat, &walked);
            }
        }
    }

    /// Gives `node` (at `path`, for the log; `stat` its status) to the owner when it is
    /// root's.
    fn give(&self, node: &OwnedFd, stat: &libc::stat, path: &Path) {
        if stat.st_uid != 0 {
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

/// The node `name` in `dir` (at `path`, for the log) and its status, never following a
/// symlink: a symlink there means no handover at all, logged once for this write.
fn open(dir: &OwnedFd, name: &str, path: &Path) -> Option<(OwnedFd, libc::stat)> {
    let name = CString::new(name).ok()?;
    // SAFETY: a directory descriptor, a NUL-terminated name and open flags.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), FLAGS) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just opened `fd`, and nothing else owns it.
    let node = unsafe { OwnedFd::from_raw_fd(fd) };
    let stat = nix::sys::stat::fstat(&node).ok()?;
    if stat.st_mode & libc::S_IFMT == libc::S_IFLNK {
        tracing::info!(
            path = %path.display(),
            "gives no earlier root berth's lock-ref node to the origin's owner: a symlink on the way could lead into another origin, whose nodes are root's too"
        );
        return None;
    }
    Some((node, stat))
}
