//! `berth explain <PR> [--repo IDENTITY]`: why a record is where it is — every policy
//! decision about it and every status change, oldest first, from the daemon's decision log.

use std::path::PathBuf;

use super::{Context, Outcome};
use crate::queue_report::story::{Story, Target, describe};

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub repos: super::RepoArgs,
    /// The PR number, or a record id (as `status --json`, `retry` and `abandon` show it).
    #[arg(value_name = "PR or id")]
    pub target: String,
    /// Only the record of this repo identity (e.g. `github.com/acme/widget`, or
    /// `path:/abs/repo` for a legacy record).
    #[arg(long, value_name = "IDENTITY")]
    pub repo: Option<String>,
    /// berth's state dir, where the daemon keeps `decisions.jsonl`.
    #[arg(long, env = "BERTH_DIR", value_name = "DIR")]
    pub berth_dir: Option<PathBuf>,
    /// Print one document: `{"pr", "record", "lines": [...]}` (the decision log's lines).
    #[arg(long, conflicts_with = "jsonl")]
    pub json: bool,
    /// Print the log lines as JSON, one per line (what `--json` printed before it became
    /// one document).
    #[arg(long)]
    pub jsonl: bool,
}

/// Exit 0 with the history; 1 when nothing is recorded for that PR.
pub fn run(ctx: &Context, args: &ExplainArgs) -> anyhow::Result<Outcome> {
    let berth_dir = args
        .berth_dir
        .clone()
        .unwrap_or_else(crate::paths::default_berth_dir);
    let target = Target::parse(&args.target);
    if let Target::Record(id) = &target {
        // An unknown id is the first thing to say, before the config is read.
        ctx.store.load(id)?;
    }
    let allowlist = ctx.allowlist(&ctx.config()?);
    let story = Story::read(
        &ctx.store,
        &allowlist,
        &berth_dir,
        &target,
        args.repo.as_deref(),
    )?;
    if story.lines.is_empty() {
        println!(
            "nothing recorded for {}{} in {}",
            story
                .only
                .as_deref()
                .map_or(format!("PR #{}", story.pr), |id| format!("record {id}")),
            args.repo
                .as_deref()
                .map(|r| format!(" of {r}"))
                .unwrap_or_default(),
            berth_dir
                .join(crate::rules::decisions::DECISIONS_FILE)
                .display()
        );
        return Ok(Outcome::NeedsAttention);
    }
    if args.json {
        print!("{}", story.to_json());
        return Ok(Outcome::Clean);
    }
    if args.jsonl {
        for line in &story.lines {
            println!("{}", line.to_json());
        }
        return Ok(Outcome::Clean);
    }
    for chapter in story.chapters() {
        println!(
            "PR #{} of {} (record {})",
            story.pr, chapter.repo, chapter.record
        );
        for line in &chapter.lines {
            println!("  {}", describe(line));
        }
        if let Some(stored) = chapter.now {
            let status = match &stored.record.last_error {
                Some(why) => format!("{} ({why})", stored.record.status),
                None => stored.record.status.to_string(),
            };
            println!("  now: {status}");
        }
    }
    Ok(Outcome::Clean)
}
