//! The forge layer against real processes and real repositories: the gh stand-in
//! (`tests/gh-stand-in/gh`, replaying `fixtures/gh/`) for GhForge, and bare remotes made with
//! the git CLI for GitForge. No network.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth::forge::gh::GhForge;
use berth::forge::git::GitForge;
use berth::forge::{
    ClaimRefusal, Forge, ForgeError, ForgeRepo, MarkerCheck, MergeProof, PrCheck, PrRef, PrState,
    verify_claim,
};
use serde_json::{Value, json};
use tempfile::TempDir;

const WIDGET: &str = "github.com/acme/widget";
const LIST_ARGV: [&str; 12] = [
    "pr",
    "list",
    "--repo",
    "acme/widget",
    "--state",
    "open",
    "--label",
    "gstack-release-queued",
    "--limit",
    "200",
    "--json",
    "number,url,baseRefName,headRefName,body,isCrossRepository",
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stand_in() -> PathBuf {
    manifest_dir().join("tests/gh-stand-in/gh")
}

/// A temp copy of the recorded GitHub responses plus the stand-in's call log.
struct GhWorld {
    dir: TempDir,
}

impl GhWorld {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let fixtures = manifest_dir().join("fixtures/gh");
        for entry in std::fs::read_dir(&fixtures).expect("fixtures/gh exists") {
            let entry = entry.expect("dir entry");
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy fixture");
        }
        Self { dir }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("calls.jsonl")
    }

    fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.dir.path().join(name), contents).expect("write response");
    }

    /// GhForge pointed at the stand-in by path.
    fn forge(&self) -> GhForge {
        GhForge::new()
            .with_program(stand_in())
            .with_timeout(Duration::from_secs(20))
            .with_env("GH_STANDIN_DIR", self.dir.path())
            .with_env("GH_STANDIN_LOG", self.log())
    }

    /// Every call the stand-in saw, in order.
    fn calls(&self) -> Vec<Value> {
        match std::fs::read_to_string(self.log()) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).expect("log line is JSON"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn widget() -> ForgeRepo {
    ForgeRepo::new(WIDGET, "git@github.com:acme/widget.git")
}

fn pr_ref(number: u64, feature: &'static str) -> PrRef<'static> {
    PrRef {
        number,
        feature_branch: feature,
        base_branch: "main",
    }
}

#[test]
fn gh_discovery_keeps_labelled_same_repo_prs_with_a_marker() {
    let world = GhWorld::new();
    let prs = world.forge().list_queued(&widget()).expect("discovery");
    // Fixture: 41, 42 keep; 43 fork, 44 no marker, 45 marker without version are dropped;
    // 46 closed and 47 unlabelled are filtered out by gh's own --state/--label.
    let numbers: Vec<u64> = prs.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [41, 42]);
    let search = &prs[1];
    assert_eq!(search.head_branch, "feat/search");
    assert_eq!(search.base_branch, "main");
    assert_eq!(
        search.url.as_deref(),
        Some("https://github.com/acme/widget/pull/42")
    );
    // PR 42's body has CRLF line endings, as the GitHub web editor writes them.
    assert_eq!(search.marker.feature_branch(), "feat/search");
    assert_eq!(search.marker.version(), "1.4.0.0");
    assert_eq!(
        search.marker.fields()["worktreePath"],
        "/Users/dev/.gstack/build-worktrees/widget-42"
    );

    let calls = world.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0], json!({ "argv": LIST_ARGV }));
}

#[test]
fn gh_enterprise_host_goes_through_gh_host_and_github_com_clears_it() {
    let world = GhWorld::new();
    let ghe = ForgeRepo::new("ghe.example.com/acme/widget", "");
    world.forge().list_queued(&ghe).expect("discovery");
    // An inherited/configured GH_HOST must not redirect a github.com question.
    world
        .forge()
        .with_env("GH_HOST", "evil.example.com")
        .list_queued(&widget())
        .expect("discovery");
    let calls = world.calls();
    assert_eq!(
        calls[0],
        json!({ "argv": LIST_ARGV, "ghHost": "ghe.example.com" })
    );
    assert_eq!(calls[1], json!({ "argv": LIST_ARGV }));
}

#[test]
fn gh_default_program_is_gh_from_path() {
    let world = GhWorld::new();
    let bin = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(stand_in(), bin.path().join("gh")).expect("symlink");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let forge = GhForge::new()
        .with_env("PATH", path)
        .with_env("GH_STANDIN_DIR", world.dir.path())
        .with_env("GH_STANDIN_LOG", world.log());
    assert_eq!(forge.name(), "gh");
    assert_eq!(forge.list_queued(&widget()).expect("discovery").len(), 2);
    assert_eq!(world.calls().len(), 1);
}

#[test]
fn gh_non_github_identities_are_refused_before_running_anything() {
    let world = GhWorld::new();
    for identity in [
        "path:/home/u/code/widget",
        "gitlab.example.com/group/sub/widget",
        "github.com/acme/--upload-pack=evil",
        "github.com/acme/wid get",
    ] {
        let repo = ForgeRepo::new(identity, "");
        let err = world.forge().list_queued(&repo).expect_err(identity);
        assert!(
            matches!(err, ForgeError::NotGitHub { .. }),
            "{identity}: {err}"
        );
        assert!(err.to_string().contains(identity), "{err}");
        let err = world
            .forge()
            .check_pr(&repo, &pr_ref(42, "feat/search"))
            .expect_err(identity);
        assert!(
            matches!(err, ForgeError::NotGitHub { .. }),
            "{identity}: {err}"
        );
    }
    assert!(
        world.calls().is_empty(),
        "gh must not run for a bad identity"
    );
}

#[test]
fn gh_hanging_call_is_killed_at_the_timeout() {
    let world = GhWorld::new();
    world.write("pr-view.acme.widget.42.sleep", "60");
    let forge = world.forge().with_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let err = forge
        .check_pr(&widget(), &pr_ref(42, "feat/search"))
        .expect_err("must time out");
    let took = started.elapsed();
    assert!(matches!(err, ForgeError::Timeout { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("github.com/acme/widget PR #42"), "{msg}");
    assert!(
        msg.contains(
            "pr view 42 --repo acme/widget --json number,state,labels,body,headRefName,baseRefName"
        ),
        "{msg}"
    );
    assert!(msg.contains("timed out after 1s"), "{msg}");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // The stand-in's own child (the `sleep`) was in gh's process group: it must be gone too.
    let pid: u32 =
        std::fs::read_to_string(world.dir.path().join("pr-view.acme.widget.42.sleep.pid"))
            .expect("stand-in wrote the sleeper's pid")
            .trim()
            .parse()
            .expect("pid");
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(pid) {
        assert!(Instant::now() < deadline, "sleeper {pid} survived the kill");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Alive and not a zombie (a zombie has already been killed; only its reaping is pending).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

#[test]
fn gh_non_zero_exit_surfaces_trimmed_stderr() {
    let world = GhWorld::new();
    world.write(
        "pr-view.acme.widget.42.stderr",
        "GraphQL: Could not resolve to a PullRequest with the number of 42. (repository.pullRequest)\n\n",
    );
    world.write("pr-view.acme.widget.42.exit", "1");
    let err = world
        .forge()
        .merge_proof(&widget(), &pr_ref(42, "feat/search"))
        .expect_err("must fail");
    let ForgeError::CommandFailed {
        ref status,
        ref stderr,
        ref subject,
        ..
    } = err
    else {
        panic!("unexpected error: {err}");
    };
    assert_eq!(status, "exit code 1");
    assert_eq!(
        stderr,
        "GraphQL: Could not resolve to a PullRequest with the number of 42. (repository.pullRequest)"
    );
    assert_eq!(subject.pr, Some(42));
    assert!(
        err.to_string()
            .starts_with("github.com/acme/widget PR #42: `"),
        "{err}"
    );

    // An unrecorded call fails the same way, with the stand-in's own message.
    let err = world
        .forge()
        .merge_proof(&widget(), &pr_ref(777, "feat/none"))
        .expect_err("unknown call");
    assert!(err.to_string().contains("no recorded response"), "{err}");
}

#[test]
fn gh_merge_proof_reads_state_merge_time_and_commit() {
    let world = GhWorld::new();
    let forge = world.forge();
    let merged = forge
        .merge_proof(&widget(), &pr_ref(41, "feat/login"))
        .expect("proof");
    assert!(merged.merged);
    assert_eq!(merged.state, PrState::Merged);
    assert_eq!(merged.merged_at.as_deref(), Some("2025-06-01T11:02:33Z"));
    assert_eq!(
        merged.merge_commit.as_deref(),
        Some("9f2c1e7b4a6d8c0e1f3a5b7c9d0e2f4a6b8c0d1e")
    );

    let open = forge
        .merge_proof(&widget(), &pr_ref(42, "feat/search"))
        .expect("proof");
    assert!(!open.merged);
    assert_eq!(open.state, PrState::Open);
    assert_eq!((open.merged_at, open.merge_commit), (None, None));

    let closed = forge
        .merge_proof(&widget(), &pr_ref(48, "feat/abandoned"))
        .expect("proof");
    assert!(!closed.merged);
    assert_eq!(closed.state, PrState::Closed);

    // MERGED without a merge time is not proof.
    world.write(
        "pr-view.acme.widget.60.json",
        r#"{"number": 60, "state": "MERGED", "mergedAt": null, "mergeCommit": null}"#,
    );
    let odd = forge
        .merge_proof(&widget(), &pr_ref(60, "feat/odd"))
        .expect("proof");
    assert!(!odd.merged);

    assert_eq!(
        world.calls()[0],
        json!({ "argv": ["pr", "view", "41", "--repo", "acme/widget", "--json", "state,mergedAt,mergeCommit"] })
    );
}

#[test]
fn gh_check_pr_feeds_verify_claim() {
    let world = GhWorld::new();
    let forge = world.forge();
    let check = forge
        .check_pr(&widget(), &pr_ref(42, "feat/search"))
        .expect("check");
    assert_eq!(check.state, PrState::Open);
    assert!(check.labelled);
    assert!(matches!(check.marker, MarkerCheck::Valid(_)));
    assert_eq!(
        (check.head_branch.as_str(), check.base_branch.as_str()),
        ("feat/search", "main")
    );
    assert_eq!(verify_claim(&check, &pr_ref(42, "feat/search")), Ok(()));
    assert_eq!(
        verify_claim(&check, &pr_ref(42, "feat/other"))
            .expect_err("branch swapped")
            .to_string(),
        "PR #42's queue marker says feature branch feat/search but the record says feat/other"
    );
    assert_eq!(
        world.calls()[0],
        json!({ "argv": ["pr", "view", "42", "--repo", "acme/widget", "--json",
                         "number,state,labels,body,headRefName,baseRefName"] })
    );

    let merged = forge
        .check_pr(&widget(), &pr_ref(41, "feat/login"))
        .expect("check");
    assert_eq!(
        verify_claim(&merged, &pr_ref(41, "feat/login"))
            .expect_err("merged")
            .to_string(),
        "PR #41 is already merged on GitHub"
    );
    let closed = forge
        .check_pr(&widget(), &pr_ref(48, "feat/abandoned"))
        .expect("check");
    assert_eq!(
        verify_claim(&closed, &pr_ref(48, "feat/abandoned"))
            .expect_err("closed")
            .to_string(),
        "PR #48 is closed on GitHub"
    );

    // Label removed and marker stripped after queuing.
    world.write(
        "pr-view.acme.widget.50.json",
        r#"{"number": 50, "state": "OPEN", "labels": [{"id": "LA_x", "name": "release", "description": "", "color": "ededed"}],
            "body": "no marker", "headRefName": "feat/y", "baseRefName": "main"}"#,
    );
    let bare = forge
        .check_pr(&widget(), &pr_ref(50, "feat/y"))
        .expect("check");
    assert_eq!(
        verify_claim(&bare, &pr_ref(50, "feat/y")),
        Err(ClaimRefusal::Unlabelled { pr: 50 })
    );
    assert!(matches!(bare.marker, MarkerCheck::Invalid(_)));

    // An unknown state is an error, not a guess.
    world.write(
        "pr-view.acme.widget.51.json",
        r#"{"number": 51, "state": "DRAFTY", "labels": [], "body": "", "headRefName": "a", "baseRefName": "main"}"#,
    );
    let err = forge
        .check_pr(&widget(), &pr_ref(51, "a"))
        .expect_err("unknown state");
    assert!(
        err.to_string().contains("unknown PR state \"DRAFTY\""),
        "{err}"
    );
}

#[test]
fn gh_unexpected_json_shape_is_reported() {
    // The stand-in always answers with an object; a program that prints an array stands in
    // for a gh whose output format changed.
    let bin = tempfile::tempdir().expect("tempdir");
    let fake = bin.path().join("gh");
    std::fs::write(&fake, "#!/bin/sh\necho '[1, 2, 3]'\n").expect("write");
    make_executable(&fake);
    let err = GhForge::new()
        .with_program(&fake)
        .check_pr(&widget(), &pr_ref(42, "feat/search"))
        .expect_err("array is not a PR");
    assert!(matches!(err, ForgeError::BadOutput { .. }), "{err}");
    assert!(err.to_string().contains("expected a JSON object"), "{err}");

    std::fs::write(&fake, "#!/bin/sh\necho 'not json'\n").expect("write");
    let err = GhForge::new()
        .with_program(&fake)
        .list_queued(&widget())
        .expect_err("not JSON");
    assert!(err.to_string().contains("not JSON"), "{err}");
}

#[test]
fn gh_runaway_stdout_is_capped_and_the_program_stopped() {
    let bin = tempfile::tempdir().expect("tempdir");
    let fake = bin.path().join("gh");
    std::fs::write(
        &fake,
        "#!/bin/sh\nexec yes '[0000000000000000000000000000000000]'\n",
    )
    .expect("write");
    make_executable(&fake);
    let started = Instant::now();
    let err = GhForge::new()
        .with_program(&fake)
        .with_timeout(Duration::from_secs(30))
        .list_queued(&widget())
        .expect_err("too large");
    assert!(matches!(err, ForgeError::OutputTooLarge { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn gh_missing_program_is_a_spawn_error() {
    let err = GhForge::new()
        .with_program("/nonexistent/bin/gh")
        .list_queued(&widget())
        .expect_err("no such program");
    assert!(matches!(err, ForgeError::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/bin/gh"), "{err}");
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

// ---------------------------------------------------------------------------------------
// GitForge: a bare "origin" and a working clone, driven with the git CLI (tests only).

struct GitWorld {
    dir: TempDir,
    /// Serves origin as `git://` when set: the forge fetches; otherwise origin is a local
    /// path, which the forge reads in place.
    daemon: Option<berth::git_daemon::GitDaemon>,
}

impl GitWorld {
    /// Runs `test` over a local origin and over the same kind of origin served by
    /// `git daemon`: the two ways the git forge reads origin.
    fn both(test: impl Fn(GitWorld)) {
        test(GitWorld::new());
        let mut served = GitWorld::new();
        served.daemon =
            Some(berth::git_daemon::GitDaemon::start(served.dir.path()).expect("git daemon"));
        test(served);
    }

    /// The private directory where the forge keeps what it learned of origin.
    fn kept(&self) -> PathBuf {
        let name = match self.daemon {
            Some(_) => "forge-scratch",
            None => "forge-local-seen.git",
        };
        self.dir.path().join("berth").join(name)
    }

    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let world = Self { dir, daemon: None };
        world.git(
            &["init", "--bare", "--initial-branch=main", "origin.git"],
            None,
        );
        world.git(&["clone", "origin.git", "work"], None);
        world.commit("README.md", "hello\n");
        world.git(&["push", "origin", "HEAD:refs/heads/main"], Some("work"));
        world
    }

    fn origin(&self) -> String {
        match &self.daemon {
            Some(daemon) => daemon.url_for("origin.git"),
            None => self.dir.path().join("origin.git").display().to_string(),
        }
    }

    fn repo(&self) -> ForgeRepo {
        ForgeRepo::new("example.com/acme/widget", self.origin())
    }

    fn forge(&self) -> GitForge {
        GitForge::new(self.dir.path().join("berth/forge-scratch"))
            .with_timeout(Duration::from_secs(30))
    }

    fn git(&self, args: &[&str], sub: Option<&str>) -> String {
        let cwd = sub.map_or_else(|| self.dir.path().to_owned(), |s| self.dir.path().join(s));
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=Berth Test",
                "-c",
                "user.email=berth@example.com",
            ])
            .args([
                "-c",
                "init.defaultBranch=main",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(cwd)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn commit(&self, file: &str, text: &str) {
        std::fs::write(self.dir.path().join("work").join(file), text).expect("write");
        self.git(&["add", file], Some("work"));
        self.git(&["commit", "-m", &format!("change {file}")], Some("work"));
    }

    /// feat/x with one commit of its own, pushed; the clone is left on main.
    fn push_feature(&self, branch: &str) {
        self.git(&["checkout", "-q", "-b", branch, "main"], Some("work"));
        self.commit(&format!("{}.txt", branch.replace('/', "-")), "work\n");
        self.git(
            &["push", "origin", &format!("{branch}:refs/heads/{branch}")],
            Some("work"),
        );
        self.git(&["checkout", "-q", "main"], Some("work"));
    }

    /// Merge commit of `branch` into main, pushed; returns origin's new main sha.
    fn merge_into_main(&self, branch: &str) -> String {
        self.git(
            &["merge", "-q", "--no-ff", "-m", "merge", branch],
            Some("work"),
        );
        self.git(&["push", "origin", "main:refs/heads/main"], Some("work"));
        self.git(&["rev-parse", "refs/heads/main"], Some("origin.git"))
    }

    /// `forge`'s claim check of [`feat_x`] on origin.
    fn check_x(&self, forge: &GitForge) -> PrCheck {
        forge.check_pr(&self.repo(), &feat_x()).expect("check")
    }

    /// `forge`'s merge proof of [`feat_x`] on origin.
    fn proof_x(&self, forge: &GitForge) -> MergeProof {
        forge.merge_proof(&self.repo(), &feat_x()).expect("proof")
    }

    fn delete_on_origin(&self, branch: &str) {
        self.git(&["push", "origin", "--delete", branch], Some("work"));
    }
}

fn feat_x() -> PrRef<'static> {
    pr_ref(7, "feat/x")
}

#[test]
fn git_unmerged_feature_branch_is_an_open_pr() {
    GitWorld::both(unmerged_feature_branch_is_an_open_pr);
}

fn unmerged_feature_branch_is_an_open_pr(world: GitWorld) {
    world.push_feature("feat/x");
    let forge = world.forge();
    assert_eq!(forge.name(), "git");
    assert!(forge.list_queued(&world.repo()).expect("list").is_empty());

    let check = world.check_x(&forge);
    assert_eq!(check.state, PrState::Open);
    assert!(check.labelled);
    assert_eq!(check.marker, MarkerCheck::NotApplicable);
    assert_eq!(check.seen_on, "origin");
    assert_eq!(verify_claim(&check, &feat_x()), Ok(()));

    let proof = world.proof_x(&forge);
    assert!(!proof.merged);
    assert_eq!(proof.state, PrState::Open);
    assert_eq!(proof.merge_commit, None);

    // What berth keeps of origin is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(world.kept())
        .expect("scratch exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn git_merge_pushed_to_base_is_merged() {
    GitWorld::both(merge_pushed_to_base_is_merged);
}

fn merge_pushed_to_base_is_merged(world: GitWorld) {
    world.push_feature("feat/x");
    let forge = world.forge();
    assert_eq!(world.check_x(&forge).state, PrState::Open);
    let main = world.merge_into_main("feat/x");
    let proof = world.proof_x(&forge);
    assert!(proof.merged);
    assert_eq!(proof.state, PrState::Merged);
    assert_eq!(proof.merge_commit.as_deref(), Some(main.as_str()));
    assert_eq!(proof.merged_at, None);

    let check = world.check_x(&forge);
    assert_eq!(
        verify_claim(&check, &feat_x())
            .expect_err("merged")
            .to_string(),
        "PR #7 is already merged on origin"
    );
}

/// A local origin is read where it is: a claim check and a merge proof fetch nothing into
/// berth's scratch repository and leave origin's refs and objects as they were.
#[test]
fn git_local_origin_is_read_in_place_without_a_fetch() {
    let world = GitWorld::new();
    world.push_feature("feat/x");
    let forge = world.forge();
    let origin = || {
        (
            world.git(
                &["for-each-ref", "--format=%(refname) %(objectname)"],
                Some("origin.git"),
            ),
            world.git(&["count-objects", "-v"], Some("origin.git")),
        )
    };
    let before = origin();
    for _ in 0..3 {
        assert_eq!(world.check_x(&forge).state, PrState::Open);
    }
    world.merge_into_main("feat/x");
    let after_merge = origin();
    assert!(world.proof_x(&forge).merged);
    assert_ne!(before, after_merge);
    assert_eq!(origin(), after_merge, "origin was written");
    assert!(
        !world.dir.path().join("berth/forge-scratch").exists(),
        "something was fetched"
    );
    let kept = world.git(
        &["for-each-ref", "--format=%(refname)"],
        Some("berth/forge-local-seen.git"),
    );
    assert_eq!(
        kept.lines().count(),
        1,
        "one feature head remembered: {kept}"
    );
}

/// A head merged a while ago, under commits landed since (no parent of base's tip), is
/// still proven merged; one never merged is not, however long base's history grew.
#[test]
fn git_a_head_deep_in_base_is_merged_and_one_beside_it_is_not() {
    GitWorld::both(head_deep_in_base_is_merged_and_one_beside_it_is_not);
}

fn head_deep_in_base_is_merged_and_one_beside_it_is_not(world: GitWorld) {
    world.push_feature("feat/x");
    world.push_feature("feat/y");
    world.merge_into_main("feat/x");
    for n in 0..3 {
        world.commit(&format!("later-{n}.txt"), "later\n");
    }
    world.git(&["push", "origin", "main:refs/heads/main"], Some("work"));
    let forge = world.forge();
    let proof = world.proof_x(&forge);
    assert!(proof.merged, "{proof:?}");
    let y = forge
        .merge_proof(&world.repo(), &pr_ref(8, "feat/y"))
        .expect("proof");
    assert!(!y.merged, "{y:?}");
    assert_eq!(y.state, PrState::Open);
}

#[test]
fn git_fast_forward_merge_counts_as_merged() {
    GitWorld::both(fast_forward_merge_counts_as_merged);
}

fn fast_forward_merge_counts_as_merged(world: GitWorld) {
    world.push_feature("feat/ff");
    world.git(
        &["push", "origin", "refs/heads/feat/ff:refs/heads/main"],
        Some("work"),
    );
    let proof = world
        .forge()
        .merge_proof(&world.repo(), &pr_ref(8, "feat/ff"))
        .expect("proof");
    assert!(proof.merged);
}

#[test]
fn git_deleted_branch_is_closed_unless_it_was_merged_first() {
    GitWorld::both(deleted_branch_is_closed_unless_it_was_merged_first);
}

fn deleted_branch_is_closed_unless_it_was_merged_first(world: GitWorld) {
    let forge = world.forge();

    // Never existed on origin.
    let ghost = forge
        .check_pr(&world.repo(), &pr_ref(9, "feat/ghost"))
        .expect("check");
    assert_eq!(ghost.state, PrState::Closed);
    assert_eq!(
        verify_claim(&ghost, &pr_ref(9, "feat/ghost"))
            .expect_err("closed")
            .to_string(),
        "couldn't find remote ref feat/ghost: PR #9 is closed on origin; its feature branch was deleted from origin unmerged"
    );

    // Seen open, then deleted without merging.
    world.push_feature("feat/x");
    assert_eq!(world.check_x(&forge).state, PrState::Open);
    world.delete_on_origin("feat/x");
    let proof = world.proof_x(&forge);
    assert_eq!(proof.state, PrState::Closed);
    assert!(!proof.merged);

    // Seen open, merged, then deleted (the usual end of a PR): still proven merged.
    world.push_feature("feat/y");
    let y = pr_ref(10, "feat/y");
    assert_eq!(
        forge.check_pr(&world.repo(), &y).expect("check").state,
        PrState::Open
    );
    let main = world.merge_into_main("feat/y");
    world.delete_on_origin("feat/y");
    let proof = forge.merge_proof(&world.repo(), &y).expect("proof");
    assert!(proof.merged, "{proof:?}");
    assert_eq!(proof.merge_commit.as_deref(), Some(main.as_str()));
}

#[test]
fn git_errors_name_repo_pr_and_cause() {
    let world = GitWorld::new();
    world.push_feature("feat/x");
    let forge = world.forge();

    let err = forge
        .check_pr(
            &world.repo(),
            &PrRef {
                number: 7,
                feature_branch: "feat/x",
                base_branch: "develop",
            },
        )
        .expect_err("no such base");
    assert_eq!(
        err.to_string(),
        "example.com/acme/widget PR #7: base branch develop does not exist on origin"
    );

    for bad in [
        "evil:refs/heads/main",
        "--upload-pack=bad",
        "foo/../main",
        "evil^",
    ] {
        let err = forge
            .merge_proof(&world.repo(), &pr_ref(7, bad))
            .expect_err(bad);
        assert!(matches!(err, ForgeError::BadBranch { .. }), "{bad}: {err}");
    }

    let gone = ForgeRepo::new(
        "example.com/acme/gone",
        world
            .dir
            .path()
            .join("no-such-origin.git")
            .display()
            .to_string(),
    );
    let err = forge.check_pr(&gone, &feat_x()).expect_err("no origin");
    assert!(matches!(err, ForgeError::Git { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("example.com/acme/gone PR #7: git "),
        "{err}"
    );
}

#[test]
fn git_parallel_checks_share_one_scratch_repo() {
    let world = GitWorld::new();
    for b in ["feat/a", "feat/b", "feat/c", "feat/d"] {
        world.push_feature(b);
    }
    let forge = world.forge();
    let repo = world.repo();
    std::thread::scope(|s| {
        let handles: Vec<_> = ["feat/a", "feat/b", "feat/c", "feat/d"]
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let (forge, repo) = (&forge, &repo);
                s.spawn(move || forge.check_pr(repo, &pr_ref(i as u64 + 1, b)))
            })
            .collect();
        for h in handles {
            let check = h.join().expect("thread").expect("check");
            assert_eq!(check.state, PrState::Open);
        }
    });
}

impl GitWorld {
    /// Writes a commit object into origin (`hash-object --literally`: no check of what its
    /// parent ids name) with main's tree and the given parents, and returns its id.
    fn literal_commit_in_origin(&self, parents: &[&str]) -> String {
        let tree = self.git(&["rev-parse", "main^{tree}"], Some("origin.git"));
        let mut text = format!("tree {tree}\n");
        for parent in parents {
            text.push_str(&format!("parent {parent}\n"));
        }
        text.push_str(
            "author Berth Test <berth@example.com> 1700000000 +0000\n\
             committer Berth Test <berth@example.com> 1700000000 +0000\n\nland feat/x\n",
        );
        let file = self.dir.path().join("commit.txt");
        std::fs::write(&file, text).unwrap();
        self.git(
            &[
                "hash-object",
                "-t",
                "commit",
                "-w",
                "--literally",
                file.to_str().unwrap(),
            ],
            Some("origin.git"),
        )
    }

    /// Points origin's `refs/heads/<branch>` at `id` by writing the loose ref (git refuses
    /// a non-commit under refs/heads; a hostile writer of a local origin does not ask it).
    fn write_origin_ref(&self, branch: &str, id: &str) {
        let path = self.dir.path().join("origin.git/refs/heads").join(branch);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("{id}\n")).unwrap();
    }
}

/// Review 48. origin's feature branch points at a blob, and base's tip is a commit whose
/// second parent line names that blob. No commit is merged (`git merge-base --is-ancestor`
/// fails, `git log main` dies at the blob); libgit2's ancestry walk refuses the blob (the
/// proof fails, the record is not landed). The parent shortcut compares ids only and
/// answers merged.
#[test]
fn git_a_base_tip_naming_a_blob_head_as_its_parent_is_no_merge() {
    let world = GitWorld::new();
    world.push_feature("feat/x");
    let blob_file = world.dir.path().join("blob.txt");
    std::fs::write(&blob_file, "not a commit\n").unwrap();
    let blob = world.git(
        &["hash-object", "-w", blob_file.to_str().unwrap()],
        Some("origin.git"),
    );
    let main = world.git(&["rev-parse", "refs/heads/main"], Some("origin.git"));
    let tip = world.literal_commit_in_origin(&[&main, &blob]);
    world.git(&["update-ref", "refs/heads/main", &tip], Some("origin.git"));
    world.write_origin_ref("feat/x", &blob);
    let proof = world.forge().merge_proof(&world.repo(), &feat_x());
    assert!(
        !matches!(proof, Ok(ref p) if p.merged),
        "a blob named as a parent of base's tip proved merged: {proof:?}"
    );
}

/// Review 48. origin's feature branch names a commit origin does not have (pushed nowhere,
/// or lost), and base's tip is a commit whose parent line names it. Nothing of the head is
/// in origin; libgit2's walk cannot read it (no merge). The parent shortcut compares ids
/// only and answers merged.
#[test]
fn git_a_base_tip_naming_a_head_origin_lacks_as_its_parent_is_no_merge() {
    let world = GitWorld::new();
    world.git(&["checkout", "-q", "-b", "feat/x", "main"], Some("work"));
    world.commit("feat-x.txt", "never pushed\n");
    let head = world.git(&["rev-parse", "HEAD"], Some("work"));
    world.git(&["checkout", "-q", "main"], Some("work"));
    let main = world.git(&["rev-parse", "refs/heads/main"], Some("origin.git"));
    let tip = world.literal_commit_in_origin(&[&main, &head]);
    world.git(&["update-ref", "refs/heads/main", &tip], Some("origin.git"));
    world.write_origin_ref("feat/x", &head);
    let proof = world.forge().merge_proof(&world.repo(), &feat_x());
    assert!(
        !matches!(proof, Ok(ref p) if p.merged),
        "a head origin lacks, named as a parent of base's tip, proved merged: {proof:?}"
    );
}
