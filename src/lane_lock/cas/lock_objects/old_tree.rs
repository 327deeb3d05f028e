//! The origin the lock-write tests start from: a local origin holding the empty tree a
//! released lock left, a month old (past git's default `gc.pruneExpire` of two weeks), loose
//! or packed into a cruft pack, and the object pools it may borrow from.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::lane_lock::tests::{BareOrigin, git_fed};

/// A local origin and the empty tree in it.
pub(super) struct OldTreeOrigin {
    pub origin: BareOrigin,
    /// The empty tree's id.
    pub tree: String,
    /// The origin's loose copy of the tree (gone once a cruft repack packed it).
    pub loose: PathBuf,
}

impl OldTreeOrigin {
    /// `origin` with the empty tree written loose in it, a month old.
    pub fn loose_in(origin: BareOrigin) -> OldTreeOrigin {
        let tree = empty_tree(&origin.bare);
        let loose = month_old_loose(&origin, &tree);
        OldTreeOrigin {
            origin,
            tree,
            loose,
        }
    }

    /// A new origin whose month-old empty tree a `git gc --cruft` packed into a cruft pack,
    /// leaving no loose copy.
    pub fn cruft_packed() -> OldTreeOrigin {
        let old = OldTreeOrigin::loose_in(BareOrigin::new());
        git_fed(&old.origin.bare, &["repack", "-q", "--cruft", "-d"], "");
        assert!(
            !old.loose.exists(),
            "the cruft repack left {} loose",
            old.tree
        );
        old
    }
}

/// Writes the empty tree loose in the repository `git_dir` (git freshens a copy it has):
/// its id.
pub(super) fn empty_tree(git_dir: &Path) -> String {
    git_fed(git_dir, &["hash-object", "-w", "-t", "tree", "--stdin"], "")
}

/// Makes the origin's loose copy of the object `oid` a month old; its path.
pub(super) fn month_old_loose(origin: &BareOrigin, oid: &str) -> PathBuf {
    let loose = origin.bare.join("objects").join(&oid[..2]).join(&oid[2..]);
    let month_ago = SystemTime::now() - Duration::from_secs(30 * 24 * 3600);
    // Setting a file's times takes ownership, not write access: loose objects are 0444.
    std::fs::File::open(&loose)
        .unwrap()
        .set_modified(month_ago)
        .unwrap();
    loose
}

/// Moves `oid` of the repository `git_dir` from its loose copy into an ordinary pack.
pub(super) fn pack_only(git_dir: &Path, oid: &str) {
    git_fed(
        git_dir,
        &["pack-objects", "-q", "objects/pack/pack"],
        &format!("{oid}\n"),
    );
    std::fs::remove_dir_all(git_dir.join("objects").join(&oid[..2])).unwrap();
}

/// The objects dir of the repository `at`, as an `info/alternates` line names it.
pub(super) fn objects(at: &Path) -> String {
    at.join("objects").display().to_string()
}

/// Makes the repository `at` borrow from the objects dirs `lines` name, in that order.
pub(super) fn borrow(at: &Path, lines: &[String]) {
    let listed: String = lines.iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(at.join("objects/info/alternates"), listed).unwrap();
}

/// What `git count-objects -v` says of the repository `at`, its alternates among it.
pub(super) fn counted_by_git(at: &Path) -> String {
    git_fed(at, &["count-objects", "-v"], "")
}
