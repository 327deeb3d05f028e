//! The land commands under `examples/`, run by a real daemon.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{GhLane, World};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// `PATH` with the `berth` under test (the examples call `berth lock check`) and `extra`
/// first.
fn path_with_berth(extra: &[&Path]) -> OsString {
    let berth = assert_cmd::cargo::cargo_bin("berth");
    let mut dirs: Vec<PathBuf> = vec![berth.parent().unwrap().to_path_buf()];
    dirs.extend(extra.iter().map(|d| d.to_path_buf()));
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

#[test]
fn the_git_example_lands_in_the_scratch_worktree_fenced_by_the_lock() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    // The base is checked out in the clone, as in a developer's checkout.
    world.run_git(
        &lane.clone,
        &["checkout", "-q", "-B", "main", "origin/main"],
    );
    let id = lane.queue(1, "main");
    world.run_git(&lane.clone, &["checkout", "-q", "main"]);
    let config = world.config(&format!(
        "forge = \"git\"\nland_command = [\"{}\", \"{{branch}}\", \"{{base}}\", \"{{lock_ref}}\", \"{{lock_sha}}\"]\n",
        example("land-git.sh").display()
    ));
    let out = world
        .berth_daemon()
        .env("PATH", path_with_berth(&[]))
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let record = world.read_record(&id);
    assert_eq!(
        record["status"],
        "landed",
        "{record:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lane.merged("feat/pr-1", "main"));
    // It landed in berth's scratch worktree: the developer's checkout is still on main.
    assert_eq!(
        world.run_git(&lane.clone, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
}

/// PR #42 (`feat/search` into `main`) with a commit of its own on the remote, and
/// GitHub's answer saying `head` is its head commit; the commit's id.
fn queue_pr_42_with_head(gh: &GhLane<'_>, head: Option<&str>) -> (String, String) {
    let world = gh.world;
    world.run_git(&gh.repo, &["checkout", "-q", "-B", "feat/search", "main"]);
    fs::write(gh.repo.join("search.txt"), "search\n").unwrap();
    world.run_git(&gh.repo, &["add", "search.txt"]);
    world.run_git(&gh.repo, &["commit", "-q", "-m", "feat/search"]);
    let commit = world.run_git(&gh.repo, &["rev-parse", "HEAD"]);
    world.run_git(&gh.repo, &["checkout", "-q", "main"]);
    world.run_git(
        &gh.repo,
        &["push", "-q", gh.bare.to_str().unwrap(), "feat/search"],
    );
    let id = gh.record_pr_42();
    gh.edit_pr_42(|pr| pr["headRefOid"] = head.unwrap_or(&commit).into());
    (id, commit)
}

/// `berth run --once` with `examples/land-gh.sh` as the land command, the stand-in as
/// `gh` (merging on the bare remote as GitHub would); the run's stderr.
fn land_with_gh_example(gh: &GhLane<'_>) -> String {
    let config = gh.config(
        &format!(
            "[\"{}\", \"{{pr}}\", \"{{branch}}\", \"{{base}}\", \"{{lock_ref}}\", \"{{lock_sha}}\"]",
            example("land-gh.sh").display()
        ),
        "",
    );
    let stand_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gh-stand-in");
    let out = gh
        .berth()
        .env("PATH", path_with_berth(&[&stand_in]))
        .env("GH_STANDIN_REMOTE", &gh.bare)
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn merge_calls(gh: &GhLane<'_>) -> Vec<Vec<String>> {
    gh.calls()
        .into_iter()
        .filter(|c| c[..2] == ["pr", "merge"])
        .collect()
}

#[test]
fn the_gh_example_merges_exactly_the_queued_head_through_gh() {
    let world = World::new();
    let gh = world.gh_lane();
    let (id, head) = queue_pr_42_with_head(&gh, None);
    let stderr = land_with_gh_example(&gh);

    let record = world.read_record(&id);
    assert_eq!(record["status"], "landed", "{record:#}\n{stderr}");
    assert_eq!(
        merge_calls(&gh),
        [[
            "pr",
            "merge",
            "42",
            "--repo",
            "acme/widget",
            "--merge",
            "--match-head-commit",
            &head
        ]]
    );
    // GitHub merged the PR's head into main, and berth's merge proof saw it.
    let bare = gh.bare.to_str().unwrap();
    let main = world.run_git(&gh.repo, &["--git-dir", bare, "rev-parse", "main"]);
    assert_eq!(record["lastGithubState"], "MERGED", "{record:#}");
    world.run_git(
        &gh.repo,
        &[
            "--git-dir",
            bare,
            "merge-base",
            "--is-ancestor",
            &head,
            &main,
        ],
    );
    assert!(gh.lock_refs().is_empty(), "lock ref left behind");
}

/// gstack's hard targeting: when GitHub's head for the PR is not the commit on
/// `origin/<branch>`, the example refuses to merge and the record is blocked.
#[test]
fn the_gh_example_refuses_a_pr_whose_head_moved() {
    let world = World::new();
    let gh = world.gh_lane();
    let moved = "1111111111111111111111111111111111111111";
    let (id, _) = queue_pr_42_with_head(&gh, Some(moved));
    let stderr = land_with_gh_example(&gh);

    let record = world.read_record(&id);
    assert_eq!(record["status"], "blocked", "{record:#}\n{stderr}");
    assert!(merge_calls(&gh).is_empty(), "{:?}", gh.calls());
    let log = world
        .berth_state()
        .join("logs/github.com-acme-widget-main-pr-42/attempt-1-land.log");
    let text = fs::read_to_string(log).unwrap_or_default();
    assert!(
        text.contains(&format!("its head commit is {moved}")),
        "{record:#}\n{text}"
    );
}
