//! `berth rules replay` and `berth rules capture`: a candidate rule set judged against the
//! decisions the daemon recorded, and recorded decisions turned into rule tests.
//!
//! Exit codes (replay): 0 the candidate decides every replayed decision the same; 1 it
//! would decide something differently (or fail on it); 2 the candidate does not load or the
//! log cannot be read. Capture: 0 cases captured; 1 none matched; 2 an error.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use comfy_table::{Table, presets::NOTHING};

use super::Outcome;
use crate::rules::capture::{self, Selector};
use crate::rules::replay::{self, Replay, Scope};
use crate::rules::{RuleSpec, Rules};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  berth rules replay --rules-root ./candidate\n  \
    berth rules replay --rules-root ./candidate --since 7d --repo github.com/acme/widget --json"
)]
pub struct ReplayArgs {
    /// The candidate rules root (`rules/`, `policies/`), built exactly as a reload would.
    #[arg(long, value_name = "DIR")]
    pub rules_root: PathBuf,
    /// Only decisions this recent: a duration (`7d`, `12h`) or an ISO time.
    #[arg(long, value_name = "AGE or TIME", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Only decisions about records of this repo identity.
    #[arg(long, value_name = "IDENTITY")]
    pub repo: Option<String>,
    /// berth's state dir, where the daemon keeps `decisions.jsonl` and `facts.jsonl`.
    #[arg(long, env = "BERTH_DIR", value_name = "DIR")]
    pub berth_dir: Option<PathBuf>,
    /// Print one JSON document: `{"candidate", "replayed", "notReplayable", "functions":
    /// {fn: {"same", "differ", "fail"}}, "differences": [...], "waits": [...]}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  berth rules capture 7\n  \
    berth rules capture github.com-acme-widget-main-pr-7 --into ./rules-root\n  \
    berth rules capture --since 2h")]
pub struct CaptureArgs {
    /// A PR number or record id: only decisions about it (default: every decision in range).
    #[arg(value_name = "PR or id")]
    pub target: Option<String>,
    /// Only decisions this recent: a duration (`2h`) or an ISO time.
    #[arg(long, value_name = "AGE or TIME", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Only decisions up to this ISO time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Add the cases to the tests files under this rules root (created where missing;
    /// a case whose name is there already is left alone) instead of printing them.
    #[arg(long, value_name = "ROOT")]
    pub into: Option<PathBuf>,
    /// berth's state dir, where the daemon keeps `decisions.jsonl` and `facts.jsonl`.
    #[arg(long, env = "BERTH_DIR", value_name = "DIR")]
    pub berth_dir: Option<PathBuf>,
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Some(at) = crate::clock::parse_iso(text) {
        return Ok(at);
    }
    let age = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is neither a duration like `7d` nor an ISO time: {e}"))?;
    let age = chrono::Duration::from_std(age).map_err(|e| e.to_string())?;
    Ok(crate::clock::now() - age)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    crate::clock::parse_iso(text).ok_or_else(|| format!("`{text}` is not an ISO time"))
}

fn berth_dir(given: &Option<PathBuf>) -> PathBuf {
    given
        .clone()
        .unwrap_or_else(crate::paths::default_berth_dir)
}

pub fn replay(args: &ReplayArgs) -> anyhow::Result<Outcome> {
    let built = Rules::check(Some(&args.rules_root), &RuleSpec::standard()).map_err(|f| {
        anyhow::anyhow!(
            "the candidate rules in {} do not load: {f}",
            args.rules_root.display()
        )
    })?;
    let scope = Scope {
        since: args.since,
        repo: args.repo.clone(),
    };
    let dir = berth_dir(&args.berth_dir);
    let replayed = replay::replay(&dir, &built.set, &scope)
        .with_context(|| format!("reading the decision log in {}", dir.display()))?;
    let candidate = format!(
        "{} ({})",
        crate::rules::set::short(built.set.hash()),
        args.rules_root.display()
    );
    if args.json {
        let mut doc = serde_json::to_value(&replayed)?;
        doc["candidate"] = serde_json::json!(candidate);
        println!("{doc}");
    } else {
        print!("{}", report(&candidate, &replayed));
    }
    Ok(if replayed.changed() {
        Outcome::NeedsAttention
    } else {
        Outcome::Clean
    })
}

/// The text report: one row per function, then each difference, then the waits.
fn report(candidate: &str, replayed: &Replay) -> String {
    let mut out = format!(
        "replayed {} decision(s) against rules {candidate}; {} not replayable (no recorded facts)\n\n",
        replayed.replayed, replayed.not_replayable
    );
    let mut tally = Table::new();
    tally
        .load_preset(NOTHING)
        .set_header(["function", "same", "differ", "fail"]);
    for (function, t) in &replayed.functions {
        tally.add_row([
            function.clone(),
            t.same.to_string(),
            t.differ.to_string(),
            t.fail.to_string(),
        ]);
    }
    out += &format!("{tally}\n");
    for d in &replayed.differences {
        let who =
            d.pr.map_or("the queue".to_owned(), |pr| format!("PR #{pr}"));
        let failed = if d.failed {
            " (the candidate failed: fail-closed answer)"
        } else {
            ""
        };
        out += &format!(
            "\n{} {who} {} at {}:\n  recorded:  {} — {}\n  candidate: {} — {}{failed}\n",
            d.function,
            d.record.as_deref().unwrap_or(""),
            d.time,
            d.recorded.decision,
            d.recorded.reason,
            d.candidate.decision,
            d.candidate.reason
        );
    }
    if !replayed.waits.is_empty() {
        let mut waits = Table::new();
        waits.load_preset(NOTHING).set_header([
            "PR",
            "record",
            "went at",
            "candidate: goes at",
            "change",
        ]);
        for w in &replayed.waits {
            let change = humantime::format_duration(std::time::Duration::from_secs(
                w.change_secs.unsigned_abs(),
            ));
            let (sign, at) = match (&w.candidate_go, w.change_secs >= 0) {
                (None, _) => ("at least ", "still held at the end".to_owned()),
                (Some(at), true) => ("+", at.clone()),
                (Some(at), false) => ("-", at.clone()),
            };
            waits.add_row([
                w.pr.map_or(String::new(), |pr| format!("#{pr}")),
                w.record.clone(),
                w.recorded_go
                    .clone()
                    .unwrap_or_else(|| "not in the history".into()),
                at,
                format!("{sign}{change}"),
            ]);
        }
        out += &format!(
            "\nhow long each record would have waited under the candidate's admit:\n{waits}\n"
        );
    }
    out
}

pub fn capture(args: &CaptureArgs) -> anyhow::Result<Outcome> {
    let selector = Selector {
        record: args.target.clone(),
        since: args.since,
        until: args.until,
    };
    let dir = berth_dir(&args.berth_dir);
    let captured = capture::capture(&dir, &selector)
        .with_context(|| format!("reading the decision log in {}", dir.display()))?;
    if captured.cases() == 0 {
        eprintln!(
            "no decision to capture in {} ({} skipped: fail-closed answers, order selections, or no recorded facts)",
            dir.display(),
            captured.skipped
        );
        return Ok(Outcome::NeedsAttention);
    }
    match &args.into {
        Some(root) => add(root, &captured),
        None => {
            println!("{}", serde_json::to_string_pretty(&captured.files)?);
            Ok(Outcome::Clean)
        }
    }
}

fn add(root: &Path, captured: &capture::Captured) -> anyhow::Result<Outcome> {
    let added = capture::add_to_root(root, captured)
        .with_context(|| format!("adding the captured cases under {}", root.display()))?;
    let files: Vec<&str> = captured.files.keys().map(String::as_str).collect();
    println!(
        "added {added} case(s) to {} under {} ({} skipped); run `berth rules test {}`",
        files.join(", "),
        root.display(),
        captured.skipped,
        root.display()
    );
    Ok(Outcome::Clean)
}
