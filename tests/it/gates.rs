//! The planted-record set: every way a record can point berth somewhere it must not go.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use berth::gates::{Allowlist, Gate, WorktreeChoice};
use berth::record::Record;

use crate::support::World;

fn allowlist(world: &World, project_root: Option<&Path>) -> Allowlist {
    Allowlist::build(Some(&world.home), None, project_root).0
}

fn record(repo: &str, feature: &str, base: &str) -> Record {
    let value = serde_json::json!({
        "runId": "run-1", "repoPath": repo, "baseBranch": base, "featureBranch": feature,
        "prNumber": 9, "version": "1", "livingPlanPath": "/p", "worktreePath": repo,
        "queuedAt": "2026-11-24T00:00:00Z", "status": "queued"
    });
    Record::from_json(value).unwrap()
}

fn refused(list: &Allowlist, rec: &Record) -> (Gate, String) {
    let err = list.gate_record(rec).expect_err("gate must refuse");
    (err.gate, err.reason)
}

#[test]
fn planted_repo_paths_are_refused_with_the_reason() {
    let world = World::new();
    let good = world.repo("good", "git@github.com:acme/good.git");
    let outside = world.root.join("outside");
    fs::create_dir_all(&outside).unwrap();
    world.run_git(&outside, &["init", "-q"]);
    let link = world.code.join("sneaky");
    symlink(&outside, &link).unwrap();
    let file = world.code.join("a-file");
    fs::write(&file, "x").unwrap();
    let no_git = world.code.join("plain-dir");
    fs::create_dir_all(&no_git).unwrap();
    let list = allowlist(&world, None);

    let traversal = format!("{}/../../outside", world.code.display());
    let cases: Vec<(String, &str)> = vec![
        (
            link.display().to_string(),
            "is outside the daemon allowlist",
        ),
        (traversal, "contains `..`"),
        ("code/good".into(), "repoPath is not absolute: code/good"),
        (String::new(), "repoPath is empty or not a string"),
        (file.display().to_string(), "is not a directory"),
        (
            no_git.display().to_string(),
            "has no .git entry (not a git repo)",
        ),
        (
            outside.display().to_string(),
            "is outside the daemon allowlist (set GSTACK_DAEMON_REPO_ALLOWLIST to extend)",
        ),
        ("/".into(), "is outside the daemon allowlist"),
        (
            world.code.join("missing").display().to_string(),
            "does not exist",
        ),
    ];
    for (path, reason) in cases {
        let (gate, why) = refused(&list, &record(&path, "feat/x", "main"));
        assert_eq!(gate, Gate::RepoPath, "{path}");
        assert!(why.contains(reason), "{path}: {why}");
    }
    let gated = list
        .gate_record(&record(good.to_str().unwrap(), "feat/x", "main"))
        .unwrap();
    assert_eq!(gated.identity(), "github.com/acme/good");
    assert_eq!(gated.repo().path(), good);
}

#[test]
fn slash_as_project_root_allows_nothing() {
    let world = World::new();
    let outside = world.root.join("outside");
    fs::create_dir_all(&outside).unwrap();
    world.run_git(&outside, &["init", "-q"]);
    let (list, refused_entries) = Allowlist::build(Some(&world.home), None, Some(Path::new("/")));
    assert!(
        refused_entries
            .iter()
            .any(|r| r.contains("resolves to `/`"))
    );
    let (gate, _) = refused(&list, &record(outside.to_str().unwrap(), "f", "main"));
    assert_eq!(gate, Gate::RepoPath);
    // The project root itself, when it is a real directory, is allowed.
    let root_list = allowlist(&world, Some(&world.root));
    assert!(
        root_list
            .gate_record(&record(outside.to_str().unwrap(), "f", "main"))
            .is_ok()
    );
}

#[test]
fn every_branch_from_the_design_blocks_the_record() {
    let world = World::new();
    let repo = world.repo("w", "git@github.com:acme/w.git");
    let list = allowlist(&world, None);
    let repo = repo.to_str().unwrap();
    for bad in [
        "evil:refs/heads/main",
        "evil+force",
        "evil^",
        "evil~1",
        "--upload-pack=bad",
        "foo/../main",
    ] {
        let (gate, _) = refused(&list, &record(repo, bad, "main"));
        assert_eq!(gate, Gate::FeatureBranch, "{bad}");
        let (gate, _) = refused(&list, &record(repo, "feat/ok", bad));
        assert_eq!(gate, Gate::BaseBranch, "{bad}");
    }
}

#[test]
fn linked_worktree_git_dir_must_be_allowed_too() {
    let world = World::new();
    let repo = world.repo("w", "git@github.com:acme/w.git");
    let list = allowlist(&world, None);
    // A `.git` file pointing at a git dir outside the allowlist.
    let outside = world.root.join("elsewhere");
    fs::create_dir_all(&outside).unwrap();
    world.run_git(&outside, &["init", "-q", "--bare", "real.git"]);
    let fake = world.code.join("fake-worktree");
    fs::create_dir_all(&fake).unwrap();
    fs::write(
        fake.join(".git"),
        format!("gitdir: {}\n", outside.join("real.git").display()),
    )
    .unwrap();
    let (gate, why) = refused(&list, &record(fake.to_str().unwrap(), "f", "main"));
    assert_eq!(gate, Gate::RepoPath);
    assert!(why.contains("git dir that resolves to"), "{why}");
    // A real linked worktree of an allowed repo passes.
    let linked = world.code.join("linked");
    world.run_git(&repo, &["worktree", "add", "-q", linked.to_str().unwrap()]);
    assert!(
        list.gate_record(&record(linked.to_str().unwrap(), "f", "main"))
            .is_ok()
    );
}

#[test]
fn worktree_outside_the_allowlist_falls_back_to_scratch() {
    let world = World::new();
    let repo = world.repo("w", "git@github.com:acme/w.git");
    let outside = world.root.join("wt");
    fs::create_dir_all(&outside).unwrap();
    world.run_git(&outside, &["init", "-q"]);
    let list = allowlist(&world, None);
    let mut rec = record(repo.to_str().unwrap(), "feat/x", "main");
    rec.worktree_path = outside.display().to_string();
    let gated = list.gate_record(&rec).unwrap();
    match gated.worktree() {
        WorktreeChoice::Scratch { reason } => {
            assert!(reason.starts_with("worktreePath rejected: "), "{reason}")
        }
        WorktreeChoice::Use(p) => panic!("an outside worktree was accepted: {}", p.display()),
    }
}

#[test]
fn a_record_cannot_claim_another_repos_identity_and_legacy_records_get_one() {
    let world = World::new();
    let repo = world.repo("w", "git@github.com:acme/w.git");
    let list = allowlist(&world, None);
    let mut rec = record(repo.to_str().unwrap(), "feat/x", "main");
    assert_eq!(rec.repo_identity, None, "legacy record");
    assert_eq!(
        *list.gate_record(&rec).unwrap().identity(),
        "github.com/acme/w"
    );
    rec.repo_identity = Some("github.com/acme/other".into());
    let (gate, why) = refused(&list, &rec);
    assert_eq!(gate, Gate::RepoIdentity);
    assert!(
        why.contains("has origin identity github.com/acme/w"),
        "{why}"
    );
}

/// A repo whose config would run programs if anything ran `git` in it: berth must never
/// trigger them, whatever it does with the record.
#[test]
fn hostile_repo_config_never_runs() {
    let world = World::new();
    let lane = world.git_lane("hostile", None);
    let repo = lane.clone.clone();
    let feature = lane.push_feature("feat/h", "main");
    let canary = world.root.join("CANARY");
    let script = world.root.join("plant.sh");
    fs::write(&script, format!("#!/bin/sh\ntouch {}\n", canary.display())).unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let s = script.to_str().unwrap();
    for (key, value) in [
        ("core.fsmonitor", s),
        ("core.sshCommand", s),
        ("credential.helper", s),
    ] {
        world.run_git(&repo, &["config", key, value]);
    }
    for hook in [
        "pre-commit",
        "post-checkout",
        "pre-push",
        "reference-transaction",
        "post-index-change",
    ] {
        let path = repo.join(".git/hooks").join(hook);
        fs::copy(&script, &path).unwrap();
    }
    assert!(!canary.exists(), "setup itself must not fire the canary");

    world
        .berth()
        .args([
            "enqueue",
            "--repo-path",
            repo.to_str().unwrap(),
            "--pr",
            "3",
        ])
        .args(["--feature-branch", &feature, "--version", "1"])
        .assert()
        .success();
    world.berth().arg("status").assert().success();
    // The whole landing path: identity, forge fetch, lane lock push, release. The landing
    // command itself only prints: any git process berth started would fire a hook.
    let config = world.config("forge = \"git\"\nland_command = [\"echo\", \"{branch}\"]\n");
    world.run_once(&config).code(1);
    let id = fs::read_dir(&world.queue)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with("-main-pr-3.json"))
        .unwrap();
    let record = world.read_record(id.trim_end_matches(".json"));
    assert_eq!(record["status"], "blocked", "{record:#}");
    assert!(
        record["lastError"].as_str().unwrap().contains("not merged"),
        "{record:#}"
    );
    let list = allowlist(&world, None);
    list.gate_record(&Record::from_json(record).unwrap())
        .unwrap();
    assert!(
        !canary.exists(),
        "a program from the repo's config or hooks ran"
    );
}

#[test]
fn a_checkout_of_another_repository_is_not_used_as_the_worktree() {
    let world = World::new();
    let a = world.repo("a", "git@github.com:acme/a.git");
    let b = world.repo("b", "git@github.com:acme/b.git");
    let list = allowlist(&world, None);
    let mut rec = record(a.to_str().unwrap(), "feat/x", "main");
    rec.worktree_path = b.display().to_string();
    match list.gate_record(&rec).unwrap().worktree().clone() {
        WorktreeChoice::Scratch { reason } => {
            assert!(
                reason.contains("checkout of another repository"),
                "{reason}"
            )
        }
        WorktreeChoice::Use(p) => panic!("another repo's checkout was accepted: {}", p.display()),
    }
    // A linked worktree of the same repository is fine.
    let linked = world.code.join("a-linked");
    world.run_git(&a, &["worktree", "add", "-q", linked.to_str().unwrap()]);
    rec.worktree_path = linked.display().to_string();
    assert_eq!(
        *list.gate_record(&rec).unwrap().worktree(),
        WorktreeChoice::Use(linked)
    );
}

/// libgit2 follows `include.path`; an include of a FIFO would hang the daemon inside the
/// gate. The gate refuses includes (and non-regular git files) before libgit2 opens them.
#[test]
fn a_config_include_or_fifo_is_refused_without_hanging() {
    let world = World::new();
    let repo = world.repo("w", "git@github.com:acme/w.git");
    let fifo = world.root.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    world.run_git(&repo, &["config", "include.path", fifo.to_str().unwrap()]);
    let list = allowlist(&world, None);
    let started = std::time::Instant::now();
    let (gate, why) = refused(&list, &record(repo.to_str().unwrap(), "f", "main"));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(gate, Gate::RepoPath);
    assert!(why.contains("does not follow"), "{why}");

    let other = world.repo("v", "git@github.com:acme/v.git");
    fs::remove_file(other.join(".git/HEAD")).unwrap();
    nix::unistd::mkfifo(&other.join(".git/HEAD"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let (_, why) = refused(&list, &record(other.to_str().unwrap(), "f", "main"));
    assert!(why.contains("not a regular file"), "{why}");
}
