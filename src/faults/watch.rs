//! The daemon's fault watch (DESIGN §7): every tick, the detectors over each run's state
//! file in the build-state dir, and over the queue itself whenever the facts the daemon
//! hands over changed (this module reads no queue, forge or origin of its own); a halt event for every fault that
//! is new since the last tick, a resolved marker for every fault that cleared.
//!
//! Learned-pattern hits are counted (as gstack's `persistHitCounts`: every entry of a fired
//! category, built-in or learned) when a fault is newly raised (filed or held back), not on every tick it stays
//! raised: a pattern's `hitCount` tells how many incidents it caught, and an idle daemon
//! does not rewrite the file every tick. A pass counts the hits of all its runs under one
//! take of the file's lock, tried without waiting: the tick must not wait for another
//! process, so while someone else holds the lock the hits are kept (bounded, per category)
//! and written by the first pass that gets it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use super::detect::{self, REVIEW_REPORT};
use super::halt::{HaltEvent, Pointers, RunRef};
use super::halt_store::{self, HaltStore, SyncReport};
use super::learned::{self, HitCounts, LearnedSet, LearnedSource};
use super::learned_match::{self, Budget, LearnedBudget};
use super::registry::said_cut;
use super::run_cache::RunCache;
use super::state_file::StateCache;
use crate::private_dir::MAX_NAMES_PER_LISTING;
use crate::rules::RuleSet;

/// The run id the queue detectors' halt events are filed under.
pub const QUEUE_RUN_ID: &str = "berth-release-queue";
/// The learned-patterns file inside the faults dir.
pub const LEARNED_FILE: &str = "learned-patterns.json";

/// What one watch pass did, for the tick's log line and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WatchReport {
    pub runs: usize,
    /// State files parsed on this pass (the others had not changed since the last one).
    pub parsed: usize,
    /// Runs whose detectors ran on this pass (the others' inputs had not changed).
    pub detected: usize,
    /// The learned pattern that used up this pass's matching budget, if one did.
    pub learned_budget: Option<LearnedBudget>,
    pub emitted: Vec<String>,
    pub resolved: Vec<String>,
    pub problems: Vec<String>,
    /// A registry sync was skipped (its run lock held), failed part way, held filings
    /// back past the cap on pending files, or did either for a reason said earlier in the
    /// pass: what it left unwritten is written only by a later sync.
    pub unsynced: bool,
    /// Events and resolved markers held back past the cap on pending files.
    pub withheld: usize,
}

impl WatchReport {
    fn absorb(&mut self, run_id: &str, sync: SyncReport) {
        self.unsynced |= !sync.problems.is_empty() || sync.withheld > 0 || sync.said_before > 0;
        self.withheld += sync.withheld;
        self.emitted.extend(
            sync.emitted
                .into_iter()
                .map(|(id, _)| format!("{run_id}/{id}")),
        );
        self.resolved
            .extend(sync.resolved.into_iter().map(|id| format!("{run_id}/{id}")));
        self.problems.extend(sync.problems);
    }
}

/// One learned-patterns source per file for the daemon's lifetime, so the file is
/// re-read only when it changes and its warnings are logged once per version.
static LEARNED_SOURCES: LazyLock<Mutex<HashMap<PathBuf, Arc<LearnedSource>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The state files as last parsed, for the daemon's lifetime: a pass parses only the files
/// that changed.
static STATE_CACHE: LazyLock<StateCache> = LazyLock::new(StateCache::default);
/// What the detectors last found over each run, for the daemon's lifetime: a pass runs
/// them only over the runs whose inputs changed.
static RUN_CACHE: LazyLock<RunCache> = LazyLock::new(RunCache::default);
/// Hits counted while each learned-patterns file's lock was held elsewhere, to be written
/// by a later pass; an entry lives only while it has hits to write.
static PENDING_HITS: LazyLock<Mutex<HashMap<PathBuf, HitCounts>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn learned_source(path: &Path) -> Arc<LearnedSource> {
    let mut sources = LEARNED_SOURCES.lock().unwrap_or_else(|e| e.into_inner());
    Arc::clone(
        sources
            .entry(path.to_owned())
            .or_insert_with(|| Arc::new(LearnedSource::new(path.to_owned()))),
    )
}

/// Where the fault watch reads and writes, from the daemon's configuration.
pub struct WatchDirs {
    /// The halt-events dir (and `learned-patterns.json`).
    pub faults_dir: PathBuf,
    /// The orchestrators' run state files.
    pub state_dir: PathBuf,
}

/// The daemon's first call each tick: the detectors over the runs of the build-state dir.
/// Never fails: problems are logged and reported.
pub fn tick_runs(dirs: &WatchDirs, set: &RuleSet) -> WatchReport {
    let halts = HaltStore::new(&dirs.faults_dir);
    let learned = learned_source(&dirs.faults_dir.join(LEARNED_FILE)).latest();
    let report = watch_runs(set, &dirs.state_dir, &halts, &learned);
    log(&report);
    report
}

/// The daemon's second call, on ticks where the queue's facts changed: the queue
/// detectors over `queue`. Never fails: problems are logged and reported.
pub fn tick_queue(
    dirs: &WatchDirs,
    set: &RuleSet,
    queue: &super::queue_facts::QueueFacts<'_>,
) -> WatchReport {
    let halts = HaltStore::new(&dirs.faults_dir);
    let mut report = WatchReport::default();
    let facts = super::queue_facts::gather(queue);
    let detection = detect::detect_queue(set, &facts);
    report
        .problems
        .extend(detection.errors.iter().map(ToString::to_string));
    let queue_dir = facts["queueDir"].as_str().unwrap_or_default().to_owned();
    let queue = RunRef {
        run_id: QUEUE_RUN_ID,
        state_slug: QUEUE_RUN_ID,
        pointers: Pointers {
            state_file: queue_dir.clone(),
            ..Pointers::default()
        },
        ..RunRef::default()
    };
    let events: Vec<HaltEvent> = detection
        .faults
        .iter()
        .map(|fault| HaltEvent::from_fault(&queue, fault))
        .collect();
    report.absorb(
        QUEUE_RUN_ID,
        halts.sync_run(QUEUE_RUN_ID, &queue_dir, &events),
    );
    if let Err(e) = halts.save_held(halt_store::HELD_QUEUE) {
        report.problems.push(e.to_string());
    }
    log(&report);
    report
}

fn log(report: &WatchReport) {
    if let Some(spent) = &report.learned_budget {
        tracing::warn!(
            index = spent.index,
            category = %spent.category,
            skipped = spent.skipped,
            "learned pattern {} ({}) used up the {} ms all learned regexes may take in one tick; {} matches were left out this tick and kept their last answers",
            spent.index,
            spent.category,
            spent.budget_ms,
            spent.skipped
        );
    }
    if report.withheld > 0 {
        tracing::warn!(
            withheld = report.withheld,
            "{} halt events or resolved markers held back: the halt dir's pending files are at their cap ({} in all, {} per run); they are filed once events are acknowledged or drained",
            report.withheld,
            super::halt_store::MAX_PENDING_TOTAL,
            super::halt_store::MAX_PENDING_PER_RUN
        );
    }
    // Cut as every quoted fault id is: a run id (a state's) or a cleared fault id (a
    // registry's) may be megabytes.
    for id in &report.emitted {
        tracing::warn!(halt = %said_cut(id), "fault raised: halt event written");
    }
    for id in &report.resolved {
        tracing::info!(halt = %said_cut(id), "fault cleared: resolved marker written");
    }
    for problem in &report.problems {
        tracing::error!("fault watch: {problem}");
    }
}

/// Every run state file in `state_dir` through the detectors, synced with its registry.
pub fn watch_runs(
    set: &RuleSet,
    state_dir: &Path,
    halts: &HaltStore,
    learned: &LearnedSet,
) -> WatchReport {
    let mut report = WatchReport::default();
    let mut files = match state_files(state_dir) {
        Ok((files, cut)) => {
            report.problems.extend(say_cut_once(state_dir, cut));
            files
        }
        Err(e) => {
            report.problems.push(format!(
                "cannot read build-state dir {}: {e}",
                state_dir.display()
            ));
            return report;
        }
    };
    let listed: HashSet<PathBuf> = files.iter().cloned().collect();
    STATE_CACHE.keep_only(state_dir, &listed);
    RUN_CACHE.keep_only(state_dir, &listed);
    learned.keep_answers_of(state_dir, &listed);
    learned.order_runs(&mut files);
    let mut budget = Budget::for_tick();
    let mut new_hits: Vec<Vec<String>> = Vec::new();
    for file in files {
        let loaded = STATE_CACHE.load(&file);
        let state = match loaded.state {
            Ok(state) => {
                report.parsed += usize::from(loaded.read);
                state
            }
            Err(reason) => {
                // Its registry is left as it is: an unreadable state clears nothing. It is
                // reported when read, not again on every pass until it changes.
                if loaded.read {
                    report
                        .problems
                        .push(format!("{}: {reason}", file.display()));
                }
                continue;
            }
        };
        report.runs += 1;
        let answer = RUN_CACHE.answer(&file, &state, set, learned, &mut budget);
        report.detected += usize::from(answer.detectors_ran);
        let outcome = answer.outcome;
        report.problems.extend(outcome.errors.iter().cloned());
        let run_ref = outcome.run_ref(state.value());
        let events: Vec<HaltEvent> = outcome
            .faults
            .iter()
            .map(|fault| HaltEvent::from_fault(&run_ref, fault))
            .collect();
        let sync = halts.sync_run(&outcome.run_id, &outcome.pointers.state_file, &events);
        new_hits.push(newly_fired(&events, &sync));
        report.absorb(&outcome.run_id, sync);
    }
    learned.end_tick(&budget);
    count_hits(&learned.path, &new_hits);
    if let Err(e) = halts.save_held(halt_store::HELD_RUNS) {
        report.problems.push(e.to_string());
    }
    // The budget names a position among the set's valid patterns; the report, the file's.
    report.problems.extend(budget.died.iter().filter_map(|&at| {
        let pattern = learned.patterns.get(at)?;
        Some(format!(
            "learned pattern {} ({}): {}; it did not match this tick",
            pattern.index,
            pattern.category,
            learned_match::Unanswered::Died
        ))
    }));
    report.learned_budget = budget.exhausted.and_then(|exhausted| {
        let pattern = learned.patterns.get(exhausted.index)?;
        Some(LearnedBudget {
            index: pattern.index,
            category: pattern.category.clone(),
            skipped: exhausted.skipped,
            budget_ms: learned_match::TICK_BUDGET.as_millis() as u64,
        })
    });
    report
}

/// Writes this pass's hits, and those kept from passes that found the lock held, to the
/// learned-patterns file at `path`, without waiting for its lock: held by another process,
/// the hits are kept for the next pass (none is lost unless [`learned::MAX_PENDING_CATEGORIES`]
/// categories are already waiting); any other failure drops them, as gstack's writers do.
fn count_hits(path: &Path, calls: &[Vec<String>]) {
    let mut pending = PENDING_HITS.lock().unwrap_or_else(|e| e.into_inner());
    let mut counts = pending.remove(path).unwrap_or_default();
    counts.add_calls(calls);
    let dropped = counts.take_dropped();
    if dropped > 0 {
        tracing::warn!(
            file = %path.display(),
            "{dropped} learned-pattern hits not counted: more than {} categories were waiting for the file's lock",
            learned::MAX_PENDING_CATEGORIES
        );
    }
    match learned::write_counts(path, &counts, std::time::Duration::ZERO) {
        Ok(()) => {}
        Err(e @ learned::LearnedError::Lock(_)) => {
            tracing::warn!(
                "learned-pattern hits not counted yet ({} kept for a later pass): {e}",
                counts.total()
            );
            pending.insert(path.to_owned(), counts);
        }
        Err(e) => tracing::warn!("learned-pattern hits not counted: {e}"),
    }
}

/// The categories (built-in and learned) of one run's faults newly raised this tick, each
/// once, for gstack's `persistHitCounts`: a fault that stays raised is one incident,
/// counted once. Newly raised is a detector id new to the run's registry, of a fault it
/// does not record, filed or not: a fault the pending cap holds back (or another registry
/// of the run holds) was still raised by a detector call, and gstack counts every such
/// call; one held back again next pass is counted again, as gstack's monitor counts it
/// each call.
fn newly_fired(events: &[HaltEvent], sync: &SyncReport) -> Vec<String> {
    let new_ids: HashSet<&str> = sync.new_detectors.iter().map(String::as_str).collect();
    learned::distinct(
        events
            .iter()
            .filter(|e| new_ids.contains(e.detector_id.as_str()))
            .map(|e| e.category.as_str()),
    )
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// The build-state dirs whose last pass left state files unlooked at, said once while
/// they do.
static CUT_SAID: LazyLock<Mutex<HashSet<PathBuf>>> = LazyLock::new(Mutex::default);

/// The problem that `dir` holds more state files than a pass looks at, the first time in
/// a row a pass finds it `cut`.
fn say_cut_once(dir: &Path, cut: bool) -> Option<String> {
    let mut said = CUT_SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !cut {
        said.remove(dir);
        return None;
    }
    said.insert(dir.to_owned()).then(|| {
        format!(
            "build-state dir {}: more than {MAX_NAMES_PER_LISTING} state files; only the first {MAX_NAMES_PER_LISTING} listed are looked at (said once while it holds more)",
            dir.display()
        )
    })
}

/// The `*.json` state files directly in `dir` (not the queue subdir, not the review
/// report, not hidden temp files), sorted: the first [`MAX_NAMES_PER_LISTING`] listed, and
/// whether more were left out (whoever writes the dir can plant names without bound, and
/// a pass runs on the tick's own thread). A missing dir has no runs.
fn state_files(dir: &Path) -> std::io::Result<(Vec<PathBuf>, bool)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(e) => return Err(e),
    };
    let mut state_files = entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".json") && !n.starts_with('.') && n != REVIEW_REPORT)
        })
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| entry.path());
    let mut files: Vec<PathBuf> = state_files.by_ref().take(MAX_NAMES_PER_LISTING).collect();
    let cut = state_files.next().is_some();
    files.sort();
    Ok((files, cut))
}
