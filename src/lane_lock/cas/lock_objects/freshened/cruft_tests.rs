//! The freshness check where a cruft pack (git ages its objects by `.mtimes`) or an
//! objects dir the origin borrows from holds a lock object.

use super::*;
use git2::ObjectType;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .env("GIT_DIR", dir)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn age(path: &Path, days: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(days * 24 * 3600))
        .unwrap();
}

/// A concurrent `git gc --cruft` has just packed the empty tree a released lock left
/// loose (its cruft pack is new; its `.mtimes` entry keeps the tree's month-old time)
/// and a month-old loose copy is still there. libgit2's write freshens the cruft
/// `.pack` and stops; git does not count a cruft pack's file time for its objects
/// (its own writer skips cruft packs when freshening). A lock write the check lets
/// pass must leave a tree the next cruft gc keeps.
#[test]
fn a_tree_freshened_only_through_a_cruft_pack_is_not_counted_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let git_dir = dir.path();
    let (tree, loose) = empty_tree_in_a_cruft_pack(git_dir);
    // A loose copy left (say the released lock's, written again after the pack).
    git(git_dir, &["hash-object", "-t", "tree", "-w", "--stdin"]);
    age(&loose, 30);
    a_checked_lock_write_keeps_its_tree_through_a_cruft_gc(git_dir, tree, &loose);
}

/// The same cruft pack, and no loose copy: libgit2's write touches the cruft `.pack`
/// and writes nothing, and the check, with no loose copy to judge, lets the lock
/// pass on a tree git still judges a month old.
#[test]
fn a_tree_only_in_a_cruft_pack_is_written_fresh_or_the_lock_write_fails() {
    let dir = tempfile::tempdir().unwrap();
    let git_dir = dir.path();
    let (tree, loose) = empty_tree_in_a_cruft_pack(git_dir);
    a_checked_lock_write_keeps_its_tree_through_a_cruft_gc(git_dir, tree, &loose);
}

/// A bare repository at `git_dir` whose empty tree a month-old loose copy gave to a
/// cruft pack (the loose copy gone): its id and the loose path it had.
fn empty_tree_in_a_cruft_pack(git_dir: &Path) -> (Oid, PathBuf) {
    git(git_dir, &["init", "-q", "--bare", "."]);
    let tree = Oid::from_str(&git(
        git_dir,
        &["hash-object", "-t", "tree", "-w", "--stdin"],
    ))
    .unwrap();
    let loose = loose_path(&git_dir.join("objects"), tree);
    age(&loose, 30);
    git(git_dir, &["repack", "-q", "--cruft", "-d"]);
    assert!(!loose.exists());
    assert!(packed::newest_pack_holding(&git_dir.join("objects"), tree).is_some());
    (tree, loose)
}

/// A lock commit on `tree`, as berth writes one: its text and id.
fn lock_commit(tree: Oid) -> (String, Oid) {
    let body = format!("tree {tree}\nauthor b <b@b> 1 +0000\ncommitter b <b@b> 1 +0000\n\nlock\n");
    let commit = Oid::hash_object(ObjectType::Commit, body.as_bytes()).unwrap();
    (body, commit)
}

/// An origin whose empty tree is only in a cruft pack, and a pool beside it holding
/// the tree loose, in a temp dir.
struct CruftOriginAndPool {
    _dir: tempfile::TempDir,
    git_dir: PathBuf,
    pool: PathBuf,
    tree: Oid,
    /// The pool's loose copy of the tree.
    pooled: PathBuf,
}

impl CruftOriginAndPool {
    /// The origin at `origin.git`, named in no alternates file yet, the pool at
    /// `pool.git`.
    fn new() -> CruftOriginAndPool {
        let dir = tempfile::tempdir().unwrap();
        let (git_dir, pool) = (dir.path().join("origin.git"), dir.path().join("pool.git"));
        std::fs::create_dir(&git_dir).unwrap();
        let (tree, _) = empty_tree_in_a_cruft_pack(&git_dir);
        git(
            dir.path(),
            &["init", "-q", "--bare", pool.to_str().unwrap()],
        );
        git(&pool, &["hash-object", "-t", "tree", "-w", "--stdin"]);
        let pooled = loose_path(&pool.join("objects"), tree);
        CruftOriginAndPool {
            _dir: dir,
            git_dir,
            pool,
            tree,
            pooled,
        }
    }

    /// Makes the origin borrow from the pool by the alternates line `line`, the pool's
    /// copy a month old (as a released lock left it).
    fn borrow_month_old(&self, line: &str) {
        std::fs::write(
            self.git_dir.join("objects/info/alternates"),
            format!("{line}\n"),
        )
        .unwrap();
        age(&self.pooled, 30);
    }
}

/// Writes a lock commit on `tree` into `git_dir` as libgit2 does and, if the check
/// lets it pass, runs a cruft gc that saw neither the lock ref nor the new commit: the
/// tree must survive it.
fn a_checked_lock_write_keeps_its_tree_through_a_cruft_gc(git_dir: &Path, tree: Oid, loose: &Path) {
    let (body, commit) = lock_commit(tree);
    let named = [("lock commit", commit), ("tree", tree)];
    let before = Before::look(git_dir, &named, commit).unwrap();
    let origin = git2::Repository::open_bare(git_dir).unwrap();
    let odb = origin.odb().unwrap();
    odb.write(ObjectType::Commit, body.as_bytes()).unwrap();
    odb.write(ObjectType::Tree, b"").unwrap();
    let checked = before.check();
    if checked.is_err() {
        return;
    }
    // The lock is believed written on a fresh tree. A concurrent gc that enumerated
    // refs and recent objects before the write (it saw neither the lock ref nor the
    // new lock commit, which is set aside while it runs to show that) judges the
    // tree by its time alone, as the freshening this check stands for assumes.
    let commit_file = loose_path(&git_dir.join("objects"), commit);
    let aside = git_dir.join("lock-commit-aside");
    std::fs::rename(&commit_file, &aside).unwrap();
    git(
        git_dir,
        &[
            "repack",
            "-q",
            "--cruft",
            "--cruft-expiration=1.day.ago",
            "-d",
        ],
    );
    git(git_dir, &["prune", "--expire=1.day.ago"]);
    std::fs::create_dir_all(commit_file.parent().unwrap()).unwrap();
    std::fs::rename(&aside, &commit_file).unwrap();
    assert!(
        loose.exists() || packed::newest_pack_holding(&git_dir.join("objects"), tree).is_some(),
        "check said {checked:?}, yet the gc pruned the lock's tree {tree}"
    );
}

/// The origin's empty tree only in a cruft pack, and a month-old loose copy in an
/// objects dir it borrows from: a write that freshens neither leaves the lock write
/// failing; the alternate's copy counts once its time is fresh (as git's writer leaves
/// it), whether its alternates line is relative or absolute.
#[test]
fn only_a_fresh_copy_in_an_alternate_stands_for_a_cruft_packed_tree() {
    let at = CruftOriginAndPool::new();
    let (git_dir, pooled) = (&at.git_dir, &at.pooled);
    let (body, commit) = lock_commit(at.tree);
    let named = [("lock commit", commit), ("tree", at.tree)];
    for line in [
        "../../pool.git/objects".to_owned(),
        at.pool.join("objects").display().to_string(),
    ] {
        at.borrow_month_old(&line);
        let commit_file = loose_path(&git_dir.join("objects"), commit);
        let _ = std::fs::remove_file(&commit_file);
        let before = Before::look(git_dir, &named, commit).unwrap();
        let origin = git2::Repository::open_bare(git_dir).unwrap();
        origin
            .odb()
            .unwrap()
            .write(ObjectType::Commit, body.as_bytes())
            .unwrap();
        let checked = before.check();
        assert!(
            matches!(checked, Err(Stale::OnlyCruft { .. })),
            "{line}: {checked:?}"
        );
        age(pooled, 0);
        let checked = before.check();
        assert!(checked.is_ok(), "{line}: {checked:?}");
    }
}

/// The origin (on a file server whose clock is berth's) has its empty tree only in a
/// cruft pack; the pool it borrows from sits on another file server whose clock lags
/// by 10 s. git's writer freshens the pool's copy with `utime(NULL)`, which stamps the
/// pool server's time, and writes the new lock commit in the origin with the origin
/// server's. The copy was freshened by this very write, yet the check (measuring it
/// against the origin's clock only) fails the lock write, on every try.
#[test]
fn review17_a_pool_copy_freshened_by_a_lagging_pool_servers_clock_counts_as_fresh() {
    let at = CruftOriginAndPool::new();
    let (git_dir, tree, pooled) = (&at.git_dir, at.tree, &at.pooled);
    at.borrow_month_old(&at.pool.join("objects").display().to_string());
    let (body, commit) = lock_commit(tree);
    let named = [("lock commit", commit), ("tree", tree)];
    let before = Before::look(git_dir, &named, commit).unwrap();
    // git's writer: the tree (freshening the pool's copy), then the commit.
    git(git_dir, &["hash-object", "-t", "tree", "-w", "--stdin"]);
    let commit_written = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '{}' | git hash-object -t commit -w --stdin",
            body.replace('\n', "\\n")
        ))
        .env("GIT_DIR", git_dir)
        .output()
        .unwrap();
    assert!(commit_written.status.success(), "{commit_written:?}");
    assert!(!loose_path(&git_dir.join("objects"), tree).exists());
    assert!(loose_path(&git_dir.join("objects"), commit).exists());
    let freshened = std::fs::metadata(pooled).unwrap().modified().unwrap();
    assert!(
        freshened > SystemTime::now() - Duration::from_secs(60),
        "git's writer did not freshen the pool's copy"
    );
    // The pool server's clock stamped that freshening 10 s behind.
    std::fs::File::options()
        .write(true)
        .open(pooled)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(10))
        .unwrap();
    let checked = before.check();
    assert!(checked.is_ok(), "{checked:?}");
}
