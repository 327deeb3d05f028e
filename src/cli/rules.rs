//! `berth rules check|test|list [ROOT]`: the acceptance pipeline a hot reload runs, on
//! demand. All three call [`Rules::check`], so "check passes" means "a reload would swap
//! this set in". `berth rules init DIR` starts a rules root from the embedded set.
//!
//! Exit codes: 0 the set is accepted; 1 it is not (syntax, missing function, failed test);
//! 2 the root cannot be read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Outcome;
use crate::rules::case_result::CaseResult;
use crate::rules::set::{describe_root, short};
use crate::rules::{Built, LoadError, LoadFailure, RuleSpec, Rules, SourceSet};

#[derive(clap::Args, Debug)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: RulesCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum RulesCommand {
    /// Compile, validate and test a rule set exactly as a hot reload would.
    Check(JudgeArgs),
    /// Run the rule tests (`*.tests.json` beside the rules) and print every case.
    Test(JudgeArgs),
    /// List the set's files, where each comes from, and the functions they define.
    List(ListArgs),
    /// Write the embedded rules, policies and their tests into a new rules root.
    Init(InitArg),
    /// Ask a candidate rule set the questions the daemon recorded, with the facts it
    /// recorded, and print what would change (exit 1 when anything would).
    Replay(super::replay::ReplayArgs),
    /// Turn recorded decisions into rule-test cases (`*.tests.json`).
    Capture(super::replay::CaptureArgs),
}

#[derive(clap::Args, Debug)]
pub struct InitArg {
    /// The new rules root: must not exist or be an empty directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub root: RootArg,
    /// Print one JSON document: `{"hash", "source", "files": [{"file", "origin",
    /// "functions", "tests"}]}` (`functions` for a rule file, `tests` for a tests file).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct JudgeArgs {
    #[command(flatten)]
    pub root: RootArg,
    /// Print one JSON document: `{"command", "accepted", "hash", "source", "files": [{"file",
    /// "result", "errors"}], "tests": [{"file", "index", "name", "function", "result",
    /// "error"}]}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RootArg {
    /// A directory holding `rules/` and `policies/` (default: the embedded rules alone).
    #[arg(env = "BERTH_RULES_ROOT", value_name = "ROOT")]
    pub root: Option<PathBuf>,
}

pub fn run(args: &RulesArgs) -> anyhow::Result<Outcome> {
    match &args.command {
        RulesCommand::Init(a) => {
            let written = init(&a.dir)?;
            println!(
                "wrote {written} file(s) of the embedded rules to {}; edit them and run `berth rules check {}`",
                a.dir.display(),
                a.dir.display()
            );
            Ok(Outcome::Clean)
        }
        RulesCommand::Check(a) if a.json => report(Verb::Check, a.root.root.as_deref()),
        RulesCommand::Test(a) if a.json => report(Verb::Test, a.root.root.as_deref()),
        RulesCommand::Check(a) => judge(Verb::Check, a.root.root.as_deref()),
        RulesCommand::Test(a) => judge(Verb::Test, a.root.root.as_deref()),
        RulesCommand::List(a) if a.json => list_json(a.root.root.as_deref()),
        RulesCommand::List(a) => judge(Verb::List, a.root.root.as_deref()),
        RulesCommand::Replay(a) => super::replay::replay(a),
        RulesCommand::Capture(a) => super::replay::capture(a),
    }
}

/// What to report about a rule set once it is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Check,
    Test,
    List,
}

/// `check`, `test` and `list`: build the set as a reload would, then report on it.
fn judge(verb: Verb, root: Option<&Path>) -> anyhow::Result<Outcome> {
    let source = describe_root(root);
    let built = match Rules::check(root, &RuleSpec::standard()) {
        Ok(built) => built,
        Err(failure) => return refused(verb, &source, &failure),
    };
    let hash = short(built.set.hash());
    match verb {
        Verb::Test => {
            print_cases(&built.cases);
            println!(
                "rules {hash} ({source}): {} passed, 0 failed",
                built.cases.len()
            );
        }
        Verb::List => print!("{}", listing(&built, root, &source)?),
        Verb::Check => {
            let rule_files = built.set.files().count();
            println!(
                "ok: rules {hash} ({source}): {rule_files} rule file(s), {} test(s) passed",
                built.cases.len()
            );
        }
    }
    Ok(Outcome::Clean)
}

/// `check --json` / `test --json`: the verdict as one document, with the same exit codes
/// as the text (an unreadable root is still an error on stderr, exit 2).
fn report(verb: Verb, root: Option<&Path>) -> anyhow::Result<Outcome> {
    let source = describe_root(root);
    let checked = Rules::check(root, &RuleSpec::standard());
    let (hash, errors, cases): (Option<&str>, &[LoadError], &[CaseResult]) = match &checked {
        Ok(built) => (Some(built.set.hash()), &[], &built.cases),
        Err(failure) => {
            if unreadable(failure) {
                anyhow::bail!("cannot read the rules ({source}):\n{failure}");
            }
            (failure.hash.as_deref(), &failure.errors, &failure.cases)
        }
    };
    // Every file of the set, each with the errors about it; an error about a file the set
    // lacks (a required file missing) gets a row of its own.
    let mut files: BTreeMap<String, Vec<String>> = SourceSet::load(root)
        .map_err(|f| anyhow::anyhow!("{f}"))?
        .files()
        .map(|f| (f.name.clone(), Vec::new()))
        .collect();
    for error in errors {
        files
            .entry(error.file())
            .or_default()
            .push(error.to_string());
    }
    let files: Vec<serde_json::Value> = files
        .into_iter()
        .map(|(file, errors)| {
            let result = if errors.is_empty() { "ok" } else { "error" };
            serde_json::json!({ "file": file, "result": result, "errors": errors })
        })
        .collect();
    let tests: Vec<serde_json::Value> = cases
        .iter()
        .map(|case| {
            serde_json::json!({
                "file": case.tests_file,
                "ruleFile": case.rule_file,
                "index": case.index,
                "name": case.name,
                "function": case.function,
                "result": if case.passed() { "pass" } else { "fail" },
                "error": case.failure,
            })
        })
        .collect();
    let accepted = checked.is_ok();
    let document = serde_json::json!({
        "command": match verb { Verb::Test => "test", _ => "check" },
        "accepted": accepted,
        "hash": hash,
        "source": source,
        "files": files,
        "tests": tests,
    });
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(if accepted {
        Outcome::Clean
    } else {
        Outcome::NeedsAttention
    })
}

/// Whether a refusal is only about files that could not be read: a usage error, not a
/// verdict on the rules.
fn unreadable(failure: &LoadFailure) -> bool {
    failure
        .errors
        .iter()
        .all(|e| matches!(e, LoadError::Io { .. } | LoadError::Refused { .. }))
}

/// A refused set: every error (and, for `test`, every case), exit 1; an unreadable root
/// is a usage error, exit 2.
fn refused(verb: Verb, source: &str, failure: &LoadFailure) -> anyhow::Result<Outcome> {
    if unreadable(failure) {
        anyhow::bail!("cannot read the rules ({source}):\n{failure}");
    }
    if verb == Verb::Test {
        print_cases(&failure.cases);
    }
    for error in &failure.errors {
        if verb != Verb::Test || !matches!(error, LoadError::TestFailed { .. }) {
            println!("error: {error}");
        }
    }
    let failed = failure.cases.iter().filter(|c| !c.passed()).count();
    println!(
        "rules {} ({source}) refused: {} error(s), {} of {} test(s) failed",
        failure.hash.as_deref().map_or("?", short),
        failure.errors.len(),
        failed,
        failure.cases.len()
    );
    Ok(Outcome::NeedsAttention)
}

fn print_cases(cases: &[CaseResult]) {
    for case in cases {
        match &case.failure {
            None => println!(
                "ok    {} {} `{}`",
                case.tests_file,
                case.label(),
                case.function
            ),
            Some(why) => println!(
                "FAIL  {} {} `{}`: {why}",
                case.tests_file,
                case.label(),
                case.function
            ),
        }
    }
}

/// One line per file: name, origin, and functions (rule files) or case count (tests).
/// One file of a set: where it comes from, and what it defines (a rule file) or how many
/// cases it holds (a tests file).
struct Listed {
    name: String,
    overridden: bool,
    functions: Option<Vec<String>>,
    tests: usize,
}

fn listed(built: &Built, root: Option<&std::path::Path>) -> anyhow::Result<Vec<Listed>> {
    let files = SourceSet::load(root).map_err(|f| anyhow::anyhow!("{f}"))?;
    Ok(files
        .files()
        .map(|file| Listed {
            name: file.name.clone(),
            overridden: file.overridden,
            functions: built.set.file(&file.name).map(|compiled| {
                compiled
                    .functions
                    .iter()
                    .map(|(name, arity)| format!("{name}/{arity}"))
                    .collect()
            }),
            tests: built
                .cases
                .iter()
                .filter(|c| c.tests_file == file.name)
                .count(),
        })
        .collect())
}

fn origin(overridden: bool) -> &'static str {
    if overridden { "override" } else { "embedded" }
}

fn listing(built: &Built, root: Option<&std::path::Path>, source: &str) -> anyhow::Result<String> {
    let rows = listed(built, root)?
        .into_iter()
        .map(|row| {
            let detail = match &row.functions {
                Some(functions) => functions.join(" "),
                None => format!("{} test(s)", row.tests),
            };
            [row.name, origin(row.overridden).to_owned(), detail]
        })
        .collect();
    Ok(format!(
        "rules {} ({source})\n{}",
        short(built.set.hash()),
        super::table::plain(None, rows)
    ))
}

/// `list --json`; a set that does not build is refused as `list` refuses it.
fn list_json(root: Option<&Path>) -> anyhow::Result<Outcome> {
    let source = describe_root(root);
    let built = match Rules::check(root, &RuleSpec::standard()) {
        Ok(built) => built,
        Err(failure) => return refused(Verb::List, &source, &failure),
    };
    let files: Vec<serde_json::Value> = listed(&built, root)?
        .into_iter()
        .map(|row| {
            serde_json::json!({
                "file": row.name,
                "origin": origin(row.overridden),
                "functions": row.functions,
                "tests": if row.functions.is_some() { None } else { Some(row.tests) },
            })
        })
        .collect();
    let doc = serde_json::json!({"hash": built.set.hash(), "source": source, "files": files});
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(Outcome::Clean)
}

/// Writes every embedded file under `dir`; refuses a non-empty directory so nothing of an
/// existing rules root is overwritten. The root is created 0700: its rules run in the
/// daemon, so only the owner may change them. Returns how many files were written.
fn init(dir: &Path) -> anyhow::Result<usize> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                anyhow::bail!(
                    "{} is not empty; `rules init` writes only into a new or empty directory (to start over, pick another DIR)",
                    dir.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => crate::atomic_file::create_dirs(dir)
            .with_context(|| format!("cannot create the rules root {}", dir.display()))?,
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", dir.display()));
        }
    }
    for (name, contents) in crate::rules::embedded::FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            crate::atomic_file::create_dirs(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let mode = nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR;
        let mut file =
            crate::atomic_file::create_exclusive(&path, nix::fcntl::OFlag::O_WRONLY, mode)
                .with_context(|| format!("cannot create {}", path.display()))?;
        std::io::Write::write_all(&mut file, contents.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(crate::rules::embedded::FILES.len())
}
