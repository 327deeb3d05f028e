//! A look at the rest of a local origin's git dir that libgit2 opens, never blocking.
//!
//! Opening a repository, listing its refs and reading its objects, libgit2 (1.9) opens
//! with a blocking `open()`: `config` (and `config.worktree`), `commondir`, `info/grafts`,
//! `shallow`; under `objects/` every loose object it reads, `info/alternates`,
//! `info/commit-graph` and `info/commit-graphs/*`, `pack/multi-pack-index` and every
//! `pack/*.idx` and `*.pack`; and the same under each objects dir an `info/alternates`
//! names (as libgit2 reads and follows them, [`follow`]: six deep, each dir once; before
//! a write, whose writer is git, also as git reads and follows them, by real path). A
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
use nix::sys::stat::fstat;

use super::{Blocking, Refused, blocks_named, open_dir, path_cstring, walk};

mod alternates;
mod real_path;
pub(in crate::lane_lock) use alternates::MAX_ALTERNATES_LOOK_BYTES;
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

/// Every node of `git_dir` outside `refs/` libgit2 would hang on; `for_git`: also those
/// under the objects dirs git's reader reaches and libgit2's does not (before a write,
/// whose writer is git: `update-ref`, `unpack-objects`). Both readings share the entries
/// budget and the alternates bytes budget; a dir reached by both is walked once.
pub(super) fn look(
    git_dir: &Path,
    root: &OwnedFd,
    for_git: bool,
) -> Result<Vec<Blocking>, Refused> {
    let mut found: Vec<Blocking> = FILES
        .into_iter()
        .filter_map(|name| blocks_named(root, Path::new(name)))
        .collect();
    let mut budget = MAX_OBJECTS_ENTRIES;
    let mut walked = HashSet::new();
    let mut walk_objects = |objects: &Path| {
        let dir = match open_dir(None, &path_cstring(objects)) {
            Ok(dir) => dir,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(true),
            Err(e) => return Err(Refused::Unreadable(objects.to_owned(), e)),
        };
        let stat = fstat(&dir).map_err(|e| Refused::Unreadable(objects.to_owned(), e))?;
        if !walked.insert((stat.st_dev, stat.st_ino)) {
            return Ok(true);
        }
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
    let mut bytes = MAX_ALTERNATES_LOOK_BYTES;
    follow(&objects, Reader::Libgit2, &mut bytes, &mut walk_objects)?;
    if for_git {
        follow(&objects, Reader::Git, &mut bytes, &mut walk_objects)?;
    }
    Ok(found)
}

/// The objects dirs `objects`'s `info/alternates` names, and those they name in turn, as
/// git's writer (which freshens there) resolves and follows them ([`follow`]), the first
/// [`MAX_ALTERNATE_DIRS`]; an alternates file that cannot be read (or is too big) names
/// none.
pub(in crate::lane_lock) fn alternate_objects_dirs(objects: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    // git's reading stops at MAX_ALTERNATE_DIRS dirs, so at as many files.
    let mut unbounded = u64::MAX;
    let _ = follow(objects, Reader::Git, &mut unbounded, &mut |alt| {
        found.push(alt.to_owned());
        Ok(found.len() < MAX_ALTERNATE_DIRS)
    });
    found
}

/// Calls `visit` on each objects dir `objects`'s alternates reach, in the order git and
/// libgit2 add them: depth first, each `info/alternates` in file order (as `reader` reads
/// it), a dir's own alternates followed right after it, fewer than
/// [`MAX_ALTERNATES_DEPTH`] links from `objects`. A dir already had (`objects` itself, or
/// one met before by any path: git compares real paths, libgit2 inode numbers) or not
/// there is skipped, and so is what only it names; visited once, a pool naming itself
/// costs once. The order matters: a dir first met deep, where its alternates are not
/// followed, is not followed where met again shallower. git's dirs are visited by their
/// real path ([`real_path`]), libgit2's as it joins them. The alternates files read are
/// taken from `budget` (bytes). `visit` says whether to go on; `Err` is an alternates
/// file past a bound, or one [`Reader::Libgit2`] cannot read (git's names nothing).
fn follow(
    objects: &Path,
    reader: Reader,
    budget: &mut u64,
    visit: &mut dyn FnMut(&Path) -> Result<bool, Refused>,
) -> Result<(), Refused> {
    // No objects dir, no alternates file in it.
    let Some((had, _)) = node(objects, reader) else {
        return Ok(());
    };
    let mut walked = Walked {
        seen: HashSet::new(),
        budget,
    };
    // git resolves a relative line against the naming dir's real path.
    let start = had.path;
    walked.seen.insert(had.key);
    follow_from(&start, 0, reader, &mut walked, visit).map(drop)
}

/// What [`follow`] has had: the dirs ([`Node::key`]), and the alternates bytes left to
/// read.
struct Walked<'a> {
    seen: HashSet<Key>,
    budget: &'a mut u64,
}

/// [`follow`] below `dir`, `depth` links from where it started; whether to go on.
fn follow_from(
    dir: &Path,
    depth: usize,
    reader: Reader,
    walked: &mut Walked<'_>,
    visit: &mut dyn FnMut(&Path) -> Result<bool, Refused>,
) -> Result<bool, Refused> {
    if depth >= MAX_ALTERNATES_DEPTH {
        return Ok(true);
    }
    let named = match (alternates::named(dir, reader, walked.budget), reader) {
        (Ok(named), _) => named,
        (Err(Refused::Unreadable(..)), Reader::Git) => Vec::new(),
        (Err(e), _) => return Err(e),
    };
    for alt in named {
        let Some((node, is_dir)) = node(&alt, reader) else {
            continue;
        };
        if !walked.seen.insert(node.key) || !is_dir {
            continue;
        }
        if !visit(&node.path)? || !follow_from(&node.path, depth + 1, reader, walked, visit)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What tells an objects dir from the others for a reader: git's real path, libgit2's
/// inode number.
#[derive(PartialEq, Eq, Hash)]
enum Key {
    RealPath(PathBuf),
    Inode(u64),
}

/// An alternate as a reader has it: where it is visited and what tells it apart.
struct Node {
    path: PathBuf,
    key: Key,
}

/// The alternate joined as `path`, as `reader` has it, or `None` where it has none; `stat`
/// opens nothing. git's: its real path ([`real_path::of`], component by component, as
/// `link_alt_odb_entry` resolves it), which `alt_odb_usable` compares, so one dir reached
/// by two real paths (a bind mount) is two alternates. libgit2's (1.9): the joined path,
/// told apart by its inode number alone, as `git_odb__add_default_backends` compares
/// `st_ino` with each backend's and skips a match on any device; the look must skip what
/// libgit2 skips, or it meets a pool at another depth than libgit2 does and misses what
/// libgit2 opens behind it.
///
/// With it, whether the node is a directory to walk. git passes over a name that is not a
/// directory; libgit2 records the inode of any node its `stat` answers (a regular file
/// included) before it fails to read it as objects, so that inode hides a later pool that
/// shares it: the look records it too, and walks only directories.
fn node(path: &Path, reader: Reader) -> Option<(Node, bool)> {
    match reader {
        Reader::Git => {
            let real = real_path::of(path)?;
            std::fs::metadata(&real).ok()?.is_dir().then(|| {
                let key = Key::RealPath(real.clone());
                (Node { path: real, key }, true)
            })
        }
        Reader::Libgit2 => {
            let meta = std::fs::metadata(path).ok()?;
            let key = Key::Inode(meta.ino());
            Some((
                Node {
                    path: path.to_owned(),
                    key,
                },
                meta.is_dir(),
            ))
        }
    }
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

    /// Checks that libgit2 reads the pool whose objects dir is `objects` from the origin at
    /// `git_dir` (an object only the pool holds is found), then plants a FIFO at a pack
    /// `.idx` there, which libgit2 opens on a lookup: the FIFO, and what the look finds.
    fn a_fifo_in_a_pool_libgit2_reads(git_dir: &Path, objects: &Path) -> (PathBuf, Vec<PathBuf>) {
        let pool = git2::Repository::open_bare(objects.parent().unwrap()).unwrap();
        let only_there = pool.blob(b"only in this pool").unwrap();
        let origin = git2::Repository::open_bare(git_dir).unwrap();
        assert!(origin.odb().unwrap().exists(only_there));
        let idx = objects.join("pack/pack-1.idx");
        fifo(&idx);
        std::fs::File::create(idx.with_extension("pack")).unwrap();
        (idx, names(git_dir))
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
        let (idx, found) = a_fifo_in_a_pool_libgit2_reads(&git_dir, &naming);
        assert!(
            found.contains(&idx),
            "the FIFO {} libgit2 opens was not found: {found:?}",
            idx.display()
        );
    }

    /// Bytes this thread has read through `read(2)` and its kin (`rchar`).
    fn read_so_far() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        let rchar = io.lines().find_map(|line| line.strip_prefix("rchar: "));
        rchar.unwrap().trim().parse().unwrap()
    }

    /// Each objects dir the look reaches has its `info/alternates` read, up to 64 KiB,
    /// and every line of it stat'ed: bounded only by the entries budget, at two entries a
    /// pool (an `info` symlink to one shared dir, and the file in it), one look could read
    /// 2 GiB and stat 2^30 lines before libgit2 opens the origin. Here 80 pools in 160
    /// entries would make it read 5 MiB: the look stops at `MAX_ALTERNATES_LOOK_BYTES`
    /// in all and refuses the origin, naming the file it was reading. Counted in a process
    /// of its own, after a first look there: its thread reads nothing else meanwhile (no
    /// other test's inotify events, no watch budget).
    #[test]
    fn one_look_reads_a_bounded_number_of_alternates_bytes() {
        if !refs_look::tests::in_a_process_of_its_own(
            "store::tests::one_look_reads_a_bounded_number_of_alternates_bytes",
            "BERTH_TEST_LOOK_ALTERNATES_BYTES",
        ) {
            return;
        }
        let first = tempfile::tempdir().unwrap();
        std::fs::create_dir(first.path().join("refs")).unwrap();
        assert!(refs_look::look(first.path()).unwrap().is_empty());
        let dir = tempfile::tempdir().unwrap();
        let git_dir = dir.path().join("o.git");
        git2::Repository::init_bare(&git_dir).unwrap();
        let shared = dir.path().join("shared/info");
        std::fs::create_dir_all(&shared).unwrap();
        // 1,024 lines of 64 bytes, each naming the pool that reads it.
        let line = format!("{}.\n", "./".repeat(31));
        let max = alternates::MAX_ALTERNATES_BYTES as usize;
        std::fs::write(shared.join("alternates"), line.repeat(max / line.len())).unwrap();
        let pools: String = (0..80)
            .map(|i| {
                let pool = dir.path().join(format!("pool{i}"));
                std::fs::create_dir(&pool).unwrap();
                std::os::unix::fs::symlink(&shared, pool.join("info")).unwrap();
                format!("{}\n", pool.display())
            })
            .collect();
        std::fs::write(git_dir.join("objects/info/alternates"), pools).unwrap();
        // Reading /proc/thread-self/io counts itself: take that out.
        let itself = read_so_far();
        let before = read_so_far();
        let looked = refs_look::look(&git_dir);
        let read = read_so_far() - before - (before - itself);
        assert!(
            matches!(&looked, Err(Refused::TooManyAlternates(path)) if path.ends_with("info/alternates")),
            "{looked:?}"
        );
        // The file it stopped in is read one byte past what is left.
        let bound = alternates::MAX_ALTERNATES_LOOK_BYTES + 1;
        assert!(
            read <= bound,
            "one look read {read} bytes of alternates files from 80 pools in 160 entries (bound {bound})"
        );
    }

    /// A new directory under `shm` (a tmpfs, whose inode numbers count up from 1) with
    /// the inode number of a node under `/etc` (another file system) that `kind` takes:
    /// the two, in that order; `None` once the tmpfs's count has passed every one (a host
    /// whose `/dev/shm` has made more inodes than `/etc` numbers: the test is skipped there).
    fn same_inode_as_one_in_etc(
        shm: &Path,
        kind: fn(&std::fs::Metadata) -> bool,
    ) -> Option<(PathBuf, PathBuf)> {
        use std::os::unix::fs::MetadataExt as _;
        let dev = std::fs::metadata(shm).unwrap().dev();
        let mut etc: Vec<(u64, PathBuf)> = std::fs::read_dir("/etc")
            .unwrap()
            .flatten()
            .map(|entry| entry.path())
            .filter_map(|path| {
                let meta = std::fs::symlink_metadata(&path).ok()?;
                (kind(&meta) && meta.dev() != dev).then(|| (meta.ino(), path))
            })
            .collect();
        etc.sort();
        let mut made = 0;
        for (ino, at) in etc {
            loop {
                let next = shm.join(format!("d{made}"));
                made += 1;
                std::fs::create_dir(&next).unwrap();
                let got = std::fs::metadata(&next).unwrap().ino();
                if got == ino {
                    return Some((at, next));
                }
                if got > ino {
                    break;
                }
            }
        }
        eprintln!("skipped: no node under /etc has an inode number a new one in {shm:?} takes");
        None
    }

    /// libgit2 (1.9) skips an alternate whose inode number is an objects dir's it
    /// already has (`git_odb__add_default_backends` compares `st_ino` only, not the
    /// device), and so does the look. A pool on another file system (the `twin` under
    /// /dev/shm) sharing an inode number with an earlier alternate is skipped by both;
    /// a look walking it would meet a pool (Y) six deep first and never follow Y's
    /// alternates, where libgit2 meets Y one deep and opens the pool (Z) Y names: a FIFO
    /// there must be found, or libgit2's lookup hangs on it, the lane held on the
    /// deadline's "did not answer", naming no file.
    #[test]
    fn a_pool_libgit2_skips_by_inode_alone_hides_no_fifo() {
        a_pool_sharing_an_inode_number_with_an_earlier_alternate_hides_no_fifo(
            std::fs::Metadata::is_dir,
        );
    }

    /// libgit2 (1.9) `stat`s an alternate and adds it whatever it is: a regular file
    /// named in `info/alternates` gets backends (that find nothing) under its inode
    /// number, so a later pool with that inode number on another file system is skipped
    /// as had, as in the test above. The look takes only directories as had: it walks
    /// that pool (`twin`), meets Y six deep through it and never follows Y's alternates,
    /// where libgit2 meets Y one deep and opens the pool (Z) Y names. A FIFO there must
    /// be found, or libgit2's lookup hangs on it, naming no file.
    #[test]
    fn a_file_libgit2_takes_as_an_alternate_hides_no_fifo() {
        a_pool_sharing_an_inode_number_with_an_earlier_alternate_hides_no_fifo(
            std::fs::Metadata::is_file,
        );
    }

    /// The origin borrows, in this order, from a node under `/etc` that `kind` takes, from
    /// `twin` (a pool on /dev/shm with that node's inode number) and from Y; the twin's
    /// alternates lead four pools on to Y (six deep), Y names Z, and Z holds a FIFO libgit2
    /// opens. The look must find that FIFO. Skipped (said on stderr) where no twin can be made.
    fn a_pool_sharing_an_inode_number_with_an_earlier_alternate_hides_no_fifo(
        kind: fn(&std::fs::Metadata) -> bool,
    ) {
        let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
            panic!("no /dev/shm to put a pool on another file system");
        };
        let Some((earlier, twin)) = same_inode_as_one_in_etc(shm.path(), kind) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let git_dir = dir.path().join("o.git");
        git2::Repository::init_bare(&git_dir).unwrap();
        let pool = |name: &str| {
            let at = dir.path().join(name);
            git2::Repository::init_bare(&at).unwrap();
            at.join("objects")
        };
        let borrow = |objects: &Path, named: &[&Path]| {
            let lines: String = named.iter().map(|p| format!("{}\n", p.display())).collect();
            std::fs::create_dir_all(objects.join("info")).unwrap();
            std::fs::write(objects.join("info/alternates"), lines).unwrap();
        };
        let (y, z) = (pool("y.git"), pool("z.git"));
        let chain: Vec<PathBuf> = (2..=5).map(|i| pool(&format!("a{i}.git"))).collect();
        borrow(&twin, &[&chain[0]]);
        for pair in chain.windows(2) {
            borrow(&pair[0], &[&pair[1]]);
        }
        borrow(&chain[3], &[&y]);
        borrow(&y, &[&z]);
        borrow(&git_dir.join("objects"), &[&earlier, &twin, &y]);
        let (idx, found) = a_fifo_in_a_pool_libgit2_reads(&git_dir, &z);
        assert!(
            found.contains(&idx),
            "the FIFO {} libgit2 opens was not found ({} and the pool {} share inode numbers): {found:?}",
            idx.display(),
            earlier.display(),
            twin.display()
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
