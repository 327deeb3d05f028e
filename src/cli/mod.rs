//! The command line: argument parsing and one small handler per command. Handlers call
//! library code and turn its results into text and exit codes; no policy lives here.
//!
//! Exit codes (documented in the README):
//! - 0: done, nothing needs attention;
//! - 1: done, but something needs an operator (a blocked or unreadable record, a blocked
//!   landing);
//! - 2: berth could not do what was asked (bad arguments, bad input, I/O failure);
//! - 128+N: stopped by signal N (143 for SIGTERM).

mod config;
mod demo;
mod doctor;
mod enqueue;
mod explain;
mod faults;
mod install;
mod lock;
mod lock_check;
mod lock_origin;
mod man;
mod patterns;
mod reach;
mod records;
mod reference;
mod replay;
mod rules;
mod run;
mod status;
mod table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigSource};
use crate::gates::Allowlist;
use crate::logging::{FilterSource, LogFormat};
use crate::store::QueueStore;

/// The outcome a handler reports; `main` maps it to the process exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Clean,
    NeedsAttention,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        match outcome {
            Outcome::Clean => ExitCode::SUCCESS,
            Outcome::NeedsAttention => ExitCode::from(1),
        }
    }
}

impl From<run::RunEnd> for ExitCode {
    fn from(end: run::RunEnd) -> ExitCode {
        match end {
            run::RunEnd::Outcome(outcome) => outcome.into(),
            run::RunEnd::Signalled(code) => ExitCode::from(code),
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version = crate::VERSION,
    about = "Release-queue daemon: lands queued PRs one lane at a time and proves they merged."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The queue dir, for the commands that read or write it (flattened into their arguments,
/// so `--queue-dir` shows only where it applies).
#[derive(clap::Args, Debug, Clone)]
pub struct QueueArgs {
    /// The queue directory (one JSON record per PR).
    #[arg(long, env = "BERTH_QUEUE_DIR", value_name = "DIR")]
    pub queue_dir: Option<PathBuf>,
}

/// The queue dir and the repos a command may touch, for the commands that gate repo paths.
#[derive(clap::Args, Debug, Clone)]
pub struct RepoArgs {
    #[command(flatten)]
    pub queue: QueueArgs,
    /// An extra allowed repo root; defaults to the git toplevel of the current directory.
    #[arg(long, env = "BERTH_PROJECT_ROOT", value_name = "DIR")]
    pub project_root: Option<PathBuf>,
    /// Another root repos may live under (repeatable); added to the config's
    /// `allowed_roots`. `berth install` records the shell's allowlist this way.
    #[arg(long = "allowed-root", value_name = "DIR")]
    pub allowed_roots: Vec<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// The configuration file, for every command that reads a setting from it (flattened, so
/// every command finds the same file the same way).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// The configuration file (TOML; see docs/configuration.md). Default: `BERTH_CONFIG`,
    /// else `$XDG_CONFIG_HOME/berth/config.toml` (`~/.config/berth/config.toml`) if present.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    pub fn source(&self) -> ConfigSource {
        ConfigSource::locate(self.config.as_deref())
    }

    /// The file's settings (defaults when there is none).
    pub fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(self.source().path())?)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// One row per record: PR, repo, lane, status, age, last error.
    #[command(after_help = "Examples:
  berth status
  berth status --json | jq '.records[] | select(.status == \"blocked\")'
  berth status --queue-dir /srv/berth/queue --berth-dir /srv/berth/state")]
    Status(status::StatusArgs),
    /// Put a blocked (or stranded in-flight) record back in the queue.
    #[command(after_help = "Examples:
  berth retry 42
  berth retry 42 --repo github.com/acme/widget
  berth retry github.com-acme-widget-main-pr-42")]
    Retry(records::PickArgs),
    /// Give up on a record for good.
    #[command(after_help = "Examples:
  berth abandon 42 --reason \"superseded by #57\"
  berth abandon github.com-acme-widget-main-pr-42")]
    Abandon(records::AbandonArgs),
    /// Queue a PR (the producer side), after the same gates the daemon applies.
    #[command(after_help = "Examples:
  berth enqueue --repo-path ~/code/widget --pr 42 --feature-branch feat/login --version 1.4.0
  berth enqueue --repo-path ~/code/widget --pr 42 --feature-branch feat/login --base release --version 1.4.1")]
    Enqueue(enqueue::EnqueueArgs),
    /// Run the daemon: `--once` for one tick, `--watch` to keep going.
    #[command(after_help = "Examples:
  berth run --once
  berth run --watch --config ~/.config/berth/config.toml --metrics-addr 127.0.0.1:9464
  berth run --watch --forge git --log-format json 2>>berth.log")]
    Run(run::RunArgs),
    /// Run berth's main job on a throwaway world and narrate it (needs only git).
    #[command(after_help = "Examples:
  berth demo
  berth demo --keep")]
    Demo(demo::DemoArgs),
    /// Inspect or remove lane locks on a repo's origin.
    #[command(
        subcommand,
        after_help = "Examples:
  berth lock status
  berth lock status --repo-path ~/code/widget --json
  berth lock release refs/gstack/release-locks/github.com-acme-widget/main --repo-path ~/code/widget --force"
    )]
    Lock(lock::LockCommand),
    /// The faults of one orchestrator state file.
    #[command(after_help = "Examples:
  berth detect run-state.json
  berth detect run-state.json --plan PLAN.md --stdout run.log --json --no-count")]
    Detect(faults::DetectArgs),
    /// Halt events for investigators: `berth faults list`.
    #[command(after_help = "Examples:
  berth faults list
  berth faults list --json --faults-dir ~/.gstack/skill-faults
  berth faults ack FAULT_ID --run RUN_ID")]
    Faults(faults::FaultsArgs),
    /// Learned patterns: list, propose, promote, reject.
    #[command(after_help = "Examples:
  berth patterns list
  berth patterns propose --category STUCK_ON_LOCKFILE --severity HIGH --kind stdout_contains --pattern index.lock --description \"git left its index lock behind\"
  berth patterns promote STUCK_ON_LOCKFILE")]
    Patterns(patterns::PatternsArgs),
    /// The rules engine: `check`, `test` or `list` a rule set (embedded or a rules root).
    #[command(after_help = "Examples:
  berth rules check
  berth rules init ~/berth-rules && berth rules test ~/berth-rules
  berth rules check ~/berth-rules --json")]
    Rules(rules::RulesArgs),
    /// A PR's history: every policy decision about it and every status change.
    #[command(after_help = "Examples:
  berth explain 42
  berth explain 42 --repo github.com/acme/widget
  berth explain github.com-acme-widget-main-pr-42 --json")]
    Explain(explain::ExplainArgs),
    /// Install a per-user service (systemd user unit or launchd agent) running
    /// `berth run --watch` for one berth dir.
    Install(install::InstallArgs),
    /// Remove the service `berth install` wrote for one berth dir.
    #[command(after_help = "Examples:
  berth uninstall
  berth uninstall --berth-dir ~/.gstack/berth-staging")]
    Uninstall(install::UninstallArgs),
    /// Check tools, queue dir, repos, lane locks, rules, service and daemon; one line each.
    Doctor(doctor::DoctorArgs),
    /// The effective configuration: `berth config show`.
    #[command(
        subcommand,
        after_help = "Examples:
  berth config show
  berth config show --config ./berth.toml"
    )]
    Config(config::ConfigCommand),
    /// Print the man page (roff, from these definitions), or the CLI reference in Markdown.
    #[command(after_help = "Examples:
  berth man | man -l -
  berth man --out-dir ~/.local/share/man/man1 && man berth-status
  berth man --format markdown > docs/cli-reference.md")]
    Man(man::ManArgs),
    /// Print a shell completion script for bash, zsh, fish, elvish or PowerShell.
    #[command(after_help = "Examples:
  berth completions bash > ~/.local/share/bash-completion/completions/berth
  berth completions zsh > ~/.zfunc/_berth
  berth completions fish > ~/.config/fish/completions/berth.fish")]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// What a handler may need, resolved once from its [`QueueArgs`] or [`RepoArgs`].
pub struct Context {
    pub store: QueueStore,
    pub project_root: Option<PathBuf>,
    /// Whether `--queue-dir`/`BERTH_QUEUE_DIR` gave the queue dir (else the default).
    pub queue_dir_given: bool,
    /// Whether `--project-root`/`BERTH_PROJECT_ROOT` gave the project root.
    pub project_root_given: bool,
    /// Which configuration file this invocation reads.
    pub config_source: ConfigSource,
    /// `--allowed-root` entries.
    pub allowed_roots: Vec<PathBuf>,
}

impl Context {
    /// For a command that only reads or writes the queue: no repo is gated.
    fn queue(args: &QueueArgs) -> Context {
        let queue_dir = args
            .queue_dir
            .clone()
            .unwrap_or_else(crate::paths::default_queue_dir);
        Context {
            store: QueueStore::new(queue_dir),
            project_root: None,
            queue_dir_given: args.queue_dir.is_some(),
            project_root_given: false,
            config_source: ConfigSource::Defaults,
            allowed_roots: Vec::new(),
        }
    }

    /// For a command that gates repo paths: the queue, and the project root.
    fn repos(args: &RepoArgs) -> Context {
        Context {
            project_root: args.project_root.clone().or_else(git_toplevel_of_cwd),
            project_root_given: args.project_root.is_some(),
            config_source: args.config.source(),
            allowed_roots: args.allowed_roots.clone(),
            ..Context::queue(&args.queue)
        }
    }

    /// The configuration file's settings (defaults when there is none).
    pub fn config(&self) -> anyhow::Result<Config> {
        Ok(Config::load(self.config_source.path())?)
    }

    /// The queue dir must exist for commands that read it: a mistyped `--queue-dir` is an
    /// error naming it, not an empty queue.
    pub fn require_queue_dir(&self) -> anyhow::Result<()> {
        let dir = self.store.dir();
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => anyhow::bail!("queue dir {} is not a directory", dir.display()),
            Err(e) => anyhow::bail!(
                "queue dir {} cannot be read: {e} (check --queue-dir / BERTH_QUEUE_DIR; `berth run` creates it)",
                dir.display()
            ),
        }
    }

    /// The allowlist for this invocation: gstack's (`$HOME` defaults,
    /// `GSTACK_DAEMON_REPO_ALLOWLIST`, the project root), then the config's `allowed_roots`
    /// and `repos`, then `--allowed-root`. Refused entries are warned about on stderr.
    pub fn allowlist(&self, config: &Config) -> Allowlist {
        allowlist_for(self.project_root.as_deref(), &self.allowed_roots, config)
    }
}

/// [`Context::allowlist`] from its parts (a reloading daemon rebuilds it from them).
pub fn allowlist_for(
    project_root: Option<&Path>,
    allowed_roots: &[PathBuf],
    config: &Config,
) -> Allowlist {
    let (mut allowlist, mut refused) = Allowlist::from_env(project_root);
    refused.extend(allowlist.extend(
        "allowed_roots",
        config.allowed_roots.iter().map(PathBuf::as_path),
    ));
    refused.extend(allowlist.extend("repos", config.repos.iter().map(Path::new)));
    refused.extend(allowlist.extend("--allowed-root", allowed_roots.iter().map(PathBuf::as_path)));
    for warning in refused {
        tracing::warn!("{warning}");
    }
    allowlist
}

fn git_toplevel_of_cwd() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    // A checkout has a `.git` entry in an ancestor, or libgit2 finds none either. Asking
    // libgit2 only then keeps its start-up (it loads the system's CA bundle, ~30 ms and a
    // few MiB) out of every command run outside a checkout; a daemon that never touches a
    // repository never pays it.
    if !cwd
        .ancestors()
        .any(|dir| std::fs::symlink_metadata(dir.join(".git")).is_ok())
    {
        return None;
    }
    let repo = git2::Repository::discover(&cwd).ok()?;
    repo.workdir().map(Path::to_path_buf)
}

/// Parses the process arguments, runs the command, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let daemon = matches!(cli.command, Command::Run(_) | Command::Demo(_));
    if !daemon {
        // A reader that goes away (`berth status --json | head -1`) ends the command the
        // way it ends `cat`: by SIGPIPE (exit 141), not a panic. The daemon keeps Rust's
        // default (EPIPE as an error) so a closed pipe to a child never kills it.
        restore_sigpipe();
    }
    // The demo narrates on stdout; only problems belong on stderr there.
    let default_level = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    // `run` has `--log-format`; every other command takes `BERTH_LOG_FORMAT` alone.
    let format = match &cli.command {
        Command::Run(args) => Ok(args.log_format),
        _ => LogFormat::from_env(),
    };
    if let Err(error) = format
        .and_then(|format| crate::logging::init(&FilterSource::from_env(default_level), format))
    {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    match run(cli) {
        Ok(end) => end,
        Err(error) => {
            report_error(&error);
            ExitCode::from(2)
        }
    }
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    Ok(match cli.command {
        Command::Status(args) => status::run(&Context::repos(&args.repos), &args)?.into(),
        Command::Retry(args) => records::retry(&Context::queue(&args.queue), &args)?.into(),
        Command::Abandon(args) => {
            records::abandon(&Context::queue(&args.pick.queue), &args)?.into()
        }
        Command::Enqueue(args) => enqueue::run(&Context::repos(&args.repos), &args)?.into(),
        Command::Run(args) => run::run(&Context::repos(&args.repos), &args)?.into(),
        Command::Lock(command) => lock::run(&Context::repos(command.repos()), &command)?.into(),
        Command::Demo(args) => demo::run(&args)?.into(),
        Command::Detect(args) => faults::detect(&args)?.into(),
        Command::Faults(args) => faults::run(&args)?.into(),
        Command::Patterns(args) => patterns::run(&args)?.into(),
        Command::Rules(args) => rules::run(&args)?.into(),
        Command::Explain(args) => explain::run(&Context::repos(&args.repos), &args)?.into(),
        Command::Install(args) => install::install(&Context::repos(&args.repos), &args)?.into(),
        Command::Uninstall(args) => install::uninstall(&args)?.into(),
        Command::Doctor(args) => doctor::run(&Context::repos(&args.repos), &args)?.into(),
        Command::Config(command) => config::run(&Context::repos(command.repos()), &command)?.into(),
        Command::Man(args) => man::run(&args)?.into(),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "berth", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    })
}

fn restore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: setting the default disposition installs no handler code; nothing else in
    // the process has changed SIGPIPE's disposition or relies on it yet.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// `error: <what>` then each cause on its own line, so the operator sees the whole chain.
fn report_error(error: &anyhow::Error) {
    eprintln!("error: {error}");
    for cause in error.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}
