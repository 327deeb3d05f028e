//! The local half of a tick (DESIGN §3 steps 1–5): bring the queue view up to date,
//! reclaim, gate, plan the background rounds ([`forge_round`]: the forge's half, and the
//! fault watch over the build-state runs) and select. Plain blocking code over the queue
//! view and the gates; it never calls the forge nor runs a detector, so a tick costs what
//! changed locally whatever the forge or the build-state runs are doing.
//!
//! A tick costs what changed (DESIGN §3 item 8): the queue view re-reads only changed
//! files; only records something will be done with are gated, each repo path once per
//! tick ([`TickGates`]); the round asks the forge through the tick memory, which keeps it
//! to one discovery per repo per poll interval and one shared listing per repo per
//! reconcile interval.

mod gate;
mod reclaim;
mod repos;
mod select;
mod work;

use crate::queue_view::Refresh;

use super::Shared;
use super::forge_round::{self, Free, PollPlan, Round};
use super::tick_gates::TickGates;

pub use gate::gate_queued;

/// How long a tick's step waits for the lock of a record it did not claim (a gate block, a
/// reclaim): not at all. A producer may hold the locks of any number of records; waiting
/// for each in turn on every tick would hold up every landing behind them (120 held locks:
/// 30 s a tick). A held record is handled on a later tick, once its lock is free.
const PRODUCER_LOCK_WAIT: std::time::Duration = std::time::Duration::ZERO;
pub use select::{Candidate, Selection, select};

/// What the bookkeeping did, for logs and for `--once`'s exit code.
#[derive(Debug, Default)]
pub struct PrepareReport {
    pub reconciled: usize,
    pub reclaimed: usize,
    pub discovered: usize,
    pub gate_blocked: usize,
    /// A watcher's wake found nothing changed: the tick did nothing at all.
    pub nothing_changed: bool,
}

impl PrepareReport {
    /// `1 reconciled, 0 reclaimed, 0 discovered, 0 blocked at the gates`.
    pub fn summary(&self) -> String {
        format!(
            "{} reconciled, {} reclaimed, {} discovered, {} blocked at the gates",
            self.reconciled, self.reclaimed, self.discovered, self.gate_blocked
        )
    }
}

/// What started a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The poll interval (or `--once`): time-driven work (reconcile, discovery) is due.
    Poll,
    /// The queue watcher saw writes: if the view did not change, there is nothing to do.
    Watcher,
}

/// What a tick's local half did and left for later in the same tick.
pub struct Prepared {
    pub report: PrepareReport,
    /// The gates it computed, handed on to [`select`] in the same tick.
    pub gates: TickGates,
    /// The forge's half: the rounds to start.
    pub rounds: Vec<Round>,
}

/// Steps 1–4, locally: bring the queue view up to date (`refresh`; a watcher's wake that
/// changed nothing ends here), reclaim stranded records, block every queued record that
/// fails a gate, and plan a round for each concern that is `free` (no round in flight): the
/// fault watch over the build-state runs, the records due for a re-check, and on a poll
/// tick discovery and the queue detectors. The rounds start once the tick has selected
/// (a halt event holds no landing, so selection needs no fault watch first).
pub fn prepare(shared: &Shared, wake: Wake, refresh: &Refresh, free: Free) -> Prepared {
    let mut prepared = Prepared {
        report: PrepareReport::default(),
        gates: TickGates::default(),
        rounds: Vec::new(),
    };
    if !refresh_view(shared, refresh) && wake == Wake::Watcher {
        // A watcher's wake about files berth itself wrote (or that did not change).
        prepared.report.nothing_changed = true;
        return prepared;
    }
    shared.crew.unclaimable.sweep();
    // Verdicts the store refused earlier (ENOSPC, EIO), and those a previous daemon on the
    // berth dir left listed, are written first (a record whose verdict is kept is never
    // reclaimed here).
    super::unsaved::retry(&shared.crew.unsaved, &shared.crew.records);
    crate::rules::output::next_tick();
    // A rule fallback not seen again during this tick and the next stops being listed.
    shared
        .decisions()
        .fallbacks()
        .next_tick(shared.rules().current().hash());
    let (report, gates) = (&mut prepared.report, &mut prepared.gates);
    let mut memory = shared.memory();
    let now = crate::clock::now();
    let work = work::Work::of(shared, &mut memory, now);
    for stored in &work.in_flight {
        report.reclaimed += usize::from(reclaim::reclaim(shared, stored, now));
    }
    if free.reconcile && !work.due.is_empty() {
        let due = forge_round::plan_reconcile(shared, gates, &mut memory, &work.due);
        if !due.is_empty() {
            prepared.rounds.push(Round::Reconcile(due));
        }
    }
    let repos =
        (free.poll && wake == Wake::Poll).then(|| repos::live_repos(shared, gates, &mut memory));
    repos::forget_gone_refusals(shared, &mut memory);
    drop(memory);
    report.gate_blocked = gate_queued(shared, gates);
    if free.watch {
        // First, so a benchmark's tick (rounds run in line, in order) hands this pass's
        // learned budget to its poll round.
        prepared.rounds.insert(0, Round::Watch);
    }
    if let Some(repos) = repos {
        prepared.rounds.push(Round::Poll(PollPlan {
            repos,
            in_flight: !work.in_flight.is_empty(),
        }));
    }
    if report.reclaimed + report.gate_blocked > 0 {
        tracing::info!(?report, "tick bookkeeping");
    }
    prepared
}

/// Brings the queue view up to date; whether any file changed.
fn refresh_view(shared: &Shared, refresh: &Refresh) -> bool {
    let (refreshed, files_read) = {
        let mut view = shared.crew.records.view();
        let refreshed = view.refresh(shared.crew.records.store(), refresh);
        shared.crew.telemetry.queue_seen(&view);
        (refreshed, view.files_read())
    };
    // For operators (and tests) counting what an idle daemon does: one line per wake.
    tracing::debug!(changed = refreshed.changed, files_read, "tick");
    for bad in &refreshed.newly_unreadable {
        tracing::warn!(file = %bad.file, "unreadable queue record: {}", bad.reason);
    }
    if refreshed.bad_names_unlisted > 0 {
        tracing::warn!(
            "{} more queue files have names that are not UTF-8: counted, not listed (the first {} by name are)",
            refreshed.bad_names_unlisted,
            crate::queue_view::MAX_BAD_NAMES_KEPT
        );
    }
    if refreshed.changed >= RELEASE_AFTER_READS {
        release_freed_memory();
    }
    refreshed.changed > 0
}

/// A refresh that read at least this many files (a cold start, a big change) freed as
/// much again in parse buffers; the allocator is asked to give that back.
const RELEASE_AFTER_READS: usize = 512;

/// Returns the allocator's free pages to the system. glibc keeps what a burst of parsing
/// freed (across the sweep threads' arenas) for reuse, and a daemon that then idles for
/// months would hold it for nothing.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only walks glibc's own arenas under their locks.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
