//! `berth patterns list|propose|promote|reject`: the investigator's side of learned
//! patterns. Every change goes through [`crate::faults::proposals`], under the same lock as
//! the daemon's hit counting.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::Outcome;
use crate::faults::learned::LearnedPattern;
use crate::faults::proposals::PatternFiles;

#[derive(clap::Args, Debug)]
pub struct PatternsArgs {
    /// The learned-patterns file; the pending and rejected files live beside it. Default:
    /// `learned-patterns.json` in the config's `faults_dir`, else in `~/.gstack/skill-faults/`.
    #[arg(
        long,
        global = true,
        env = "BERTH_LEARNED_PATTERNS",
        value_name = "FILE"
    )]
    pub learned: Option<PathBuf>,
    /// The configuration file: `learned-patterns.json` in its `faults_dir` unless
    /// `--learned` names the file (default: found as `berth run` finds it).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub action: PatternsAction,
}

#[derive(clap::Subcommand, Debug)]
pub enum PatternsAction {
    /// Learned patterns (with hit counts) and pending proposals.
    List {
        /// Print `{"learned": [...], "pending": [...], "warnings": [...]}`.
        #[arg(long)]
        json: bool,
    },
    /// Queue a new pattern in `pending-patterns.jsonl` for review.
    Propose {
        /// The fault category the pattern raises, e.g. `STUCK_ON_LOCKFILE`.
        #[arg(long)]
        category: String,
        /// CRITICAL, HIGH or MEDIUM.
        #[arg(long)]
        severity: String,
        /// One of stdout_contains, stdout_regex, failureReason_contains,
        /// failureReason_regex, plan_contains, plan_regex, state_jsonpath.
        #[arg(long = "kind", value_name = "MATCHER_KIND")]
        matcher_kind: String,
        /// What the matcher looks for (a substring, a regex or a JSONPath, per `--kind`).
        #[arg(long)]
        pattern: String,
        /// What the fault means, shown to whoever investigates it.
        #[arg(long)]
        description: String,
        /// Who or what proposed it (an investigation id, a name).
        #[arg(long)]
        source: Option<String>,
    },
    /// Move the pending proposal of CATEGORY into the learned patterns.
    Promote {
        /// The category of the pending proposal.
        category: String,
    },
    /// Drop the pending proposal of CATEGORY, logging it with a reason.
    Reject {
        /// The category of the pending proposal.
        category: String,
        /// Why it is rejected; kept in the rejected-patterns log.
        #[arg(long)]
        reason: String,
    },
}

pub fn run(args: &PatternsArgs) -> anyhow::Result<Outcome> {
    let learned = match &args.learned {
        Some(path) => path.clone(),
        None => super::faults::learned_file(&super::ConfigArgs {
            config: args.config.clone(),
        })?,
    };
    let files = PatternFiles::beside(&learned);
    match &args.action {
        PatternsAction::List { json } => list(&files, *json),
        PatternsAction::Propose {
            category,
            severity,
            matcher_kind,
            pattern,
            description,
            source,
        } => {
            let mut entry = Map::new();
            entry.insert("category".into(), json!(category));
            entry.insert("severity".into(), json!(severity));
            entry.insert("description".into(), json!(description));
            entry.insert("matcherKind".into(), json!(matcher_kind));
            entry.insert("pattern".into(), json!(pattern));
            if let Some(source) = source {
                entry.insert("source".into(), json!(source));
            }
            let line = files.propose(entry).map_err(anyhow::Error::msg)?;
            println!(
                "proposed {category}: {} line {line}",
                files.pending.display()
            );
            Ok(Outcome::Clean)
        }
        PatternsAction::Promote { category } => {
            let pattern = files.promote(category).map_err(anyhow::Error::msg)?;
            println!(
                "promoted {} ({} {}) into {}",
                pattern.category,
                pattern.matcher_kind.as_str(),
                pattern.severity,
                files.learned.display()
            );
            Ok(Outcome::Clean)
        }
        PatternsAction::Reject { category, reason } => {
            files.reject(category, reason).map_err(anyhow::Error::msg)?;
            println!(
                "rejected {category}; logged in {}",
                files.rejected.display()
            );
            Ok(Outcome::Clean)
        }
    }
}

fn list(files: &PatternFiles, as_json: bool) -> anyhow::Result<Outcome> {
    let (learned, pending) = files.read().map_err(anyhow::Error::msg)?;
    let mut warnings = learned.warnings.clone();
    for proposal in &pending.proposals {
        if let Err(reason) = &proposal.pattern {
            warnings.push(format!(
                "{} line {}: {reason}",
                files.pending.display(),
                proposal.line
            ));
        }
    }
    let proposals: Vec<&LearnedPattern> = pending
        .proposals
        .iter()
        .filter_map(|p| p.pattern.as_ref().ok())
        .collect();
    if as_json {
        let pending_json: Vec<Value> = pending
            .proposals
            .iter()
            .map(|p| match &p.pattern {
                Ok(pattern) => json!({"line": p.line, "pattern": pattern}),
                Err(reason) => json!({"line": p.line, "error": reason.to_string()}),
            })
            .collect();
        let out = json!({
            "learned": learned.patterns,
            "pending": pending_json,
            "warnings": warnings,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", table("learned", &learned.patterns, true));
        print!("{}", table("pending", &proposals, false));
        for warning in &warnings {
            eprintln!("warning: {warning}");
        }
    }
    Ok(if warnings.is_empty() {
        Outcome::Clean
    } else {
        Outcome::NeedsAttention
    })
}

fn table<P: std::borrow::Borrow<LearnedPattern>>(
    title: &str,
    patterns: &[P],
    hits: bool,
) -> String {
    let rows = patterns
        .iter()
        .map(|p| {
            let p = p.borrow();
            let hit = if hits {
                format!(
                    "  hits {}{}",
                    p.hit_count,
                    p.last_hit
                        .as_deref()
                        .map(|at| format!(" (last {at})"))
                        .unwrap_or_default()
                )
            } else {
                String::new()
            };
            [
                p.severity.as_str().to_owned(),
                p.category.clone(),
                p.matcher_kind.as_str().to_owned(),
                format!("{}{hit}", p.pattern.replace('\n', "\\n")),
            ]
        })
        .collect();
    let mut out = format!("{title}: {}\n", patterns.len());
    for line in super::table::plain(None, rows).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out
}
