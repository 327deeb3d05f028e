//! `berth explain <PR> [--repo IDENTITY]`: why a record is where it is — every policy
//! decision about it and every status change, oldest first, from the daemon's decision log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

use super::{Context, Outcome};
use crate::lane_lock::{Lane, lock_ref_name};
use crate::rules::set::short;
use crate::store::StoredRecord;

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
    let queue = now_records(ctx);
    lines.extend(lock_releases(ctx, &berth_dir, &lines, &queue)?);
    // ISO times of one format: text order is time order (stable: a line written first
    // stays first within the same millisecond).
    lines.sort_by(|a, b| text(a, "time").cmp(text(b, "time")));
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
    for (record, lines) in by_record {
        // A lock release names no repo: the first line that does.
        let repo = lines
            .iter()
            .map(|l| text(l, "repo"))
            .find(|r| !r.is_empty())
            .unwrap_or("");
        println!("PR #{pr} of {repo} (record {record})");
        for line in lines {
            println!("  {}", describe(line));
        }
        if let Some(stored) = queue.get(&record) {
            let status = match &stored.record.last_error {
                Some(why) => format!("{} ({why})", stored.record.status),
                None => stored.record.status.to_string(),
            };
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
    if text(line, "kind") == "operator" {
        let mut out = format!(
            "{time}  operator        {} by {}",
            text(line, "act"),
            text(line, "user")
        );
        if line.get("to").is_some() {
            out.push_str(&format!(": {} -> {}", text(line, "from"), text(line, "to")));
        }
        if let Some(lock) = line.get("ref").and_then(Value::as_str) {
            out.push_str(&format!(" of {lock}"));
        }
        let reason = text(line, "reason");
        if !reason.is_empty() {
            out.push_str(&format!(": {reason}"));
        }
        return out;
    }
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

/// The records in the queue now, by id, when the queue is readable.
fn now_records(ctx: &Context) -> BTreeMap<String, StoredRecord> {
    ctx.store
        .scan()
        .map(|scan| {
            scan.records
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect()
        })
        .unwrap_or_default()
}

/// Forced releases of the lane locks of the records in `lines` (known from the queue),
/// each repeated under every such record so it shows in that record's story. A record's
/// lane is the daemon's: its identity as the gates resolve it from `origin`.
fn lock_releases(
    ctx: &Context,
    berth_dir: &std::path::Path,
    lines: &[Value],
    queue: &BTreeMap<String, StoredRecord>,
) -> anyhow::Result<Vec<Value>> {
    let allowlist = ctx.allowlist(&ctx.config()?);
    let lanes: BTreeMap<String, String> = lines
        .iter()
        .filter_map(|line| queue.get(text(line, "record")))
        .filter_map(|stored| {
            let gated = allowlist.gate_record(&stored.record).ok()?;
            let lane = Lane {
                repo_identity: gated.identity,
                base_branch: stored.record.base_branch.clone(),
            };
            Some((stored.id.clone(), lock_ref_name(&lane)))
        })
        .collect();
    let refs: BTreeSet<String> = lanes.values().cloned().collect();
    let releases = crate::rules::decisions::lock_releases(berth_dir, &refs)?;
    let mut out = Vec::new();
    for (id, lane_ref) in &lanes {
        for release in releases.iter().filter(|r| text(r, "ref") == lane_ref) {
            let mut line = release.clone();
            line["record"] = Value::from(id.as_str());
            out.push(line);
        }
    }
    Ok(out)
}
