//! Reading the files a state file names (`planFile`, `stdoutLog`) for the detectors.
//!
//! Whoever writes a state file picks these paths, and berth copies a log's tail into the
//! halt event it files (and matches learned patterns over it): read as berth (root, as a
//! system service), any file on the machine would be handed to whoever writes the
//! build-state dir. So an attachment a state file names is read only when
//!
//! - it is a regular file, opened without following a symlink and without blocking, and
//!   read no further than the cap;
//! - it is owned by the user who owns the state file naming it (that user could read it
//!   anyway);
//! - and, when that user is root (who owns every system file, so ownership proves
//!   nothing), it lies beneath the state file's directory, where gstack keeps a run's
//!   logs (`<stateDir>/<slug>/`), as the kernel resolved the open file.
//!
//! Anything else is withheld: the detectors run without it and the halt event says why
//! (`snapshot.stdoutWithheld`). A path given on berth's own command line is the
//! operator's choice and only held to the first rule.

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why an attachment a state file names was not read; each sentence names the file.
#[derive(Debug, thiserror::Error)]
pub enum Withheld {
    #[error(
        "{} not attached: owned by uid {owner}, not by uid {state_owner}, who owns the state file naming it",
        .path.display()
    )]
    NotTheStateOwners {
        path: PathBuf,
        owner: u32,
        state_owner: u32,
    },
    #[error(
        "{} not attached: the state file naming it is root's, and only a file beneath its directory {} is read for root",
        .path.display(), .dir.display()
    )]
    OutsideStateDir { path: PathBuf, dir: PathBuf },
}

/// Why an attachment was not read: the system's error (absent, not a regular file, `EIO`,
/// the naming state file gone), or the rule above.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Withheld(#[from] Withheld),
}

/// Which end of a file to keep.
#[derive(Clone, Copy, Debug)]
pub enum Keep {
    Head,
    Tail,
}

/// At most `max` bytes of `path` from the end `keep` names. `named_by` is the state file
/// that named the path, `None` for a path the operator gave.
pub fn read(
    path: &Path,
    named_by: Option<&Path>,
    keep: Keep,
    max: u64,
) -> Result<Vec<u8>, AttachError> {
    let (mut file, meta) = open_regular(path)?;
    if let Some(state_file) = named_by {
        check_owner(path, &file, &meta, state_file)?;
    }
    if let Keep::Tail = keep {
        file.seek(SeekFrom::Start(meta.len().saturating_sub(max)))?;
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok((file, meta))
}

fn check_owner(
    path: &Path,
    file: &File,
    meta: &Metadata,
    state_file: &Path,
) -> Result<(), AttachError> {
    // A state file that cannot be looked at now is the system's failure: tried again.
    let state_owner = std::fs::symlink_metadata(state_file)?.uid();
    if meta.uid() != state_owner {
        return Err(Withheld::NotTheStateOwners {
            path: path.to_owned(),
            owner: meta.uid(),
            state_owner,
        }
        .into());
    }
    if state_owner != 0 {
        return Ok(());
    }
    let dir = state_file
        .parent()
        .and_then(|dir| dir.canonicalize().ok())
        .unwrap_or_default();
    // Where the kernel says the open file is, not where the name led when it was looked up.
    let opened = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()));
    match opened {
        Ok(opened) if dir.parent().is_some() && opened.starts_with(&dir) => Ok(()),
        _ => Err(Withheld::OutsideStateDir {
            path: path.to_owned(),
            dir,
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_state_file_attaches_only_what_lies_beneath_its_directory() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let state_dir = root.path().join("build-state");
        std::fs::create_dir_all(state_dir.join("run")).unwrap();
        let state = state_dir.join("run.json");
        std::fs::write(&state, "{}").unwrap();
        let inside = state_dir.join("run/out.log");
        let outside = root.path().join("out.log");
        std::fs::write(&inside, "in").unwrap();
        std::fs::write(&outside, "out").unwrap();
        let read = |path: &Path| read(path, Some(&state), Keep::Tail, 10);
        assert_eq!(read(&inside).unwrap(), b"in");
        let why = read(&outside).unwrap_err().to_string();
        assert!(
            why.contains("not attached") && why.contains("beneath"),
            "{why}"
        );
        // The operator's own path is read wherever it is.
        assert_eq!(super::read(&outside, None, Keep::Head, 10).unwrap(), b"out");
        std::os::unix::fs::symlink(&outside, state_dir.join("link.log")).unwrap();
        assert!(read(&state_dir.join("link.log")).is_err());
    }
}
