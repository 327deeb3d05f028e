//! The main loop: a closed set of [`Event`]s (a poll tick, a queue-dir change, a signal,
//! a lane finishing, a lane's retry falling due, a forge round's answers) and nothing else
//! calls back into it. A tick's local half is awaited (it reads files and gates); its
//! forge half and the fault watch run as background rounds, started once the tick has
//! selected, so a watcher's wake is read, gated and landed while a forge call or a fault
//! watch pass is in flight.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::queue_view::Refresh;
use crate::rules::{ReloadWatcher, RulesStatus};

use super::forge_round::{self, Concern, task::Rounds};
use super::landings::Landings;
use super::tick_gates::TickGates;
use super::{
    LaneOutcome, Shared, StartError, StopSignal, landing, reload, shutdown, stop, tick, watch,
};

/// How long a stopping daemon waits for its landings to put their records back and
/// release their locks before it revives what is left (DESIGN §6: 2 s kill grace + 4 s
/// lock release, plus slack).
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(6500);

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
    /// A forge round ended; what it changed in the queue.
    ForgeAnswered(forge_round::Answered),
}

/// Runs the daemon until `--once` is done, a signal arrives, or `stop` is cancelled (the
/// embedding program's own way to stop it, e.g. `berth demo`).
pub async fn run(
    shared: Arc<Shared>,
    mode: Mode,
    stop: CancellationToken,
) -> Result<Exit, StartError> {
    let berth_dir = shared.berth_dir.clone();
    let swept = tokio::task::spawn_blocking(move || super::worktree::sweep_leftovers(&berth_dir));
    if let Err(e) = swept.await {
        tracing::warn!("scratch worktrees left by a stopped daemon not looked for: {e}");
    }
    let exit = run_loop(Arc::clone(&shared), mode, stop).await;
    // The scratch worktrees kept for later landings go with the daemon: nobody else
    // resets them, and a later daemon would never find them.
    let removed =
        tokio::task::spawn_blocking(move || super::worktree::remove_idle(&shared.crew.places));
    if let Err(e) = removed.await {
        tracing::warn!("kept scratch worktrees not removed: {e}");
    }
    exit
}

async fn run_loop(
    shared: Arc<Shared>,
    mode: Mode,
    stop: CancellationToken,
) -> Result<Exit, StartError> {
    let mut main = Loop::start(shared, mode, stop)?;
    // An event that arrived while the loop was busy with bookkeeping, handled next.
    let mut pending: Option<Event> = None;
    loop {
        let event = match pending.take() {
            Some(event) => event,
            None => main.next_event().await,
        };
        let next = match event {
            Event::Stop => return Ok(main.shut_down(stop::StopReason::Requested).await),
            Event::Signal(signal) => {
                return Ok(main.shut_down(stop::StopReason::Signal(signal)).await);
            }
            Event::Reload => {
                reload::on_hup(&main.shared, main.rules_watcher.as_ref());
                Ok(())
            }
            Event::LaneDone(outcome) => main.on_lane_done(outcome).await,
            Event::RetryDue => main.start_landings().await,
            Event::Tick => main.on_tick(None).await,
            Event::QueueChanged(changes) => main.on_tick(Some(changes)).await,
            Event::ForgeAnswered(answered) => main.on_forge_answered(answered).await,
        };
        if let Err(interrupt) = next {
            pending = Some(interrupt);
            continue;
        }
        if let Some(exit) = main.once_done() {
            // Its landings' lock releases run in the background: they end before it
            // exits, unless a stop signal comes first (then it stops as at any moment).
            let deadline = tokio::time::Instant::now() + SHUTDOWN_BUDGET;
            let shared = Arc::clone(&main.shared);
            let heard =
                shutdown::releases_or_signal(&mut main.signals, &shared.crew.releasing, deadline);
            return Ok(match heard.await {
                Some(signal) => main.shut_down(stop::StopReason::Signal(signal)).await,
                None => exit,
            });
        }
    }
}

/// The loop's parts and what it remembers between events.
struct Loop {
    shared: Arc<Shared>,
    mode: Mode,
    /// The embedding program's stop.
    stop: CancellationToken,
    /// Cancelled once, when the daemon stops: every landing winds down.
    cancel: CancellationToken,
    signals: shutdown::Signals,
    queue_changes: Option<watch::QueueWatcher>,
    rules_watcher: Option<ReloadWatcher>,
    poll: tokio::time::Interval,
    landings: Landings,
    /// The forge rounds in flight: at most one per concern.
    rounds: Rounds,
    /// What rounds changed since the last tick's report.
    answered: forge_round::Answered,
    // `--once` exits 1 when a record it processed ended blocked, or when it did nothing
    // but block records (at the gates or by the landing policy).
    any_blocked: bool,
    blocked_before_landing: Blocked,
    processed: bool,
    ticked_once: bool,
    last_sweep: Option<std::time::Instant>,
}

impl Loop {
    /// Signals, watchers and the poll interval, set up before the first event.
    fn start(shared: Arc<Shared>, mode: Mode, stop: CancellationToken) -> Result<Loop, StartError> {
        let signals =
            shutdown::Signals::install(mode == Mode::Watch).map_err(StartError::Signals)?;
        shutdown::end_leftover_forge_calls();
        let queue_changes = match mode {
            Mode::Watch => Some(watch::QueueWatcher::start(shared.records().store().dir())?),
            Mode::Once => None,
        };
        shared.crew.telemetry.started(match mode {
            Mode::Once => "once",
            Mode::Watch => "watch",
        });
        let status = RulesStatus::started(&shared.rules().current());
        if let Err(e) = status.write(&shared.berth_dir) {
            tracing::warn!("cannot write the rules status: {e}");
        }
        // Hot reload runs on the watcher's own thread for as long as the loop runs.
        let rules_watcher = match (mode, shared.rules().root()) {
            (Mode::Watch, Some(_)) => Some(ReloadWatcher::start(
                shared.rules().clone(),
                shared.berth_dir.clone(),
                status,
            )?),
            _ => None,
        };
        let mut poll = tokio::time::interval(Duration::from_secs(shared.config().poll_secs.max(1)));
        // A tick that overran its interval is followed by one poll tick, not a burst of them.
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let landings = Landings::new(poll.period());
        let cancel = CancellationToken::new();
        let rounds = Rounds::new(&cancel);
        Ok(Loop {
            shared,
            mode,
            stop,
            cancel,
            signals,
            queue_changes,
            rules_watcher,
            poll,
            landings,
            rounds,
            answered: forge_round::Answered::default(),
            any_blocked: false,
            blocked_before_landing: Blocked::default(),
            processed: false,
            ticked_once: false,
            last_sweep: None,
        })
    }

    async fn next_event(&mut self) -> Event {
        let retry_at = self.landings.retry.next_due(tokio::time::Instant::now());
        let watching = self.mode == Mode::Watch;
        let queue_changes = &mut self.queue_changes;
        let rounds = &mut self.rounds;
        tokio::select! {
            heard = self.signals.recv() => heard.into(),
            () = self.stop.cancelled() => Event::Stop,
            Some(outcome) = self.landings.next_done(), if !self.landings.is_empty() => Event::LaneDone(outcome),
            () = sleep_until_some(retry_at), if watching && retry_at.is_some() => Event::RetryDue,
            _ = self.poll.tick(), if watching || !self.ticked_once => Event::Tick,
            Some(changes) = async { match queue_changes.as_mut() { Some(w) => Some(w.changed().await), None => None } } => Event::QueueChanged(changes),
            Some(answered) = rounds.next_done(), if !rounds.is_empty() => Event::ForgeAnswered(answered),
        }
    }

    /// Stops every landing, waits for them within the budget, and says how the run ended.
    async fn shut_down(&mut self, reason: stop::StopReason) -> Exit {
        let exit = match reason {
            stop::StopReason::Signal(signal) => Exit::Signalled(signal),
            stop::StopReason::Requested if self.any_blocked => Exit::Blocked,
            stop::StopReason::Requested => Exit::Clean,
        };
        self.shared.crew.stop.set(reason);
        self.cancel.cancel();
        shutdown::drain(&self.shared.crew, &mut self.landings.tasks, SHUTDOWN_BUDGET).await;
        shutdown::end_forge_calls(&self.shared.crew.forge).await;
        exit
    }

    async fn on_lane_done(&mut self, outcome: LaneOutcome) -> Result<(), Event> {
        self.any_blocked |= outcome.ended_blocked();
        self.processed |= outcome.took_the_record();
        let lane = outcome.key.lane.clone();
        if outcome.lane_may_retry_this_tick() {
            self.landings.retry.forget(&lane);
        } else {
            // Not head-of-line, and no hot loop: a lane locked elsewhere, or a record put
            // back for a transient reason, waits for its backoff.
            self.landings.retry.defer(lane, tokio::time::Instant::now());
        }
        // `--once` is one tick: each free lane's head once. A skipped lane hands its turn
        // to the next lane; only `--watch` moves on to a lane's next record.
        if self.mode == Mode::Watch || !outcome.lane_may_retry_this_tick() {
            self.start_landings().await
        } else {
            Ok(())
        }
    }

    /// Starts landings on free lanes, hearing a signal meanwhile.
    async fn start_landings(&mut self) -> Result<(), Event> {
        let started = start_landings(
            &self.shared,
            &self.cancel,
            &mut self.landings,
            TickGates::default(),
        );
        let policy_blocked = interruptible(&mut self.signals, &self.stop, started).await?;
        self.blocked_before_landing.by_policy += policy_blocked;
        Ok(())
    }

    /// A poll tick (`changes` is `None`) or a watcher's wake: the tick's bookkeeping, then
    /// landings on free lanes.
    async fn on_tick(&mut self, changes: Option<watch::QueueChanges>) -> Result<(), Event> {
        self.ticked_once = true;
        let (wake, refresh) = self.what_to_read(changes);
        if refresh == Refresh::Sweep {
            self.last_sweep = Some(std::time::Instant::now());
            prune_logs(&self.shared);
            let view = self.shared.crew.records.view();
            self.shared
                .decisions()
                .forget_gone(|id| view.get(id).is_some());
        }
        if wake == tick::Wake::Poll {
            // The backstop for rule edits no watch reports (a hard link's).
            if let Some(watcher) = &self.rules_watcher {
                watcher.check();
            }
        }
        let this_tick = Tick {
            wake,
            refresh,
            free: forge_round::Free {
                reconcile: !self.rounds.busy(Concern::Reconcile),
                poll: !self.rounds.busy(Concern::Poll),
                watch: !self.rounds.busy(Concern::Watch),
            },
            // `--once` selects once the rounds' answers are in (discovered PRs among them).
            select_after_rounds: self.mode == Mode::Once,
            answered: std::mem::take(&mut self.answered),
        };
        if !this_tick.free.poll && wake == tick::Wake::Poll {
            tracing::debug!("the poll's forge round is still in flight: this poll plans none");
        }
        let ticked = start_tick(&self.shared, &self.cancel, &mut self.landings, this_tick);
        let (blocked, rounds) = interruptible(&mut self.signals, &self.stop, ticked).await?;
        self.blocked_before_landing.add(blocked);
        for round in rounds {
            self.rounds.start(&self.shared, round);
        }
        Ok(())
    }

    /// A round ended: records it discovered are gated, then landings start where they fit
    /// (`--once`'s only selection happens here, after its last round).
    async fn on_forge_answered(&mut self, answered: forge_round::Answered) -> Result<(), Event> {
        self.answered.add(answered);
        let select = match self.mode {
            Mode::Watch => answered.discovered > 0,
            Mode::Once => self.rounds.is_empty(),
        };
        if !select {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let gated = tokio::task::spawn_blocking(move || {
            let mut gates = TickGates::default();
            (tick::gate_queued(&shared, &mut gates), gates)
        });
        let (at_gates, gates) = match interruptible(&mut self.signals, &self.stop, gated).await? {
            Ok(gated) => gated,
            Err(e) => {
                tracing::error!("gating discovered records failed: {e}");
                (0, TickGates::default())
            }
        };
        self.blocked_before_landing.at_gates += at_gates;
        let started = start_landings(&self.shared, &self.cancel, &mut self.landings, gates);
        self.blocked_before_landing.by_policy +=
            interruptible(&mut self.signals, &self.stop, started).await?;
        Ok(())
    }

    /// A watcher's wake looks at the files it named (all of them if it lost events). A
    /// poll tick trusts the watcher and reads nothing, except for a stat sweep of every file
    /// on the first tick, without a watcher, and once per `reconcile_every_secs` in case a
    /// change went unseen. Whatever the watcher heard and has not handed out yet is read on
    /// this turn, whichever event won the race (a slow tick makes the poll win every time).
    fn what_to_read(&mut self, changes: Option<watch::QueueChanges>) -> (tick::Wake, Refresh) {
        let heard = self
            .queue_changes
            .as_mut()
            .map(watch::QueueWatcher::take)
            .unwrap_or_default();
        match changes {
            Some(changes) if changes.rescan || heard.rescan => {
                (tick::Wake::Watcher, Refresh::Sweep)
            }
            Some(mut changes) => {
                changes.files.extend(heard.files);
                (tick::Wake::Watcher, Refresh::Files(changes.files))
            }
            None if heard.rescan
                || self.mode == Mode::Once
                || sweep_due(self.last_sweep, self.shared.config()) =>
            {
                (tick::Wake::Poll, Refresh::Sweep)
            }
            None => (tick::Wake::Poll, Refresh::Files(heard.files)),
        }
    }

    /// `--once`, after its tick and its landings: how it ended.
    fn once_done(&self) -> Option<Exit> {
        if self.mode != Mode::Once
            || !self.ticked_once
            || !self.landings.is_empty()
            || !self.rounds.is_empty()
        {
            return None;
        }
        if !self.processed {
            tracing::info!("{}", self.blocked_before_landing.summary());
        }
        let needs_attention =
            self.any_blocked || (self.blocked_before_landing.any() && !self.processed);
        Some(if needs_attention {
            Exit::Blocked
        } else {
            Exit::Clean
        })
    }
}

impl From<shutdown::Heard> for Event {
    fn from(heard: shutdown::Heard) -> Event {
        match heard {
            shutdown::Heard::Stop(signal) => Event::Signal(signal),
            shutdown::Heard::Reload => Event::Reload,
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
        if pruned.files > 0 || pruned.dirs > 0 {
            tracing::info!(
                files = pruned.files,
                bytes = pruned.bytes,
                empty_dirs = pruned.dirs,
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
        heard = signals.recv() => Err(heard.into()),
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

/// What one tick is to do.
struct Tick {
    wake: tick::Wake,
    refresh: Refresh,
    /// The concerns with no round in flight: this tick may plan theirs.
    free: forge_round::Free,
    /// Leave selection to the end of the rounds this tick plans.
    select_after_rounds: bool,
    /// What rounds changed since the last tick, for its report.
    answered: forge_round::Answered,
}

/// One tick's local bookkeeping (reclaim, gate, plan the forge rounds) then as many
/// landings as free lanes allow. Returns how many records it blocked before landing them,
/// and the rounds to start.
async fn start_tick(
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
    landings: &mut Landings,
    tick: Tick,
) -> (Blocked, Vec<forge_round::Round>) {
    let started = std::time::Instant::now();
    tracing::debug!("tick");
    let prep = Arc::clone(shared);
    let (wake, refresh, free) = (tick.wake, tick.refresh, tick.free);
    let prepared =
        tokio::task::spawn_blocking(move || tick::prepare(&prep, wake, &refresh, free)).await;
    let (at_gates, gates, rounds, mut result) = match prepared {
        // A watcher's wake about nothing new: no tick happened.
        Ok(prepared) if prepared.report.nothing_changed => return (Blocked::default(), Vec::new()),
        Ok(mut prepared) => {
            prepared.report.reconciled = tick.answered.reconciled;
            prepared.report.discovered = tick.answered.discovered;
            let summary = prepared.report.summary();
            let at_gates = prepared.report.gate_blocked;
            (at_gates, prepared.gates, prepared.rounds, Ok(summary))
        }
        Err(e) => {
            tracing::error!("tick preparation failed: {e}");
            let error = format!("tick preparation failed: {e}");
            (0, TickGates::default(), Vec::new(), Err(error))
        }
    };
    let before = landings.tasks.len();
    let by_policy = if !rounds.is_empty() && tick.select_after_rounds {
        0
    } else {
        start_landings(shared, cancel, landings, gates).await
    };
    if let Ok(summary) = &mut result {
        summary.push_str(&format!(
            ", {} landing(s) started",
            landings.tasks.len().saturating_sub(before)
        ));
    }
    let took = started.elapsed();
    tracing::debug!(took_ms = took.as_millis() as u64, ?result, "tick done");
    let telemetry = shared.telemetry();
    match result {
        Ok(summary) => telemetry.tick_done(took, true, format!("ok: {summary}")),
        Err(error) => telemetry.tick_done(took, false, error),
    }
    let blocked = Blocked {
        at_gates,
        by_policy,
    };
    (blocked, rounds)
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
        let crew = shared.crew();
        let cancel = cancel.child_token();
        landings.start(&candidate.key.clone(), async move {
            landing::land(crew, candidate, cancel).await
        });
    }
    selection.policy_blocked
}
