//! What a step can leave in a worktree that no status shows, git's or libgit2's, and that
//! a reset would not undo or would write through (review 48).
//!
//! - A `.git` below the top (a file naming another repository, or a repository made with
//!   `git init` in a tracked directory): git and libgit2 skip every path named `.git`, so
//!   it is never listed, and the next step's git commands in that directory would run
//!   against it, with its config and hooks.
//! - A tracked path made a hard link to a file elsewhere: the reset's checkout writes a
//!   file it changes in place (`open` with `O_TRUNC`), through the link, and the file
//!   outside the worktree would take the head's bytes.
//!
//! - A file or directory a step took its owner's write permission from: git tracks no
//!   permission but the executable bit, so the status is clean, and the next step could not
//!   write there, where in a fresh worktree it could.
//!
//! Any of them keeps the worktree from reuse. The walk starts at the worktree's pinned
//! descriptor and opens each directory relative to its parent's, never following a
//! symlink, so nothing it looks at is reached by a name resolved again.

use std::ffi::CStr;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;

use nix::dir::{Dir, Type};
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};

/// The most entries one walk looks at; past it the worktree is not reused (a fresh one is
/// added instead).
pub const MAX_WALKED_ENTRIES: usize = 4_000_000;

/// Why the walk keeps a worktree from reuse.
#[derive(Debug, thiserror::Error)]
pub enum Unseen {
    #[error("a step left a `.git` at {0} (git skips that name, so no status lists it)")]
    NestedGit(PathBuf),
    #[error("a step made {0} a hard link to a file elsewhere (a reset would write through it)")]
    HardLink(PathBuf),
    #[error("a step took the owner's write permission from {0}")]
    ReadOnly(PathBuf),
    #[error("it holds more than {MAX_WALKED_ENTRIES} entries")]
    TooMany,
    #[error("{0} could not be read: {1}")]
    Unreadable(PathBuf, nix::Error),
}

/// `Err` when the worktree whose top is `top` holds a `.git` below its top, a regular file
/// with more than one link, or a file or directory its owner may not write.
pub fn look(top: BorrowedFd<'_>) -> Result<(), Unseen> {
    let mut budget = MAX_WALKED_ENTRIES;
    let start = openat(top, c".", dir_flags(), Mode::empty())
        .map_err(|e| Unseen::Unreadable(PathBuf::from("."), e))?;
    let mut pending: Vec<(PathBuf, OwnedFd)> = vec![(PathBuf::new(), start)];
    while let Some((at, fd)) = pending.pop() {
        let stat = nix::sys::stat::fstat(&fd).map_err(|e| Unseen::Unreadable(at.clone(), e))?;
        if !owner_writes(&stat) {
            return Err(Unseen::ReadOnly(at));
        }
        let mut dir = Dir::from_fd(fd).map_err(|e| Unseen::Unreadable(at.clone(), e))?;
        let listed = dir
            .iter()
            .map(|entry| entry.map(|e| (e.file_name().to_owned(), e.file_type())))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Unseen::Unreadable(at.clone(), e))?;
        for (name, kind) in listed {
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            budget = budget.checked_sub(1).ok_or(Unseen::TooMany)?;
            let path = at.join(OsStr::from_bytes(bytes));
            if bytes == b".git" {
                if at.as_os_str().is_empty() {
                    continue; // The worktree's own: the file naming its admin dir.
                }
                return Err(Unseen::NestedGit(path));
            }
            let unreadable = |e| Unseen::Unreadable(path.clone(), e);
            let kind = match kind {
                Some(Type::Directory) => Kind::Dir,
                Some(Type::File) => Kind::File,
                Some(_) => Kind::Other,
                None => Kind::of(&stat_of(&dir, &name).map_err(unreadable)?),
            };
            match kind {
                Kind::Dir => {
                    let fd = openat(dir.as_fd(), name.as_c_str(), dir_flags(), Mode::empty())
                        .map_err(unreadable)?;
                    pending.push((path, fd));
                }
                Kind::File => {
                    let stat = stat_of(&dir, &name).map_err(unreadable)?;
                    if stat.st_nlink > 1 {
                        return Err(Unseen::HardLink(path));
                    }
                    if !owner_writes(&stat) {
                        return Err(Unseen::ReadOnly(path));
                    }
                }
                Kind::Other => {}
            }
        }
    }
    Ok(())
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC
}

fn stat_of(dir: &Dir, name: &CStr) -> nix::Result<FileStat> {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

fn owner_writes(stat: &FileStat) -> bool {
    Mode::from_bits_truncate(stat.st_mode).contains(Mode::S_IWUSR)
}

/// What the walk tells apart.
enum Kind {
    Dir,
    File,
    Other,
}

impl Kind {
    /// For an entry whose type the listing did not give (`DT_UNKNOWN`).
    fn of(stat: &FileStat) -> Kind {
        match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFREG => Kind::File,
            _ => Kind::Other,
        }
    }
}
