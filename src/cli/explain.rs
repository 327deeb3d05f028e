//! `berth explain <PR> [--repo IDENTITY]`: why a record is where it is — every policy
//! decision about it and every status change, oldest first, from the daemon's decision log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::{Context, Outcome};
use crate::lane_lock::{Lane, lock_ref_name};
use crate::record::Status;
use crate::rules::journal::{Entry, JournalLine};
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
        lines.retain(|line| line.record().unwrap_or("") == id);
    }
    let queue = now_records(ctx);
    lines.extend(lock_releases(ctx, &berth_dir, &lines, &queue)?);
    // ISO times of one format: text order is time order (stable: a line written first
    // stays first within the same millisecond).
    lines.sort_by(|a, b| a.time.cmp(&b.time));
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
            println!("{}", line.to_json());
        }
        return Ok(Outcome::Clean);
    }
    // One section per record: the same PR number can exist in several repos or bases.
    let mut by_record: BTreeMap<String, Vec<&JournalLine>> = BTreeMap::new();
    for line in &lines {
        let record = line.record().unwrap_or("");
        by_record.entry(record.to_owned()).or_default().push(line);
    }
    for (record, lines) in by_record {
        // A lock release names no repo: the first line that does.
        let repo = lines
            .iter()
            .filter_map(|l| l.repo())
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

/// `<time>  status    queued -> claiming: reason` or
/// `<time>  admit     wait: freeze window  [policies/landing.rhai, rules 1a2b3c4d5e6f]`.
fn describe(line: &JournalLine) -> String {
    let time = &line.time;
    let with_reason = |mut out: String, reason: &str| {
        if !reason.is_empty() {
            out.push_str(&format!(": {reason}"));
        }
        out
    };
    match &line.entry {
        Entry::Operator(op) => {
            let mut out = format!("{time}  operator        {} by {}", op.act.as_str(), op.user);
            if let Some(to) = op.to {
                let from = op.from.map_or("", Status::as_str);
                out.push_str(&format!(": {from} -> {to}"));
            }
            if let Some(lock) = &op.lock_ref {
                out.push_str(&format!(" of {lock}"));
            }
            with_reason(out, &op.reason)
        }
        Entry::Status(change) => with_reason(
            format!("{time}  status          {} -> {}", change.from, change.to),
            &change.reason,
        ),
        Entry::Decision(d) => {
            let mut out = format!(
                "{time}  {:<14}  {}: {}  [{}, rules {}]",
                d.function,
                d.decision,
                d.reason,
                d.file,
                short(&d.ruleset)
            );
            if d.fallback {
                out.push_str(&format!(
                    "\n      the rule failed ({}); the built-in default decided",
                    d.error.as_deref().unwrap_or("")
                ));
            }
            out
        }
    }
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
    lines: &[JournalLine],
    queue: &BTreeMap<String, StoredRecord>,
) -> anyhow::Result<Vec<JournalLine>> {
    let allowlist = ctx.allowlist(&ctx.config()?);
    let lanes: BTreeMap<String, String> = lines
        .iter()
        .filter_map(|line| queue.get(line.record()?))
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
        for release in &releases {
            let mut line = release.clone();
            if let Entry::Operator(op) = &mut line.entry
                && op.lock_ref.as_ref() == Some(lane_ref)
            {
                op.about.record = Some(id.clone());
                out.push(line);
            }
        }
    }
    Ok(out)
}
