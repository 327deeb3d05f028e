//! The daemon: the tick of DESIGN §3 and the main loop around it.
//!
//! The main loop takes a closed set of [`Event`]s (a poll tick, a queue-dir change, a
//! signal, a lane finishing) and nothing else calls back into it. Each landing is one task
//! that owns its record, its lane lock and its child processes from claim to settle, and
//! always releases the lock before it returns.
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
mod landing;
mod lane_retry;
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
mod watch;
mod worktree;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ForgeKind};
use crate::forge::Forge;
use crate::gates::Allowlist;
use crate::lane_lock::{Lane, LockClient, LockSettings, lane_key};
use crate::queue_view::{QueueView, Refresh};
use crate::record::{Record, Status};
use crate::rules::{DecisionLog, ReloadWatcher, Rules, RulesStatus};
use crate::runner::Runner;
use crate::store::{Expect, QueueStore, StoreError};

pub use active::Active;
pub use landing::LaneOutcome;
pub use policy::NOT_BEFORE_FIELD;
pub use reload::{ConfigReload, ConfigReloaded};
pub use stop::StopSignal;
pub use tick::{Candidate, PrepareReport, Selection, Wake};
use tick_gates::TickGates;
pub use unsaved::{UnsavedLine, read as read_unsaved};

/// How long a stopping daemon waits for its landings to put their records back and
/// release their locks before it revives what is left (DESIGN §6: 2 s kill grace + 4 s
/// lock release, plus slack).
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(6500);

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
    /// Verdicts the store could not write yet.
    unsaved: unsaved::Waiting,
    /// The active rule set, swapped whole by hot reload.
    pub rules: Rules,
    /// `<berth_dir>/decisions.jsonl`: every policy answer and status change.
    pub decisions: DecisionLog,
    /// Metrics and the health file (`berth status`, `--metrics-addr`).
    pub telemetry: Arc<crate::telemetry::Telemetry>,
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

/// Run one tick and exit, or keep running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Once,
    Watch,
}

/// How a daemon run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Nothing it processed ended blocked.
    Clean,
    /// `--once`: the record it processed ended blocked, or it only blocked records at the
    /// gates.
    Blocked,
    /// Stopped by a signal; the process should exit `128 + signal`.
    Signalled(StopSignal),
}

/// The closed set of things the main loop reacts to.
enum Event {
    Tick,
    /// The embedding program asked the daemon to stop.
    Stop,
    QueueChanged(watch::QueueChanges),
    Signal(StopSignal),
    /// SIGHUP in `--watch`: re-read the configuration and the rules.
    Reload,
    LaneDone(LaneOutcome),
    /// A lane left alone for a while may be tried again.
    RetryDue,
}

impl Shared {
    /// Wires the daemon's parts from the configuration.
    pub fn new(
        store: QueueStore,
        allowlist: Allowlist,
        config: Config,
        berth_dir: PathBuf,
    ) -> anyhow::Result<Shared> {
        crate::atomic_file::ensure_private_dir(&berth_dir)?;
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
                    .with_timeout(forge_timeout),
            ),
            ForgeKind::Git => Arc::new(
                crate::forge::git::GitForge::new(berth_dir.join("forge-scratch.git"))
                    .with_timeout(forge_timeout),
            ),
        };
        let decisions = DecisionLog::new(&berth_dir);
        let telemetry = Arc::new(crate::telemetry::Telemetry::new(
            crate::telemetry::Sources {
                store: store.clone(),
                berth_dir: berth_dir.clone(),
                halts: crate::faults::HaltStore::new(
                    config
                        .faults_dir
                        .clone()
                        .unwrap_or_else(crate::paths::default_faults_dir),
                ),
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
            berth_dir,
            stop: stop::StopFlag::default(),
            tally: stop::Tally::default(),
            active: Active::default(),
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
        let mut from = None;
        let updated = self
            .store
            .transition(id, expect, to, |r| {
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
        Lane {
            repo_identity: candidate.gated.identity.clone(),
            base_branch: candidate.record.base_branch.clone(),
        }
    }
}

/// One tick's bookkeeping (steps 1–4) and selection (step 5), starting no landing: for
/// benchmarks and programs that measure what a tick costs.
pub fn bookkeeping(shared: &Shared, wake: Wake, refresh: &Refresh) -> (PrepareReport, Selection) {
    let (report, gates) = tick::prepare(shared, wake, refresh);
    let selection = tick::select(shared, &HashSet::new(), 0, gates);
    (report, selection)
}

/// Runs the daemon until `--once` is done, a signal arrives, or `stop` is cancelled (the
/// embedding program's own way to stop it, e.g. `berth demo`).
pub async fn run(shared: Arc<Shared>, mode: Mode, stop: CancellationToken) -> anyhow::Result<Exit> {
    let cancel = CancellationToken::new();
    let mut signals = shutdown::Signals::install(mode == Mode::Watch)?;
    let mut queue_changes = match mode {
        Mode::Watch => Some(watch::QueueWatcher::start(shared.store.dir())?),
        Mode::Once => None,
    };
    shared.telemetry.started(match mode {
        Mode::Once => "once",
        Mode::Watch => "watch",
    });
    let status = RulesStatus::started(&shared.rules.current());
    if let Err(e) = status.write(&shared.berth_dir) {
        tracing::warn!("cannot write the rules status: {e}");
    }
    // Hot reload runs on the watcher's own thread for as long as the loop runs.
    let rules_watcher = match (mode, shared.rules.root()) {
        (Mode::Watch, Some(_)) => Some(ReloadWatcher::start(
            shared.rules.clone(),
            shared.berth_dir.clone(),
            status,
        )?),
        _ => None,
    };
    let mut poll = tokio::time::interval(Duration::from_secs(shared.config.poll_secs.max(1)));
    // A tick that overran its interval is followed by one poll tick, not a burst of them.
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut landings = Landings::new(poll.period());
    // `--once` exits 1 when a record it processed ended blocked, or when it did nothing
    // but block records (at the gates or by the landing policy).
    let mut any_blocked = false;
    let mut blocked_before_landing = Blocked::default();
    let mut processed = false;
    let mut ticked_once = false;
    let mut last_sweep: Option<std::time::Instant> = None;
    // An event that arrived while the loop was busy with bookkeeping, handled next.
    let mut pending: Option<Event> = None;

    loop {
        let retry_at = landings.retry.next_due(tokio::time::Instant::now());
        let event = match pending.take() {
            Some(event) => event,
            None => tokio::select! {
                heard = signals.recv() => heard.event(),
                () = stop.cancelled() => Event::Stop,
                Some(outcome) = landings.next_done(), if !landings.is_empty() => Event::LaneDone(outcome),
                () = sleep_until_some(retry_at), if mode == Mode::Watch && retry_at.is_some() => Event::RetryDue,
                _ = poll.tick(), if mode == Mode::Watch || !ticked_once => Event::Tick,
                Some(changes) = async { match queue_changes.as_mut() { Some(w) => Some(w.changed().await), None => None } } => Event::QueueChanged(changes),
            },
        };
        let next = match event {
            Event::Stop | Event::Signal(_) => {
                let (reason, exit) = match event {
                    Event::Signal(signal) => {
                        (stop::StopReason::Signal(signal), Exit::Signalled(signal))
                    }
                    _ => (
                        stop::StopReason::Requested,
                        if any_blocked {
                            Exit::Blocked
                        } else {
                            Exit::Clean
                        },
                    ),
                };
                shared.stop.set(reason);
                cancel.cancel();
                shutdown::drain(&shared, &mut landings.tasks, SHUTDOWN_BUDGET).await;
                return Ok(exit);
            }
            Event::Reload => {
                reload::on_hup(&shared, rules_watcher.as_ref());
                Ok(())
            }
            Event::LaneDone(outcome) => {
                any_blocked |= outcome.ended_blocked();
                processed |= outcome.took_the_record();
                let lane = lane_key(&outcome.lane);
                if outcome.lane_may_retry_this_tick() {
                    landings.retry.forget(&lane);
                } else {
                    // Not head-of-line, and no hot loop: a lane locked elsewhere, or a
                    // record put back for a transient reason, waits for its backoff.
                    landings.retry.defer(lane, tokio::time::Instant::now());
                }
                // `--once` is one tick: each free lane's head once. A skipped lane hands
                // its turn to the next lane; only `--watch` moves on to a lane's next record.
                if mode == Mode::Watch || !outcome.lane_may_retry_this_tick() {
                    interruptible(
                        &mut signals,
                        &stop,
                        start_landings(&shared, &cancel, &mut landings, TickGates::default()),
                    )
                    .await
                    .map(|policy_blocked| blocked_before_landing.by_policy += policy_blocked)
                } else {
                    Ok(())
                }
            }
            Event::RetryDue => interruptible(
                &mut signals,
                &stop,
                start_landings(&shared, &cancel, &mut landings, TickGates::default()),
            )
            .await
            .map(|policy_blocked| blocked_before_landing.by_policy += policy_blocked),
            Event::Tick | Event::QueueChanged(_) => {
                ticked_once = true;
                // A watcher's wake looks at the files it named (all of them if it lost
                // events). A poll tick trusts the watcher and reads nothing, except for a
                // stat sweep of every file on the first tick, without a watcher, and once
                // per `reconcile_every_secs` in case a change went unseen.
                // Whatever the watcher heard and has not handed out yet is read on this
                // turn, whichever event won the race (a slow tick makes the poll win every
                // time).
                let heard = queue_changes
                    .as_mut()
                    .map(watch::QueueWatcher::take)
                    .unwrap_or_default();
                let (wake, refresh) = match event {
                    Event::QueueChanged(changes) if changes.rescan || heard.rescan => {
                        (tick::Wake::Watcher, Refresh::Sweep)
                    }
                    Event::QueueChanged(mut changes) => {
                        changes.files.extend(heard.files);
                        (tick::Wake::Watcher, Refresh::Files(changes.files))
                    }
                    _ if heard.rescan
                        || mode == Mode::Once
                        || sweep_due(last_sweep, &shared.config) =>
                    {
                        (tick::Wake::Poll, Refresh::Sweep)
                    }
                    _ => (tick::Wake::Poll, Refresh::Files(heard.files)),
                };
                if refresh == Refresh::Sweep {
                    last_sweep = Some(std::time::Instant::now());
                    prune_logs(&shared);
                }
                if wake == tick::Wake::Poll {
                    // The backstop for rule edits no watch reports (a hard link's).
                    if let Some(watcher) = &rules_watcher {
                        watcher.check();
                    }
                }
                interruptible(
                    &mut signals,
                    &stop,
                    start_tick(&shared, &cancel, &mut landings, wake, refresh),
                )
                .await
                .map(|blocked| blocked_before_landing.add(blocked))
            }
        };
        if let Err(interrupt) = next {
            pending = Some(interrupt);
            continue;
        }
        if mode == Mode::Once && ticked_once && landings.is_empty() {
            if !processed {
                tracing::info!("{}", blocked_before_landing.summary());
            }
            let needs_attention = any_blocked || (blocked_before_landing.any() && !processed);
            return Ok(if needs_attention {
                Exit::Blocked
            } else {
                Exit::Clean
            });
        }
    }
}

/// Prunes `<berth_dir>/logs/` by age and total size on a thread of its own (with the
/// sweep: at start, then every `reconcile_every_secs`); the loop does not wait for it.
fn prune_logs(shared: &Shared) {
    use crate::runner::retention;
    let logs = shared.berth_dir.join("logs");
    tokio::task::spawn_blocking(move || {
        let pruned = retention::prune(
            &logs,
            std::time::SystemTime::now(),
            retention::MAX_LOG_AGE,
            retention::MAX_LOGS_BYTES,
        );
        if pruned.files > 0 {
            tracing::info!(
                files = pruned.files,
                bytes = pruned.bytes,
                "old attempt logs removed from {}",
                logs.display()
            );
        }
    });
}

/// Whether a poll tick should stat every queue file: none yet, or none within
/// `reconcile_every_secs` (a safety net under the watcher, which reports every write).
fn sweep_due(last: Option<std::time::Instant>, config: &Config) -> bool {
    last.is_none_or(|at| at.elapsed() >= Duration::from_secs(config.reconcile_every_secs.max(1)))
}

/// Runs the loop's own bookkeeping (which may wait on the forge or the disk) while still
/// hearing a signal or a stop: a signal must never wait for a slow `gh pr list`.
async fn interruptible<T>(
    signals: &mut shutdown::Signals,
    stop: &CancellationToken,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Event> {
    tokio::select! {
        biased;
        heard = signals.recv() => Err(heard.event()),
        () = stop.cancelled() => Err(Event::Stop),
        done = work => Ok(done),
    }
}

/// Resolves at `at`; never without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The running landings, the lanes they hold, and the lanes left alone for a while (a
/// write to the queue dir, berth's own requeue included, does not end their wait).
/// Lanes are keyed by their lock ref: branches that `safe_key` folds together (`rel/1`,
/// `rel-1`) share one lock, so they must never land at once.
struct Landings {
    tasks: JoinSet<LaneOutcome>,
    lane_of_task: HashMap<tokio::task::Id, String>,
    retry: lane_retry::LaneRetry,
}

impl Landings {
    /// A lane left alone waits at most `longest` (the poll interval).
    fn new(longest: Duration) -> Landings {
        Landings {
            tasks: JoinSet::new(),
            lane_of_task: HashMap::new(),
            retry: lane_retry::LaneRetry::new(longest),
        }
    }

    fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    fn busy_lanes(&self) -> HashSet<String> {
        self.lane_of_task
            .values()
            .chain(self.retry.not_yet(tokio::time::Instant::now()))
            .cloned()
            .collect()
    }

    fn start(
        &mut self,
        lane: &Lane,
        landing: impl std::future::Future<Output = LaneOutcome> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(landing);
        self.lane_of_task.insert(handle.id(), lane_key(lane));
    }

    /// The next finished landing; a task that panicked frees its lane (left alone for its
    /// backoff) instead of holding it forever.
    async fn next_done(&mut self) -> Option<LaneOutcome> {
        loop {
            match self.tasks.join_next_with_id().await? {
                Ok((id, outcome)) => {
                    self.lane_of_task.remove(&id);
                    return Some(outcome);
                }
                Err(error) => {
                    tracing::error!(
                        "a landing task failed: {error}; its record is reclaimed once its owner is gone"
                    );
                    if let Some(lane) = self.lane_of_task.remove(&error.id()) {
                        self.retry.defer(lane, tokio::time::Instant::now());
                    }
                }
            }
        }
    }
}

/// Records blocked before any landing took them: at the gates, or by the landing policy.
#[derive(Clone, Copy, Debug, Default)]
struct Blocked {
    at_gates: usize,
    by_policy: usize,
}

impl Blocked {
    fn add(&mut self, other: Blocked) {
        self.at_gates += other.at_gates;
        self.by_policy += other.by_policy;
    }

    fn any(&self) -> bool {
        self.at_gates + self.by_policy > 0
    }

    /// `--once`'s closing line when it processed nothing, in gstack's words.
    fn summary(&self) -> String {
        if self.at_gates > 0 {
            crate::gstack_text::only_gate_blocked(self.at_gates)
        } else if self.by_policy > 0 {
            format!(
                "release queue: blocked {} record(s) by the landing policy; no eligible records to process",
                self.by_policy
            )
        } else {
            crate::gstack_text::QUEUE_EMPTY.to_owned()
        }
    }
}

/// One tick's bookkeeping (reconcile, reclaim, discover, gate) then as many landings as
/// free lanes allow. Returns how many records it blocked before landing them.
async fn start_tick(
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
    landings: &mut Landings,
    wake: tick::Wake,
    refresh: Refresh,
) -> Blocked {
    let started = std::time::Instant::now();
    tracing::debug!("tick");
    let prep = Arc::clone(shared);
    let prepared = tokio::task::spawn_blocking(move || tick::prepare(&prep, wake, &refresh)).await;
    let (at_gates, gates, mut result) = match prepared {
        // A watcher's wake about nothing new: no tick happened.
        Ok((report, _)) if report.nothing_changed => return Blocked::default(),
        Ok((report, gates)) => (report.gate_blocked, gates, Ok(report.summary())),
        Err(e) => {
            tracing::error!("tick preparation failed: {e}");
            (
                0,
                TickGates::default(),
                Err(format!("tick preparation failed: {e}")),
            )
        }
    };
    let before = landings.tasks.len();
    let by_policy = start_landings(shared, cancel, landings, gates).await;
    if let Ok(summary) = &mut result {
        summary.push_str(&format!(
            ", {} landing(s) started",
            landings.tasks.len().saturating_sub(before)
        ));
    }
    let took = started.elapsed();
    tracing::debug!(took_ms = took.as_millis() as u64, ?result, "tick done");
    match result {
        Ok(summary) => shared
            .telemetry
            .tick_done(took, true, format!("ok: {summary}")),
        Err(error) => shared.telemetry.tick_done(took, false, error),
    }
    Blocked {
        at_gates,
        by_policy,
    }
}

/// Starts landings on free lanes, up to the rules' `max_lanes` at once. Returns how many
/// records the landing policy blocked on the way.
async fn start_landings(
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
    landings: &mut Landings,
    gates: TickGates,
) -> usize {
    if cancel.is_cancelled() {
        return 0;
    }
    let pick = Arc::clone(shared);
    let skip = landings.busy_lanes();
    let running = landings.tasks.len();
    let selection =
        match tokio::task::spawn_blocking(move || tick::select(&pick, &skip, running, gates)).await
        {
            Ok(selection) => selection,
            Err(e) => {
                tracing::error!("candidate selection failed: {e}");
                return 0;
            }
        };
    for candidate in selection.candidates {
        let shared = Arc::clone(shared);
        let cancel = cancel.child_token();
        landings.start(&Shared::lane_of(&candidate), async move {
            landing::land(shared, candidate, cancel).await
        });
    }
    selection.policy_blocked
}
