//! `berth run --once | --watch`: the daemon.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use super::{Context, Outcome};
use crate::config::{Config, ConfigSource, ForgeKind};
use crate::daemon::{self, ConfigReload, Exit, Mode, Shared};
use crate::instance::InstanceLock;

#[derive(clap::Args, Debug)]
#[group(id = "mode", required = true, multiple = false)]
pub struct RunArgs {
    #[command(flatten)]
    pub repos: super::RepoArgs,
    /// Log lines on stderr as `text` or `json` (one object per line). The filter comes
    /// from `BERTH_LOG`, or `RUST_LOG` when `BERTH_LOG` is unset.
    #[arg(
        long,
        env = "BERTH_LOG_FORMAT",
        value_enum,
        default_value_t = crate::logging::LogFormat::Text,
        value_name = "FORMAT"
    )]
    pub log_format: crate::logging::LogFormat,
    /// Run one tick, finish its landings, and exit.
    #[arg(long, group = "mode")]
    pub once: bool,
    /// Keep running: tick on the poll interval and whenever the queue dir changes.
    #[arg(long, group = "mode")]
    pub watch: bool,
    /// Serve Prometheus metrics (`GET /metrics`) and the queue page (`GET /`) on `HOST:PORT`,
    /// e.g. `127.0.0.1:9464`; a bare `PORT` binds loopback.
    #[arg(long, env = "BERTH_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// The daemon's settings that `run` and `demo` share.
#[derive(clap::Args, Debug, Clone)]
pub struct DaemonArgs {
    /// Override the config's forge: `gh` (GitHub) or `git` (plain branches on origin).
    #[arg(long, value_enum)]
    pub forge: Option<ForgeKind>,
    /// Override the config's number of lanes that may land at once.
    #[arg(long, value_name = "N")]
    pub max_lanes: Option<usize>,
    /// berth's private state dir (lock scratch repo, logs, scratch worktrees).
    #[arg(long, env = "BERTH_DIR", value_name = "DIR")]
    pub berth_dir: Option<PathBuf>,
    /// A directory holding `rules/` and `policies/`: its files override the embedded rules
    /// file by file, and `--watch` reloads them when they change.
    #[arg(long, env = "BERTH_RULES_ROOT", value_name = "DIR")]
    pub rules_root: Option<PathBuf>,
}

impl DaemonArgs {
    /// The configuration `source` names, with this command's overrides.
    pub fn config(&self, source: &ConfigSource) -> anyhow::Result<Config> {
        self.config_with_keys(source).map(|(config, _)| config)
    }

    /// [`DaemonArgs::config`], and the keys the file sets.
    pub fn config_with_keys(
        &self,
        source: &ConfigSource,
    ) -> anyhow::Result<(Config, std::collections::BTreeSet<String>)> {
        let (mut config, keys) = Config::load_with_keys(source.path())?;
        if let Some(lanes) = self.max_lanes {
            anyhow::ensure!(lanes > 0, "--max-lanes must be at least 1");
            let cap = crate::rules::contracts::landing::MAX_LANES_CAP;
            anyhow::ensure!(lanes <= cap, "--max-lanes must be at most {cap}");
        }
        self.overrides()(&mut config);
        Ok((config, keys))
    }

    /// `--forge` and `--max-lanes` over a loaded file (checked by [`DaemonArgs::config`]).
    fn overrides(&self) -> impl Fn(&mut Config) + Send + Sync + 'static {
        let (forge, max_lanes) = (self.forge, self.max_lanes);
        move |config: &mut Config| {
            if let Some(forge) = forge {
                config.forge = forge;
            }
            if let Some(lanes) = max_lanes {
                config.max_lanes = lanes;
            }
        }
    }

    /// The rule set to start with; a set that does not pass `berth rules check` stops the
    /// start (there is no last good set to fall back on yet).
    pub fn rules(&self) -> anyhow::Result<crate::rules::Rules> {
        crate::rules::Rules::load(self.rules_root.as_deref()).map_err(|failure| {
            anyhow::anyhow!(
                "the rules ({}) are not usable:\n{failure}",
                crate::rules::set::describe_root(self.rules_root.as_deref())
            )
        })
    }
}

/// One line that says what this daemon is and what it works on.
fn log_startup(shared: &Shared, daemon: &DaemonArgs, source: &ConfigSource) {
    let rules = shared.rules().current();
    tracing::info!(
        version = crate::VERSION,
        pid = std::process::id(),
        queue_dir = %shared.records().store().dir().display(),
        forge = shared.forge().name(),
        rules_root = %crate::rules::set::describe_root(daemon.rules_root.as_deref()),
        rules_hash = rules.hash(),
        config = %source.describe(),
        poll_secs = shared.config().poll_secs,
        berth_dir = %shared.berth_dir().display(),
        "berth starting"
    );
}

/// With the `gh` forge and no runnable `gh`, every discovery, claim check and merge proof
/// would fail: the daemon does not start (exit 2) and says the fix. Under a service
/// manager's restart, installing `gh` is all it takes to bring it up.
fn require_gh(config: &Config, source: &ConfigSource) -> anyhow::Result<()> {
    if config.forge == ForgeKind::Gh {
        crate::forge::MissingGh::check(&config.gh_program, &source.file_to_edit())?;
    }
    Ok(())
}

/// How a SIGHUP re-reads this daemon's configuration: the same file, the same overrides,
/// the same process roots.
fn config_reload(ctx: &Context, daemon: &DaemonArgs) -> ConfigReload {
    let (project_root, allowed_roots) = (ctx.project_root.clone(), ctx.allowed_roots.clone());
    ConfigReload {
        path: ctx.config_source.path().map(PathBuf::from),
        overrides: Box::new(daemon.overrides()),
        allowlist: Box::new(move |config| {
            super::allowlist_for(project_root.as_deref(), &allowed_roots, config)
        }),
    }
}

/// What a daemon run means for the process: an outcome, or a signal exit code.
pub enum RunEnd {
    Outcome(Outcome),
    Signalled(u8),
}

pub fn run(ctx: &Context, args: &RunArgs) -> anyhow::Result<RunEnd> {
    let mode = if args.watch { Mode::Watch } else { Mode::Once };
    let config = args.daemon.config(&ctx.config_source)?;
    require_gh(&config, &ctx.config_source)?;
    let berth_dir = args
        .daemon
        .berth_dir
        .clone()
        .unwrap_or_else(crate::paths::default_berth_dir);
    // Before anything writes into the berth dir: a second daemon there would overwrite the
    // first one's rules status and health.
    let _instance = InstanceLock::acquire(&berth_dir, if args.watch { "watch" } else { "once" })?;
    let open_files = crate::open_files::raise_to_hard();
    ctx.store.ensure_dir()?;
    let rules = args.daemon.rules()?;
    let shared = Arc::new(
        Shared::new(ctx.store.clone(), ctx.allowlist(&config), config, berth_dir)?
            .with_rules(rules)
            .with_project_root(ctx.project_root.as_deref())
            .with_config_reload(config_reload(ctx, &args.daemon)),
    );
    let _http = match &args.metrics_addr {
        Some(addr) => {
            let limits = crate::http::Limits::within(open_files);
            let server = crate::endpoint::start(addr, &shared, limits).with_context(|| {
                format!("cannot serve metrics on --metrics-addr {addr} (expected HOST:PORT or PORT, free)")
            })?;
            tracing::info!(addr = %server.addr(), max_connections = limits.max_connections, "serving metrics on http://{0}/metrics and the queue page on http://{0}/", server.addr());
            Some(server)
        }
        None => None,
    };
    log_startup(&shared, &args.daemon, &ctx.config_source);
    // A daemon looks at a local origin before each lock operation, for as long as it runs.
    crate::lane_lock::keep_listings();
    // A tick runs on a blocking thread; one kept across poll intervals (tokio's default
    // lets it go after 10 s) spares an idle daemon a thread start and exit per tick, and
    // the exit's sweep of that thread's allocator cache.
    let keep_alive = std::time::Duration::from_secs(shared.config().poll_secs.max(10) * 2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(crate::rules::RULE_THREAD_STACK)
        .thread_keep_alive(keep_alive)
        .enable_all()
        .build()?;
    let exit = runtime.block_on(daemon::run(
        shared,
        mode,
        tokio_util::sync::CancellationToken::new(),
    ))?;
    // Blocking forge or lock calls still running must not hold the exit hostage.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    Ok(match exit {
        Exit::Clean => RunEnd::Outcome(Outcome::Clean),
        Exit::Blocked => RunEnd::Outcome(Outcome::NeedsAttention),
        Exit::Signalled(signal) => RunEnd::Signalled(signal.exit_code()),
    })
}
