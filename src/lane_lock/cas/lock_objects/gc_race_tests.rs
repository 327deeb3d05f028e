//! A lock write racing a `git gc` of the origin must leave the lock
//! commit's tree where that gc cannot take it. git (2.47) reads the empty tree with no
//! copy on disk (`cat-file`, `gc`, clone), but `git fsck` does not: a commit on it with
//! no copy is a "missing tree", and fsck fails (exit 2) on the origin.

use std::path::Path;
use std::process::Command;

use super::old_tree::OldTreeOrigin;
use crate::lane_lock::Acquire;
use crate::lane_lock::tests::{BareOrigin, git_fed, widget_main};

/// Runs git in `git_dir`: whether it succeeded, and what it said (stdout, then stderr).
fn git(git_dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("git")
        .args(args)
        .env("GIT_DIR", git_dir)
        .current_dir(git_dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .trim()
        .to_owned(),
    )
}

/// Takes the lock on `origin`, then plays a `git gc` of the origin that listed its refs
/// and objects before the lock write (so sees neither the lock ref nor the lock commit)
/// and pruned after it: the gc runs with the lock refs and the lock commits' loose files
/// set aside, which are then put back as the lock write left them. What `git fsck` then
/// says of the origin: `None` where every object the refs reach is there.
fn after_a_racing_gc(origin: &BareOrigin) -> Option<String> {
    let client = origin.client();
    let taken = origin.take(&client, &widget_main());
    assert!(matches!(taken, Ok(Acquire::Acquired(_))), "{taken:?}");
    let bare = &origin.bare;
    let listed = git_fed(
        bare,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/gstack/",
        ],
        "",
    );
    let aside = origin.dir.path().join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    let locks: Vec<(String, String)> = listed
        .lines()
        .map(|line| {
            let (name, sha) = line.split_once(' ').unwrap();
            (name.to_owned(), sha.to_owned())
        })
        .collect();
    assert!(!locks.is_empty(), "no lock ref written");
    for (name, sha) in &locks {
        git_fed(bare, &["update-ref", "-d", name], "");
        let loose = bare.join("objects").join(&sha[..2]).join(&sha[2..]);
        std::fs::rename(&loose, aside.join(sha)).unwrap();
    }
    git_fed(bare, &["gc", "-q"], "");
    for (name, sha) in &locks {
        let loose = bare.join("objects").join(&sha[..2]).join(&sha[2..]);
        std::fs::create_dir_all(loose.parent().unwrap()).unwrap();
        std::fs::rename(aside.join(sha), &loose).unwrap();
        git_fed(bare, &["update-ref", name, sha], "");
    }
    let (whole, said) = git(bare, &["fsck", "--connectivity-only", "--no-progress"]);
    (!whole).then_some(said)
}

/// A released lock left the empty tree in the origin a month ago, and a `git gc --cruft`
/// packed it into a cruft pack (aged by its `.mtimes`). libgit2 would freshen it by
/// touching only the cruft `.pack`, which git does not count, so a gc racing the write
/// would drop the tree, and `git fsck` of the origin (a forge's or an operator's integrity
/// check) would report the lock commit's tree missing: the tree is judged as the commit
/// is, so git's writer writes a fresh loose copy. The same race on an old loose copy
/// (which libgit2 freshens) leaves all there too.
#[test]
fn a_racing_gc_cannot_take_the_lock_commits_empty_tree_from_a_cruft_pack() {
    let loose = OldTreeOrigin::loose_in(BareOrigin::new());
    assert_eq!(after_a_racing_gc(&loose.origin), None, "old loose tree");
    let cruft = OldTreeOrigin::cruft_packed();
    let said = after_a_racing_gc(&cruft.origin);
    assert_eq!(
        said, None,
        "the lock write left the lock commit's tree {} only in an expired cruft pack; a racing gc dropped it",
        cruft.tree
    );
}
