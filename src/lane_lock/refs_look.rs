//! A look at a local origin's refs that never blocks, before libgit2 reads any of them.
//!
//! git and libgit2 open a loose ref (and `HEAD`, `packed-refs`) with a blocking `open()`,
//! and a local transport's listing reads every ref under `refs/`: a FIFO (or a device)
//! planted there by any writer of the origin would hang berth's lock operation for good.
//! So before libgit2 touches a local origin's refs, berth walks `refs/` with
//! `openat(O_DIRECTORY | O_NONBLOCK)` and `fstatat` (following a symlink as git does),
//! and stats `HEAD` and `packed-refs`: a node that is neither a regular file nor a directory (a symlink counts
//! as what it points at) blocks the read. One at, above or below a lane's lock ref is a
//! broken ref ([`super::broken_ref`]); one elsewhere holds the lane, named, until an
//! operator removes it (berth moves nothing outside `refs/gstack/release-locks/`). At most
//! [`MAX_REFS_ENTRIES`] entries are looked at; past them the origin is not read at all.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd as _, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstatat};

use super::LOCK_REF_PREFIX;
use super::broken_above;
use super::broken_ref::{self, Room};
use super::leftover::FileId;

mod settled;
mod store;
pub use settled::keep_listings;
pub use store::MAX_OBJECTS_ENTRIES;
pub(super) use store::alternate_objects_dirs;

/// The most entries under a local origin's `refs/` looked at before any libgit2 read.
pub const MAX_REFS_ENTRIES: usize = 65_536;

/// A node under a local origin's git dir that libgit2 would open and hang on.
#[derive(Debug, Clone)]
pub(super) struct Blocking {
    /// Its path below the git dir (`refs/heads/x`, `HEAD`).
    pub name: PathBuf,
    pub file: FileId,
    /// A symlink to such a node: libgit2's listing follows it, where it skips the node
    /// itself.
    pub linked: bool,
}

impl Blocking {
    /// Whether an operation on `lock_ref` would open it: it is on that lock ref's path, or
    /// outside every lane's lock ref, or a link a listing follows. A FIFO on another lane's
    /// lock ref is that lane's to judge ([`super::broken_ref`]): libgit2 lists no FIFO.
    fn met_by(&self, lock_ref: Option<&str>) -> bool {
        let under_locks = self
            .name
            .to_str()
            .is_some_and(|name| name.starts_with(LOCK_REF_PREFIX));
        self.linked || !under_locks || lock_ref.is_some_and(|r| on_lock_path(r, &self.name))
    }
}

/// Why a local origin's refs are not read.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    #[error(
        "`{}` ({}) in the origin is a {}, no ref git can read: git and libgit2 open every ref with a blocking open() and would hang on it, so berth reads no ref of this origin while it is there and holds the lane; berth moves nothing outside {}: remove it",
        .0.name.display(), .1.display(), .0.file.kind_name(), LOCK_REF_PREFIX
    )]
    Blocking(Blocking, PathBuf),
    #[error(
        "{} holds more than {MAX_REFS_ENTRIES} entries: berth reads no ref it has not looked at first, so it holds the lane; pack the origin's refs (`git pack-refs --all`)",
        .0.display()
    )]
    TooMany(PathBuf),
    #[error(
        "{} holds more than {} entries (with its alternates): berth reads nothing of a local origin it has not looked at first, so it holds the lane; pack the origin's loose objects (`git gc`)",
        .0.display(), store::MAX_OBJECTS_ENTRIES
    )]
    TooManyObjects(PathBuf),
    #[error(
        "{} is longer than {} bytes: berth reads no more of it, so it holds the lane; shorten it",
        .0.display(), .1
    )]
    TooBig(PathBuf, u64),
    #[error(
        "reading {} takes the alternates files one look reads past {} bytes in all: libgit2 reads every one its alternates reach, and berth reads nothing of a local origin it has not looked at first, so it holds the lane; have the origin borrow from fewer object pools (shorter `objects/info/alternates` files, shorter chains)",
        .0.display(), store::MAX_ALTERNATES_LOOK_BYTES
    )]
    TooManyAlternates(PathBuf),
    #[error("cannot look at {} without blocking: {}", .0.display(), .1)]
    Unreadable(PathBuf, Errno),
    #[error(
        "{} names {}: the origin is a linked worktree of the repository at {} (or that file was planted), whose refs are not in the git dir berth looks, judges and locks in, so berth reads and writes no lane lock there and holds the lane; point the remote at the repository you mean, or remove {}",
        .commondir.display(), .common.display(), .main.display(), .commondir.display()
    )]
    LinkedWorktree {
        commondir: PathBuf,
        common: PathBuf,
        main: PathBuf,
    },
}

impl From<Refused> for git2::Error {
    fn from(refused: Refused) -> git2::Error {
        git2::Error::from_str(&refused.to_string())
    }
}

/// The git dirs a reader of the local origin at `path` may take: `<path>/.git` when it is
/// a directory (a symlink followed, as git and libgit2 `stat` it), and `path` itself when
/// `.git` is none or `path` has a `HEAD` too. git (`enter_repo`) and libgit2 take `.git`
/// only when it is a valid repository, else `path`: telling which takes reads of both, so
/// where both may be it both are looked at, and the lane held on what either shows (an
/// empty `.git` made in a bare origin would otherwise hide every node of the origin).
pub(super) fn git_dirs_of(path: &Path) -> Vec<PathBuf> {
    let dot_git = path.join(".git");
    if !std::fs::metadata(&dot_git).is_ok_and(|meta| meta.is_dir()) {
        return vec![path.to_owned()];
    }
    let itself = std::fs::symlink_metadata(path.join("HEAD")).is_ok();
    std::iter::once(dot_git)
        .chain(itself.then(|| path.to_owned()))
        .collect()
}

/// [`look_before_write`] in each git dir of the local origin at `path` ([`git_dirs_of`]),
/// refused on the first node off `lock_ref`'s path that a write would open
/// ([`refuse_off_path`]); what each dir showed.
pub(super) fn look_before_write_at(
    path: &Path,
    lock_ref: &str,
) -> Result<Vec<(PathBuf, Vec<Blocking>)>, Refused> {
    git_dirs_of(path)
        .into_iter()
        .map(|git_dir| {
            let found = look_before_write(&git_dir, lock_ref)?;
            refuse_off_path(&git_dir, lock_ref, &found)?;
            Ok((git_dir, found))
        })
        .collect()
}

/// What [`look_before_write_at`] found in `opened`, the git dir libgit2 opened (where git
/// writes and berth sets aside, [`settle`]). A node a write of `lock_ref` would open in
/// another dir looked at is refused named, never acted on: berth moves nothing where git
/// will not write.
pub(super) fn found_in(
    opened: &Path,
    lock_ref: &str,
    looked: Vec<(PathBuf, Vec<Blocking>)>,
) -> Result<Vec<Blocking>, Refused> {
    let mut kept = Vec::new();
    for (git_dir, found) in looked {
        if dir_key(&git_dir).is_some_and(|at| Some(at) == dir_key(opened)) {
            kept.extend(found);
        } else if let Some(met) = found.into_iter().find(|b| b.met_by(Some(lock_ref))) {
            return Err(named(&git_dir, met));
        }
    }
    Ok(kept)
}

/// The device and inode of `dir` (a symlink followed): one directory however it is spelt.
fn dir_key(dir: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// Every node under `git_dir` libgit2 would hang on: `HEAD`, `packed-refs` and what is
/// under `refs/`, and the rest libgit2 opens there ([`store`]). `Err` past
/// [`MAX_REFS_ENTRIES`] (or [`store::MAX_OBJECTS_ENTRIES`]) or when a directory
/// cannot be read.
pub(super) fn look(git_dir: &Path) -> Result<Vec<Blocking>, Refused> {
    look_for(git_dir, None)
}

/// [`look`] before berth's writer, git, writes `lock_ref` in `git_dir`: also every node
/// git would hang on that libgit2 never opens. `git update-ref` appends to the ref's
/// reflog whenever `logs/<lock_ref>` exists (a blocking open() under `<ref>.lock`), so
/// that path and each directory above it under `logs/` is `lstat`ed: any node there that
/// is no regular file nor directory is found; so is `logs/HEAD`, whatever `HEAD` names
/// ([`head_reflog_blocking`]). And git's reader (`update-ref`,
/// `unpack-objects`) follows the alternates as git does, which may reach pools libgit2
/// does not (a C-quoted line): those are walked too ([`store::look`]).
pub(super) fn look_before_write(git_dir: &Path, lock_ref: &str) -> Result<Vec<Blocking>, Refused> {
    look_for(git_dir, Some(lock_ref))
}

/// [`look`], and before a write of `lock_ref` [`look_before_write`].
fn look_for(git_dir: &Path, lock_ref: Option<&str>) -> Result<Vec<Blocking>, Refused> {
    let unreadable = |e| Refused::Unreadable(git_dir.to_owned(), e);
    let root = open_dir(None, &path_cstring(git_dir)).map_err(unreadable)?;
    let mut found: Vec<Blocking> = ["HEAD", "packed-refs"]
        .into_iter()
        .filter_map(|name| blocks_named(&root, Path::new(name)))
        .collect();
    match open_dir(Some(root.as_fd()), c"refs") {
        Ok(refs) => {
            let mut budget = MAX_REFS_ENTRIES;
            let walked = walk(git_dir, refs, Path::new("refs"), &mut budget, |_| {
                Refused::TooMany(git_dir.join("refs"))
            })?;
            found.extend(walked);
        }
        Err(Errno::ENOENT | Errno::ENOTDIR) => {}
        Err(e) => return Err(unreadable(e)),
    }
    found.extend(store::look(git_dir, &root, lock_ref.is_some())?);
    if let Some(lock_ref) = lock_ref {
        found.extend(reflog_blocking(&root, lock_ref));
        found.extend(head_reflog_blocking(&root));
    }
    Ok(found)
}

/// The nodes on the path of `lock_ref`'s reflog (`logs/<lock_ref>` and the directories
/// above it below the git dir `root`) that are no regular file nor directory (a symlink
/// included, unfollowed), up to the first that is not there.
fn reflog_blocking(root: &OwnedFd, lock_ref: &str) -> Vec<Blocking> {
    let mut found = Vec::new();
    let mut name = PathBuf::new();
    for part in std::iter::once("logs").chain(lock_ref.split('/')) {
        name.push(part);
        let Some(file) = FileId::at(root.as_raw_fd(), &path_cstring(&name)) else {
            break;
        };
        if !file.is_dir() && !file.is_file() {
            found.push(Blocking {
                name: name.clone(),
                file,
                linked: false,
            });
        }
    }
    found
}

/// `logs/HEAD` below the git dir `root` when it is there and no regular file (a
/// directory or symlink included, unfollowed): git's append to it under `HEAD.lock` would
/// open it blocking, or fail. Looked at before every write, whatever `HEAD` says: git
/// appends there when `HEAD` names the lock ref as git reads it (a NUL ends the name, a
/// symlink to no valid ref name is read through, ...), and a second reading of `HEAD`
/// that misses one of git's spellings leaves the FIFO unnamed; a node no file at
/// `logs/HEAD` breaks git's own writes through `HEAD` anyway.
fn head_reflog_blocking(root: &OwnedFd) -> Option<Blocking> {
    let name = Path::new("logs/HEAD");
    let file = FileId::at(root.as_raw_fd(), &path_cstring(name))?;
    (!file.is_file()).then(|| Blocking {
        name: name.to_owned(),
        file,
        linked: false,
    })
}

/// The node `name` (below the directory `root`) as a [`Blocking`] when libgit2 would hang
/// opening it.
pub(super) fn blocks_named(root: &OwnedFd, name: &Path) -> Option<Blocking> {
    let (file, linked) = blocks(root, &path_cstring(name))?;
    Some(Blocking {
        name: name.to_owned(),
        file,
        linked,
    })
}

/// Every node libgit2 would hang on in the tree under `dir` (named `at` below `git_dir`),
/// following symlinked directories as git does; each entry costs one of `budget`, and past
/// it the walk fails with `too_many(at)`. A regular file or directory as the listing types
/// it costs no stat: the listing gives the entry's own type (a symlink is listed as one),
/// and neither blocks a read. A directory is opened from its parent's descriptor when its
/// turn comes and listed through the descriptor it was opened with, so a walk holds a
/// descriptor for each level it is in, not for each directory it has met (a `refs/pull/`
/// of thousands of directories). One of regular files only that has not changed since an
/// earlier look listed it is not listed again ([`settled`]): its entries are charged where
/// its listing would have been, so a walk past the bound names the same directory either
/// way. A directory that cannot be opened for any reason but being gone or no directory
/// fails the walk ([`passed_over`]).
pub(super) fn walk(
    git_dir: &Path,
    dir: OwnedFd,
    at: &Path,
    budget: &mut usize,
    too_many: impl Fn(PathBuf) -> Refused,
) -> Result<Vec<Blocking>, Refused> {
    let pass = settled::Pass::begin();
    let mut found = Vec::new();
    let now = || pass.as_ref().map_or(0, settled::Pass::now);
    let mut dirs = vec![(at.to_owned(), Pending::Opened(dir, now()))];
    while let Some((at, pending)) = dirs.pop() {
        let (dir, since, kept_as) = match pending {
            Pending::Opened(dir, since) => (dir, since, None),
            Pending::In {
                parent,
                name,
                typed_dir,
            } => {
                let parent_watch = parent.watch.as_ref();
                let unchanged = || pass.as_ref()?.unchanged(parent_watch?, &name);
                if typed_dir && let Some(entries) = unchanged() {
                    if entries > *budget {
                        return Err(too_many(git_dir.join(&at)));
                    }
                    *budget -= entries;
                    continue;
                }
                // Taken before the directory is opened: a change after it is not kept.
                let since = now();
                match open_dir(Some(parent.listing.as_fd()), &name) {
                    Ok(opened) => (opened, since, Some((parent, name))),
                    Err(e) if passed_over(e) => {
                        // Listed as a directory and no longer one: judged as any other node.
                        if typed_dir && let Some((file, linked)) = blocks(&parent.listing, &name) {
                            found.push(Blocking {
                                name: at,
                                file,
                                linked,
                            });
                        }
                        continue;
                    }
                    Err(e) => return Err(Refused::Unreadable(git_dir.join(&at), e)),
                }
            }
        };
        // Watched before it is read: a change while it is read is not kept.
        let watch = pass.as_ref().and_then(|p| p.watch(&dir, since));
        let mut listing =
            nix::dir::Dir::from_fd(dir).map_err(|e| Refused::Unreadable(git_dir.join(&at), e))?;
        // A listing cut short by an error would hide what comes after: the look fails.
        let listed = listing
            .iter()
            .map(|entry| entry.map(|e| (e.file_name().to_owned(), e.file_type())))
            .filter(|entry| {
                entry
                    .as_ref()
                    .map_or(true, |(name, _)| !matches!(name.to_bytes(), b"." | b".."))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Refused::Unreadable(git_dir.join(&at), e))?;
        let listed_dir = Rc::new(Listed { listing, watch });
        let mut only_files = true;
        for (name, kind) in listed.iter() {
            if *budget == 0 {
                return Err(too_many(git_dir.join(&at)));
            }
            *budget -= 1;
            if *kind == Some(nix::dir::Type::File) {
                continue;
            }
            only_files = false;
            let path = at.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
            let typed_dir = *kind == Some(nix::dir::Type::Directory);
            if !typed_dir && let Some((file, linked)) = blocks(&listed_dir.listing, name) {
                found.push(Blocking {
                    name: path,
                    file,
                    linked,
                });
                continue;
            }
            // A directory, or a symlink (or a node of unknown type) that may lead to one.
            let parent = Rc::clone(&listed_dir);
            let name = name.clone();
            dirs.push((
                path,
                Pending::In {
                    parent,
                    name,
                    typed_dir,
                },
            ));
        }
        if only_files
            && let (Some(pass), Some(own), Some((parent, name))) =
                (pass.as_ref(), listed_dir.watch.as_ref(), kept_as)
            && let Some(parent_watch) = parent.watch.as_ref()
        {
            pass.remember(parent_watch, &name, own, listed.len());
        }
    }
    Ok(found)
}

/// A directory [`walk`] listed, and its watch when it has one ([`settled`]).
struct Listed {
    listing: nix::dir::Dir,
    watch: Option<settled::Watch>,
}

/// Whether a node [`walk`] cannot open as a directory holds nothing that any reader could
/// open through it: gone, no directory (a file, or a symlink to none), or a symlink loop.
/// Any other failure leaves the node unseen and the look fails rather than pass over it:
/// out of descriptors or memory, an I/O error, and a directory closed to berth
/// (`EACCES`, `EPERM`), which berth's own reads may still search by name, and its writer
/// child, running as the origin's owner, may list (review 44).
fn passed_over(e: Errno) -> bool {
    matches!(e, Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP)
}

/// A directory [`walk`] has met and not yet listed.
enum Pending {
    /// The directory the walk began with, and the event count ([`settled::Pass::now`])
    /// from before its listing.
    Opened(OwnedFd, u64),
    /// An entry of a listed directory to open when its turn comes: `typed_dir` when the
    /// listing typed it as a directory, else a symlink (or an entry of unknown type) that
    /// may lead to one.
    In {
        parent: Rc<Listed>,
        name: CString,
        typed_dir: bool,
    },
}

/// Refuses to let libgit2 read the refs of the local origin at `path` while any node
/// there would hang it (the first named), in every git dir it may take ([`git_dirs_of`]).
pub(super) fn refuse_blocking(path: &Path) -> Result<(), Refused> {
    for git_dir in git_dirs_of(path) {
        if let Some(blocking) = look(&git_dir)?.into_iter().find(|b| b.met_by(None)) {
            return Err(named(&git_dir, blocking));
        }
    }
    Ok(())
}

/// Opens the local origin at `path` for reading once [`refuse_blocking`] found nothing
/// there that would hang libgit2's open and reads (run it under [`super::local_deadline`]:
/// a FIFO may still be planted after the look).
pub(crate) fn open_looked(path: &Path) -> Result<git2::Repository, git2::Error> {
    refuse_blocking(path)?;
    let flags = git2::RepositoryOpenFlags::NO_SEARCH;
    git2::Repository::open_ext(path, flags, [] as [&str; 0])
}

/// [`open_looked`], refused when it is a linked worktree's git dir ([`refuse_linked`]): the
/// origin a read of its lock or feature refs in place may trust, as a listing would.
pub(super) fn open_own(path: &Path) -> Result<git2::Repository, git2::Error> {
    let origin = open_looked(path)?;
    refuse_linked(&origin)?;
    Ok(origin)
}

/// Refuses an origin whose git dir is not its own common dir (same device and inode): a
/// linked worktree's, or one with a planted `commondir` naming another repository. berth's
/// look, leftovers, writers' lock and trail are all in the git dir libgit2 opened, and its
/// writer children write there too ([`super::ref_writer::git_in`]), so the lane's lock
/// would not be where libgit2 reads this origin's refs. A `commondir` naming the git dir
/// itself changes nothing and is let be. Checked on every read and before every write of
/// a local origin's lock refs.
pub(super) fn refuse_linked(origin: &git2::Repository) -> Result<(), Refused> {
    let (git_dir, common) = (origin.path(), origin.commondir());
    if dir_key(git_dir).is_some_and(|at| Some(at) == dir_key(common)) {
        return Ok(());
    }
    // A non-bare main repository's common dir is its `.git`: name the checkout.
    let main = match common.file_name() {
        Some(name) if name == ".git" => common.parent().unwrap_or(common),
        _ => common,
    };
    Err(Refused::LinkedWorktree {
        commondir: git_dir.join("commondir"),
        common: common.to_owned(),
        main: main.to_owned(),
    })
}

/// Judges the nodes [`look`] found that an operation on `room`'s lock ref would open: one
/// off the lock ref's path holds the lane named, for as long as it stands; one on it is a
/// broken ref, judged with every broken ref there ([`Room::settle`]: held named, set aside
/// past the cap) before libgit2 opens the lock ref.
pub(super) fn settle(room: &Room<'_>, found: Vec<Blocking>) -> Result<(), git2::Error> {
    refuse_off_path(room.origin.path(), room.lock_ref, &found)?;
    let met: Vec<Blocking> = found
        .into_iter()
        .filter(|b| b.met_by(Some(room.lock_ref)))
        .collect();
    if met.is_empty() {
        return Ok(());
    }
    let at = met
        .iter()
        .find(|b| b.name == Path::new(room.lock_ref))
        .map_or(Ok(()), |b| room.settle(&b.name, b.file));
    at.and(broken_above::clear(room))
        .and(broken_ref::clear_below(room))
}

/// Refuses an operation on `lock_ref` while one of the nodes [`look`] found in `git_dir`
/// off that lock ref's path would hang it: checked before libgit2 opens the origin (which
/// reads its config and objects), the lock ref's own path is judged after ([`settle`]).
pub(super) fn refuse_off_path(
    git_dir: &Path,
    lock_ref: &str,
    found: &[Blocking],
) -> Result<(), Refused> {
    match found
        .iter()
        .find(|b| b.met_by(Some(lock_ref)) && !on_lock_path(lock_ref, &b.name))
    {
        Some(off) => Err(named(git_dir, off.clone())),
        None => Ok(()),
    }
}

fn named(git_dir: &Path, blocking: Blocking) -> Refused {
    let path = git_dir.join(&blocking.name);
    Refused::Blocking(blocking, path)
}

/// Whether `name` is `lock_ref`, below it, or above it from `refs/gstack/release-locks`
/// down: where [`super::broken_ref`] judges what stands.
fn on_lock_path(lock_ref: &str, name: &Path) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let below = name
        .strip_prefix(lock_ref)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    let above = lock_ref
        .strip_prefix(name)
        .is_some_and(|rest| rest.starts_with('/'))
        && name.len() + 1 >= LOCK_REF_PREFIX.len();
    below || above
}

/// The node `name` (relative to `git_dir`) when libgit2 would hang opening it.
pub(super) fn blocks_at(git_dir: &Path, name: &Path) -> Option<FileId> {
    let path = git_dir.join(name);
    let parent = open_dir(None, &path_cstring(path.parent()?)).ok()?;
    let (file, _) = blocks(&parent, &CString::new(path.file_name()?.as_bytes()).ok()?)?;
    Some(file)
}

/// `name` in `dir` when it is neither a regular file nor a directory, nor a symlink to
/// one: the node itself (and whether it is a symlink), not what it points at. A missing
/// node blocks nothing.
fn blocks(dir: &impl AsFd, name: &CStr) -> Option<(FileId, bool)> {
    let node = FileId::at(dir.as_fd().as_raw_fd(), name)?;
    let target = fstatat(dir, name, AtFlags::empty()).ok()?;
    let kind = SFlag::from_bits_truncate(target.st_mode & SFlag::S_IFMT.bits());
    let linked = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|stat| stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits());
    (kind != SFlag::S_IFREG && kind != SFlag::S_IFDIR).then_some((node, linked))
}

/// Opens the directory `name` (in `dir`, or an absolute path), never blocking; a symlink
/// is followed (git follows one in `refs/`), a loop only costs entries of the bound.
pub(super) fn open_dir(dir: Option<BorrowedFd<'_>>, name: &CStr) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    match dir {
        Some(dir) => openat(dir, name, flags, Mode::empty()),
        None => openat(nix::fcntl::AT_FDCWD, name, flags, Mode::empty()),
    }
}

pub(super) fn path_cstring(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

#[cfg(test)]
pub(super) mod tests;
