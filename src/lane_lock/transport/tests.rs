use super::*;

/// A bare `origin.git` under `dir` with one commit of the empty tree at `ref_name`: the
/// repository, the commit and its tree.
fn origin_with_a_commit(dir: &std::path::Path, ref_name: &str) -> (Repository, Oid, Oid) {
    let origin = Repository::init_bare(dir.join("origin.git")).unwrap();
    let sig = Signature::now("t", "t@example.com").unwrap();
    let tree_id = origin.treebuilder(None).unwrap().write().unwrap();
    let tree = origin.find_tree(tree_id).unwrap();
    let head = origin
        .commit(Some(ref_name), &sig, &sig, "c", &tree, &[])
        .unwrap();
    drop(tree);
    (origin, head, tree_id)
}

#[test]
fn redacts_secrets_but_keeps_users_and_hosts() {
    assert_eq!(
        redact_url("https://x-access-token:ghs_secret@github.com/acme/w.git"),
        "https://x-access-token:***@github.com/acme/w.git"
    );
    assert_eq!(
        redact_url("ssh://git@github.com/acme/w.git"),
        "ssh://git@github.com/acme/w.git"
    );
    assert_eq!(
        redact_url("git@github.com:acme/w.git"),
        "git@github.com:acme/w.git"
    );
    assert_eq!(
        redact_url("git://127.0.0.1:9418/locks.git"),
        "git://127.0.0.1:9418/locks.git"
    );
}

/// Another lane releasing its lock deletes a ref while a local fetch lists origin's
/// refs; the fetch of an unrelated branch must not fail for it. A stress test: libgit2
/// lists every ref of a local origin whatever the refspec asks, with no hook between
/// naming a ref and reading it, so whether a fetch meets a deletion is chance. Under a
/// loaded CI machine 300 refs churning can beat ten retries (seen: 3 of 40), which a
/// real origin's few lock moves a minute do not approach.
#[test]
#[ignore = "stress test, probabilistic: run with --ignored on a quiet machine"]
fn a_fetch_survives_lock_refs_deleted_while_it_lists_them() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let (origin, head, _) = origin_with_a_commit(dir.path(), "refs/heads/feat");
    let lock_ref = |n: u32| format!("refs/gstack/release-locks/lane-{n}/main");
    for n in 0..300 {
        origin.reference(&lock_ref(n), head, true, "lock").unwrap();
    }
    let url = dir.path().join("origin.git").to_string_lossy().into_owned();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let origin = Repository::open_bare(&url).unwrap();
            while !stop.load(Ordering::Relaxed) {
                for n in 0..300 {
                    if let Ok(mut found) = origin.find_reference(&lock_ref(n)) {
                        let _ = found.delete();
                    }
                    let _ = origin.reference(&lock_ref(n), head, true, "lock");
                }
            }
        });
        let local = Repository::init(dir.path().join("clone")).unwrap();
        let failed = (0..40)
            .filter_map(|_| {
                fetch(
                    &local,
                    &url,
                    "+refs/heads/feat:refs/remotes/origin/feat",
                    super::super::DEFAULT_REMOTE_TIMEOUT,
                )
                .err()
            })
            .map(|e| e.to_string())
            .collect::<Vec<_>>();
        stop.store(true, Ordering::Relaxed);
        assert!(
            failed.is_empty(),
            "{} of 40 fetches failed: {failed:?}",
            failed.len()
        );
    });
}

/// Review 50. The feature branch on a local origin is a symbolic ref naming no ref (a
/// hand-edited origin), and the PR's head ref (`refs/pull/<N>/head`, the fork fallback)
/// names a commit the record's repo already has. libgit2's listing resolves every ref
/// it lists and failed on the broken branch: the landing stopped on a fetch error. The
/// first in-place read took the broken branch for an absent one and landed the pull
/// ref's head in its place; now the fetch fails, as the listing did.
#[test]
fn a_broken_feature_ref_on_a_local_origin_is_not_taken_for_an_absent_one() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, head, tree) = origin_with_a_commit(dir.path(), "refs/heads/main");
    origin
        .reference("refs/pull/7/head", head, true, "pr")
        .unwrap();
    origin
        .reference_symbolic("refs/heads/feat", "refs/heads/no-such-branch", true, "odd")
        .unwrap();
    let url = dir.path().join("origin.git").to_string_lossy().into_owned();
    let local = Repository::init(dir.path().join("clone")).unwrap();
    fetch(
        &local,
        &url,
        "+refs/heads/main:refs/remotes/origin/main",
        super::super::DEFAULT_REMOTE_TIMEOUT,
    )
    .ok();
    // However the first fetch went, the record's repo has the pull ref's head.
    if !local.odb().unwrap().exists(head) {
        let odb = local.odb().unwrap();
        let theirs = origin.odb().unwrap();
        for id in [head, tree] {
            let obj = theirs.read(id).unwrap();
            odb.write(obj.kind(), obj.data()).unwrap();
        }
    }
    let fetched = fetch_advertised(
        &local,
        &url,
        &["refs/heads/feat", "refs/pull/7/head"],
        "refs/remotes/origin/feat",
    );
    assert!(
        !matches!(fetched, Ok(Some(("refs/pull/7/head", _)))),
        "the broken feature branch was passed over and the pull ref landed in its place: {fetched:?}"
    );
}

#[test]
fn scratch_commit_is_a_parentless_commit_of_the_empty_tree() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::create(dir.path()).unwrap();
    let id = scratch
        .write_lock_commit("gstack release lock\n\n{}\n")
        .unwrap();
    let commit = scratch.repo.find_commit(id).unwrap();
    assert_eq!(commit.parent_count(), 0);
    assert_eq!(
        commit.tree_id().to_string(),
        "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    );
    assert_eq!(
        scratch.commit_message(id).unwrap(),
        "gstack release lock\n\n{}\n"
    );
    assert!(scratch.commit_message(Oid::ZERO_SHA1).is_err());
}
