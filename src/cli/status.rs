//! `berth status`: what is in the queue, and what needs an operator.

use std::path::Path;

use serde_json::{Value, json};

use super::{Context, Outcome};
use crate::instance::Holder;
use crate::record::Status;
use crate::rules::RulesStatus;
use crate::rules::fallbacks::Fallback;
use crate::store::Scan;
use crate::telemetry::Health;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub repos: super::RepoArgs,
    /// Print `{"records": [{..., "waiting"}], "unreadable": [{"file", "reason"}], ...}`
    /// instead of a table.
    #[arg(long)]
    pub json: bool,
    /// berth's state dir, where a daemon reports its active rules and their last reload.
    #[arg(long, env = "BERTH_DIR", value_name = "DIR")]
    pub berth_dir: Option<std::path::PathBuf>,
}

pub fn run(ctx: &Context, args: &StatusArgs) -> anyhow::Result<Outcome> {
    ctx.require_queue_dir()?;
    let scan = ctx.store.scan()?;
    let berth_dir = args
        .berth_dir
        .clone()
        .unwrap_or_else(crate::paths::default_berth_dir);
    let rules = RulesStatus::read(&berth_dir);
    // Rule questions failing closed (DESIGN §8): why a record waits, while it lasts.
    let fallbacks = crate::rules::fallbacks::read(&berth_dir).unwrap_or_else(|e| {
        eprintln!("rule fallbacks in {} unreadable: {e}", berth_dir.display());
        Vec::new()
    });
    let daemon = DaemonView::read(&berth_dir);
    let waits = super::waiting::read(&ctx.allowlist(&ctx.config()?), &berth_dir, &scan);
    // Verdicts a daemon could not write (ENOSPC, EIO) and retries every tick.
    let unsaved = crate::daemon::read_unsaved(&berth_dir).unwrap_or_else(|e| {
        eprintln!(
            "unsaved verdicts in {} unreadable: {e}",
            berth_dir.display()
        );
        Vec::new()
    });
    if args.json {
        let mut value = as_json(&scan);
        for record in value["records"].as_array_mut().into_iter().flatten() {
            let waiting = record["id"].as_str().and_then(|id| waits.by_record.get(id));
            record["waiting"] = serde_json::to_value(waiting)?;
        }
        value["waitingUnknown"] = json!(waits.problems);
        value["ruleFallbacks"] = serde_json::to_value(&fallbacks)?;
        value["unsavedVerdicts"] = serde_json::to_value(&unsaved)?;
        value["rules"] = match &rules {
            Ok(Some(status)) => serde_json::to_value(status)?,
            _ => Value::Null,
        };
        value["daemon"] = daemon.as_json();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", as_table(&scan, ctx, &fallbacks));
        for (id, waiting) in &waits.by_record {
            if let Some(stored) = scan.records.iter().find(|s| &s.id == id) {
                let r = &stored.record;
                println!(
                    "waiting: #{} {} {}: {}",
                    r.pr_number,
                    r.identity_or_path(),
                    r.base_branch,
                    waiting.line()
                );
            }
        }
        for problem in &waits.problems {
            println!("waiting: {problem}");
        }
        for line in &unsaved {
            println!(
                "verdict not saved: {} is {} but its record could not be written (since {}): {}; the daemon writes it again every tick",
                line.record, line.verdict, line.since, line.error
            );
        }
        // A fallback shows on its record's row; one about no record (`max_lanes`), or about
        // a record that has no row (an `accept_pr` that failed for a listed PR, which is
        // then not accepted), gets a line of its own.
        let has_row = |id: &str| scan.records.iter().any(|r| r.id == id);
        for f in fallbacks
            .iter()
            .filter(|f| f.record.as_deref().is_none_or(|id| !has_row(id)))
        {
            let about = f
                .record
                .as_deref()
                .map(|id| format!(" for {id}"))
                .unwrap_or_default();
            println!(
                "rule failing: {} `{}`{about}: {} ({})",
                f.file, f.function, f.fallback, f.since
            );
        }
        print!("{}", daemon.lines(&berth_dir));
        match &rules {
            Ok(Some(status)) => println!("{}", status.line()),
            Ok(None) => println!(
                "rules: no daemon has reported its rules in {}",
                berth_dir.display()
            ),
            Err(e) => println!("rules: status in {} unreadable: {e}", berth_dir.display()),
        }
    }
    let blocked = scan
        .records
        .iter()
        .any(|r| r.record.status == Status::Blocked);
    // A refused reload needs an operator as much as a blocked record does.
    let rules_failed = matches!(&rules, Ok(Some(status)) if !status.last_reload.ok);
    Ok(
        if blocked
            || rules_failed
            || !fallbacks.is_empty()
            || !unsaved.is_empty()
            || !scan.unreadable.is_empty()
        {
            Outcome::NeedsAttention
        } else {
            Outcome::Clean
        },
    )
}

/// The daemon on a berth dir as another process sees it: the instance lock says whether it
/// runs, the health file what it last did.
pub struct DaemonView {
    pub running: std::io::Result<Option<Holder>>,
    pub health: std::io::Result<Option<Health>>,
}

impl DaemonView {
    pub fn read(berth_dir: &Path) -> DaemonView {
        DaemonView {
            running: crate::instance::running(berth_dir),
            health: Health::read(berth_dir),
        }
    }

    fn as_json(&self) -> Value {
        let running = match &self.running {
            Ok(Some(holder)) => {
                json!({"running": true, "pid": holder.pid, "mode": holder.mode, "since": holder.since})
            }
            Ok(None) => json!({"running": false}),
            Err(e) => json!({"running": Value::Null, "error": e.to_string()}),
        };
        let mut value = running;
        value["health"] = match &self.health {
            Ok(Some(health)) => serde_json::to_value(health).unwrap_or(Value::Null),
            Ok(None) => Value::Null,
            Err(e) => json!({"error": e.to_string()}),
        };
        value
    }

    /// `daemon: running …` (or not), then its last tick and the forge's last answer.
    pub fn lines(&self, berth_dir: &Path) -> String {
        let mut out = match &self.running {
            Ok(Some(holder)) => format!("daemon: running, {holder}\n"),
            Ok(None) => format!("daemon: not running on {}\n", berth_dir.display()),
            Err(e) => format!(
                "daemon: unknown, cannot read {}: {e}\n",
                crate::instance::lock_path(berth_dir).display()
            ),
        };
        match &self.health {
            Ok(Some(health)) => {
                let suffix = match &self.running {
                    Ok(Some(h)) if h.pid == health.pid => String::new(),
                    _ => format!(" (the last daemon here, pid {})", health.pid),
                };
                out.push_str(&format!("{}{suffix}\n", health.tick_line()));
                out.push_str(&format!("{}\n", health.forge_line()));
            }
            Ok(None) => {}
            Err(e) => out.push_str(&format!(
                "health: {} unreadable: {e}\n",
                Health::path(berth_dir).display()
            )),
        }
        out
    }
}

fn as_json(scan: &Scan) -> Value {
    let records: Vec<Value> = scan
        .records
        .iter()
        .map(|stored| {
            let mut object = serde_json::Map::new();
            object.insert("id".into(), json!(stored.id));
            if let Ok(Value::Object(fields)) = serde_json::to_value(&stored.record) {
                object.extend(fields);
            }
            Value::Object(object)
        })
        .collect();
    json!({ "records": records, "unreadable": scan.unreadable })
}

fn as_table(scan: &Scan, ctx: &Context, fallbacks: &[Fallback]) -> String {
    let now = crate::clock::now();
    let mut rows: Vec<[String; 6]> = vec![[
        "PR".into(),
        "REPO".into(),
        "LANE".into(),
        "STATUS".into(),
        "AGE".into(),
        "LAST ERROR".into(),
    ]];
    for stored in &scan.records {
        let r = &stored.record;
        let age = crate::clock::parse_iso(&r.queued_at)
            .map(|t| crate::clock::short_age(t, now))
            .unwrap_or_else(|| "?".into());
        rows.push([
            format!("#{}", r.pr_number),
            r.identity_or_path(),
            r.base_branch.clone(),
            r.status.to_string(),
            age,
            fallbacks
                .iter()
                .find(|f| f.record.as_deref() == Some(stored.id.as_str()))
                .map(|f| f.fallback.clone())
                .or_else(|| r.last_error.clone())
                .unwrap_or_default()
                .replace('\n', " "),
        ]);
    }
    let mut out = String::new();
    if scan.records.is_empty() {
        out.push_str(&format!("queue {} is empty\n", ctx.store.dir().display()));
    } else {
        let widths: Vec<usize> = (0..5)
            .map(|c| {
                rows.iter()
                    .map(|row| row[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &rows {
            let mut line = String::new();
            for (c, width) in widths.iter().enumerate() {
                line.push_str(&format!("{:<width$}  ", row[c]));
            }
            line.push_str(&row[5]);
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    for bad in &scan.unreadable {
        out.push_str(&format!("unreadable: {}: {}\n", bad.file, bad.reason));
    }
    out
}
