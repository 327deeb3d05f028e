//! The directory a ref's `.lock` file lives in, opened from the origin's git dir one
//! component at a time without following a symlink.
//!
//! git follows a symlink anywhere in a ref's path, so one planted at a lane's identity
//! directory (`refs/gstack/release-locks/<identity>` → elsewhere) would lead the lock
//! ref, its `.lock` file and berth's judging and clearing of a leftover there out of the
//! origin: a root berth on a group-writable origin would delete whatever `<base>.lock` a
//! writer of the origin points it at, or move a directory from outside into the origin.
//! So berth opens each directory from `refs/gstack/release-locks` down with
//! `O_NOFOLLOW | O_DIRECTORY`, refuses the write when one is a symlink (naming it; one that
//! stood there before the write is a broken ref, judged first, [`super::broken_ref`]), and
//! judges and clears a `.lock` only by its name in the directory so opened
//! ([`super::leftover`], [`super::ref_writer`]). Above it (`refs`, `refs/gstack`) a
//! symlink is the operator's layout (`git new-workdir`, Google's `repo`), followed as git
//! follows it: whoever may replace those may rewrite the repository anyway.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use nix::libc;

use super::LOCK_REF_PREFIX;

/// The origin's git dir, opened as a directory (the operator's path: followed).
pub(super) fn open_git_dir(git_dir: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(git_dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    // SAFETY: a NUL-terminated path and open flags.
    let fd = unsafe { libc::open(path.as_ptr(), DIR_FLAGS & !libc::O_NOFOLLOW) };
    owned(fd)
}

/// The directory that holds `ref_name`'s `.lock` file, walked from `git_dir` (opened at
/// `git_dir_path`); `Ok(None)` when a component is missing or not a directory (no `.lock`
/// can be there; git makes or reports the rest). `Err` names a symlinked component at or
/// below [`LOCK_REF_PREFIX`]: git would follow it, so nothing may be written through it.
pub(super) fn open_parent(
    git_dir: &OwnedFd,
    git_dir_path: &Path,
    ref_name: &str,
) -> Result<Option<OwnedFd>, git2::Error> {
    open_parent_of(git_dir, git_dir_path, Path::new(ref_name))
}

/// [`open_parent`] for any node below the git dir, named by its path there (which may be
/// no ref name: a broken ref's, say).
///
/// The components above [`LOCK_REF_PREFIX`] (`refs`, `refs/gstack`) are the operator's
/// layout (`git new-workdir` and Google's `repo` link a checkout's `refs` to a shared one;
/// git follows them for every ref): followed. From `refs/gstack/release-locks` down, where
/// git makes only directories, a symlink is refused.
pub(super) fn open_parent_of(
    git_dir: &OwnedFd,
    git_dir_path: &Path,
    relative: &Path,
) -> Result<Option<OwnedFd>, git2::Error> {
    let mut dir = git_dir.try_clone().map_err(|e| failed(git_dir_path, &e))?;
    let bytes = relative.as_os_str().as_bytes();
    let Some(end) = bytes.iter().rposition(|&b| b == b'/') else {
        return Ok(Some(dir));
    };
    let mut walked = git_dir_path.to_path_buf();
    let mut at = 0;
    for part in bytes[..end].split(|&b| b == b'/') {
        at += part.len();
        walked.push(std::ffi::OsStr::from_bytes(part));
        let name = match CString::new(part) {
            Ok(name) if !matches!(part, b"" | b"." | b"..") => name,
            _ => {
                return Err(git2::Error::from_str(&format!(
                    "not a plain ref name: {}",
                    relative.display()
                )));
            }
        };
        let flags = if operators_layout(&bytes[..at]) {
            DIR_FLAGS & !libc::O_NOFOLLOW
        } else {
            DIR_FLAGS
        };
        at += 1;
        // SAFETY: a valid directory descriptor, a NUL-terminated name and open flags.
        match owned(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) }) {
            Ok(next) => dir = next,
            Err(_) if is_symlink(&dir, &name) => return Err(symlinked(&walked)),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(dir))
}

/// Whether `walked` (a path below the git dir) lies strictly above
/// `refs/gstack/release-locks`, where symlinks are the operator's.
fn operators_layout(walked: &[u8]) -> bool {
    let locks = LOCK_REF_PREFIX.trim_end_matches('/').as_bytes();
    locks
        .strip_prefix(walked)
        .is_some_and(|rest| rest.starts_with(b"/"))
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

    /// A local origin whose `refs` directory is a symlink the operator's tools made
    /// (`git new-workdir` and Google's `repo` link a checkout's `.git/refs` to a shared
    /// one; git itself follows it for every ref) gets its lane: the walk follows the
    /// components above `refs/gstack/release-locks`.
    #[test]
    fn a_local_origin_whose_refs_directory_is_a_symlink_gets_its_lane() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared.git");
        git2::Repository::init_bare(&shared).unwrap();
        let work = dir.path().join("workdir.git");
        git2::Repository::init_bare(&work).unwrap();
        std::fs::remove_dir_all(work.join("refs")).unwrap();
        std::os::unix::fs::symlink(shared.join("refs"), work.join("refs")).unwrap();
        let url = work.to_str().unwrap().to_owned();
        let lane = crate::lane_lock::Lane {
            repo_identity: url.clone(),
            base_branch: "main".into(),
        };
        let client = client(dir.path());
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            let outcome = client.acquire(&url, &lane, "me", Path::new("/a"));
            if let Ok(crate::lane_lock::Acquire::Acquired(held)) = outcome {
                client.release(&held).unwrap();
                return;
            }
            outcomes.push(format!("{outcome:?}"));
        }
        panic!(
            "a local origin whose refs/ is a symlink never gets its lane, nobody holding it: {outcomes:#?}"
        );
    }
}
