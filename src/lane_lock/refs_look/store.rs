//! A look at the rest of a local origin's git dir that libgit2 opens, never blocking.
//!
//! Opening a repository, listing its refs and reading its objects, libgit2 (1.9) opens
//! with a blocking `open()`: `config` (and `config.worktree`), `commondir`, `info/grafts`,
//! `shallow`; under `objects/` every loose object it reads, `info/alternates`,
//! `info/commit-graph` and `info/commit-graphs/*`, `pack/multi-pack-index` and every
//! `pack/*.idx` and `*.pack`; and the same under each objects dir an `info/alternates`
//! names (as libgit2 reads and follows them, [`follow`]: six deep, each dir once). A
//! FIFO or device at any of them would hang berth's lock operation for good, so
//! [`super::look`] also looks here: those files are stat'ed, and each objects
//! dir walked (bounded, [`MAX_OBJECTS_ENTRIES`]), as `refs/` is. What this cannot see (the
//! target of a `commondir` or `.git` file, a config `include.path`, a node planted after
//! the look) the deadline on every local-origin access covers
//! (the local-origin deadline).

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::{Blocking, Refused, blocks_named, open_dir, path_cstring, walk};

mod alternates;
use alternates::Reader;

/// The most entries under a local origin's objects dirs (its own and its alternates')
/// looked at before any libgit2 read.
pub const MAX_OBJECTS_ENTRIES: usize = 65_536;

/// How deep git and libgit2 (1.9) follow `objects/info/alternates`: both read the
/// alternates file of an objects dir fewer than this many links from the origin's own
/// (git's `link_alt_odb_entries` stops past depth 5, libgit2's `load_alternates` past
/// `GIT_ALTERNATES_MAX_DEPTH`, 5), so they use dirs down to this depth.
const MAX_ALTERNATES_DEPTH: usize = 6;

/// The most alternate objects dirs looked in for a lock object's fresh copy (an origin
/// borrows from one object pool, or a few).
pub(in crate::lane_lock) const MAX_ALTERNATE_DIRS: usize = 64;

/// The files of a git dir, outside `refs/` and `objects/`, that libgit2 opens.
const FILES: [&str; 5] = [
    "config",
    "config.worktree",
    "commondir",
    "info/grafts",
    "shallow",
];

/// Every node of `git_dir` outside `refs/` libgit2 would hang on.
pub(super) fn look(git_dir: &Path, root: &OwnedFd) -> Result<Vec<Blocking>, Refused> {
    let mut found: Vec<Blocking> = FILES
        .into_iter()
        .filter_map(|name| blocks_named(root, Path::new(name)))
        .collect();
    let mut budget = MAX_OBJECTS_ENTRIES;
    let mut walk_objects = |objects: &Path| {
        let dir = match open_dir(None, &path_cstring(objects)) {
            Ok(dir) => dir,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(true),
            Err(e) => return Err(Refused::Unreadable(objects.to_owned(), e)),
        };
        let name = objects.strip_prefix(git_dir).unwrap_or(objects);
        found.extend(walk(
            git_dir,
            dir,
            name,
            &mut budget,
            Refused::TooManyObjects,
        )?);
        Ok(true)
    };
    let objects = git_dir.join("objects");
    walk_objects(&objects)?;
    follow(&objects, Reader::Libgit2, &mut walk_objects)?;
    Ok(found)
}

/// The objects dirs `objects`'s `info/alternates` names, and those they name in turn, as
/// git's writer (which freshens there) resolves and follows them ([`follow`]), the first
/// [`MAX_ALTERNATE_DIRS`]; an alternates file that cannot be read (or is too big) names
/// none.
pub(in crate::lane_lock) fn alternate_objects_dirs(objects: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let _ = follow(objects, Reader::Git, &mut |alt| {
        found.push(alt.to_owned());
        Ok(found.len() < MAX_ALTERNATE_DIRS)
    });
    found
}

/// Calls `visit` on each objects dir `objects`'s alternates reach, in the order git and
/// libgit2 add them: depth first, each `info/alternates` in file order (as `reader` reads
/// it), a dir's own alternates followed right after it, fewer than
/// [`MAX_ALTERNATES_DEPTH`] links from `objects`. A dir already had (`objects` itself, or
/// one met before by any path: git compares real paths, libgit2 inodes) or not there is
/// skipped, and so is what only it names; visited once, a pool naming itself costs once.
/// The order matters: a dir first met deep, where its alternates are not followed, is
/// not followed where met again shallower. `visit` says whether to go on; `Err` is
/// [`Reader::Libgit2`]'s unreadable alternates file (git's names nothing).
fn follow(
    objects: &Path,
    reader: Reader,
    visit: &mut dyn FnMut(&Path) -> Result<bool, Refused>,
) -> Result<(), Refused> {
    let mut seen: HashSet<(u64, u64)> = dir_id(objects).into_iter().collect();
    follow_from(objects, 0, reader, &mut seen, visit).map(drop)
}

/// [`follow`] below `dir`, `depth` links from where it started; whether to go on.
fn follow_from(
    dir: &Path,
    depth: usize,
    reader: Reader,
    seen: &mut HashSet<(u64, u64)>,
    visit: &mut dyn FnMut(&Path) -> Result<bool, Refused>,
) -> Result<bool, Refused> {
    if depth >= MAX_ALTERNATES_DEPTH {
        return Ok(true);
    }
    let named = match (alternates::named(dir, reader), reader) {
        (Ok(named), _) => named,
        (Err(_), Reader::Git) => Vec::new(),
        (Err(e), Reader::Libgit2) => return Err(e),
    };
    for alt in named {
        if !dir_id(&alt).is_some_and(|id| seen.insert(id)) {
            continue;
        }
        if !visit(&alt)? || !follow_from(&alt, depth + 1, reader, seen, visit)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The device and inode of the directory at `path` (through symlinks, as git's realpath
/// and libgit2's `stat` go), or `None` where there is none; `stat` opens nothing.
fn dir_id(path: &Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    meta.is_dir().then(|| (meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane_lock::refs_look;
    use nix::sys::stat::Mode;

    fn fifo(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(path);
        nix::unistd::mkfifo(path, Mode::S_IRWXU).unwrap();
    }

    fn names(git_dir: &Path) -> Vec<PathBuf> {
        let mut names: Vec<_> = refs_look::look(git_dir)
            .unwrap()
            .into_iter()
            .map(|b| git_dir.join(b.name))
            .collect();
        names.sort();
        names
    }

    /// Every file libgit2 opens in a git dir outside `refs/` is looked at, and so is
    /// every objects dir an `info/alternates` names (relative or absolute, and the one
    /// an alternate names in turn).
    #[test]
    fn a_fifo_anywhere_libgit2_opens_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let git_dir = dir.path().join("o.git");
        git2::Repository::init_bare(&git_dir).unwrap();
        let near = dir.path().join("near/objects");
        let far = dir.path().join("far/objects");
        std::fs::create_dir_all(far.join("info")).unwrap();
        std::fs::create_dir_all(near.join("info")).unwrap();
        let alternates = "# a comment\n../../near/objects\n\n";
        std::fs::write(git_dir.join("objects/info/alternates"), alternates).unwrap();
        std::fs::write(
            near.join("info/alternates"),
            far.to_string_lossy().as_bytes(),
        )
        .unwrap();
        let mut planted: Vec<PathBuf> = [
            "config",
            "config.worktree",
            "commondir",
            "info/grafts",
            "shallow",
            "objects/info/commit-graph",
            "objects/info/commit-graphs/commit-graph-chain",
            "objects/pack/multi-pack-index",
            "objects/pack/pack-1.idx",
            "objects/pack/pack-1.pack",
            "objects/ab/cdef0123",
        ]
        .into_iter()
        .map(|name| git_dir.join(name))
        .chain([near.join("pack/pack-2.idx"), far.join("12/3456")])
        .collect();
        for path in &planted {
            fifo(path);
        }
        let found = names(&git_dir);
        // The relative alternate is named as libgit2 reaches it.
        let near_idx = git_dir.join("objects/../../near/objects/pack/pack-2.idx");
        planted[11] = near_idx;
        planted.sort();
        assert_eq!(found, planted);
    }

    /// A FIFO at the alternates file itself is named, and never opened.
    #[test]
    fn a_fifo_at_the_alternates_file_is_named_not_read() {
        let dir = tempfile::tempdir().unwrap();
        git2::Repository::init_bare(dir.path()).unwrap();
        let at = dir.path().join("objects/info/alternates");
        fifo(&at);
        assert_eq!(names(dir.path()), vec![at]);
    }

    /// libgit2 (1.9) uses alternates six deep: `load_alternates` reads the alternates
    /// file of the objects dir at depth 5 (it stops only past `GIT_ALTERNATES_MAX_DEPTH`)
    /// and opens the dirs it names, whose packs' `.idx` it opens on a lookup. A look
    /// five deep would not name a FIFO in the sixth pool, and libgit2 would hang on it
    /// (the lane waiting on the deadline's "did not answer", naming no file).
    #[test]
    fn a_fifo_in_the_sixth_alternate_libgit2_reads_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let git_dir = dir.path().join("o.git");
        git2::Repository::init_bare(&git_dir).unwrap();
        let mut naming = git_dir.join("objects");
        for i in 1..=6 {
            let pool = dir.path().join(format!("pool{i}.git"));
            git2::Repository::init_bare(&pool).unwrap();
            let line = format!("{}\n", pool.join("objects").display());
            std::fs::write(naming.join("info/alternates"), line).unwrap();
            naming = pool.join("objects");
        }
        // libgit2 reads the sixth pool: an object only it holds is found.
        let sixth = git2::Repository::open_bare(dir.path().join("pool6.git")).unwrap();
        let only_there = sixth.blob(b"only in the sixth pool").unwrap();
        let origin = git2::Repository::open_bare(&git_dir).unwrap();
        assert!(origin.odb().unwrap().exists(only_there));
        let idx = naming.join("pack/pack-1.idx");
        fifo(&idx);
        std::fs::File::create(idx.with_extension("pack")).unwrap();
        let found = names(&git_dir);
        assert!(
            found.contains(&idx),
            "the FIFO {} libgit2 opens was not found: {found:?}",
            idx.display()
        );
    }

    #[test]
    fn past_the_bound_nothing_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let loose = dir.path().join("objects/ab");
        std::fs::create_dir_all(&loose).unwrap();
        for n in 0..=MAX_OBJECTS_ENTRIES {
            std::fs::File::create(loose.join(n.to_string())).unwrap();
        }
        assert!(matches!(
            refs_look::look(dir.path()),
            Err(Refused::TooManyObjects(_))
        ));
    }
}
