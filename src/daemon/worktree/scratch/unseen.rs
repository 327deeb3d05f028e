//! What a step can leave in a worktree that no status shows, git's or libgit2's, and that
//! a reset would not undo, would write through, or would hang on (reviews 48, 49).
//!
//! - A `.git` below the top (a file naming another repository, or a repository made with
//!   `git init` in a tracked directory): git and libgit2 skip every path named `.git`, so
//!   it is never listed, and the next step's git commands in that directory would run
//!   against it, with its config and hooks.
//! - A tracked path made a hard link to a file elsewhere: the reset's checkout writes a
//!   file it changes in place (`open` with `O_TRUNC`), through the link, and the file
//!   outside the worktree would take the head's bytes.
//! - A FIFO, socket or device: no status lists one, and libgit2 opens a FIFO in a file's
//!   place (a tracked path, a `.gitignore`) with a blocking `open()`, for good.
//! - A permission a checkout would not give: git tracks no permission but the executable
//!   bit, so the status is clean, and the next step would meet modes a fresh worktree does
//!   not have (a file it cannot write, a directory closed to its group).
//!
//! Any of them keeps the worktree from reuse, as does a tree deeper than
//! [`MAX_WALK_DEPTH`] or larger than [`MAX_WALKED_ENTRIES`]. The walk starts at the
//! worktree's pinned descriptor and opens each directory relative to its parent's, never
//! following a symlink (a symlink itself is what git tracks, and the status judges it), so
//! nothing it looks at is reached by a name resolved again. It holds one descriptor (and
//! one listing's buffer) per level it is in: never one per directory it has yet to visit,
//! nor a directory's names all at once.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsRawFd as _, BorrowedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::dir::{Dir, OwningIter, Type};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};

/// The most entries one walk looks at; past it the worktree is not reused (a fresh one is
/// added instead).
pub const MAX_WALKED_ENTRIES: usize = 4_000_000;

/// The deepest directory one walk enters, below the top; a deeper one keeps the worktree
/// from reuse. It bounds the walk's descriptors and the length of the paths it builds.
pub const MAX_WALK_DEPTH: usize = 256;

/// Why the walk keeps a worktree from reuse.
#[derive(Debug, thiserror::Error)]
pub enum Unseen {
    #[error("a step left a `.git` at {0} (git skips that name, so no status lists it)")]
    NestedGit(PathBuf),
    #[error("a step made {0} a hard link to a file elsewhere (a reset would write through it)")]
    HardLink(PathBuf),
    #[error(
        "a step left {0}, neither a file, a directory nor a symlink (no status lists it, and libgit2 would block opening a FIFO)"
    )]
    Special(PathBuf),
    #[error("a step set the mode of {0} to {1:o}, which a checkout does not give")]
    Mode(PathBuf, u32),
    #[error("the daemon's umask could not be read (/proc/self/status), so no mode can be judged")]
    NoUmask,
    #[error("it holds more than {MAX_WALKED_ENTRIES} entries")]
    TooMany,
    #[error("it holds a directory more than {MAX_WALK_DEPTH} levels deep")]
    TooDeep,
    #[error("{0} could not be read: {1}")]
    Unreadable(PathBuf, nix::Error),
}

/// A directory the walk is in: its path below the top, and its listing, read as the walk
/// goes (a directory's names are never all held at once).
struct Level {
    at: PathBuf,
    entries: OwningIter,
}

impl Level {
    /// The directory's descriptor, for the `*at` calls on its entries.
    fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is the listing's own, open for as long as `self` is.
        unsafe { BorrowedFd::borrow_raw(self.entries.as_raw_fd()) }
    }
}

/// `Err` when the worktree whose top is `top` holds any of what the [module](self) names.
pub fn look(top: BorrowedFd<'_>) -> Result<(), Unseen> {
    let modes = Modes::now()?;
    let mut budget = MAX_WALKED_ENTRIES;
    let mut levels = vec![enter(top, c".", PathBuf::new(), &modes)?];
    loop {
        let depth = levels.len();
        let Some(level) = levels.last_mut() else {
            break;
        };
        let (name, kind) = match level.entries.next() {
            None => {
                levels.pop();
                continue;
            }
            Some(Err(e)) => return Err(Unseen::Unreadable(level.at.clone(), e)),
            Some(Ok(entry)) => (entry.file_name().to_owned(), entry.file_type()),
        };
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        budget = budget.checked_sub(1).ok_or(Unseen::TooMany)?;
        let path = level.at.join(OsStr::from_bytes(name.to_bytes()));
        if name.as_bytes() == b".git" {
            if level.at.as_os_str().is_empty() {
                continue; // The worktree's own: the file naming its admin dir.
            }
            return Err(Unseen::NestedGit(path));
        }
        let kind = match kind {
            Some(kind) => kind,
            None => kind_of(&stat_of(level.fd(), &name, &path)?),
        };
        match kind {
            Type::Directory if depth > MAX_WALK_DEPTH => return Err(Unseen::TooDeep),
            Type::Directory => {
                let entered = enter(level.fd(), &name, path, &modes)?;
                levels.push(entered);
            }
            Type::File => {
                let stat = stat_of(level.fd(), &name, &path)?;
                if stat.st_nlink > 1 {
                    return Err(Unseen::HardLink(path));
                }
                modes.judge_file(&stat, path)?;
            }
            Type::Symlink => {}
            _ => return Err(Unseen::Special(path)),
        }
    }
    Ok(())
}

/// Opens `name` in `parent` as a directory and judges its mode.
fn enter(parent: BorrowedFd<'_>, name: &CStr, at: PathBuf, modes: &Modes) -> Result<Level, Unseen> {
    let flags = OFlag::O_RDONLY
        | OFlag::O_DIRECTORY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_CLOEXEC;
    let unreadable = |e| Unseen::Unreadable(at.clone(), e);
    let dir = Dir::openat(parent, name, flags, Mode::empty()).map_err(unreadable)?;
    modes.judge_dir(&fstat(&dir).map_err(unreadable)?, &at)?;
    Ok(Level {
        at,
        entries: dir.into_iter(),
    })
}

fn stat_of(dir: BorrowedFd<'_>, name: &CStr, path: &Path) -> Result<FileStat, Unseen> {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| Unseen::Unreadable(path.to_owned(), e))
}

/// The type of an entry whose type the listing did not give (`DT_UNKNOWN`).
fn kind_of(stat: &FileStat) -> Type {
    match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFDIR => Type::Directory,
        SFlag::S_IFREG => Type::File,
        SFlag::S_IFLNK => Type::Symlink,
        _ => Type::Fifo,
    }
}

/// The permission bits a checkout by libgit2 (0644, 0755) or by git (0666, 0777) gives
/// under the daemon's umask; the worktree was made under the same one.
struct Modes {
    files: [u32; 4],
    dirs: [u32; 2],
}

impl Modes {
    fn now() -> Result<Modes, Unseen> {
        let umask = umask().ok_or(Unseen::NoUmask)?;
        let under = |mode: u32| mode & !umask;
        Ok(Modes {
            files: [0o644, 0o755, 0o666, 0o777].map(under),
            dirs: [0o755, 0o777].map(under),
        })
    }

    fn judge_file(&self, stat: &FileStat, path: PathBuf) -> Result<(), Unseen> {
        let mode = stat.st_mode & 0o777;
        match self.files.contains(&mode) {
            true => Ok(()),
            false => Err(Unseen::Mode(path, mode)),
        }
    }

    fn judge_dir(&self, stat: &FileStat, path: &Path) -> Result<(), Unseen> {
        let mode = stat.st_mode & 0o777;
        match self.dirs.contains(&mode) {
            true => Ok(()),
            false => Err(Unseen::Mode(path.to_owned(), mode)),
        }
    }
}

/// The process's umask, from `/proc/self/status` (setting it to read it back would race
/// every other thread's file creation); read once.
fn umask() -> Option<u32> {
    static UMASK: OnceLock<Option<u32>> = OnceLock::new();
    *UMASK.get_or_init(|| {
        let status =
            crate::hostile_file::read_regular_string(Path::new("/proc/self/status"), 64 * 1024)
                .ok()?;
        let value = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(value.trim(), 8).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(top: &std::path::Path) -> Result<(), Unseen> {
        let dir = std::fs::File::open(top).unwrap();
        look(std::os::fd::AsFd::as_fd(&dir))
    }

    #[test]
    fn a_tree_deeper_than_the_bound_is_refused_without_walking_it_all() {
        use std::os::unix::fs::PermissionsExt as _;
        let top = tempfile::tempdir().unwrap();
        let checked_out = std::fs::Permissions::from_mode(0o777 & !umask().unwrap());
        std::fs::set_permissions(top.path(), checked_out).unwrap();
        let mut at = top.path().to_owned();
        for _ in 0..=MAX_WALK_DEPTH + 1 {
            at.push("d");
        }
        std::fs::create_dir_all(&at).unwrap();
        assert!(matches!(walk(top.path()), Err(Unseen::TooDeep)));
        let mut at = top.path().join("e");
        for _ in 0..MAX_WALK_DEPTH - 1 {
            at.push("e");
        }
        std::fs::create_dir_all(&at).unwrap();
        std::fs::remove_dir_all(top.path().join("d")).unwrap();
        walk(top.path()).expect("a tree as deep as the bound is walked");
    }
}
