//! berth's own directories and the files it appends to there: made 0700, never a symlink,
//! and what a root berth makes in another user's dir given to that user.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fchmod, fstat, mkdirat};

use crate::file_owner::Owner;

/// Makes `dir` and every missing dir above it (0700), as `mkdir -p` does, each one by
/// `mkdirat` in the dir above it, opened: a dir a root berth makes in another user's dir is
/// given to that user (`fchown` on its descriptor), so gstack's user can still use a
/// faults or queue dir a root daemon made before gstack did. An existing dir is left as it
/// is; the last component is followed if it is a link (the callers open it as they need).
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    if fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        // `/` or a path ending in `..`: nothing is made there but by the path itself.
        return fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    create_dirs(parent)?;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let parent = nix::fcntl::open(parent, flags, Mode::empty())?;
    match mkdirat(&parent, name, Mode::S_IRWXU) {
        Ok(()) => give_made_dir(&parent, name),
        // Made meanwhile by someone else, or not a dir: the caller's open says which.
        Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The dir berth just made at `name` in `parent`, given to `parent`'s owner when a root
/// berth made it in another user's dir; opened without following a link, and given only
/// while it is still root's (`parent`'s owner may have put one of its own there).
fn give_made_dir(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let Some(heir) = Owner::heir_in_dir(parent)? else {
        return Ok(());
    };
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let made = openat(parent, name, flags, Mode::empty())?;
    if fstat(&made)?.st_uid == nix::unistd::geteuid().as_raw() {
        heir.give(&made)?;
    }
    Ok(())
}

/// Makes a directory (and parents) that only its owner can enter: created 0700
/// ([`create_dirs`]), an existing one tightened to 0700 on its descriptor. A symlink
/// planted in its place is refused, so nothing berth writes there lands in a directory
/// someone else chose.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    create_dirs(dir)?;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let opened = match nix::fcntl::open(dir, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ELOOP) => return Err(symlink_refused(dir)),
        // O_DIRECTORY on a symlink may say ENOTDIR.
        Err(Errno::ENOTDIR)
            if fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) =>
        {
            return Err(symlink_refused(dir));
        }
        Err(e) => return Err(e.into()),
    };
    if fstat(&opened)?.st_mode & 0o077 != 0 {
        fchmod(&opened, Mode::S_IRWXU)?;
    }
    Ok(())
}

fn symlink_refused(dir: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is a symlink; berth keeps its files only in a real directory (remove the link)",
            dir.display()
        ),
    )
}

/// Opens a file of berth's own for appending (a log, the decision log): its directory
/// private, the file created 0600 (an existing one tightened; a new one a root berth makes
/// in another user's dir given to that user), never through a symlink (`O_NOFOLLOW`) and
/// never anything but a regular file (a FIFO does not block the open).
pub fn open_append_private(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_private_dir(dir)?;
    }
    let flags = OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_NONBLOCK;
    let mode = Mode::S_IRUSR | Mode::S_IWUSR;
    let file = super::open_or_create(path, flags, mode).map_err(|e| match e.raw_os_error() {
        Some(nix::libc::ELOOP) => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a symlink; berth does not write through links",
                path.display()
            ),
        ),
        _ => e,
    })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}
