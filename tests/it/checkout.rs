//! Where the landing runs: a checkout of the feature branch's fetched head, in the
//! directory the gate checked (real repos, bare remotes, real daemons).

use std::fs;
use std::time::{Duration, Instant};

use crate::support::World;

/// A landing command that refuses unless it runs on `origin/<branch>`'s head, records
/// where it ran, then lands with the world's landing script.
fn checking_config(world: &World) -> std::path::PathBuf {
    let land = world.land_script();
    let script = format!(
        "if ! test \"$(git rev-parse HEAD)\" = \"$(git rev-parse origin/$1)\"; then echo not on the feature head; exit 3; fi; pwd -P > {cwd}; exec {land} \"$1\" \"$2\" {ledger} \"$3\"",
        cwd = world.root.join("cwd").display(),
        land = land.display(),
        ledger = world.root.join("ledger").display()
    );
    world.config(&format!(
        "forge = \"git\"\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n"
    ))
}

fn ran_in(world: &World) -> String {
    fs::read_to_string(world.root.join("cwd"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn a_clean_checkout_of_the_feature_head_is_used_as_it_is() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let feature = lane.push_feature("feat/pr-20", "main");
    let checkout = world.code.join("widget-feat");
    world.run_git(
        &lane.clone,
        &[
            "worktree",
            "add",
            "-q",
            checkout.to_str().unwrap(),
            &feature,
        ],
    );
    let id = world
        .record(&lane.clone, 20)
        .set("featureBranch", feature)
        .set("worktreePath", checkout.to_str().unwrap())
        .write();

    world.run_once(&checking_config(&world)).success();
    assert_eq!(world.read_record(&id)["status"], "landed");
    assert_eq!(ran_in(&world), checkout.to_str().unwrap());
    assert_eq!(world.ledger(), [20]);
}

/// The record's worktree is on another branch with a local edit: berth does not touch it
/// and lands in a scratch worktree detached at `origin/<feature>`.
#[test]
fn a_checkout_elsewhere_is_left_alone_and_the_landing_gets_the_feature_head() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let feature = lane.push_feature("feat/pr-21", "main");
    world.run_git(&lane.clone, &["checkout", "-q", "-b", "wip", "origin/main"]);
    fs::write(lane.clone.join("README"), "my unsaved work\n").unwrap();
    let id = world
        .record(&lane.clone, 21)
        .set("featureBranch", feature)
        .write();

    world.run_once(&checking_config(&world)).success();
    assert_eq!(world.read_record(&id)["status"], "landed");
    let scratch_root = world.berth_state().join("worktrees");
    assert!(
        ran_in(&world).starts_with(scratch_root.to_str().unwrap()),
        "{}",
        ran_in(&world)
    );
    assert!(lane.merged("feat/pr-21", "main"));
    assert_eq!(
        world.run_git(&lane.clone, &["symbolic-ref", "HEAD"]),
        "refs/heads/wip"
    );
    assert_eq!(
        fs::read_to_string(lane.clone.join("README")).unwrap(),
        "my unsaved work\n"
    );
    assert_eq!(fs::read_dir(&scratch_root).unwrap().count(), 0);
}

/// A producer swaps its checkout for a symlink to another repository after the record
/// turned `claiming`: the landing must not run there (or anywhere); the record is blocked
/// and says why.
#[test]
fn a_checkout_swapped_for_a_symlink_after_the_gate_blocks_the_record() {
    let world = World::new();
    let gh = world.gh_lane();
    let id = gh.queue_pr_42();
    let other = world.root.join("other-repo");
    fs::create_dir_all(&other).unwrap();
    world.run_git(&other, &["init", "-q"]);
    // The claim check hangs for a moment, while the record is `claiming`.
    fs::write(gh.replies.join("pr-view.acme.widget.42.sleep"), "2").unwrap();
    let config = gh.config(r#"["sh", "-c", "touch ran-here"]"#, "");
    let mut daemon = world.spawn_berth(
        &["run", "--once", "--config", config.to_str().unwrap()],
        &world.berth_state(),
        &[("GH_STANDIN_DIR", &gh.replies), ("GH_STANDIN_LOG", &gh.log)],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while world.read_record(&id)["status"] != "claiming" {
        assert!(Instant::now() < deadline, "the record was never claimed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let moved = world.root.join("widget-moved");
    fs::rename(&gh.repo, &moved).unwrap();
    std::os::unix::fs::symlink(&other, &gh.repo).unwrap();
    assert_eq!(daemon.wait().unwrap().code(), Some(1));

    let record = world.read_record(&id);
    assert_eq!(record["status"], "blocked", "{record:#}");
    let why = record["lastError"].as_str().unwrap();
    assert!(
        why.contains("no longer the directory the gate checked") && why.contains("symlink"),
        "{why}"
    );
    assert!(
        !other.join("ran-here").exists(),
        "the landing ran in the other repo"
    );
    assert!(!moved.join("ran-here").exists());
    assert!(gh.lock_refs().is_empty());
}

/// A commit on top of `base` in `clone`, pushed to `bare` only as `refs/pull/<pr>/head`
/// (what GitHub publishes for a fork's PR): its id.
fn push_fork_head(world: &World, clone: &std::path::Path, bare: &str, pr: u64) -> String {
    world.run_git(clone, &["checkout", "-q", "--detach", "origin/main"]);
    fs::write(clone.join("fork.txt"), "from a fork\n").unwrap();
    world.run_git(clone, &["add", "fork.txt"]);
    world.run_git(clone, &["commit", "-q", "-m", "a fork's change"]);
    world.run_git(
        clone,
        &["push", "-q", bare, &format!("HEAD:refs/pull/{pr}/head")],
    );
    world.run_git(clone, &["rev-parse", "HEAD"])
}

/// A fork's PR on the gh forge: its head branch is not on origin, but GitHub publishes its
/// head as `refs/pull/<N>/head`; the landing fetches that into `origin/<feature>` (where
/// landing commands look) and runs there, instead of blocking "nothing to land".
#[test]
fn a_fork_pr_on_github_lands_from_its_pull_ref() {
    let world = World::new();
    let gh = world.gh_lane();
    let fork_head = push_fork_head(&world, &gh.repo, gh.bare.to_str().unwrap(), 42);
    let id = gh.record_pr_42();
    let mut pr = gh.edit_pr_42(|pr| pr["isCrossRepository"] = true.into());
    // GitHub reports the PR merged once the landing command has run.
    pr["state"] = "MERGED".into();
    pr["mergedAt"] = "2026-01-01T00:00:00Z".into();
    pr["mergeCommit"] = serde_json::json!({"oid": fork_head});
    let merged = world.root.join("merged.json");
    fs::write(&merged, pr.to_string()).unwrap();
    let seen = world.root.join("seen");
    let script = format!(
        "echo \"$(git rev-parse HEAD) $(git rev-parse origin/feat/search)\" > {seen} && cp {merged} {view}",
        seen = seen.display(),
        merged = merged.display(),
        view = gh.pr_42_view().display()
    );
    let config = gh.config(&format!("[\"sh\", \"-c\", {script:?}]"), "");

    gh.berth()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .assert()
        .success();

    let record = world.read_record(&id);
    assert_eq!(record["status"], "landed", "{record:#}");
    assert_eq!(
        fs::read_to_string(&seen).unwrap().trim(),
        format!("{fork_head} {fork_head}"),
        "the landing ran on the fork's head, fetched into origin/feat/search"
    );
    assert!(gh.lock_refs().is_empty());
}

/// The git forge keeps its rule: a PR *is* its branch on origin, so a `refs/pull/<N>/head`
/// there is not landed and the record blocks naming the missing branch.
#[test]
fn the_git_forge_never_lands_a_pull_ref() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    push_fork_head(&world, &lane.clone, &lane.remote_url, 7);
    let id = world
        .record(&lane.clone, 7)
        .set("featureBranch", "feat/fork")
        .write();

    world.run_once(&checking_config(&world)).code(1);
    let record = world.read_record(&id);
    assert_eq!(record["status"], "blocked", "{record:#}");
    let why = record["lastError"].as_str().unwrap();
    assert!(why.contains("couldn't find remote ref feat/fork"), "{why}");
    assert!(world.ledger().is_empty());
}

/// A local origin with 3,000 other branches: the feature fetch of a head the record's
/// repo already has reads the feature's ref, not every ref of the origin. libgit2's
/// listing opened each ref's file (and read the object it names) for every landing.
/// Counted by inotify on the other branches' directory, from the record's writing to
/// its step's start (the step waits until counted; only berth reaches origin before).
#[test]
fn the_feature_fetch_from_a_local_origin_opens_no_other_branch() {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    const OTHER_BRANCHES: usize = 3_000;
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let main = world.run_git(&lane.clone, &["rev-parse", "origin/main"]);
    let many = std::path::Path::new(&lane.remote_url).join("refs/heads/many");
    fs::create_dir_all(&many).unwrap();
    for n in 0..OTHER_BRANCHES {
        fs::write(many.join(n.to_string()), format!("{main}\n")).unwrap();
    }
    let feature = lane.push_feature("feat/pr-30", "main");
    let (started, go) = (world.root.join("started"), world.root.join("go"));
    let script = format!(
        ": > {started}; while ! test -e {go}; do sleep 0.05; done; {land}",
        started = started.display(),
        go = go.display(),
        land = world.exec_land()
    );
    let config = world.step_config("berth.toml", &script);
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
    inotify.add_watch(&many, AddWatchFlags::IN_OPEN).unwrap();
    let id = world
        .record(&lane.clone, 30)
        .set("featureBranch", feature)
        .write();

    let mut daemon = world.spawn_watch(&config);
    let step_started = world.wait_for(Duration::from_secs(60), || started.exists());
    let mut opened = 0;
    while let Ok(events) = inotify.read_events() {
        opened += events
            .iter()
            .filter(|e| !e.mask.contains(AddWatchFlags::IN_ISDIR))
            .count();
    }
    fs::write(&go, "").unwrap();
    let landed = world.wait_for(Duration::from_secs(60), || {
        world.read_record(&id)["status"] == "landed"
    });
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(step_started && landed, "{:#}", world.read_record(&id));
    assert_eq!(world.ledger(), [30]);
    let log = fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default();
    // The claim check and the poll round ask the forge about PR 30 at once: each keeps
    // the feature head it saw, one write at a time.
    assert!(
        !log.contains("could not remember the feature head"),
        "{log}"
    );
    assert_eq!(
        opened, 0,
        "berth opened {opened} of {OTHER_BRANCHES} other branches' refs before the landing's step: {log}"
    );
}

/// A feature pushed to a local origin from another clone: the record's repo has none of
/// its objects, so they are fetched (the listing and the download, as before), and the
/// landing runs on the pushed head.
#[test]
fn a_feature_head_the_repo_lacks_is_fetched_from_a_local_origin() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    // A scratch worktree checks out `main` to land on: not while the clone has it.
    world.run_git(&lane.clone, &["checkout", "-q", "--detach"]);
    let other = world.clone_into(&world.root.join("elsewhere"), "widget", &lane.remote_url);
    world.run_git(&other, &["checkout", "-q", "-b", "feat/pr-23"]);
    fs::write(other.join("elsewhere.txt"), "pushed from another clone\n").unwrap();
    world.run_git(&other, &["add", "elsewhere.txt"]);
    world.run_git(&other, &["commit", "-q", "-m", "from elsewhere"]);
    world.run_git(&other, &["push", "-q", "origin", "feat/pr-23"]);
    let head = world.run_git(&other, &["rev-parse", "HEAD"]);
    let lacks = world
        .git(&lane.clone)
        .args(["cat-file", "-e", &head])
        .status()
        .unwrap();
    assert!(!lacks.success(), "the record's repo already has {head}");
    let id = world
        .record(&lane.clone, 23)
        .set("featureBranch", "feat/pr-23")
        .write();

    world.run_once(&checking_config(&world)).success();
    let record = world.read_record(&id);
    assert_eq!(record["status"], "landed", "{record:#}");
    assert_eq!(world.ledger(), [23]);
    assert!(lane.merged("feat/pr-23", "main"));
}
