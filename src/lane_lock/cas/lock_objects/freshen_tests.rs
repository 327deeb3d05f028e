//! Lock writes that reuse objects the origin already had: each comes out fresh where a
//! gc could otherwise prune it under the lock, and none wedges the lane.

use std::path::Path;
use std::time::Duration;

use git2::{ObjectType, Oid, Repository, Signature};

use super::old_tree::{OldTreeOrigin, borrow, empty_tree, month_old_loose, objects, pack_only};
use crate::lane_lock::Acquire;
use crate::lane_lock::tests::{BareOrigin, bare_repo, git_fed, widget_main};

/// git writes an object it already has by freshening its file's time (git's
/// `write_object_file`, libgit2's `git_odb_write` alike): a gc that walked the refs
/// before a new ref pointed at that object then keeps it, since it is younger than
/// `gc.pruneExpire`. The empty tree a released lock left loose and unreferenced in the
/// origin ages past that; the lock write writes it as a push would, freshening it: git
/// reads the empty tree hard-coded, but `git fsck` of the origin does not, and a gc that
/// pruned it leaves the lock commit on a "missing tree".
#[test]
fn a_lock_write_freshens_the_old_empty_tree_it_reuses() {
    let OldTreeOrigin {
        origin,
        tree,
        loose,
    } = OldTreeOrigin::loose_in(BareOrigin::new());
    let client = origin.client();
    let taken = origin.take(&client, &widget_main());
    assert!(matches!(taken, Ok(Acquire::Acquired(_))), "{taken:?}");
    let age = std::fs::metadata(&loose)
        .unwrap()
        .modified()
        .unwrap()
        .elapsed()
        .unwrap_or_default();
    assert!(
        age < Duration::from_secs(14 * 24 * 3600),
        "the lock commit's tree {tree} on origin is {} days old after the lock write reused it: prunable by a concurrent gc",
        age.as_secs() / 86400
    );
}

/// A scratch repository (in `dir`) holding a lock commit on the empty tree, as berth
/// writes one, and the commit's id.
fn a_lock_commit(dir: &Path) -> (Repository, Oid) {
    let scratch = Repository::init_bare(dir.join("scratch.git")).unwrap();
    let sha = {
        let tree = scratch.treebuilder(None).unwrap().write().unwrap();
        let tree = scratch.find_tree(tree).unwrap();
        let signature = Signature::new("berth", "berth@localhost", &git2::Time::new(1, 0)).unwrap();
        scratch
            .commit(None, &signature, &signature, "lock", &tree, &[])
            .unwrap()
    };
    (scratch, sha)
}

/// Writes `scratch`'s commit `sha` into the repository at `git_dir`.
fn put_commit(scratch: &Repository, git_dir: &Path, sha: Oid) {
    let source = scratch.odb().unwrap();
    let body = source.read(sha).unwrap();
    let target = Repository::open_bare(git_dir).unwrap();
    let written = target.odb().unwrap().write(ObjectType::Commit, body.data());
    assert_eq!(written.unwrap(), sha);
}

/// Writes the lock commit `sha` from `scratch` into `origin` as a lock write does.
fn copy_into(scratch: &Repository, origin: &BareOrigin, sha: Oid) -> Result<(), git2::Error> {
    super::copy_lock_commit(scratch, &Repository::open_bare(&origin.bare).unwrap(), sha)
}

/// A lock commit the origin already has (the same holder and second) both in a pack and
/// loose (a `git repack -a` without `-d`, or a loose copy left before it was packed) is
/// freshened by git and libgit2 alike through its pack: both try the pack first and stop
/// there, leaving the loose copy's time alone. The commit is then safe from a concurrent
/// gc (its pack is fresh), so the lock write must succeed; a check that demanded every
/// loose copy be fresh would fail it for good.
#[test]
fn a_lock_write_succeeds_when_its_lock_commit_is_packed_and_an_old_loose_copy_stays() {
    let origin = BareOrigin::new();
    let (scratch, sha) = a_lock_commit(origin.dir.path());
    put_commit(&scratch, &origin.bare, sha);
    git_fed(
        &origin.bare,
        &["pack-objects", "-q", "objects/pack/pack"],
        &format!("{sha}\n"),
    );
    month_old_loose(&origin, &sha.to_string());
    let copied = copy_into(&scratch, &origin, sha);
    assert!(
        copied.is_ok(),
        "the lock write failed though its commit {sha} is in a pack it freshened: {copied:?}"
    );
}

/// A concurrent `git gc --cruft` packed the month-old empty tree a released lock left
/// into a cruft pack (git ages its objects by the `.mtimes`, which no write moves),
/// with or without an old loose copy left beside the pack. git's writer, which berth
/// then runs, skips the cruft pack and writes a fresh loose copy, so the lock write
/// succeeds and the lock commit's tree is where a racing gc keeps it (`git fsck` of the
/// origin would report it missing otherwise: `gc_race_tests`).
#[test]
fn a_lock_write_leaves_a_fresh_loose_copy_of_the_empty_tree_held_in_a_cruft_pack() {
    for loose_left in [false, true] {
        let OldTreeOrigin { origin, tree, .. } = OldTreeOrigin::cruft_packed();
        if loose_left {
            empty_tree(&origin.bare);
            month_old_loose(&origin, &tree);
        }
        let client = origin.client();
        let taken = origin.take(&client, &widget_main());
        assert!(
            matches!(taken, Ok(Acquire::Acquired(_))),
            "loose copy left {loose_left}: {taken:?}"
        );
        let loose = origin
            .bare
            .join("objects")
            .join(&tree[..2])
            .join(&tree[2..]);
        let age = std::fs::metadata(&loose).map(|meta| meta.modified().unwrap().elapsed());
        assert!(
            matches!(age, Ok(Ok(age)) if age < Duration::from_secs(14 * 24 * 3600)),
            "loose copy left {loose_left}: the lock's tree {tree} has no fresh loose copy after the lock write: {age:?}"
        );
    }
}

/// The origin borrows objects from another repository (`objects/info/alternates`, as
/// `git clone --reference`/`--shared` or a forge's object pool sets up) that has the lock
/// commit being reused loose (or packed under a multi-pack-index), and a `git gc --cruft`
/// of the origin left its own copy in a cruft pack. git's writer skips the cruft pack,
/// then freshens the alternate's copy and writes nothing in the origin: that copy must
/// count, or every lock write fails with `OnlyCruft`, for good.
#[test]
fn a_lock_write_succeeds_when_its_cruft_packed_lock_commit_is_also_in_an_alternate() {
    for in_midx in [false, true] {
        let origin = BareOrigin::new();
        let (scratch, sha) = a_lock_commit(origin.dir.path());
        let alt = origin.dir.path().join("pool.git");
        bare_repo(&alt);
        put_commit(&scratch, &alt, sha);
        let hex = sha.to_string();
        if in_midx {
            // The pool keeps it packed under a multi-pack-index (`git maintenance`): git
            // finds that pack first, through the midx, and freshens it instead.
            pack_only(&alt, &hex);
            git_fed(&alt, &["multi-pack-index", "write"], "");
        }
        put_commit(&scratch, &origin.bare, sha);
        let loose = month_old_loose(&origin, &hex);
        git_fed(&origin.bare, &["repack", "-q", "--cruft", "-d"], "");
        assert!(!loose.exists(), "the cruft repack left {hex} loose");
        borrow(&origin.bare, &[objects(&alt)]);
        let copied = copy_into(&scratch, &origin, sha);
        assert!(
            copied.is_ok(),
            "pool's copy in a midx {in_midx}: {copied:?}"
        );
    }
}
