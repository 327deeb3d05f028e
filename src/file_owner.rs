//! Who a file or directory berth writes belongs to, when berth runs as root beside another
//! user (gstack, the daemon's service user) in that user's dirs.
//!
//! A root berth's writes are root's by default: a record, a learned-patterns file or a
//! faults dir it rewrote or made would be root's 0600/0700, which gstack's user can no
//! longer read, and gstack reads an unreadable file as empty (its promote then rewrites the
//! learned patterns from `[]`). So what root makes in another user's dir is given to that
//! user, and a file of another user's it rewrites keeps that user and its mode. Both are
//! decided on descriptors (the dir opened, the file `fstatat` without following it) and
//! applied with `fchown` on the new file's descriptor, never by path. The dir's owner
//! can replace anything in it anyway, so handing it a file berth wrote there gives it
//! nothing it did not have; a file root owns, in a dir root owns, stays root's.

use std::ffi::OsStr;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{FileStat, SFlag, fstat, fstatat};

/// A user and group to give a file or directory to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub fn of(st: &FileStat) -> Owner {
        Owner {
            uid: st.st_uid,
            gid: st.st_gid,
        }
    }

    /// `fchown` of the open file or directory to this owner.
    pub fn give(self, fd: impl AsFd) -> Result<(), Errno> {
        let uid = Some(nix::unistd::Uid::from_raw(self.uid));
        let gid = Some(nix::unistd::Gid::from_raw(self.gid));
        nix::unistd::fchown(fd, uid, gid)
    }

    /// Who what berth makes in the dir `dir` (its stat) is given to: that dir's owner when
    /// berth runs as root and the dir is another user's; `None` (it stays berth's user's)
    /// otherwise, which is all a berth that is not root can do.
    pub fn heir_in(dir: &FileStat) -> Option<Owner> {
        let euid = nix::unistd::geteuid().as_raw();
        (euid == 0 && dir.st_uid != euid).then(|| Owner::of(dir))
    }

    /// [`Owner::heir_in`] the open directory `dir`.
    pub fn heir_in_dir(dir: impl AsFd) -> Result<Option<Owner>, Errno> {
        Ok(Owner::heir_in(&fstat(dir)?))
    }
}

/// What a file berth writes over `name` in a dir is left with: its mode and the owner it is
/// given to (`None`: berth's user keeps it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept {
    pub mode: u32,
    pub owner: Option<Owner>,
}

/// The mode and owner a file berth writes at `name` in the open dir `dir` gets. Under root,
/// a regular file of another user's there (one link: a hard link planted there names a
/// file that is not the dir's) keeps that user and its permission bits; anything else is a
/// new file, `mode`, given to the dir's owner when that is another user ([`Owner::heir_in`]).
/// Not root: `mode`, berth's user's (such a berth can give a file to no one).
pub fn kept_over(dir: impl AsFd, name: &OsStr, mode: u32) -> Result<Kept, Errno> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(Kept { mode, owner: None });
    }
    if let Some(kept) = kept_of_existing(dir.as_fd(), name)? {
        return Ok(kept);
    }
    Ok(Kept {
        mode,
        owner: Owner::heir_in_dir(dir)?,
    })
}

/// The mode and owner of another user's regular, single-linked file at `name`, if one is
/// there (root only calls this).
fn kept_of_existing(dir: impl AsFd, name: &OsStr) -> Result<Option<Kept>, Errno> {
    let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let regular = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG;
    let theirs = st.st_uid != nix::unistd::geteuid().as_raw();
    Ok((regular && theirs && st.st_nlink == 1).then(|| Kept {
        mode: st.st_mode & 0o777,
        owner: Some(Owner::of(&st)),
    }))
}
