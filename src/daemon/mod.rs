//! The daemon: the tick of DESIGN §3 and the main loop around it.
//!
//! The main loop (`main_loop.rs`) takes a closed set of events (a poll tick, a queue-dir
//! change, a signal, a lane finishing, a forge round's answers) and nothing else calls
//! back into it. A tick's local half (`tick/`) never waits for the forge: what it asks
//! the forge runs in background rounds, one per concern (`forge_round/`). Each landing is
//! one task that owns its record, its lane lock and its child processes from claim to
//! settle, and always releases the lock before it returns.
//!
//! Policy questions (which PRs count, in which order, admit, what a landing's result
//! means, how many lanes) go to the rules through `policy.rs`; the answers are plain values
//! the tick acts on, and every one is written to the decision log.
//!
//! Architecture Invariant: the tick never writes a record except through
//! [`Records::transition`] (which is [`crate::store::QueueStore::transition`] plus a line in
//! the decision log), and never runs anything for a record that has not passed
//! [`crate::gates::Allowlist::gate_record`] in this same tick.

mod active;
mod crew;
mod error;
mod forge_round;
mod landing;
mod landings;
mod lane_retry;
mod main_loop;
mod memory;
mod policy;
mod published;
mod record_touch;
mod records;
mod releasing;
mod reload;
mod revive;
mod shutdown;
mod stop;
mod stranded;
mod tick;
mod tick_gates;
mod unclaimable;
mod unsaved;
mod verdict;
mod warm_up;
mod watch;
mod worktree;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{Config, ForgeKind};
use crate::forge::Forge;
use crate::gates::Allowlist;
use crate::lane_lock::{LockClient, LockSettings};
use crate::queue_view::Refresh;
use crate::rules::{DecisionLog, Rules};
use crate::runner::Runner;
use crate::store::QueueStore;

pub use active::Active;
use crew::Crew;
pub use error::StartError;
pub use landing::LaneOutcome;
pub use main_loop::{Exit, Mode, run};
pub use policy::NOT_BEFORE_FIELD;
pub use published::ReadPublishedError;
pub use records::Records;
pub use reload::{ConfigReload, ConfigReloaded};
pub use stop::StopSignal;
pub use tick::{Candidate, PrepareReport, Selection, Wake};
pub use unclaimable::{PassOverReason, PassedOverLine, read as read_passed_over};
pub use unsaved::{ReadUnsavedError, UnsavedLine, left_listed, read as read_unsaved};

/// The daemon's parts, wired once at start and shared read-only between the main loop's
/// tasks. Each part is a handle of its own (`Arc`ed where a task outlives the tick that
/// started it); a function takes the handles it uses, never this whole struct, except the
/// main loop and the tick, which hand them out.
pub struct Shared {
    /// The handles a landing holds (records, forge, locks, runner, policy, telemetry, the
    /// records this process holds, the shutdown's state, the worktrees).
    crew: Crew,
    /// The gates' allowed roots; a SIGHUP may swap them (`reload.rs`).
    allowlist: Arc<ArcSwap<Allowlist>>,
    /// berth's private state: lock scratch repo, forge scratch repo, logs, worktrees.
    berth_dir: PathBuf,
    /// What the first landing would make on need, made at the first gated record.
    warm_up: warm_up::WarmUp,
    /// What the forge and origin last said per repo, and when (bounds forge calls).
    memory: Mutex<memory::TickMemory>,
    /// Held while the queue detectors run and file (a poll round's, or a watch round's
    /// that changed the learned budget): each run reads the budget once it holds this, so
    /// the last to file judges the budget as the last watch round left it.
    queue_detecting: Mutex<()>,
    /// Repos discovered every tick whatever the queue holds: config `repos`, then the
    /// project root. A SIGHUP may swap them.
    discover_roots: ArcSwap<Vec<String>>,
    /// The project root, kept to rebuild `discover_roots` after a reload.
    project_root: Option<String>,
    /// How a SIGHUP re-reads the configuration, when the embedding program gave one.
    config_reload: Option<reload::ConfigReload>,
    /// The configuration as last loaded (`config` plus what SIGHUPs applied).
    running_config: Mutex<Config>,
}

impl Shared {
    /// Wires the daemon's parts from the configuration.
    pub fn new(
        store: QueueStore,
        allowlist: Allowlist,
        config: Config,
        berth_dir: PathBuf,
    ) -> Result<Shared, StartError> {
        crate::atomic_file::ensure_private_dir(&berth_dir).map_err(StartError::Dir)?;
        let settings = LockSettings {
            ttl: config.lock_ttl(),
            heartbeat_every: Duration::from_secs(config.heartbeat_secs),
            remote_timeout: Duration::from_secs(config.remote_timeout_secs),
        };
        let locks = Arc::new(LockClient::new(
            &berth_dir.join("lock-scratch.git"),
            settings,
        )?);
        let forge = configured_forge(&config, &berth_dir);
        let decisions = Arc::new(DecisionLog::new(&berth_dir));
        let telemetry = Arc::new(crate::telemetry::Telemetry::new(
            crate::telemetry::Sources {
                berth_dir: berth_dir.clone(),
                halts: crate::faults::HaltStore::long_lived(config.faults_dir_or_default()),
                fallbacks: decisions.fallback_counts(),
            },
            forge.name(),
            Duration::from_secs(config.poll_secs.max(1)),
        ));
        let forge: Arc<dyn Forge> = Arc::new(crate::telemetry::forge::MeteredForge::new(
            forge,
            Arc::clone(&telemetry),
        ));
        let runner = Runner::new(
            config.land_command.clone(),
            config.ship_command.clone(),
            berth_dir.join("logs"),
        )
        .for_queue(store.dir())
        .with_timeout(Duration::from_secs(config.land_timeout_secs));
        let config = Arc::new(config);
        let rules = Rules::embedded()?;
        let unclaimable = Arc::new(unclaimable::Unclaimable::new(
            &berth_dir,
            Arc::clone(&telemetry),
        ));
        let crew = Crew {
            records: Arc::new(Records::new(store.clone(), Arc::clone(&decisions))),
            policy: policy::Policy {
                rules: rules.clone(),
                decisions: Arc::clone(&decisions),
                order: Arc::default(),
                config: Arc::clone(&config),
                forge: forge.name(),
            },
            forge,
            locks,
            releasing: Arc::default(),
            runner: Arc::new(runner),
            telemetry,
            owner: crate::ownership::this_process().into(),
            active: Arc::default(),
            unsaved: Arc::new(unsaved::Waiting::new(&berth_dir, store.dir())),
            unclaimable,
            stop: Arc::default(),
            tally: Arc::default(),
            places: Arc::new(worktree::Places::new(&berth_dir, store.dir())),
            touch_every: Duration::from_secs(config.heartbeat_secs.max(1)),
        };
        Ok(Shared {
            crew,
            allowlist: Arc::new(ArcSwap::from_pointee(allowlist)),
            running_config: Mutex::new(Config::clone(&config)),
            berth_dir,
            warm_up: warm_up::WarmUp::default(),
            memory: Mutex::new(memory::TickMemory::default()),
            queue_detecting: Mutex::default(),
            discover_roots: ArcSwap::from_pointee(config.repos.clone()),
            project_root: None,
            config_reload: None,
        })
    }

    /// Adds the project root to the repos discovered every tick (unless it is one already).
    pub fn with_project_root(mut self, root: Option<&std::path::Path>) -> Shared {
        self.project_root = root
            .and_then(|r| r.to_str())
            .map(|r| r.trim_end_matches('/').to_owned())
            .filter(|r| !r.is_empty());
        let repos = self.discover_roots.load_full();
        self.discover_roots
            .store(Arc::new(self.roots_to_discover(&repos)));
        self
    }

    /// Lets a SIGHUP re-read the configuration (`berth run --watch`).
    pub fn with_config_reload(mut self, reload: reload::ConfigReload) -> Shared {
        self.config_reload = Some(reload);
        self
    }

    /// The queue's records: the store, the view, the status changes' log lines.
    pub fn records(&self) -> &Arc<Records> {
        &self.crew.records
    }

    /// The forge, metered.
    pub fn forge(&self) -> &Arc<dyn Forge> {
        &self.crew.forge
    }

    /// The lane locks on `origin`.
    pub fn locks(&self) -> &Arc<LockClient> {
        &self.crew.locks
    }

    /// The configuration the daemon started with.
    pub fn config(&self) -> &Config {
        &self.crew.policy.config
    }

    /// This process's owner stamp (`claimedBy`, the lock's `ownerId`).
    pub fn owner(&self) -> &str {
        &self.crew.owner
    }

    /// berth's private state dir.
    pub fn berth_dir(&self) -> &std::path::Path {
        &self.berth_dir
    }

    /// `<berth_dir>/decisions.jsonl`: every policy answer and status change.
    fn decisions(&self) -> &DecisionLog {
        &self.crew.policy.decisions
    }

    /// The active rule set, swapped whole by hot reload.
    pub fn rules(&self) -> &Rules {
        &self.crew.policy.rules
    }

    /// Metrics and the health file.
    pub fn telemetry(&self) -> &Arc<crate::telemetry::Telemetry> {
        &self.crew.telemetry
    }

    /// The landing policy's last `order`, for the queue page.
    pub fn order(&self) -> &Arc<crate::queue_order::QueueOrder> {
        &self.crew.policy.order
    }

    /// The allowed roots as of now.
    pub fn allowlist(&self) -> Arc<Allowlist> {
        self.allowlist.load_full()
    }

    /// The allowed roots as a SIGHUP swaps them, for a part that reads them later (the
    /// queue page).
    pub fn allowed_roots(&self) -> Arc<ArcSwap<Allowlist>> {
        Arc::clone(&self.allowlist)
    }

    /// The repos discovered every tick, as of now.
    pub fn discover_roots(&self) -> Arc<Vec<String>> {
        self.discover_roots.load_full()
    }

    fn roots_to_discover(&self, repos: &[String]) -> Vec<String> {
        let mut roots = repos.to_vec();
        if let Some(root) = &self.project_root
            && !roots.contains(root)
        {
            roots.push(root.clone());
        }
        roots
    }

    /// Swaps in what a reload may change live: the allowed roots and the discovered repos.
    fn apply_live(&self, allowlist: Allowlist, repos: &[String]) {
        self.allowlist.store(Arc::new(allowlist));
        self.discover_roots
            .store(Arc::new(self.roots_to_discover(repos)));
    }

    fn running_config(&self) -> Config {
        self.running_config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_running_config(&self, config: Config) {
        *self
            .running_config
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// Whether this process is landing `id` right now, or holds its unwritten verdict:
    /// either way the record is this daemon's, whatever its file says.
    pub fn holds(&self, id: &str) -> bool {
        self.crew.holds(id)
    }

    /// What the forge and origin last said, locked. Never held across a forge call; taken
    /// before the view's lock when both are held.
    fn memory(&self) -> MutexGuard<'_, memory::TickMemory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the fault watch reads build-state runs and files halt events.
    fn fault_dirs(&self) -> crate::faults::watch::WatchDirs {
        crate::faults::watch::WatchDirs {
            faults_dir: self.config().faults_dir_or_default(),
            state_dir: self
                .config()
                .build_state_dir
                .clone()
                .unwrap_or_else(crate::paths::default_build_state_dir),
        }
    }

    /// The handle the tick's questions to the rules go through.
    pub fn policy(&self) -> &policy::Policy {
        &self.crew.policy
    }

    /// The handles a landing holds.
    fn crew(&self) -> Crew {
        self.crew.clone()
    }

    /// Uses `forge` instead of the configured one (an embedding program's own forge, e.g.
    /// the tick benchmark's call-counting stand-in).
    pub fn with_forge(mut self, forge: Arc<dyn Forge>) -> Shared {
        self.crew.policy.forge = forge.name();
        self.crew.forge = forge;
        self
    }

    /// Uses `rules` (e.g. loaded from `--rules-root`) instead of the embedded defaults.
    pub fn with_rules(mut self, rules: Rules) -> Shared {
        self.crew.policy.rules = rules;
        self
    }
}

/// The forge the configuration names, unmetered.
fn configured_forge(config: &Config, berth_dir: &std::path::Path) -> Arc<dyn Forge> {
    let timeout = Duration::from_secs(config.forge_timeout_secs);
    match config.forge {
        ForgeKind::Gh => Arc::new(
            crate::forge::gh::GhForge::new()
                .with_program(&config.gh_program)
                .with_timeout(timeout)
                .with_mark(crate::forge::leftover_calls::CallMark::this_daemon()),
        ),
        ForgeKind::Git => Arc::new(
            crate::forge::git::GitForge::new(berth_dir.join("forge-scratch.git"))
                .with_timeout(timeout),
        ),
    }
}

/// One tick's bookkeeping (steps 1–4, its forge round run in line) and selection (step
/// 5), starting no landing: for benchmarks and programs that measure what a tick costs.
pub fn bookkeeping(shared: &Shared, wake: Wake, refresh: &Refresh) -> (PrepareReport, Selection) {
    let tick::Prepared {
        mut report,
        mut gates,
        rounds,
    } = tick::prepare(shared, wake, refresh, forge_round::Free::ALL);
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut answered = forge_round::Answered::default();
    for round in &rounds {
        answered.add(round.run(shared, &cancel));
    }
    report.reconciled = answered.reconciled;
    report.discovered = answered.discovered;
    if answered.discovered > 0 {
        report.gate_blocked += tick::gate_queued(shared, &mut gates);
    }
    let selection = tick::select(shared, &HashSet::new(), 0, gates);
    (report, selection)
}

#[cfg(test)]
impl Shared {
    /// A daemon of the `git` forge on queue dir `queue`, its berth dir `dir/name`, allowed
    /// to land the repos under `dir`: another daemon of a unit test. Its faults go to
    /// `dir/name/faults`, never to the user's.
    pub(crate) fn on_queue(queue: &std::path::Path, dir: &std::path::Path, name: &str) -> Shared {
        let config = Config {
            forge: ForgeKind::Git,
            faults_dir: Some(dir.join(name).join("faults")),
            build_state_dir: Some(dir.join(name).join("build-state")),
            ..Default::default()
        };
        let (allowlist, _) = Allowlist::build(Some(dir), None, None);
        Shared::new(QueueStore::new(queue), allowlist, config, dir.join(name))
            .expect("a daemon starts on a fresh berth dir")
    }
}
