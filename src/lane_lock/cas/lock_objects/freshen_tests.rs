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

/// Runs `body` in a child forked into a mount namespace of its own (private, so nothing
/// leaks to the host), in which `source` is also reached at `target` by a bind mount:
/// what `body` panicked with, or `None`; skipped (said on stderr, `None`) unless root.
fn with_a_bind_mount(source: &Path, target: &Path, body: impl FnOnce()) -> Option<String> {
    use nix::libc;
    use std::io::{Read as _, Write as _};
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: a bind mount needs root");
        return None;
    }
    std::fs::create_dir_all(target).unwrap();
    let (mut read, write) = std::io::pipe().unwrap();
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let (source, target) = (c(source), c(target));
    // SAFETY: the child runs only this test's body and leaves by `_exit`.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            drop(read);
            let mut write = write;
            let said = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // SAFETY: plain system calls on NUL-terminated paths.
                unsafe {
                    assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare");
                    let root = c"/".as_ptr();
                    let private = libc::MS_REC | libc::MS_PRIVATE;
                    let none = std::ptr::null();
                    assert_eq!(libc::mount(none, root, none, private, none.cast()), 0);
                    let bind = libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        none,
                        libc::MS_BIND,
                        none.cast(),
                    );
                    assert_eq!(bind, 0, "bind mount");
                }
                body();
            }));
            let said = match said {
                Ok(()) => String::new(),
                Err(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panicked".to_owned()),
            };
            let _ = write.write_all(said.as_bytes());
            // SAFETY: ends the forked child without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(write);
            let mut said = String::new();
            read.read_to_string(&mut said).unwrap();
            nix::sys::wait::waitpid(child, None).unwrap();
            (!said.is_empty()).then_some(said)
        }
    }
}

/// Writes the empty tree `tree` loose into the pool at `pool`, a month old: its path.
fn month_old_tree_in(pool: &Path, tree: &str) -> std::path::PathBuf {
    empty_tree(pool);
    let pooled = pool.join("objects").join(&tree[..2]).join(&tree[2..]);
    let month_ago = std::time::SystemTime::now() - Duration::from_secs(30 * 24 * 3600);
    std::fs::File::open(&pooled)
        .unwrap()
        .set_modified(month_ago)
        .unwrap();
    pooled
}

/// Asserts that git's writer freshened the pool's copy `pooled` of the empty tree `tree`
/// (it is under an hour old).
fn assert_freshened(pooled: &Path, tree: &str) {
    let age = std::fs::metadata(pooled).unwrap().modified().unwrap();
    assert!(
        age.elapsed()
            .is_ok_and(|age| age < Duration::from_secs(3600)),
        "git's writer did not freshen the pool's copy of the empty tree {tree}"
    );
}

/// The origin borrows from Q and from B, in that order. Q's chain (Q, R, S, T, U) reaches
/// pool X six deep, where git reads no further; B is the same directory as X reached by a
/// bind mount (an object store mounted at two paths, as a host or a container shares it).
/// git tells alternates apart by their real path (`alt_odb_usable`), so it adds B one
/// deep and follows B's alternates to Y. The origin keeps the empty tree a released lock
/// left only in a cruft pack, Y a month-old loose copy: git's writer freshens Y's copy
/// and writes none in the origin. berth's walk must tell alternates apart by real path
/// too: by device and inode it would skip B as X, never look in Y, and fail every lock
/// write of the origin (`OnlyCruft`), the lane never taken again.
#[test]
fn a_pool_git_reaches_through_a_bind_mount_counts_as_git_follows_it() {
    let OldTreeOrigin { origin, tree, .. } = OldTreeOrigin::cruft_packed();
    let at = |name: &str| origin.dir.path().join(name);
    let chain = [
        "q.git", "r.git", "s.git", "t.git", "u.git", "x.git", "y.git",
    ];
    for name in chain {
        bare_repo(&at(name));
    }
    for pair in chain.windows(2) {
        borrow(&at(pair[0]), &[objects(&at(pair[1]))]);
    }
    borrow(&origin.bare, &[objects(&at("q.git")), objects(&at("b"))]);
    let pooled = month_old_tree_in(&at("y.git"), &tree);
    let failed = with_a_bind_mount(&at("x.git"), &at("b"), || {
        let gits = git_fed(&origin.bare, &["count-objects", "-v"], "");
        let y = objects(&at("y.git"));
        assert!(
            gits.contains(&format!("alternate: {y}")),
            "git does not use Y: {gits}"
        );
        // Each lane's lock write meets the same cruft-packed tree: one for every lane.
        for base in ["main", "release"] {
            let lane = crate::lane_lock::Lane {
                repo_identity: "github.com/acme/widget".into(),
                base_branch: base.into(),
            };
            let taken = origin.take(&origin.client(), &lane);
            assert_freshened(&pooled, &tree);
            assert!(
                matches!(taken, Ok(Acquire::Acquired(_))),
                "{base}: the lock was not taken though git's writer freshened the empty tree's copy in Y, which git reaches through the bind-mounted B: {taken:?}"
            );
        }
    });
    assert!(failed.is_none(), "{}", failed.unwrap_or_default());
}

/// The origin borrows from Y by a relative line longer than `PATH_MAX` (4096) whose `..`
/// climb to `/` first: git resolves it component by component (`strbuf_realpath`) to Y's
/// short real path and uses Y; the kernel refuses the whole joined path
/// (`ENAMETOOLONG`), so a walk that `stat`ed it as written would never look in Y; berth's
/// resolves it as git does. The origin keeps the empty tree a released lock left only in
/// a cruft pack, Y a month-old loose copy: git's writer freshens Y's copy and writes none
/// in the origin, which must count, or every lock write of the origin fails (`OnlyCruft`).
#[test]
fn a_pool_git_reaches_by_a_line_longer_than_path_max_counts_as_git_follows_it() {
    let OldTreeOrigin { origin, tree, .. } = OldTreeOrigin::cruft_packed();
    let y = origin.dir.path().join("y.git");
    bare_repo(&y);
    let pooled = month_old_tree_in(&y, &tree);
    let climb = "../".repeat(1500);
    let line = format!("{climb}{}", objects(&y).trim_start_matches('/'));
    borrow(&origin.bare, &[line]);
    let gits = git_fed(&origin.bare, &["count-objects", "-v"], "");
    assert!(
        gits.contains(&format!("alternate: {}", objects(&y))),
        "git does not use Y: {gits}"
    );
    let taken = origin.take(&origin.client(), &widget_main());
    assert_freshened(&pooled, &tree);
    assert!(
        matches!(taken, Ok(Acquire::Acquired(_))),
        "the lock was not taken though git's writer freshened the empty tree's copy in Y, which git reaches by a {}-byte alternates line: {taken:?}",
        climb.len()
    );
}
