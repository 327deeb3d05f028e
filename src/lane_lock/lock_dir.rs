//! The directory a ref's `.lock` file lives in, opened from the origin's git dir one
//! component at a time without following a symlink.
//!
//! git follows a symlink anywhere in a ref's path, so one planted at a lane's identity
//! directory (`refs/gstack/release-locks/<identity>` → elsewhere) would lead the lock
//! ref, its `.lock` file and berth's judging and clearing of a leftover there out of the
//! origin: a root berth on a group-writable origin would delete whatever `<base>.lock` a
//! writer of the origin points it at, or move a directory from outside into the origin.
//! So berth opens each directory with `O_NOFOLLOW | O_DIRECTORY`, refuses the write when
//! one is a symlink (naming it), and judges and clears a `.lock` only by its name in the
//! directory so opened ([`super::leftover`], [`super::ref_writer`]).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use nix::libc;

/// The origin's git dir, opened as a directory (the operator's path: followed).
pub(super) fn open_git_dir(git_dir: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(git_dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    // SAFETY: a NUL-terminated path and open flags.
    let fd = unsafe { libc::open(path.as_ptr(), DIR_FLAGS & !libc::O_NOFOLLOW) };
    owned(fd)
}

/// The directory that holds `ref_name`'s `.lock` file, walked from `git_dir` (opened at
/// `git_dir_path`) without following a symlink; `Ok(None)` when a component is missing or
/// not a directory (no `.lock` can be there; git makes or reports the rest). `Err` names a
/// symlinked component: git would follow it, so nothing may be written through it.
pub(super) fn open_parent(
    git_dir: &OwnedFd,
    git_dir_path: &Path,
    ref_name: &str,
) -> Result<Option<OwnedFd>, git2::Error> {
    let mut dir = git_dir.try_clone().map_err(|e| failed(git_dir_path, &e))?;
    let Some((parent, _)) = ref_name.rsplit_once('/') else {
        return Ok(Some(dir));
    };
    let mut walked = git_dir_path.to_path_buf();
    for part in parent.split('/') {
        walked.push(part);
        let name = match CString::new(part) {
            Ok(name) if !matches!(part, "" | "." | "..") => name,
            _ => {
                return Err(git2::Error::from_str(&format!(
                    "not a plain ref name: {ref_name}"
                )));
            }
        };
        // SAFETY: a valid directory descriptor, a NUL-terminated name and open flags.
        match owned(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), DIR_FLAGS) }) {
            Ok(next) => dir = next,
            Err(_) if is_symlink(&dir, &name) => return Err(symlinked(&walked)),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(dir))
}

/// Read-only, a directory, never a symlink, never inherited by `git`.
const DIR_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just opened `fd`, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_symlink(dir: &OwnedFd, name: &CStr) -> bool {
    nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|stat| stat.st_mode & libc::S_IFMT == libc::S_IFLNK)
}

fn symlinked(path: &Path) -> git2::Error {
    let target = std::fs::read_link(path).unwrap_or_else(|_| PathBuf::from("?"));
    git2::Error::from_str(&format!(
        "{} is a symlink (to {}): git would follow it and write the lock ref, and berth judge its `.lock`, outside the origin; berth does not write through it: remove the symlink (git makes only directories there)",
        path.display(),
        target.display()
    ))
}

fn failed(path: &Path, e: &io::Error) -> git2::Error {
    git2::Error::from_str(&format!("cannot open {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlinked_component_is_named_and_a_missing_one_is_no_directory() {
        let dir = tempfile::tempdir().unwrap();
        let git_dir = dir.path().join("o.git");
        std::fs::create_dir_all(git_dir.join("refs/gstack/release-locks")).unwrap();
        std::os::unix::fs::symlink(dir.path(), git_dir.join("refs/gstack/release-locks/a"))
            .unwrap();
        let fd = open_git_dir(&git_dir).unwrap();
        let said = open_parent(&fd, &git_dir, "refs/gstack/release-locks/a/main")
            .unwrap_err()
            .message()
            .to_owned();
        assert!(said.contains("release-locks/a is a symlink"), "{said}");
        assert!(
            open_parent(&fd, &git_dir, "refs/gstack/release-locks/b/main")
                .unwrap()
                .is_none()
        );
        assert!(
            open_parent(&fd, &git_dir, "refs/gstack/release-locks")
                .unwrap()
                .is_some()
        );
        assert!(open_parent(&fd, &git_dir, "refs/../x/main").is_err());
    }

    /// A symlink at the lane's identity directory to another program's directory.
    fn symlinked_origin(dir: &Path) -> (String, PathBuf, PathBuf) {
        let lane = lane();
        let lock_ref = crate::lane_lock::lock_ref_name(&lane);
        let above = lock_ref.rsplit_once('/').unwrap().0.to_owned();
        let bare = dir.join("locks.git");
        git2::Repository::init_bare(&bare).unwrap();
        let elsewhere = dir.join("another-program");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let link = bare.join(&above);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        (bare.to_str().unwrap().to_owned(), link, elsewhere)
    }

    fn lane() -> crate::lane_lock::Lane {
        crate::lane_lock::Lane {
            repo_identity: "github.com/acme/widget".into(),
            base_branch: "main".into(),
        }
    }

    fn client(dir: &Path) -> crate::lane_lock::LockClient {
        let settings = crate::lane_lock::LockSettings::default();
        crate::lane_lock::LockClient::new(&dir.join("scratch"), settings).unwrap()
    }

    /// A directory named `<base>.lock` outside the origin, reached through a symlinked
    /// identity directory, is neither judged planted at the lock ref's `.lock` nor moved
    /// into the origin's git dir.
    #[test]
    fn a_symlinked_identity_directory_leaves_a_directory_outside_the_origin_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (url, link, elsewhere) = symlinked_origin(dir.path());
        let theirs = elsewhere.join("main.lock");
        std::fs::create_dir_all(&theirs).unwrap();
        std::fs::write(theirs.join("data"), "theirs\n").unwrap();
        let client = client(dir.path());
        let mut outcomes = Vec::new();
        // The first sighting, then one past the leftover age.
        for wait in [0, 11] {
            std::thread::sleep(std::time::Duration::from_secs(wait));
            outcomes.push(format!(
                "{:?}",
                client.acquire(&url, &lane(), "me", Path::new("/a"))
            ));
            assert!(
                theirs.join("data").exists(),
                "berth moved {} from outside the origin (through {}); acquire said {outcomes:#?}",
                theirs.display(),
                link.display()
            );
        }
    }

    /// An hour-old `<base>.lock` file of another program (`/run/xtables.lock` for a base
    /// `xtables`), reached through a symlinked identity directory, is not unlinked; and
    /// git is not let write the lock ref there: the write fails naming the symlink.
    #[test]
    fn a_symlinked_identity_directory_leaves_a_lock_file_outside_the_origin_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (url, link, elsewhere) = symlinked_origin(dir.path());
        let theirs = elsewhere.join("main.lock");
        std::fs::write(&theirs, "another program's lock\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&theirs)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
            .unwrap();
        let client = client(dir.path());
        let outcome = client.acquire(&url, &lane(), "me", Path::new("/a"));
        assert!(
            theirs.exists(),
            "berth deleted {} outside the origin (through {} → {}); acquire said {outcome:?}",
            theirs.display(),
            link.display(),
            elsewhere.display()
        );
        std::fs::remove_file(&theirs).unwrap();
        let outcome = client.acquire(&url, &lane(), "me", Path::new("/a"));
        assert!(
            !elsewhere.join("main").exists(),
            "git wrote the lock ref outside the origin; acquire said {outcome:?}"
        );
        let said = format!("{outcome:?}");
        assert!(said.contains("is a symlink"), "{said}");
    }
}
