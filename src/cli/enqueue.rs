//! `berth enqueue`: the producer side. Writes a record only after the gates the daemon
//! applies, so a producer learns at once that a path or branch would be refused.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::{Context, Outcome};
use crate::gates::WorktreeChoice;
use crate::record::Record;

#[derive(clap::Args, Debug)]
pub struct EnqueueArgs {
    #[command(flatten)]
    pub repos: super::RepoArgs,
    /// The repo checkout the PR belongs to (must sit under an allowed root).
    #[arg(long, value_name = "DIR")]
    pub repo_path: PathBuf,
    /// The PR number.
    #[arg(long)]
    pub pr: u64,
    /// The PR's head branch.
    #[arg(long, value_name = "BRANCH")]
    pub feature_branch: String,
    /// The branch the PR lands on.
    #[arg(long, value_name = "BRANCH", default_value = "main")]
    pub base: String,
    /// The version being released.
    #[arg(long)]
    pub version: String,
    /// The orchestrator run that produced the PR (default: `manual-<time>`).
    #[arg(long)]
    pub run_id: Option<String>,
    /// The run's living plan.
    #[arg(long, value_name = "FILE", default_value = "")]
    pub living_plan_path: String,
    /// Where the landing runs (default: the repo path).
    #[arg(long, value_name = "DIR")]
    pub worktree_path: Option<PathBuf>,
    /// The PR's web URL, kept in the record for people and tools reading the queue.
    #[arg(long, value_name = "URL")]
    pub pr_url: Option<String>,
    /// The plan the run's living plan was made from, kept in the record as gstack keeps it.
    #[arg(long, value_name = "FILE")]
    pub source_plan_path: Option<String>,
    /// Print one document `{"id", "file", "repoPath", "repoIdentity"}` instead of
    /// `queued ID (FILE)`.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &EnqueueArgs) -> anyhow::Result<Outcome> {
    let repo_path = resolved(&args.repo_path, "--repo-path")?;
    let mut record = Record::queued(&repo_path, &args.base, &args.feature_branch, args.pr);
    record.run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| format!("manual-{}", record.queued_at.replace([':', '.'], "-")));
    record.version = args.version.clone();
    record.living_plan_path = args.living_plan_path.clone();
    if let Some(worktree) = &args.worktree_path {
        record.worktree_path = resolved(worktree, "--worktree-path")?;
    }
    record.pr_url = args.pr_url.clone();
    record.source_plan_path = args.source_plan_path.clone();
    if args.pr == 0 {
        anyhow::bail!("--pr must be a positive PR number");
    }
    // A mistyped queue dir must not become a new queue no daemon reads.
    ctx.require_queue_dir()?;
    let gated = ctx
        .allowlist(&ctx.config()?)
        .gate_record(&record)
        .context("the record would be blocked by the daemon, so it was not queued")?;
    record.repo_path = gated.repo().path().to_string_lossy().into_owned();
    record.repo_identity = Some(gated.identity().to_string());
    if let WorktreeChoice::Scratch { reason } = gated.worktree() {
        eprintln!(
            "warning: the worktree will not be used ({reason}); landings will run in a scratch worktree"
        );
    }
    let id = ctx.store.insert(&record)?;
    let file = ctx.store.path_of(&id);
    if args.json {
        let doc = serde_json::json!({
            "id": id,
            "file": file,
            "repoPath": record.repo_path,
            "repoIdentity": record.repo_identity,
        });
        println!("{doc}");
    } else {
        println!("queued {id} ({})", file.display());
    }
    Ok(Outcome::Clean)
}

/// A path as the record stores it: a relative one (`--repo-path .`) is the real path it
/// names from here, since the daemon reads the record from another directory; an absolute
/// one is kept as given for the gates to judge.
fn resolved(path: &Path, flag: &str) -> anyhow::Result<String> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::fs::canonicalize(path)
            .with_context(|| format!("{flag} {} cannot be resolved", path.display()))?
    };
    Ok(path.to_string_lossy().into_owned())
}
