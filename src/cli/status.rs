//! `berth status`: what is in the queue, and what needs an operator.

use std::path::Path;

use super::{Context, Outcome};
use crate::config::{Config, ForgeKind};
use crate::forge::MissingGh;
use crate::queue_report::QueueReport;
use crate::rules::fallbacks::Fallback;
use crate::store::Scan;

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
    #[command(flatten)]
    pub reach: super::reach::ReachArgs,
}

pub fn run(ctx: &Context, args: &StatusArgs) -> anyhow::Result<Outcome> {
    ctx.require_queue_dir()?;
    let berth_dir = args
        .berth_dir
        .clone()
        .unwrap_or_else(crate::paths::default_berth_dir);
    let config = ctx.config()?;
    let missing_gh = missing_gh(&config, ctx);
    let report = QueueReport::read_reaching(
        &ctx.store,
        &ctx.allowlist(&config),
        &berth_dir,
        &args.reach.reach(&super::reach::progress_line),
    )?;
    if let Err(e) = &report.fallbacks {
        eprintln!("rule fallbacks in {} unreadable: {e}", berth_dir.display());
    }
    if let Err(e) = &report.unsaved {
        eprintln!(
            "unsaved verdicts in {} unreadable: {e}",
            berth_dir.display()
        );
    }
    if let Err(e) = &report.passed_over {
        eprintln!("records passed over: unreadable: {e}");
    }
    if args.json {
        let mut json = report.to_json();
        json["forgeProblem"] = serde_json::json!(missing_gh.as_ref().map(ToString::to_string));
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", as_text(&report, ctx, &berth_dir));
        if let Some(missing) = &missing_gh {
            println!("forge: {missing}");
        }
    }
    // Said, not an exit code: gstack's `status` exits 1 for what is in the queue, and the
    // daemon may run with another PATH than this shell (`doctor` and `run` fail on it).
    Ok(if report.needs_attention() {
        Outcome::NeedsAttention
    } else {
        Outcome::Clean
    })
}

/// The `gh` forge without a runnable `gh`, said as `run` and `doctor` say it.
fn missing_gh(config: &Config, ctx: &Context) -> Option<MissingGh> {
    (config.forge == ForgeKind::Gh)
        .then(|| MissingGh::check(&config.gh_program, &ctx.config_source.file_to_edit()).err())
        .flatten()
}

/// The table, then a line per waiting record, unsaved verdict, failing rule, the daemon
/// and the rules.
fn as_text(report: &QueueReport, ctx: &Context, berth_dir: &Path) -> String {
    let scan = &report.scan;
    let mut out = as_table(scan, ctx, report.fallbacks());
    for (id, waiting) in &report.waits.by_record {
        if let Some(stored) = scan.records.iter().find(|s| &s.id == id) {
            let r = &stored.record;
            out.push_str(&format!(
                "waiting: #{} {} {}: {}\n",
                r.pr_number,
                r.identity_or_path(),
                r.base_branch,
                waiting.line()
            ));
        }
    }
    for problem in &report.waits.problems {
        out.push_str(&format!("waiting: {problem}\n"));
    }
    for line in report.unsaved() {
        out.push_str(&format!(
            "verdict not saved: {} is {} but its record could not be written (since {}): {}; the daemon writes it again every tick\n",
            line.record, line.verdict, line.since, line.error
        ));
    }
    for line in report.passed_over() {
        out.push_str(&format!("{}\n", line.line()));
    }
    // A fallback shows on its record's row; one about no record (`max_lanes`), or about
    // a record that has no row (an `accept_pr` that failed for a listed PR, which is
    // then not accepted), gets a line of its own.
    let has_row = |id: &str| scan.records.iter().any(|r| r.id == id);
    for f in report
        .fallbacks()
        .iter()
        .filter(|f| f.record.as_deref().is_none_or(|id| !has_row(id)))
    {
        let about = f
            .record
            .as_deref()
            .map(|id| format!(" for {id}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "rule failing: {} `{}`{about}: {} ({})\n",
            f.file, f.function, f.fallback, f.since
        ));
    }
    out.push_str(&report.daemon.lines(berth_dir));
    match &report.rules {
        Ok(Some(status)) => out.push_str(&format!("{}\n", status.line())),
        Ok(None) => out.push_str(&format!(
            "rules: no daemon has reported its rules in {}\n",
            berth_dir.display()
        )),
        Err(e) => out.push_str(&format!(
            "rules: status in {} unreadable: {e}\n",
            berth_dir.display()
        )),
    }
    out
}

fn as_table(scan: &Scan, ctx: &Context, fallbacks: &[Fallback]) -> String {
    let now = crate::clock::now();
    let mut rows: Vec<[String; 6]> = Vec::new();
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
        out.push_str(&super::table::plain(
            Some(["PR", "REPO", "LANE", "STATUS", "AGE", "LAST ERROR"]),
            rows,
        ));
    }
    for bad in &scan.unreadable {
        out.push_str(&format!("unreadable: {}: {}\n", bad.file, bad.reason));
    }
    out
}
