//! `berth explain <PR> [--repo IDENTITY]`: why a record is where it is — every policy
//! decision about it and every status change, oldest first, from the daemon's decision log.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::{Context, Outcome};
use crate::rules::set::short;

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub queue: super::QueueArgs,
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
    /// Print the log lines as JSON, one per line.
    #[arg(long)]
    pub json: bool,
}

/// Exit 0 with the history; 1 when nothing is recorded for that PR.
pub fn run(ctx: &Context, args: &ExplainArgs) -> anyhow::Result<Outcome> {
    let berth_dir = args
        .berth_dir
        .clone()
        .unwrap_or_else(crate::paths::default_berth_dir);
    // A record id names one record: its PR number, then only its lines.
    let (pr, only) = match args.target.parse::<u64>() {
        Ok(pr) => (pr, None),
        Err(_) => {
            let stored = ctx.store.load(&args.target)?;
            (stored.record.pr_number, Some(stored.id))
        }
    };
    let mut lines = crate::rules::decisions::history(&berth_dir, pr, args.repo.as_deref())?;
    if let Some(id) = &only {
        lines.retain(|line| text(line, "record") == id);
    }
    if lines.is_empty() {
        println!(
            "nothing recorded for {}{} in {}",
            only.as_deref()
                .map_or(format!("PR #{pr}"), |id| format!("record {id}")),
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
        for line in &lines {
            println!("{line}");
        }
        return Ok(Outcome::Clean);
    }
    // One section per record: the same PR number can exist in several repos or bases.
    let mut by_record: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for line in &lines {
        let record = text(line, "record");
        by_record.entry(record.to_owned()).or_default().push(line);
    }
    let now = now_status(ctx);
    for (record, lines) in by_record {
        let repo = lines.first().map_or("", |l| text(l, "repo"));
        println!("PR #{pr} of {repo} (record {record})");
        for line in lines {
            println!("  {}", describe(line));
        }
        if let Some(status) = now.get(&record) {
            println!("  now: {status}");
        }
    }
    Ok(Outcome::Clean)
}

fn text<'a>(line: &'a Value, key: &str) -> &'a str {
    line.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `<time>  status    queued -> claiming: reason` or
/// `<time>  admit     wait: freeze window  [policies/landing.rhai, rules 1a2b3c4d5e6f]`.
fn describe(line: &Value) -> String {
    let time = text(line, "time");
    if text(line, "kind") == "status" {
        let reason = text(line, "reason");
        let mut out = format!(
            "{time}  status          {} -> {}",
            text(line, "from"),
            text(line, "to")
        );
        if !reason.is_empty() {
            out.push_str(&format!(": {reason}"));
        }
        return out;
    }
    let mut out = format!(
        "{time}  {:<14}  {}: {}  [{}, rules {}]",
        text(line, "function"),
        text(line, "decision"),
        text(line, "reason"),
        text(line, "file"),
        short(text(line, "ruleset"))
    );
    if line.get("fallback").and_then(Value::as_bool) == Some(true) {
        out.push_str(&format!(
            "\n      the rule failed ({}); the built-in default decided",
            text(line, "error")
        ));
    }
    out
}

/// Each record's status in the queue now, when the queue is readable.
fn now_status(ctx: &Context) -> BTreeMap<String, String> {
    ctx.store
        .scan()
        .map(|scan| {
            scan.records
                .into_iter()
                .map(|s| {
                    let status = match &s.record.last_error {
                        Some(why) => format!("{} ({why})", s.record.status),
                        None => s.record.status.to_string(),
                    };
                    (s.id, status)
                })
                .collect()
        })
        .unwrap_or_default()
}
