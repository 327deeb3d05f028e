//! The origin the lock-write tests start from: a local origin holding the empty tree a
//! released lock left, a month old (past git's default `gc.pruneExpire` of two weeks), loose
//! or packed into a cruft pack, and the object pools it may borrow from.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::lane_lock::tests::{BareOrigin, bare_repo, git_fed, widget_main};
use crate::lane_lock::{Acquire, LockError};

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

    /// A new bare repository `name` beside the origin, to borrow objects from.
    pub fn pool(&self, name: &str) -> PathBuf {
        let at = self.origin.dir.path().join(name);
        bare_repo(&at);
        at
    }

    /// Writes the empty tree loose in `pool`, checking it is the origin's tree.
    pub fn tree_in(&self, pool: &Path) {
        assert_eq!(empty_tree(pool), self.tree);
    }

    /// Three lock writes of one client, as acquire's retries meet the same origin.
    pub fn three_takes(&self) -> Vec<Result<Acquire, LockError>> {
        let client = self.origin.client();
        (0..3)
            .map(|_| self.origin.take(&client, &widget_main()))
            .collect()
    }

    /// Fails the test when none of three lock writes acquires: the lane is wedged.
    pub fn assert_a_lock_write_succeeds(&self) {
        let tries = self.three_takes();
        assert!(
            any_acquired(&tries),
            "3 lock writes all failed (left loose in origin: {}): {:?}",
            self.loose.exists(),
            tries.last()
        );
    }
}

/// Whether one of `tries` took the lock.
pub(super) fn any_acquired(tries: &[Result<Acquire, LockError>]) -> bool {
    tries
        .iter()
        .any(|taken| matches!(taken, Ok(Acquire::Acquired(_))))
}

/// Writes the empty tree loose in the repository `git_dir` (git freshens a copy it has):
/// its id.
pub(super) fn empty_tree(git_dir: &Path) -> String {
    git_fed(git_dir, &["hash-object", "-w", "-t", "tree", "--stdin"], "")
}

/// Makes the origin's loose copy of `tree` a month old; its path.
pub(super) fn month_old_loose(origin: &BareOrigin, tree: &str) -> PathBuf {
    let loose = origin
        .bare
        .join("objects")
        .join(&tree[..2])
        .join(&tree[2..]);
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
