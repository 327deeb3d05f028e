//! review 34: a legitimate `git pack-refs --all --prune` on the origin (what `git gc`
//! runs, and `git receive-pack` starts `gc --auto` after every push) between
//! `git update-ref`'s exit and berth's read-back ([`Trail::holds`]) moves the lock ref
//! just written into `packed-refs`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;

use super::*;

/// Set in the re-run of this test that runs with a `git` packing refs after each
/// `update-ref`.
const INNER: &str = "BERTH_REVIEW34_PACKED_AFTER";

/// A `git` on `PATH` that runs the real one and, after an `update-ref` that succeeded,
/// packs the git dir's refs, as a `git gc` of the origin's own would at that moment.
fn packing_git(bin: &Path, real: &Path) {
    let script = format!(
        "#!/bin/sh\n{real} \"$@\" || exit $?\nif [ \"$5\" = update-ref ]; then {real} --git-dir \"$4\" pack-refs --all --prune; fi\n",
        real = real.display()
    );
    let path = bin.join("git");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs the test `name` (in this module) again with [`packing_git`] first on `PATH`.
fn rerun_with_packing_git(name: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(real) = std::env::split_paths(&path)
        .map(|dir| dir.join("git"))
        .find(|git| git.is_file())
    else {
        eprintln!("skipped: no git on PATH");
        return;
    };
    let bin = tempfile::tempdir().unwrap();
    packing_git(bin.path(), &real);
    let mut paths = vec![bin.path().to_owned()];
    paths.extend(std::env::split_paths(&path));
    let name = format!("lane_lock::trail::tests::packed_after::{name}");
    let rerun = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .env("PATH", std::env::join_paths(paths).unwrap())
        .output()
        .unwrap();
    assert!(
        rerun.status.success(),
        "{}{}",
        String::from_utf8_lossy(&rerun.stdout),
        String::from_utf8_lossy(&rerun.stderr)
    );
}

/// The lock ref git wrote is the lock this acquire took, wherever git's own maintenance
/// keeps it a moment later: the acquire takes the lane, and leaves no lock nobody holds.
#[test]
fn a_lock_ref_packed_right_after_git_wrote_it_is_still_the_lock_taken() {
    if std::env::var_os(INNER).is_none() {
        return rerun_with_packing_git(
            "a_lock_ref_packed_right_after_git_wrote_it_is_still_the_lock_taken",
        );
    }
    let o = origin();
    let outcome = o.client().acquire(&o.url, &o.lane, "me", Path::new("/a"));
    let packed = std::fs::read_to_string(o.bare.join("packed-refs")).unwrap_or_default();
    assert!(
        matches!(outcome, Ok(Acquire::Acquired(_))),
        "the acquire answered {outcome:?}, the lock it wrote now packed: {packed}"
    );
}

/// A ref named in Latin-1 (git takes any byte from 0x80 in a ref name; a push may create
/// one) packed in the origin, sorted before `refs/gstack/`: a commit of the origin's,
/// and the ref's raw name.
fn latin1_ref_packed(o: &Origin) -> Vec<u8> {
    let repo = git2::Repository::open_bare(&o.bare).unwrap();
    let tree = repo.treebuilder(None).unwrap().write().unwrap();
    let tree = repo.find_tree(tree).unwrap();
    let who = git2::Signature::now("someone", "someone@example.com").unwrap();
    let commit = repo.commit(None, &who, &who, "work", &tree, &[]).unwrap();
    let name = b"refs/changes/caf\xe9".to_vec();
    let git = |args: &[&OsStr]| {
        let ran = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&o.bare)
            .args(args)
            .output()
            .unwrap();
        assert!(ran.status.success(), "{ran:?}");
    };
    git(&[
        OsStr::new("update-ref"),
        OsStr::from_bytes(&name),
        OsStr::new(&commit.to_string()),
    ]);
    git(&[
        OsStr::new("pack-refs"),
        OsStr::new("--all"),
        OsStr::new("--prune"),
    ]);
    name
}

/// review 35: `Trail::packed` reads `packed-refs` as UTF-8 lines and gives up at the
/// first line that is not: the same `pack-refs` right after the write, on an origin with
/// a Latin-1 branch name before the lock's line, still leaves the lock just written
/// disbelieved (a lock nobody holds for the TTL).
#[test]
fn a_lock_ref_packed_after_a_latin1_ref_is_still_the_lock_taken() {
    if std::env::var_os(INNER).is_none() {
        return rerun_with_packing_git(
            "a_lock_ref_packed_after_a_latin1_ref_is_still_the_lock_taken",
        );
    }
    let o = origin();
    latin1_ref_packed(&o);
    let outcome = o.client().acquire(&o.url, &o.lane, "me", Path::new("/a"));
    let packed =
        String::from_utf8_lossy(&std::fs::read(o.bare.join("packed-refs")).unwrap()).into_owned();
    assert!(
        matches!(outcome, Ok(Acquire::Acquired(_))),
        "the acquire answered {outcome:?}, the lock it wrote now packed: {packed}"
    );
}

/// review 35: after a delete no loose ref is left, so every release reads `packed-refs`;
/// one holding a Latin-1 ref name anywhere makes every release of the origin's locks
/// fail as "the write went elsewhere" though git deleted the lock (no race needed).
#[test]
fn a_release_on_an_origin_with_a_latin1_packed_ref_is_believed() {
    let o = origin();
    latin1_ref_packed(&o);
    let client = o.client();
    let Ok(Acquire::Acquired(held)) = client.acquire(&o.url, &o.lane, "me", Path::new("/a")) else {
        panic!("no lock taken");
    };
    let released = client.release(&held);
    let left = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&o.bare)
        .args(["for-each-ref", "refs/gstack/"])
        .output()
        .unwrap();
    assert!(
        matches!(released, Ok(crate::lane_lock::Released::Deleted)),
        "the release answered {released:?}; lock refs left in the origin: {:?}",
        String::from_utf8_lossy(&left.stdout)
    );
}

/// review 35: `git new-workdir` and Google's `repo` link a git dir's `packed-refs` to the
/// shared one beside its `refs` (git follows that symlink for every read and write of
/// packed refs); `Trail::packed` opens it `O_NOFOLLOW`, so after a delete (no loose ref
/// left) every release on such an origin is answered "the write went elsewhere" though
/// git deleted the lock.
#[test]
fn a_release_on_a_new_workdir_origin_with_packed_refs_linked_is_believed() {
    let o = origin();
    let (url, lane) = new_workdir(&o);
    let client = o.client();
    let outcome = client.acquire(&url, &lane, "me", Path::new("/a"));
    let Ok(Acquire::Acquired(held)) = outcome else {
        panic!("no lock taken: {outcome:?}");
    };
    let released = client.release(&held);
    assert!(
        matches!(released, Ok(crate::lane_lock::Released::Deleted)),
        "the release answered {released:?}; lock ref left: {}",
        o.bare.join(held.ref_name()).exists()
    );
}

/// review 35: and a lock packed right after its write on such an origin is disbelieved:
/// a lock nobody holds for the TTL.
#[test]
fn a_lock_ref_packed_on_a_new_workdir_origin_is_still_the_lock_taken() {
    if std::env::var_os(INNER).is_none() {
        return rerun_with_packing_git(
            "a_lock_ref_packed_on_a_new_workdir_origin_is_still_the_lock_taken",
        );
    }
    let o = origin();
    let (url, lane) = new_workdir(&o);
    let outcome = o.client().acquire(&url, &lane, "me", Path::new("/a"));
    let packed = std::fs::read_to_string(o.bare.join("packed-refs")).unwrap_or_default();
    assert!(
        matches!(outcome, Ok(Acquire::Acquired(_))),
        "the acquire answered {outcome:?}, the lock it wrote now packed: {packed}"
    );
}

/// A git dir beside `o`'s linking its `refs` and `packed-refs` to `o`'s, as
/// `git new-workdir` does: its url and lane.
fn new_workdir(o: &Origin) -> (String, Lane) {
    // The shared repository's packed-refs (any repository `git gc` ever ran in).
    std::fs::write(
        o.bare.join("packed-refs"),
        "# pack-refs with: peeled fully-peeled sorted \n",
    )
    .unwrap();
    let work = o.dir.path().join("workdir.git");
    git2::Repository::init_bare(&work).unwrap();
    std::fs::remove_dir_all(work.join("refs")).unwrap();
    for linked in ["refs", "packed-refs"] {
        std::os::unix::fs::symlink(o.bare.join(linked), work.join(linked)).unwrap();
    }
    let url = work.to_str().unwrap().to_owned();
    let lane = Lane {
        repo_identity: url.clone(),
        base_branch: "main".into(),
    };
    (url, lane)
}

/// review 36: `git new-workdir` links `packed-refs` whether or not the shared repository
/// has one (its loop runs `ln -s` for every name), so a shared repository `git gc` never
/// ran in leaves the link dangling: git reads that as no packed refs (`ENOENT` is an
/// empty file to its packed backend) and its delete succeeds, but fc41bbb's follow refuses
/// the dangling link as "a symlink berth cannot follow", so every release on such an
/// origin is answered "the write went elsewhere" though git deleted the lock.
#[test]
fn a_release_on_a_new_workdir_origin_with_packed_refs_linked_to_none_is_believed() {
    let o = origin();
    let (url, lane) = new_workdir(&o);
    // The shared repository before its first `git gc`: no packed-refs; the link dangles.
    std::fs::remove_file(o.bare.join("packed-refs")).unwrap();
    let client = o.client();
    let outcome = client.acquire(&url, &lane, "me", Path::new("/a"));
    let Ok(Acquire::Acquired(held)) = outcome else {
        panic!("no lock taken: {outcome:?}");
    };
    let released = client.release(&held);
    assert!(
        matches!(released, Ok(crate::lane_lock::Released::Deleted)),
        "the release answered {released:?}; lock ref left: {}",
        o.bare.join(held.ref_name()).exists()
    );
}
