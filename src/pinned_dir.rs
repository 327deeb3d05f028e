//! A directory held open from the moment a gate checked it.
//!
//! A path is only a name: a producer can swap the checkout it names for a symlink to
//! another repository between the gate and the landing. So the gate opens each directory
//! it passes once (`O_DIRECTORY|O_NOFOLLOW`), keeps the descriptor and the directory's
//! (device, inode), starts the landing there (`fchdir` in the child), and every later use
//! by name re-checks that the name still leads to that same directory.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::{Mode, fstat};

/// Why a directory could not be pinned, or no longer is the one pinned; each says so in
/// a sentence fit for a `lastError`.
#[derive(Debug, thiserror::Error)]
pub enum PinnedDirError {
    #[error("cannot open {} as a directory: {source}", .path.display())]
    Open { path: PathBuf, source: nix::Error },
    #[error("cannot stat {}: {source}", .path.display())]
    Stat { path: PathBuf, source: nix::Error },
    #[error("cannot tell where {} leads: {source}", .path.display())]
    Unresolved {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} changed while it was being checked (it now leads to {})", .path.display(), .now.display())]
    Moved { path: PathBuf, now: PathBuf },
    #[error("{} is no longer the directory the gate checked ({change})", .path.display())]
    Changed { path: PathBuf, change: Change },
}

/// How a pinned directory's name stopped leading to it.
#[derive(Debug, thiserror::Error)]
pub enum Change {
    #[error("it is now a symlink")]
    Symlink,
    #[error("it was replaced")]
    Replaced,
    #[error("it cannot be read: {0}")]
    Unreadable(std::io::Error),
}

/// An open directory and the realpath it was opened by.
pub struct PinnedDir {
    path: PathBuf,
    fd: OwnedFd,
    dev: u64,
    ino: u64,
}

impl PinnedDir {
    /// Opens `real` (a realpath) without following a symlink in its last component, and
    /// checks that the directory opened is the one that path names now (an earlier
    /// component swapped between resolving and opening would lead elsewhere).
    pub fn open(real: &Path) -> Result<PinnedDir, PinnedDirError> {
        let path = || real.to_owned();
        let fd = open(
            real,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| PinnedDirError::Open {
            path: path(),
            source,
        })?;
        let stat = fstat(&fd).map_err(|source| PinnedDirError::Stat {
            path: path(),
            source,
        })?;
        let pinned = PinnedDir {
            path: real.to_owned(),
            fd,
            dev: stat.st_dev,
            ino: stat.st_ino,
        };
        let opened = std::fs::read_link(format!("/proc/self/fd/{}", pinned.fd.as_raw_fd()))
            .map_err(|source| PinnedDirError::Unresolved {
                path: path(),
                source,
            })?;
        if opened != real {
            return Err(PinnedDirError::Moved {
                path: path(),
                now: opened,
            });
        }
        Ok(pinned)
    }

    /// The realpath the gate checked.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open directory, for `fchdir`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `Ok` if the path still names the directory the gate checked; otherwise a sentence
    /// saying what changed, fit for a `lastError`.
    pub fn verify(&self) -> Result<(), PinnedDirError> {
        let change = match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.file_type().is_symlink() => Change::Symlink,
            Ok(meta) if (meta.dev(), meta.ino()) == (self.dev, self.ino) => return Ok(()),
            Ok(_) => Change::Replaced,
            Err(e) => Change::Unreadable(e),
        };
        Err(PinnedDirError::Changed {
            path: self.path.clone(),
            change,
        })
    }
}

impl PartialEq for PinnedDir {
    fn eq(&self, other: &PinnedDir) -> bool {
        (self.dev, self.ino, &self.path) == (other.dev, other.ino, &other.path)
    }
}

impl Eq for PinnedDir {}

impl fmt::Debug for PinnedDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PinnedDir({}, dev {} inode {})",
            self.path.display(),
            self.dev,
            self.ino
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swapped_directory_is_noticed_and_the_descriptor_keeps_the_original() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().canonicalize().unwrap();
        let checked = root.join("repo");
        let other = root.join("other");
        std::fs::create_dir(&checked).unwrap();
        std::fs::create_dir(&other).unwrap();
        std::fs::write(checked.join("mine"), "").unwrap();
        let pinned = PinnedDir::open(&checked).unwrap();
        assert!(pinned.verify().is_ok());

        std::fs::rename(&checked, root.join("moved")).unwrap();
        std::os::unix::fs::symlink(&other, &checked).unwrap();
        let why = pinned.verify().unwrap_err().to_string();
        assert!(why.contains("now a symlink"), "{why}");
        // The descriptor still leads to the directory that was checked.
        let through_fd = PathBuf::from(format!("/proc/self/fd/{}", pinned.fd.as_raw_fd()));
        assert!(through_fd.join("mine").exists());

        assert!(PinnedDir::open(&checked).is_err(), "a symlink was opened");
    }
}
