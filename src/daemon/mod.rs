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
//! [`Shared::transition`] (which is [`crate::store::QueueStore::transition`] plus a line in
//! the decision log), and never runs anything for a record that has not passed
//! [`crate::gates::Allowlist::gate_record`] in this same tick.

mod active;
mod error;
mod forge_round;
mod landing;
mod landings;
mod lane_retry;
mod main_loop;
mod memory;
mod policy;
mod record_touch;
mod reload;
mod revive;
mod shutdown;
mod stop;
mod stranded;
mod tick;
mod tick_gates;
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
use crate::lane_lock::{Lane, LockClient, LockSettings};
use crate::queue_view::{QueueView, Refresh};
use crate::record::{Record, Status};
use crate::rules::{DecisionLog, Rules};
use crate::runner::Runner;
use crate::store::{Expect, QueueStore, StoreError};

pub use active::Active;
pub use error::StartError;
pub use landing::LaneOutcome;
pub use main_loop::{Exit, Mode, run};
pub use policy::NOT_BEFORE_FIELD;
pub use reload::{ConfigReload, ConfigReloaded};
pub use stop::StopSignal;
pub use tick::{Candidate, PrepareReport, Selection, Wake};
pub use unsaved::{ReadUnsavedError, UnsavedLine, read as read_unsaved};

/// Everything a tick and a landing need, shared read-only between tasks.
pub struct Shared {
    pub store: QueueStore,
    /// The gates' allowed roots; a SIGHUP may swap them (`reload.rs`).
    allowlist: ArcSwap<Allowlist>,
    pub forge: Arc<dyn Forge>,
    pub locks: Arc<LockClient>,
    pub runner: Runner,
    pub config: Config,
    /// This process's owner stamp, written as `claimedBy` and as the lock's `ownerId`.
    pub owner: String,
    /// berth's private state: lock scratch repo, forge scratch repo, logs, worktrees.
    pub berth_dir: PathBuf,
    /// The signal that stopped the daemon, once one has.
    pub stop: stop::StopFlag,
    /// What the shutdown revived and released, for its summary lines.
    pub tally: stop::Tally,
    /// The records this process is landing right now.
    pub active: Active,
    /// Scratch worktrees kept for the next landing of their repo.
    pub worktrees: worktree::IdleWorktrees,
    /// What the first landing would make on need, made at the first gated record.
    pub warm_up: warm_up::WarmUp,
    /// Verdicts the store could not write yet.
    unsaved: unsaved::Waiting,
    /// The active rule set, swapped whole by hot reload.
    pub rules: Rules,
    /// `<berth_dir>/decisions.jsonl`: every policy answer and status change.
    pub decisions: DecisionLog,
    /// Metrics and the health file (`berth status`, `--metrics-addr`).
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// The landing policy's last `order` of the queue, for the queue page.
    pub order: Arc<crate::queue_order::QueueOrder>,
    /// The records as last read; every write through [`Shared::transition`] and
    /// [`Shared::insert`] keeps it current.
    view: Mutex<QueueView>,
    /// What the forge and origin last said per repo, and when (bounds forge calls).
    memory: Mutex<memory::TickMemory>,
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
        let discover_roots = ArcSwap::from_pointee(config.repos.clone());
        let settings = LockSettings {
            ttl: config.lock_ttl(),
            heartbeat_every: Duration::from_secs(config.heartbeat_secs),
            remote_timeout: Duration::from_secs(config.remote_timeout_secs),
        };
        let locks = Arc::new(LockClient::new(
            &berth_dir.join("lock-scratch.git"),
            settings,
        )?);
        let forge_timeout = Duration::from_secs(config.forge_timeout_secs);
        let forge: Arc<dyn Forge> = match config.forge {
            ForgeKind::Gh => Arc::new(
                crate::forge::gh::GhForge::new()
                    .with_program(&config.gh_program)
                    .with_timeout(forge_timeout)
                    .with_mark(crate::forge::leftover_calls::CallMark::this_daemon()),
            ),
            ForgeKind::Git => Arc::new(
                crate::forge::git::GitForge::new(berth_dir.join("forge-scratch.git"))
                    .with_timeout(forge_timeout),
            ),
        };
        let decisions = DecisionLog::new(&berth_dir);
        let telemetry = Arc::new(crate::telemetry::Telemetry::new(
            crate::telemetry::Sources {
                berth_dir: berth_dir.clone(),
                halts: crate::faults::HaltStore::new(config.faults_dir_or_default()),
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
        Ok(Shared {
            store,
            allowlist: ArcSwap::from_pointee(allowlist),
            running_config: Mutex::new(config.clone()),
            forge,
            locks,
            runner,
            config,
            owner: crate::ownership::this_process(),
            decisions,
            telemetry,
            order: Arc::default(),
            berth_dir,
            stop: stop::StopFlag::default(),
            tally: stop::Tally::default(),
            active: Active::default(),
            worktrees: worktree::IdleWorktrees::default(),
            warm_up: warm_up::WarmUp::default(),
            unsaved: unsaved::Waiting::default(),
            rules: Rules::embedded()?,
            view: Mutex::new(QueueView::new()),
            memory: Mutex::new(memory::TickMemory::default()),
            discover_roots,
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

    /// The allowed roots as of now.
    pub fn allowlist(&self) -> Arc<Allowlist> {
        self.allowlist.load_full()
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
        self.active.holds(id) || self.unsaved.holds(id)
    }

    /// What the forge and origin last said, locked. Never held across a forge call; taken
    /// before the view's lock when both are held.
    fn memory(&self) -> MutexGuard<'_, memory::TickMemory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the fault watch reads build-state runs and files halt events.
    fn fault_dirs(&self) -> crate::faults::watch::WatchDirs {
        crate::faults::watch::WatchDirs {
            faults_dir: self.config.faults_dir_or_default(),
            state_dir: self
                .config
                .build_state_dir
                .clone()
                .unwrap_or_else(crate::paths::default_build_state_dir),
        }
    }

    /// The handle the tick's questions to the rules go through.
    pub fn policy(&self) -> policy::Policy<'_> {
        policy::Policy {
            rules: &self.rules,
            decisions: &self.decisions,
            order: &self.order,
            config: &self.config,
            forge: self.forge.name(),
        }
    }

    /// The queue view, locked. Hold it briefly: record writes wait for it.
    pub fn view(&self) -> MutexGuard<'_, QueueView> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a new record ([`QueueStore::insert`]) and reads it into the view.
    pub fn insert(&self, record: &Record) -> Result<String, StoreError> {
        let id = self.store.insert(record)?;
        self.view().written(&self.store, &id);
        Ok(id)
    }

    /// Uses `forge` instead of the configured one (an embedding program's own forge, e.g.
    /// the tick benchmark's call-counting stand-in).
    pub fn with_forge(mut self, forge: Arc<dyn Forge>) -> Shared {
        self.forge = forge;
        self
    }

    /// Uses `rules` (e.g. loaded from `--rules-root`) instead of the embedded defaults.
    pub fn with_rules(mut self, rules: Rules) -> Shared {
        self.rules = rules;
        self
    }

    /// The daemon's one way to write a record: [`QueueStore::transition`], and when the
    /// status changed, a `status` line in the decision log (reason: the new `lastError`).
    pub fn transition(
        &self,
        id: &str,
        expect: Expect<'_>,
        to: Status,
        edit: impl FnOnce(&mut Record),
    ) -> Result<Record, StoreError> {
        self.transition_within(id, expect, to, crate::atomic_file::LOCK_WAIT, edit)
    }

    /// [`Self::transition`], waiting at most `wait` for the record's lock.
    pub fn transition_within(
        &self,
        id: &str,
        expect: Expect<'_>,
        to: Status,
        wait: Duration,
        edit: impl FnOnce(&mut Record),
    ) -> Result<Record, StoreError> {
        let mut from = None;
        let updated = self
            .store
            .transition_within(id, expect, to, wait, |r| {
                from = Some(r.status);
                edit(r);
            })
            .inspect_err(|e| {
                // A producer holding the record's lock: skipped this tick, said out loud.
                if matches!(e, StoreError::Locked { .. }) {
                    tracing::warn!("skipped this tick: {e}");
                }
            });
        // Written or not, the file is re-read: a refused write means the view was stale.
        if !matches!(updated, Err(StoreError::BadId(_))) {
            self.view().written(&self.store, id);
        }
        let updated = updated?;
        if let Some(from) = from
            && from != updated.status
        {
            self.decisions.status_change(id, from, &updated);
        }
        Ok(updated)
    }

    fn lane_of(candidate: &Candidate) -> Lane {
        candidate.gated.lane()
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
