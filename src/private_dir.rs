//! A directory of berth's own inside a directory others write (the faults dir, shared with
//! gstack and its orchestrators), held by a descriptor.
//!
//! Whoever can write the parent can swap the subdirectory's name for a symlink at any
//! moment, so a check of the name followed by writes by the name guards nothing. The
//! directory is opened once (`O_DIRECTORY|O_NOFOLLOW`), checked on that descriptor (a
//! directory owned by berth's user or by the parent's owner), and every later open, write,
//! rename, removal and listing is relative to the descriptor (`openat`, `renameat`,
//! `unlinkat`): a name swapped afterwards is never followed, and a swap before the open is
//! refused.
//!
//! The parent's owner is trusted as far as berth's own user: it can put any directory of its
//! own at the name at any moment, so refusing one it made proves nothing and only stops a
//! root daemon (or `sudo berth faults ack`) working beside gstack's user. A directory or file
//! root makes in another user's parent, and a root-owned directory root finds there (another
//! root process made it and had not yet given it away, or an older berth did), is given to
//! that user, so that the parent's owner (gstack, the daemon's service user) can go on
//! using it.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::atomic_file;
use crate::file_owner::{Kept, Owner};
use crate::hostile_file::{self, ReadError};

/// Why a directory was not taken as berth's own; each names the directory and the reason.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    #[error("cannot open {}: {source}", .path.display())]
    Parent { path: PathBuf, source: io::Error },
    #[error("cannot create {}: {source}", .path.display())]
    Create { path: PathBuf, source: Errno },
    #[error(
        "{} is a symlink; berth keeps its files only in a real directory (remove the link)",
        .path.display()
    )]
    Symlink { path: PathBuf },
    #[error("{} is not a directory", .path.display())]
    NotDir { path: PathBuf },
    #[error("cannot open {} as a directory: {source}", .path.display())]
    Open { path: PathBuf, source: Errno },
    #[error(
        "{} belongs to uid {owner}, neither berth's user (uid {euid}) nor the owner of the directory above it (uid {parent_owner}); berth writes only in directories of theirs",
        .path.display()
    )]
    NotOwned {
        path: PathBuf,
        owner: u32,
        euid: u32,
        parent_owner: u32,
    },
    #[error("cannot make {} private (0700): {source}", .path.display())]
    Tighten { path: PathBuf, source: Errno },
    #[error("cannot give {} to uid {owner}, the owner of the directory above it: {source}", .path.display())]
    GiveAway {
        path: PathBuf,
        owner: u32,
        source: Errno,
    },
}

/// An open directory of berth's own and the path it was opened by (for messages only).
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
    fd: OwnedFd,
    /// The directory's owner when it is not berth's user: every file berth writes there is
    /// given to it.
    give_to: Option<Owner>,
}

/// What a name in a [`PrivateDir`] is, as `fstatat` without following it says.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub is_file: bool,
}

impl PrivateDir {
    /// `name` in `parent`, created 0700 if missing (`parent` and its parents too), opened
    /// without following a symlink, and checked on the descriptor: owned by berth's
    /// effective user or by `parent`'s owner (an existing one open to group or others is
    /// tightened to 0700). A root-owned one root opens in another user's `parent` is given
    /// to that user.
    pub fn ensure(parent: &Path, name: &str) -> Result<PrivateDir, PrivateDirError> {
        crate::atomic_file::create_dirs(parent).map_err(|source| PrivateDirError::Parent {
            path: parent.to_owned(),
            source,
        })?;
        let parent_fd = open_parent(parent)?;
        let path = parent.join(name);
        match mkdirat(&parent_fd, name, Mode::S_IRWXU) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(source) => return Err(PrivateDirError::Create { path, source }),
        }
        Self::checked(&parent_fd, path, name)
    }

    /// `name` in `parent` opened and checked as [`PrivateDir::ensure`] does, but nothing
    /// created: `None` when it (or `parent`) is not there.
    pub fn open_existing(parent: &Path, name: &str) -> Result<Option<PrivateDir>, PrivateDirError> {
        let Some(parent_fd) = open_parent_if_there(parent)? else {
            return Ok(None);
        };
        match Self::checked(&parent_fd, parent.join(name), name) {
            Err(PrivateDirError::Open {
                source: Errno::ENOENT,
                ..
            }) => Ok(None),
            other => other.map(Some),
        }
    }

    /// `name` in `parent` opened to be read (listed, its files read), never through a
    /// symlink; `None` when it is not there. Nothing is created or tightened, and its owner
    /// is not checked: a listing writes nothing, and may be run by another user than the
    /// daemon that writes the dir.
    pub fn open_to_read(parent: &Path, name: &str) -> Result<Option<PrivateDir>, PrivateDirError> {
        let Some(parent_fd) = open_parent_if_there(parent)? else {
            return Ok(None);
        };
        let path = parent.join(name);
        match open_nofollow(&parent_fd, &path, name) {
            Err(PrivateDirError::Open {
                source: Errno::ENOENT,
                ..
            }) => Ok(None),
            other => Ok(Some(PrivateDir {
                path,
                fd: other?,
                give_to: None,
            })),
        }
    }

    /// `name` in the directory `parent_fd` opened and checked ([`make_private`]).
    fn checked(
        parent_fd: &OwnedFd,
        path: PathBuf,
        name: &str,
    ) -> Result<PrivateDir, PrivateDirError> {
        let fd = open_nofollow(parent_fd, &path, name)?;
        let parent = fstat(parent_fd).map_err(|source| PrivateDirError::Open {
            path: path.clone(),
            source,
        })?;
        let give_to = make_private(&fd, &path, Owner::of(&parent))?;
        Ok(PrivateDir { path, fd, give_to })
    }
}

/// `name` in `parent` as a directory, never through a symlink.
fn open_nofollow(parent: &OwnedFd, path: &Path, name: &str) -> Result<OwnedFd, PrivateDirError> {
    let path = || path.to_owned();
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(parent, name, flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ELOOP) => Err(PrivateDirError::Symlink { path: path() }),
        // O_DIRECTORY on a symlink may say ENOTDIR: tell the two apart for the message.
        Err(Errno::ENOTDIR) => {
            let symlink = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| file_kind(&st) == SFlag::S_IFLNK);
            Err(if symlink {
                PrivateDirError::Symlink { path: path() }
            } else {
                PrivateDirError::NotDir { path: path() }
            })
        }
        Err(source) => Err(PrivateDirError::Open {
            path: path(),
            source,
        }),
    }
}

/// Checks on the descriptor that the directory is berth's user's or `parent`'s owner's
/// (a root-owned one root opens in another user's parent is given to that user first: the
/// parent's owner could rename it away and put its own there anyway), and closes it to
/// group and others (0700) if it was open to them. Returns the owner files written there
/// are given to, when it is not berth's user.
fn make_private(
    fd: &OwnedFd,
    path: &Path,
    parent: Owner,
) -> Result<Option<Owner>, PrivateDirError> {
    let path = || path.to_owned();
    let stat_of = |fd: &OwnedFd| {
        fstat(fd).map_err(|source| PrivateDirError::Open {
            path: path(),
            source,
        })
    };
    let mut stat = stat_of(fd)?;
    let euid = nix::unistd::geteuid().as_raw();
    if euid == 0 && stat.st_uid == euid && parent.uid != euid {
        parent
            .give(fd)
            .map_err(|source| PrivateDirError::GiveAway {
                path: path(),
                owner: parent.uid,
                source,
            })?;
        stat = stat_of(fd)?;
    }
    if stat.st_uid != euid && stat.st_uid != parent.uid {
        return Err(PrivateDirError::NotOwned {
            path: path(),
            owner: stat.st_uid,
            euid,
            parent_owner: parent.uid,
        });
    }
    if stat.st_mode & 0o077 != 0 {
        fchmod(fd, Mode::S_IRWXU).map_err(|source| PrivateDirError::Tighten {
            path: path(),
            source,
        })?;
    }
    Ok((stat.st_uid != euid).then(|| Owner::of(&stat)))
}

impl PrivateDir {
    /// The path the directory was opened by: for messages, never to be opened again.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` under [`PrivateDir::path`], for messages.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// Opens `name` for reading as [`hostile_file::open_regular`] does, relative to the
    /// descriptor.
    pub fn open_regular(&self, name: &str, cap: u64) -> Result<(File, Metadata), ReadError> {
        hostile_file::open_regular_at(self.fd.as_fd(), name, cap)
    }

    /// What is at `name` (not following a symlink); `None` if nothing is.
    pub fn entry(&self, name: &str) -> io::Result<Option<Entry>> {
        Ok(self.stat_nofollow(name)?.map(|st| Entry {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            is_file: file_kind(&st) == SFlag::S_IFREG,
        }))
    }

    /// The `fstatat` of `name` without following a symlink or opening it; `None` if
    /// nothing is there.
    pub fn stat_nofollow(&self, name: &str) -> io::Result<Option<FileStat>> {
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The first `max` names in the directory but `.` and `..`, as the kernel lists them,
    /// and whether any was left unread: whoever writes the directory can fill it without
    /// bound, and a listing that must end holds at most `max`.
    pub fn names_up_to(&self, max: usize) -> io::Result<(Vec<String>, bool)> {
        self.names_matching_up_to(max, |_| true)
    }

    /// Replaces (or creates) `name` with `bytes` and `mode` as
    /// [`crate::atomic_file::write_atomic`] does: a temp file beside it, fsynced, renamed
    /// over it, the directory fsynced.
    pub fn write_atomic(&self, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
        let kept = Kept {
            mode,
            owner: self.give_to,
        };
        atomic_file::write_at(
            self.fd.as_fd(),
            &self.path,
            OsStr::new(name),
            bytes,
            kept,
            atomic_file::Place::Over,
        )
    }

    /// Removes `name` (a file); nothing there is no error.
    pub fn remove_if_there(&self, name: &str) -> io::Result<()> {
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Renames `name` to `to_name` in `to` (which may be this directory).
    pub fn rename_to(&self, name: &str, to: &PrivateDir, to_name: &str) -> io::Result<()> {
        renameat(&self.fd, name, &to.fd, to_name)?;
        Ok(())
    }

    /// Opens (creating if needed) the lock file `name` as
    /// [`crate::atomic_file::open_lock_file`] does, relative to the descriptor. One this
    /// call creates is given to the directory's owner like every file written here; one
    /// found there is never chowned (it may be a hard link to a file that is not berth's).
    pub fn open_lock_file(&self, name: &str) -> io::Result<File> {
        let flags = OFlag::O_RDWR | OFlag::O_NONBLOCK;
        let mode = Mode::S_IRUSR | Mode::S_IWUSR;
        let file = atomic_file::open_or_create_at(self.fd.as_fd(), OsStr::new(name), flags, mode)?;
        atomic_file::checked_lock_file(file, &self.join(name))
    }
}

/// [`open_parent`], `None` when `parent` is not there.
fn open_parent_if_there(parent: &Path) -> Result<Option<OwnedFd>, PrivateDirError> {
    match open_parent(parent) {
        Err(PrivateDirError::Parent { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        other => other.map(Some),
    }
}

fn open_parent(parent: &Path) -> Result<OwnedFd, PrivateDirError> {
    // The faults dir itself is the operator's configured path: it is followed as given.
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    nix::fcntl::open(parent, flags, Mode::empty()).map_err(|e| PrivateDirError::Parent {
        path: parent.to_owned(),
        source: e.into(),
    })
}

fn file_kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Names read from one subdir of the faults dir by a listing (`faults list`, the metrics,
/// the cap's census, the sweep) or kept by a look for some names (a run's registries, a
/// fault's archives): whoever writes the faults dir can fill a subdir without bound. Past
/// it a listing says the rest were not read, and the census takes the dir as full.
pub const MAX_NAMES_PER_LISTING: usize = 10_000;

impl PrivateDir {
    /// The first `max` names (read lossily as UTF-8) that `keep` keeps, and whether a kept
    /// one was left unread: the others are dropped while reading, so a look for a few names
    /// holds only those however many names whoever writes the directory planted.
    pub fn names_matching_up_to(
        &self,
        max: usize,
        keep: impl Fn(&str) -> bool,
    ) -> io::Result<(Vec<String>, bool)> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = nix::dir::Dir::openat(&self.fd, ".", flags, Mode::empty())?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsStr::from_bytes(name).to_string_lossy();
            if !keep(&name) {
                continue;
            }
            if names.len() == max {
                return Ok((names, true));
            }
            names.push(name.into_owned());
        }
        Ok((names, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_symlink_or_a_file_in_place_of_the_dir_is_refused_and_nothing_is_written_there() {
        let parent = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), parent.path().join("sub")).unwrap();
        let err = PrivateDir::ensure(parent.path(), "sub").unwrap_err();
        assert!(matches!(err, PrivateDirError::Symlink { .. }), "{err}");
        assert!(err.to_string().contains("is a symlink"), "{err}");
        fs::write(parent.path().join("file"), "x").unwrap();
        let err = PrivateDir::ensure(parent.path(), "file").unwrap_err();
        assert!(matches!(err, PrivateDirError::NotDir { .. }), "{err}");
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        assert!(
            PrivateDir::open_to_read(parent.path(), "none")
                .unwrap()
                .is_none()
        );
        let gone = parent.path().join("gone");
        assert!(PrivateDir::open_to_read(&gone, "none").unwrap().is_none());
    }

    /// Another user's directory at the name (as root: anyone's) is not berth's to write in,
    /// though it may still be read.
    #[test]
    fn another_users_dir_is_refused_for_writing() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: only root can give a directory to another user");
            return;
        }
        let parent = tempfile::tempdir().unwrap();
        let sub = parent.path().join("sub");
        fs::create_dir(&sub).unwrap();
        std::os::unix::fs::chown(&sub, Some(65534), Some(65534)).unwrap();
        let err = PrivateDir::ensure(parent.path(), "sub").unwrap_err();
        assert!(
            matches!(err, PrivateDirError::NotOwned { owner: 65534, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("belongs to uid 65534"), "{err}");
        assert!(
            PrivateDir::open_to_read(parent.path(), "sub")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn writes_renames_and_removals_stay_in_the_dir_opened_after_its_name_is_swapped() {
        let parent = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        fs::create_dir(parent.path().join("sub")).unwrap();
        fs::set_permissions(parent.path().join("sub"), fs::Permissions::from_mode(0o755)).unwrap();
        let dir = PrivateDir::ensure(parent.path(), "sub").unwrap();
        let mode = fs::metadata(parent.path().join("sub"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        fs::rename(parent.path().join("sub"), parent.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), parent.path().join("sub")).unwrap();
        dir.write_atomic("a.json", b"one", 0o600).unwrap();
        dir.write_atomic("a.json", b"two", 0o600).unwrap();
        dir.rename_to("a.json", &dir, "b.json").unwrap();
        drop(dir.open_lock_file(".r.lock").unwrap());
        dir.remove_if_there(".r.lock").unwrap();
        dir.remove_if_there(".r.lock").unwrap();
        let (mut names, _) = dir.names_up_to(usize::MAX).unwrap();
        names.sort();
        assert_eq!(names, ["b.json"]);
        assert_eq!(
            fs::read(parent.path().join("moved/b.json")).unwrap(),
            b"two"
        );
        let entry = dir.entry("b.json").unwrap().unwrap();
        assert!(entry.is_file && entry.size == 3);
        assert!(dir.entry("none").unwrap().is_none());
        let (file, _) = dir.open_regular("b.json", 8).unwrap();
        drop(file);
        assert!(dir.open_regular("b.json", 2).is_err());
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }
}
