//! The demo's throwaway world: bare remotes served by `git daemon` on 127.0.0.1, clones
//! under an allowed root, queued records, and one planted record.
//!
//! The world is built with the `git` CLI (the demo needs git on the machine anyway, for
//! `git daemon` and for the landing script); berth itself still runs no `git` process.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::DemoError;
use crate::git_daemon::GitDaemon;
use crate::record::Record;
use crate::store::QueueStore;

/// One queued PR in the demo.
pub struct DemoPr {
    pub id: String,
    pub pr: u64,
    pub feature: String,
    pub base: String,
}

pub struct World {
    pub code: PathBuf,
    pub queue: QueueStore,
    pub berth_dir: PathBuf,
    pub clone: PathBuf,
    pub origin_url: String,
    pub prs: Vec<DemoPr>,
    pub planted_id: String,
    pub land_script: PathBuf,
    /// An orchestrator's state dir holding one run whose feature was merged by hand.
    pub build_state: PathBuf,
    /// Where halt events go.
    pub faults_dir: PathBuf,
    /// The `--rules-root` the daemon watches (empty at first: the embedded defaults apply).
    pub rules_root: PathBuf,
    /// Serves the remote for as long as the world exists; stopped on drop.
    _server: GitDaemon,
}

/// Runs `git` with a fixed identity and none of the user's or system's config, so the
/// demo behaves the same on every machine.
pub fn git(cwd: &Path, args: &[&str]) -> Result<String, DemoError> {
    let out = Command::new("git")
        .current_dir(cwd)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "berth demo")
        .env("GIT_AUTHOR_EMAIL", "demo@berth.invalid")
        .env("GIT_COMMITTER_NAME", "berth demo")
        .env("GIT_COMMITTER_EMAIL", "demo@berth.invalid")
        .args(args)
        .output()
        .map_err(|source| DemoError::GitSpawn {
            args: owned(args),
            source,
        })?;
    if !out.status.success() {
        return Err(DemoError::Git {
            args: owned(args),
            cwd: cwd.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

/// The landing command: merge the feature branch into the base, push, like a release
/// agent would. It pauses a moment so the lane lock can be seen on the remote.
const LAND_SCRIPT: &str = "#!/bin/sh
set -e
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME='berth demo' GIT_AUTHOR_EMAIL=demo@berth.invalid
export GIT_COMMITTER_NAME='berth demo' GIT_COMMITTER_EMAIL=demo@berth.invalid
branch=$1 base=$2
git fetch -q origin \"$base\"
git checkout -q --no-track -B \"$base\" \"origin/$base\"
git merge -q --no-ff -m \"land $branch into $base\" \"origin/$branch\"
sleep 1
git push -q origin \"$base\"
echo \"landed $branch into $base\"
";

/// A run state in which feature 1 carries a merge sha and PR number but was never marked
/// complete: someone merged it by hand, outside the pipeline.
const HAND_MERGED_STATE: &str = include_str!("../../fixtures/hand-merged-feature-state.json");

impl World {
    pub fn build(root: &Path) -> Result<World, DemoError> {
        let code = root.join("code");
        let remotes = root.join("remotes");
        let seed = root.join("seed");
        for dir in [&code, &remotes, &seed] {
            fs::create_dir_all(dir)?;
        }
        git(
            &remotes,
            &["init", "-q", "--bare", "-b", "main", "acme/widget.git"],
        )?;
        git(root, &["init", "-q", "-b", "main", "seed"])?;
        fs::write(seed.join("README.md"), "# widget\n")?;
        git(&seed, &["add", "README.md"])?;
        git(&seed, &["commit", "-q", "-m", "widget: first commit"])?;
        let bare = remotes.join("acme/widget.git");
        let bare_str = bare.to_string_lossy().into_owned();
        git(
            &seed,
            &["push", "-q", &bare_str, "main", "main:release/1.x"],
        )?;

        let server = GitDaemon::start(&remotes).map_err(DemoError::GitDaemon)?;
        let origin_url = server.url_for("acme/widget.git");
        git(&code, &["clone", "-q", &origin_url, "widget"])?;
        let clone = code.join("widget");

        let queue = QueueStore::new(root.join("queue"));
        queue.ensure_dir()?;
        let identity = crate::identity::repo_identity(&clone)?;
        let mut prs = Vec::new();
        for (pr, base, name) in [
            (101, "main", "search"),
            (102, "main", "billing"),
            (201, "release/1.x", "hotfix"),
        ] {
            prs.push(open_pr(&clone, &queue, &identity, pr, base, name)?);
        }
        git(&clone, &["checkout", "-q", "--detach"])?;

        // The planted record: a symlink inside the allowed root that leads outside it.
        let outside = root.join("outside");
        fs::create_dir_all(&outside)?;
        git(&outside, &["init", "-q"])?;
        let sneaky = code.join("sneaky");
        std::os::unix::fs::symlink(&outside, &sneaky)?;
        let mut planted = demo_record(&sneaky, &identity, 666, "feat/innocent", "main", 0);
        planted.repo_identity = None;
        let planted_id = queue.insert(&planted)?;

        let build_state = root.join("build-state");
        fs::create_dir_all(&build_state)?;
        fs::write(
            build_state.join("polis-mesh-lane-b.json"),
            HAND_MERGED_STATE,
        )?;

        let rules_root = root.join("rules-root");
        fs::create_dir_all(rules_root.join("rules"))?;
        fs::create_dir_all(rules_root.join("policies"))?;

        let land_script = root.join("land.sh");
        fs::write(&land_script, LAND_SCRIPT)?;
        fs::set_permissions(&land_script, fs::Permissions::from_mode(0o755))?;
        Ok(World {
            code,
            queue,
            berth_dir: root.join("berth"),
            clone,
            origin_url,
            prs,
            planted_id,
            land_script,
            build_state,
            faults_dir: root.join("skill-faults"),
            rules_root,
            _server: server,
        })
    }

    /// Opens and queues one more PR while the daemon runs, as a producer would.
    pub fn open_pr(&self, pr: u64, base: &str, name: &str) -> Result<DemoPr, DemoError> {
        let identity = crate::identity::repo_identity(&self.clone)?;
        let opened = open_pr(&self.clone, &self.queue, &identity, pr, base, name)?;
        git(&self.clone, &["checkout", "-q", "--detach"])?;
        Ok(opened)
    }

    /// Whether `feature` is merged into `base` on the remote, asked of the remote itself.
    pub fn merged_on_remote(&self, feature: &str, base: &str) -> Result<bool, DemoError> {
        git(&self.clone, &["fetch", "-q", "origin"])?;
        let status = Command::new("git")
            .current_dir(&self.clone)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .args([
                "merge-base",
                "--is-ancestor",
                &format!("origin/{feature}"),
                &format!("origin/{base}"),
            ])
            .status()?;
        Ok(status.success())
    }
}

/// Pushes `feat/<name>` (one new file on top of `base`) and queues it as PR `pr`; PRs are
/// queued a minute apart, in the order they are opened.
fn open_pr(
    clone: &Path,
    queue: &QueueStore,
    identity: &str,
    pr: u64,
    base: &str,
    name: &str,
) -> Result<DemoPr, DemoError> {
    let feature = format!("feat/{name}");
    git(clone, &["fetch", "-q", "origin"])?;
    git(
        clone,
        &["checkout", "-q", "-B", &feature, &format!("origin/{base}")],
    )?;
    fs::write(clone.join(format!("{name}.txt")), format!("{name}\n"))?;
    git(clone, &["add", "."])?;
    git(
        clone,
        &["commit", "-q", "-m", &format!("{name}: implement")],
    )?;
    git(clone, &["push", "-q", "origin", &feature])?;
    let minute = queue.scan()?.records.len() as u64 + 1;
    let id = queue.insert(&demo_record(clone, identity, pr, &feature, base, minute))?;
    Ok(DemoPr {
        id,
        pr,
        feature,
        base: base.to_owned(),
    })
}

fn demo_record(
    repo: &Path,
    identity: &str,
    pr: u64,
    feature: &str,
    base: &str,
    minute: u64,
) -> Record {
    let repo_path = repo.to_string_lossy();
    let mut record = Record::queued(&repo_path, base, feature, pr);
    record.run_id = format!("demo-run-{pr}");
    record.version = "1.0.0".into();
    record.living_plan_path = format!("{repo_path}/PLAN.md");
    record.queued_at = format!("2026-01-01T00:{minute:02}:00.000Z");
    record.repo_identity = Some(identity.to_owned());
    record
}
