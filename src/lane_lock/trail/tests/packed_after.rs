//! review 34: a legitimate `git pack-refs --all --prune` on the origin (what `git gc`
//! runs, and `git receive-pack` starts `gc --auto` after every push) between
//! `git update-ref`'s exit and berth's read-back ([`Trail::holds`]) moves the lock ref
//! just written into `packed-refs`.

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

/// The lock ref git wrote is the lock this acquire took, wherever git's own maintenance
/// keeps it a moment later: the acquire takes the lane, and leaves no lock nobody holds.
#[test]
fn a_lock_ref_packed_right_after_git_wrote_it_is_still_the_lock_taken() {
    if std::env::var_os(INNER).is_some() {
        let o = origin();
        let outcome = o.client().acquire(&o.url, &o.lane, "me", Path::new("/a"));
        let packed = std::fs::read_to_string(o.bare.join("packed-refs")).unwrap_or_default();
        assert!(
            matches!(outcome, Ok(Acquire::Acquired(_))),
            "the acquire answered {outcome:?}, the lock it wrote now packed: {packed}"
        );
        return;
    }
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
    let name = "lane_lock::trail::tests::packed_after::a_lock_ref_packed_right_after_git_wrote_it_is_still_the_lock_taken";
    let rerun = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
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
