//! The directories a local origin's lock ref is written through, walked again where the
//! write happens and after it.
//!
//! `git update-ref` resolves the ref's path by name when it writes, well after berth's
//! walk ([`super::lock_dir`]): a symlink swapped in for one of the ref's directories in
//! between (while the writer child waits for the writers' lock, which any writer of the
//! origin can hold) would lead the write out of the origin. So berth records the path
//! ([`Trail::record`]): the git dir, and each directory of the ref's path, which must be
//! a real directory or missing (git makes only directories there), save `refs` and
//! `refs/gstack`, where a symlink found at the walk is the operator's layout (git
//! new-workdir, Google's repo tool) and is kept to that same symlink and directory. Every
//! directory reached is on the git dir's file system, reached by a walk that crosses no
//! mount (a symlink's text included): a FUSE server, which any user may mount on a
//! directory they can write, tells each process afresh whether a node is a directory or a
//! symlink, so git's walk through one can take other steps than berth's. Then
//! - the writer child walks the path again ([`Trail::rewalk`]) after it holds the writers'
//!   lock, right before it execs `git`, and writes nothing when any step differs;
//! - after `git` reported success, berth walks it once more and reads the ref through the
//!   directory so reached ([`Trail::holds`]): the write counts only if the ref there
//!   holds exactly what was written (no loose ref, after a delete).
//!
//! What stays open is the window between the child's walk and `git`'s own open of the
//! ref's `.lock` (the exec and start of `git`: milliseconds). A write redirected there is
//! never believed (the check after it), and a root berth runs the child as the origin's
//! owner ([`super::ref_writer`]), so such a write lands only where that owner could write.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use git2::Oid;
use nix::libc;

use read::{Found, read_ref};

/// What `EPERM` or `ENOSYS` from `openat2` means: older container runtimes' default
/// seccomp profiles predate the call and answer `EPERM` rather than `ENOSYS`.
const OPENAT2_REFUSED: &str = "openat2 refused (a kernel before 5.6, or a seccomp filter): run berth on Linux 5.6 or later, or allow openat2 in its seccomp profile";

/// The directories of a ref's path where a symlink found at the walk is followed.
const OPERATORS: [&str; 2] = ["refs", "refs/gstack"];

/// The most of a loose ref read back: an object id and a newline, with room to see more.
const REF_READ_CAP: usize = 128;

/// A node as `stat` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Node {
    dev: u64,
    ino: u64,
    kind: u32,
}

impl Node {
    fn of(stat: &libc::stat) -> Node {
        Node {
            dev: stat.st_dev,
            ino: stat.st_ino,
            kind: stat.st_mode & libc::S_IFMT,
        }
    }

    fn is_link(self) -> bool {
        self.kind == libc::S_IFLNK
    }

    fn is_dir(self) -> bool {
        self.kind == libc::S_IFDIR
    }
}

/// One directory of the ref's path.
#[derive(Debug, Clone)]
struct Step {
    name: CString,
    /// A symlink the walk found where the operator may put one: that symlink, and the
    /// directory it led to. `None`: it must be a real directory, or missing.
    link: Option<(Node, Node)>,
    /// Whether a symlink here may be followed ([`OPERATORS`]).
    operators: bool,
}

/// The step of a walk that is not what the recorded walk found (0: the git dir itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Moved(pub usize);

/// Why a write `git` reported made is not believed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum Unbelieved {
    /// A directory of the path is not the one walked ([`Trail::moved_message`]).
    #[error("{0}")]
    Moved(String),
    #[error("git update-ref reported {} written, but a directory of its path is missing", .0.display())]
    Missing(PathBuf),
    #[error(
        "git update-ref reported success, but {} holds {found} instead of {expected}: the write went elsewhere",
        path.display()
    )]
    Holds {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// Where a walk ended.
#[derive(Debug)]
pub(super) enum Reached {
    /// The ref's directory, opened.
    Dir(OwnedFd),
    /// A directory of the path is missing (or not a directory: git fails on it).
    Missing,
}

/// The path `git` is given for one ref, as berth walked it.
#[derive(Debug, Clone)]
pub(super) struct Trail {
    git_dir: CString,
    git_dir_node: Node,
    steps: Vec<Step>,
    /// The ref's own name in its directory.
    leaf: CString,
    /// For messages.
    git_dir_path: PathBuf,
    ref_name: String,
}

impl Trail {
    /// Walks `ref_name`'s directories from the git dir `git_dir_fd` (opened at `git_dir`).
    /// `Err` names a symlink where git makes only directories.
    pub(super) fn record(
        git_dir_fd: &OwnedFd,
        git_dir: &Path,
        ref_name: &str,
    ) -> Result<Trail, git2::Error> {
        let invalid = || git2::Error::from_str(&format!("not a plain ref name: {ref_name}"));
        let (parent, leaf) = ref_name.rsplit_once('/').ok_or_else(invalid)?;
        let mut steps = Vec::new();
        let mut walked = String::new();
        for part in parent.split('/') {
            if matches!(part, "" | "." | "..") {
                return Err(invalid());
            }
            walked = if walked.is_empty() {
                part.to_owned()
            } else {
                format!("{walked}/{part}")
            };
            steps.push(Step {
                name: CString::new(part).map_err(|_| invalid())?,
                link: None,
                operators: OPERATORS.contains(&walked.as_str()),
            });
        }
        let mut trail = Trail {
            git_dir: CString::new(git_dir.as_os_str().as_bytes()).map_err(|_| invalid())?,
            git_dir_node: fstat(git_dir_fd.as_raw_fd()).ok_or_else(|| {
                git2::Error::from_str(&format!("cannot look at {}", git_dir.display()))
            })?,
            steps,
            leaf: CString::new(leaf).map_err(|_| invalid())?,
            git_dir_path: git_dir.to_owned(),
            ref_name: ref_name.to_owned(),
        };
        // Once at the git dir, before anything is written: a kernel or seccomp filter that
        // refuses `openat2` refuses it here by name, not as a directory missing later.
        let mut dir = open_dir_at(git_dir_fd.as_raw_fd(), c".", DIR_FLAGS, 0)
            .map_err(|errno| trail.unwalkable(Moved(0), errno))?;
        for at in 0..trail.steps.len() {
            let step = &trail.steps[at];
            let moved = Moved(at + 1);
            let node = match node_at(dir.as_raw_fd(), &step.name) {
                Ok(node) => node,
                Err(errno) if missing(errno) => break,
                Err(errno) => return Err(trail.unwalkable(moved, errno)),
            };
            if node.is_link() && !step.operators {
                return Err(git2::Error::from_str(&trail.symlink_message(moved)));
            }
            let crossed = || git2::Error::from_str(&trail.mount_message(moved));
            if !node.is_link() && node.dev != trail.git_dir_node.dev {
                return Err(crossed());
            }
            let next = match open_dir(dir.as_raw_fd(), &step.name, node.is_link()) {
                Ok(next) => next,
                Err(libc::EXDEV) => return Err(crossed()),
                Err(errno) if missing(errno) => break,
                Err(errno) => return Err(trail.unwalkable(moved, errno)),
            };
            let reached = fstat(next.as_raw_fd()).ok_or_else(|| {
                git2::Error::from_str(&format!(
                    "cannot look at {}",
                    trail.path_to(moved).display()
                ))
            })?;
            if reached.dev != trail.git_dir_node.dev {
                return Err(crossed());
            }
            if node.is_link() {
                trail.steps[at].link = Some((node, reached));
            }
            dir = next;
        }
        Ok(trail)
    }

    /// Walks the path again; `Err` names the first step that is not as recorded: the git
    /// dir another directory, a symlink now where none was, or another one where one was,
    /// or a directory on another file system than the git dir (a mount there since).
    ///
    /// Async-signal-safe and allocation-free: the writer child calls it between fork and
    /// exec.
    pub(super) fn rewalk(&self) -> Result<Reached, Moved> {
        // SAFETY: a NUL-terminated path and open flags.
        let fd = unsafe { libc::open(self.git_dir.as_ptr(), DIR_FLAGS) };
        let mut dir = owned(fd).ok_or(Moved(0))?;
        if fstat(dir.as_raw_fd()) != Some(self.git_dir_node) {
            return Err(Moved(0));
        }
        for (at, step) in self.steps.iter().enumerate() {
            let moved = Moved(at + 1);
            let node = match node_at(dir.as_raw_fd(), &step.name) {
                Ok(node) => Some(node),
                Err(errno) if missing(errno) => None,
                Err(_) => return Err(moved),
            };
            let next = match (step.link, node) {
                (Some((link, target)), Some(node)) if node == link => {
                    // `target` is on the git dir's device (recorded so), and the walk of
                    // the link's text crossed no mount to reach it.
                    let next = open_dir(dir.as_raw_fd(), &step.name, true).map_err(|_| moved)?;
                    if fstat(next.as_raw_fd()) != Some(target) {
                        return Err(moved);
                    }
                    next
                }
                (Some(_), _) => return Err(moved),
                (None, Some(node)) if node.is_link() => return Err(moved),
                (None, Some(node)) if node.is_dir() => {
                    if node.dev != self.git_dir_node.dev {
                        return Err(moved);
                    }
                    match open_dir(dir.as_raw_fd(), &step.name, false) {
                        Ok(next) if self.on_git_dirs_device(&next) => next,
                        Err(errno) if missing(errno) => return Ok(Reached::Missing),
                        // Another file system, or a walk refused: git is not run.
                        Ok(_) | Err(_) => return Err(moved),
                    }
                }
                (None, _) => return Ok(Reached::Missing),
            };
            dir = next;
        }
        Ok(Reached::Dir(dir))
    }

    /// Whether `dir` is on the git dir's device. Async-signal-safe: one system call.
    fn on_git_dirs_device(&self, dir: &OwnedFd) -> bool {
        fstat(dir.as_raw_fd()).is_some_and(|node| node.dev == self.git_dir_node.dev)
    }

    /// After `git` reported success: `Ok` when the ref, read through the walked path,
    /// holds `written` (`None`: no loose ref is left); `Err` says where the write went
    /// instead, or what is there.
    pub(super) fn holds(&self, written: Option<Oid>) -> Result<(), Unbelieved> {
        let (loose, dir_missing) = match self.rewalk() {
            Ok(Reached::Dir(dir)) => (read_ref(&dir, &self.leaf), false),
            Ok(Reached::Missing) => (Found::Absent, true),
            Err(moved) => return Err(Unbelieved::Moved(self.moved_message(moved))),
        };
        // No loose ref: a `git pack-refs --prune` since git's exit may have packed it (and
        // pruned its emptied directories); a delete leaves it in neither place.
        let found = match loose {
            Found::Absent => self.packed(),
            found => found,
        };
        match (written, found) {
            (None, Found::Absent) => Ok(()),
            (Some(sha), Found::Text(text)) if text == sha.to_string() => Ok(()),
            (Some(_), Found::Absent) if dir_missing => Err(Unbelieved::Missing(self.ref_path())),
            (_, found) => Err(Unbelieved::Holds {
                path: self.ref_path(),
                found: match found {
                    Found::Text(text) => format!("{text:?}"),
                    Found::Absent => NO_REF.to_owned(),
                    Found::Unreadable(why) => why,
                },
                expected: written.map_or_else(|| NO_REF.to_owned(), |sha| sha.to_string()),
            }),
        }
    }

    /// Whether the git dir's `commondir`, read right before `git` runs, is absent or names
    /// the very directory `git` is given as its git dir (by any spelling without a
    /// symlink that crosses no mount). git reads that file at exec and keeps
    /// the lock ref in the refs it names (`GIT_COMMON_DIR` does not move git's ref store),
    /// so one planted while the child waited for the writers' lock would send the write
    /// into another repository. Async-signal-safe and allocation-free, as [`Trail::rewalk`].
    pub(super) fn commondir_is_own(&self) -> bool {
        // SAFETY: a NUL-terminated path and open flags.
        let Some(dir) = owned(unsafe { libc::open(self.git_dir.as_ptr(), DIR_FLAGS) }) else {
            return false;
        };
        if fstat(dir.as_raw_fd()) != Some(self.git_dir_node) {
            return false;
        }
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
        // SAFETY: a directory descriptor, a NUL-terminated name and open flags.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), c"commondir".as_ptr(), flags) };
        let Some(file) = owned(fd) else {
            // SAFETY: reads this thread's errno.
            return unsafe { *libc::__errno_location() } == libc::ENOENT;
        };
        if fstat(file.as_raw_fd()).is_none_or(|node| node.kind != libc::S_IFREG) {
            return false;
        }
        // One byte past the longest path berth takes as its own: a longer file is not it.
        let mut bytes = [0u8; COMMONDIR_READ_CAP];
        // SAFETY: `bytes` is a valid buffer of its length.
        let n = unsafe { libc::read(file.as_raw_fd(), bytes.as_mut_ptr().cast(), bytes.len()) };
        let Ok(n) = usize::try_from(n) else {
            return false;
        };
        // git trims trailing newlines (and carriage returns) off the file's text.
        let len = trim_end(&bytes[..n], b"\r\n").len();
        if n >= bytes.len() || len == 0 || bytes[..len].contains(&0) {
            return false;
        }
        // git takes a relative text as relative to the git dir: whatever spelling names
        // the git dir itself without a symlink (`./`, `../locks.git`, its absolute path) is
        // the same directory, so the node decides, not the bytes.
        bytes[len] = 0;
        CStr::from_bytes_with_nul(&bytes[..=len])
            .ok()
            .and_then(|named| open_dir_without_symlinks(dir.as_raw_fd(), named))
            .is_some_and(|named| fstat(named.as_raw_fd()) == Some(self.git_dir_node))
    }

    /// What a `commondir` found planted right before the write means, in words.
    pub(super) fn commondir_message(&self) -> String {
        let file = self.git_dir_path.join("commondir");
        format!(
            "{} is not a file naming the origin's git dir by a path without symlinks that crosses no mount (an absolute path is walked from /, so it must not cross one either; planted while berth's writer waited, or changed): git would keep the lock ref in the refs it names, outside the origin; berth wrote nothing: point the remote at the repository you mean, or remove {}",
            file.display(),
            file.display()
        )
    }

    /// Why the walk cannot go on at `moved`, in words: `openat2` refused, or the errno.
    fn unwalkable(&self, moved: Moved, errno: libc::c_int) -> git2::Error {
        let why = if matches!(errno, libc::EPERM | libc::ENOSYS) {
            OPENAT2_REFUSED.to_owned()
        } else {
            std::io::Error::from_raw_os_error(errno).to_string()
        };
        git2::Error::from_str(&format!(
            "cannot walk {} ({why}): berth walks a local origin's lock ref path crossing no mount before git writes there, and writes no lock through a path it cannot walk",
            self.path_to(moved).display()
        ))
    }

    /// What a step found changed means, in words.
    pub(super) fn moved_message(&self, moved: Moved) -> String {
        let path = self.path_to(moved);
        // A filter installed since the walk answers the child's `openat2` with `EPERM`.
        if let Ok(dir) = std::fs::File::open(&self.git_dir_path)
            && let Err(libc::EPERM | libc::ENOSYS) =
                open_dir_at(dir.as_raw_fd(), c".", DIR_FLAGS, 0)
        {
            return format!("{}: {OPENAT2_REFUSED}; berth wrote nothing", path.display());
        }
        let now = match std::fs::read_link(&path) {
            Ok(target) => format!("is now a symlink to {}", target.display()),
            Err(_) if self.crosses_a_mount(&path) => return self.mount_message(moved),
            Err(_) => "is no longer the directory berth walked".to_owned(),
        };
        format!(
            "{} {now} (swapped since berth walked {}): git would follow it and write the lock ref outside the origin; berth does not write through it or believe a write through it: remove the symlink (git makes only directories there)",
            path.display(),
            self.ref_name
        )
    }

    /// What a step on another file system than the git dir means, in words.
    fn mount_message(&self, moved: Moved) -> String {
        let path = self.path_to(moved);
        let what = match std::fs::read_link(&path) {
            Ok(target) => format!(
                "is a symlink to {}, whose path crosses a mount",
                target.display()
            ),
            Err(_) => format!(
                "is on another file system than the git dir {} (a mount)",
                self.git_dir_path.display()
            ),
        };
        format!(
            "{} {what}: a file system's server may answer git's lookups otherwise than berth's (FUSE, which any user may mount, tells each process afresh whether a node is a directory or a symlink), so git could write the lock ref outside the origin; berth does not write through it: a local origin's refs must not cross a mount (unmount it, or give the lane the repository the mount serves)",
            path.display()
        )
    }

    /// Whether `path`, followed, is on another device than the git dir.
    fn crosses_a_mount(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(path).is_ok_and(|meta| meta.dev() != self.git_dir_node.dev)
    }

    fn symlink_message(&self, moved: Moved) -> String {
        let path = self.path_to(moved);
        let target = std::fs::read_link(&path).unwrap_or_else(|_| PathBuf::from("?"));
        format!(
            "{} is a symlink (to {}): git would follow it and write the lock ref outside the origin; berth does not write through it: remove the symlink (git makes only directories there)",
            path.display(),
            target.display()
        )
    }

    /// The git dir (step 0), or the path of a directory of the ref.
    fn path_to(&self, Moved(at): Moved) -> PathBuf {
        let mut path = self.git_dir_path.clone();
        for step in self.steps.iter().take(at) {
            path.push(std::ffi::OsStr::from_bytes(step.name.as_bytes()));
        }
        path
    }

    fn ref_path(&self) -> PathBuf {
        self.git_dir_path.join(&self.ref_name)
    }
}

/// The most bytes of a git dir's `commondir` the writer child reads: one past the longest
/// path it opens (Linux's `PATH_MAX`, less its NUL, plus a newline).
const COMMONDIR_READ_CAP: usize = 4097;

/// `bytes` less every trailing byte in `drop`.
fn trim_end<'a>(bytes: &'a [u8], drop: &[u8]) -> &'a [u8] {
    let kept = bytes
        .iter()
        .rposition(|b| !drop.contains(b))
        .map_or(0, |at| at + 1);
    &bytes[..kept]
}

/// What a ref absent both loose and packed is called in messages.
const NO_REF: &str = "no loose ref and none in packed-refs";

/// Whether a walk's errno means the directory is not there for git either (missing, or a
/// non-directory on the way): git fails on it and says so. Any other errno (`EPERM` from
/// a seccomp filter, `EACCES`, `EIO`) says nothing of what git would find, so the walk
/// refuses rather than take the path as missing and let git write where berth cannot look.
fn missing(errno: libc::c_int) -> bool {
    matches!(errno, libc::ENOENT | libc::ENOTDIR)
}

/// A directory opened read-only; never inherited by `git`.
const DIR_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NONBLOCK;

fn owned(fd: libc::c_int) -> Option<OwnedFd> {
    // SAFETY: the kernel just opened `fd`, and nothing else owns it.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `name` in `dir`, a symlink followed only when `follow` ([`open_link_target`]), by a
/// walk that crosses no mount ([`open_dir_at`]); `Err` the errno.
fn open_dir(dir: libc::c_int, name: &CStr, follow: bool) -> Result<OwnedFd, libc::c_int> {
    if follow {
        open_link_target(dir, name, DIR_FLAGS)
    } else {
        open_dir_at(dir, name, DIR_FLAGS | libc::O_NOFOLLOW, 0)
    }
}

/// What the symlink `name` in `dir` names, opened with `flags`, its text walked as the kernel walks
/// it for git (from `dir`, or from `/` when absolute) but crossing no mount
/// ([`open_dir_at`]): a text that enters a FUSE file system and leaves it by `..` reaches
/// one directory for berth and another for git, whom the server tells a node there is a
/// symlink. So a text that crosses a mount (an absolute one: every mount below `/` on its
/// way) is refused. The symlink itself is on the git dir's file system and kept to the
/// same node, so its text is the one git reads. Async-signal-safe: the text on the stack.
fn open_link_target(
    dir: libc::c_int,
    name: &CStr,
    flags: libc::c_int,
) -> Result<OwnedFd, libc::c_int> {
    let mut text = [0u8; LINK_TEXT_CAP + 1];
    // SAFETY: a directory descriptor, a NUL-terminated name, and a buffer one byte
    // longer than the length given, for the NUL.
    let n =
        unsafe { libc::readlinkat(dir, name.as_ptr(), text.as_mut_ptr().cast(), LINK_TEXT_CAP) };
    // SAFETY: reads this thread's errno, set by the call just made when it failed.
    let n = usize::try_from(n).map_err(|_| unsafe { *libc::__errno_location() })?;
    if n >= LINK_TEXT_CAP {
        return Err(libc::ENAMETOOLONG);
    }
    // An absolute text ignores `dir`, as the kernel's walk for git does.
    CStr::from_bytes_with_nul(&text[..=n])
        .map_err(|_| libc::EINVAL)
        .and_then(|text| open_dir_at(dir, text, flags, 0))
}

/// The longest symlink text followed: Linux's `PATH_MAX` (no symlink's text is longer).
const LINK_TEXT_CAP: usize = libc::PATH_MAX as usize;

/// `name` in `dir` by a walk that git's real-path walk must repeat: no symlink on the way
/// (`RESOLVE_NO_SYMLINKS`, which takes in `/proc` magic links) and no mount crossed
/// ([`open_dir_at`]). Git reads each symlink again with `readlink` milliseconds later, and
/// a file system whose server answers each request afresh (FUSE, which any user may mount;
/// a network file system another host changes) or a `/proc` magic link (the kernel
/// follows it to the object itself, git to the path it prints, which another mount
/// namespace makes another directory) can send that second walk elsewhere. Async-signal-safe.
fn open_dir_without_symlinks(dir: libc::c_int, name: &CStr) -> Option<OwnedFd> {
    open_dir_at(dir, name, DIR_FLAGS, libc::RESOLVE_NO_SYMLINKS).ok()
}

/// `name` in `dir` opened with `flags` by `openat2`, the walk crossing no mount
/// (`RESOLVE_NO_XDEV`: `..` out of one, a symlink's text and an absolute path's descent
/// from `/` included) plus `resolve`'s bits; `Err` the errno. A FUSE server tells each
/// process afresh whether a node is a directory or a symlink, so even a walk without
/// symlinks takes other steps in git than in berth once it enters a file system berth
/// does not trust; the origin's own is trusted (docs/lane-locks.md). A kernel without
/// `openat2` (before 5.6) answers `ENOSYS`. Async-signal-safe: one system call, errno read
/// right after it.
fn open_dir_at(
    dir: libc::c_int,
    name: &CStr,
    flags: libc::c_int,
    resolve: u64,
) -> Result<OwnedFd, libc::c_int> {
    // SAFETY: an all-zero `open_how` is valid (no flags, mode or resolve bits).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = resolve | libc::RESOLVE_NO_XDEV;
    // SAFETY: a directory descriptor, a NUL-terminated name, and `how` with its size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            name.as_ptr(),
            &raw const how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    // SAFETY: reads this thread's errno, set by the call just made when it failed.
    let errno = unsafe { *libc::__errno_location() };
    owned(libc::c_int::try_from(fd).unwrap_or(-1)).ok_or(errno)
}

/// The node at `name` in `dir`, not following a symlink; `Err` the errno.
/// Async-signal-safe: one system call, errno read right after it.
fn node_at(dir: libc::c_int, name: &CStr) -> Result<Node, libc::c_int> {
    // SAFETY: an all-zero `stat` is a valid value for fstatat to overwrite.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated, `stat` writable; a bad `dir` only fails.
    let found =
        unsafe { libc::fstatat(dir, name.as_ptr(), &raw mut stat, libc::AT_SYMLINK_NOFOLLOW) };
    // SAFETY: reads this thread's errno, set by the call just made when it failed.
    (found == 0)
        .then(|| Node::of(&stat))
        .ok_or_else(|| unsafe { *libc::__errno_location() })
}

fn fstat(fd: libc::c_int) -> Option<Node> {
    // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is writable; a bad `fd` only fails.
    (unsafe { libc::fstat(fd, &raw mut stat) } == 0).then(|| Node::of(&stat))
}

mod read;

#[cfg(test)]
mod tests;
