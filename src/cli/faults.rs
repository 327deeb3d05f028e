//! `berth detect`: the faults of one orchestrator state file; `berth faults list`: the
//! halt events under the halt-events dir (pending, resolved, investigated, with their
//! occurrence counts); `berth faults ack`: mark one investigated, as gstack's
//! `markInvestigated` does.

use std::path::PathBuf;

use super::Outcome;
use crate::faults::HaltStore;
use crate::faults::detect::{self, RunInput};
use crate::faults::halt_store::{HaltStatus, Listing, Marked};
use crate::faults::learned::{self, LearnedSet};
use crate::rules::Rules;

#[derive(clap::Args, Debug)]
pub struct DetectArgs {
    /// The orchestrator state file (`~/.gstack/build-state/<slug>.json`).
    pub state: PathBuf,
    /// The living plan; defaults to the state's `planFile`.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// The run's stdout log; defaults to the state's `stdoutLog`.
    #[arg(long, value_name = "FILE")]
    pub stdout: Option<PathBuf>,
    /// The learned-patterns file; hits are counted into it. Default: `learned-patterns.json`
    /// in the config's `faults_dir`, else in `~/.gstack/skill-faults/`.
    #[arg(long, env = "BERTH_LEARNED_PATTERNS", value_name = "FILE")]
    pub learned: Option<PathBuf>,
    /// A rules root overriding the shipped detectors file by file.
    #[arg(long, env = "BERTH_RULES_ROOT", value_name = "DIR")]
    pub rules_root: Option<PathBuf>,
    /// Print a JSON array of `{category, severity, description, sourceFiles, evidence}`.
    #[arg(long)]
    pub json: bool,
    /// Leave the learned patterns' `hitCount` and `lastHit` alone (a dry look at a state).
    #[arg(long)]
    pub no_count: bool,
    /// Its `faults_dir` holds the learned patterns unless `--learned` names them.
    #[command(flatten)]
    pub config: super::ConfigArgs,
}

/// Exit 0 without faults, 1 with faults or a failed detector, 2 if the state or the rules
/// cannot be read.
pub fn detect(args: &DetectArgs) -> anyhow::Result<Outcome> {
    let rules = Rules::load(args.rules_root.as_deref())
        .map_err(|failure| anyhow::anyhow!("the rules do not load: {failure}"))?;
    let learned_path = match &args.learned {
        Some(path) => path.clone(),
        None => learned_file(&args.config)?,
    };
    let learned = LearnedSet::load(&learned_path).map_err(anyhow::Error::msg)?;
    for warning in &learned.warnings {
        eprintln!("warning: {warning}");
    }
    let run = RunInput::from_files(&args.state, args.plan.as_deref(), args.stdout.as_deref())
        .map_err(anyhow::Error::msg)?;
    let detection = detect::detect_run(&rules.current(), &run, &learned);
    if !args.no_count
        && let Err(e) = learned::record_hits(&learned_path, &detection.fired_categories())
    {
        eprintln!("warning: learned-pattern hits not counted: {e}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&detection.faults)?);
    } else if detection.faults.is_empty() {
        println!("no faults in {}", args.state.display());
    } else {
        let rows = detection
            .faults
            .iter()
            .map(|f| {
                let severity = f.severity.as_str().to_owned();
                [severity, f.category.to_string(), f.description.clone()]
            })
            .collect();
        print!("{}", super::table::plain(None, rows));
    }
    for error in &detection.errors {
        eprintln!("detector error: {error}");
    }
    Ok(
        if detection.faults.is_empty() && detection.errors.is_empty() {
            Outcome::Clean
        } else {
            Outcome::NeedsAttention
        },
    )
}

#[derive(clap::Args, Debug)]
pub struct FaultsArgs {
    /// The halt-events dir. Default: the config's `faults_dir`, else gstack's
    /// `~/.gstack/skill-faults/`.
    #[arg(long, global = true, env = "BERTH_FAULTS_DIR", value_name = "DIR")]
    pub faults_dir: Option<PathBuf>,
    /// The configuration file whose `faults_dir` the daemon files halt events under
    /// (default: found as `berth run` finds it).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub action: FaultsAction,
}

#[derive(clap::Subcommand, Debug)]
pub enum FaultsAction {
    /// One row per halt event: status, severity, occurrences, run, fault id, message.
    List {
        /// Print `{"halts": [...], "unreadable": [{"file", "reason"}]}`.
        #[arg(long)]
        json: bool,
    },
    /// Mark a halt event investigated: move
    /// `pending-investigations/<safeRunId>-<faultId>.json` to `processed/`, as gstack's
    /// `markInvestigated` does (its resolved marker, if any, stays for gstack's drain).
    ///
    /// Example: `berth faults ack 'PHASE_FAILED:all:1fe2d874'`
    Ack {
        /// The halt event's `faultId`, as `berth faults list` shows it.
        fault_id: String,
        /// The run the event belongs to; needed only when several runs have an event with
        /// this fault id.
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
    },
}

pub fn run(args: &FaultsArgs) -> anyhow::Result<Outcome> {
    let dir = match &args.faults_dir {
        Some(dir) => dir.clone(),
        None => config_of(&args.config)?.faults_dir_or_default(),
    };
    let store = HaltStore::new(dir);
    match &args.action {
        FaultsAction::List { json } => {
            let listing = store.list();
            if *json {
                println!("{}", serde_json::to_string_pretty(&listing)?);
            } else {
                print!("{}", table(&store, &listing));
            }
            let pending = listing
                .halts
                .iter()
                .any(|h| h.status == HaltStatus::Pending);
            Ok(if pending || !listing.unreadable.is_empty() {
                Outcome::NeedsAttention
            } else {
                Outcome::Clean
            })
        }
        FaultsAction::Ack { fault_id, run } => ack(&store, fault_id, run.as_deref()),
    }
}

/// The configuration file `--config` (or the default search) names.
fn config_of(path: &Option<PathBuf>) -> anyhow::Result<crate::config::Config> {
    super::ConfigArgs {
        config: path.clone(),
    }
    .load()
}

/// `learned-patterns.json` in the configured halt-events dir.
pub(super) fn learned_file(config: &super::ConfigArgs) -> anyhow::Result<PathBuf> {
    Ok(config
        .load()?
        .faults_dir_or_default()
        .join("learned-patterns.json"))
}

/// Exit 0 when the event is (or already was) moved to `processed/`; an error (exit 2) when
/// the run has no such event, or several runs do and `--run` does not say which.
fn ack(store: &HaltStore, fault_id: &str, run: Option<&str>) -> anyhow::Result<Outcome> {
    let run_id = match run {
        Some(run) => run.to_owned(),
        None => {
            let runs = store.pending_runs(fault_id)?;
            match runs.as_slice() {
                [one] => one.clone(),
                [] => anyhow::bail!(
                    "no pending halt event has fault id {fault_id} under {}; `berth faults list` shows them",
                    store.dir().display()
                ),
                several => anyhow::bail!(
                    "halt events of several runs have fault id {fault_id} ({}); say which with --run",
                    several.join(", ")
                ),
            }
        }
    };
    match store
        .mark_investigated(&run_id, fault_id)
        .map_err(anyhow::Error::msg)?
    {
        Marked::Moved(to) => println!("{fault_id} of run {run_id}: moved to {}", to.display()),
        Marked::AlreadyMoved if store.investigated(&run_id, fault_id) => {
            println!("{fault_id} of run {run_id}: already investigated")
        }
        Marked::AlreadyMoved => anyhow::bail!(
            "run {run_id} has no halt event with fault id {fault_id} under {}",
            store.dir().display()
        ),
        Marked::Another(other) => anyhow::bail!(
            "run {run_id} has no pending halt event with fault id {fault_id}: the file of its name under {} is run {other:?}'s (gstack gives both one safe run id), left pending",
            store.dir().display()
        ),
    }
    Ok(Outcome::Clean)
}

fn table(store: &HaltStore, listing: &Listing) -> String {
    let mut out = String::new();
    if listing.halts.is_empty() {
        out.push_str(&format!("no halt events under {}\n", store.dir().display()));
    }
    let rows = listing
        .halts
        .iter()
        .map(|halt| {
            let status = match halt.status {
                HaltStatus::Pending => "pending",
                HaltStatus::Resolved => "resolved",
                HaltStatus::Investigated => "investigated",
            };
            [
                status.to_owned(),
                halt.severity.to_string(),
                format!("x{}", halt.occurrences),
                halt.run_id.clone(),
                halt.fault_id.clone(),
                halt.message.replace('\n', " "),
            ]
        })
        .collect();
    out.push_str(&super::table::plain(None, rows));
    for bad in &listing.unreadable {
        out.push_str(&format!("unreadable: {}: {}\n", bad.file, bad.reason));
    }
    out
}
