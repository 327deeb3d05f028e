//! The bookkeeping half of a tick (DESIGN §3 steps 1–5): reconcile and audit, reclaim,
//! discover, gate, select. Plain blocking code over the queue view, the gates and the forge.
//!
//! A tick costs what changed (DESIGN §3 item 8): the queue view re-reads only changed
//! files; only records something will be done with are gated, each repo path once per
//! tick ([`TickGates`]); the forge is asked through [`TickMemory`], which keeps it to one
//! discovery per repo per poll interval and one shared listing per repo per reconcile
//! interval.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::faults::queue_facts::{QueueFacts, RepoFacts};
use crate::forge::{ForgeRepo, PrRef, QueuedPr};
use crate::gates::{Gate, GateError, GatedRecord};
use crate::gstack_text;
use crate::lane_lock::{Lane, lane_key};
use crate::queue_view::Refresh;
use crate::record::{Record, Status};
use crate::rules::contracts::landing::Admit;
use crate::store::{Expect, StoredRecord};

use super::memory::{Refused, TickMemory};
use super::tick_gates::TickGates;
use super::{Shared, policy};
use crate::forge_state::GithubState;

/// A queued record that passed every gate this tick, with the values the gates resolved.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: String,
    pub record: Record,
    pub gated: GatedRecord,
}

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

/// The records a tick has something to do with, copied out of the view.
#[derive(Default)]
struct Work {
    /// Blocked records due for a re-check, landed ones not yet proven and due.
    due: Vec<StoredRecord>,
    in_flight: Vec<StoredRecord>,
    queued: Vec<StoredRecord>,
}

impl Work {
    /// Queued and in-flight records come from the view's live set. The records due for a
    /// re-check take a walk over every non-settled record, which `memory` spares while
    /// the view is unchanged and none can have come due yet.
    fn of(shared: &Shared, memory: &mut TickMemory, now: chrono::DateTime<chrono::Utc>) -> Work {
        let every = shared.config.reconcile_every_secs as i64;
        let view = shared.view();
        let mut work = Work::default();
        for stored in view.live() {
            if stored.record.status == Status::Queued {
                work.queued.push(stored.clone());
            } else {
                work.in_flight.push(stored.clone());
            }
        }
        if memory.nothing_due(view.generation(), now) {
            return work;
        }
        let mut next_due: Option<chrono::DateTime<chrono::Utc>> = None;
        for stored in view.active() {
            let record = &stored.record;
            if !matches!(record.status, Status::Blocked | Status::Landed) {
                continue;
            }
            match due_at(record, every) {
                Some(at) if at > now => next_due = Some(next_due.map_or(at, |n| n.min(at))),
                _ => work.due.push(stored.clone()),
            }
        }
        // Records due now are re-checked this tick, and a re-check writes the record
        // (a new generation); so the earliest future due time is the next one to wait for.
        memory.remember_next_due(view.generation(), work.due.is_empty(), next_due);
        work
    }
}

/// When a blocked record, or a landed one not proven merged, is next due for a re-check
/// (`every` seconds after the forge was last asked); `None` when it is due at once (never
/// asked, or an unreadable time). An interval that reaches past the last representable
/// date (a config meaning "never again") is never due, not a panic.
fn due_at(record: &Record, every: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    record
        .last_github_checked_at
        .as_deref()
        .and_then(crate::clock::parse_iso)
        .map(|at| {
            chrono::TimeDelta::try_seconds(every)
                .and_then(|every| at.checked_add_signed(every))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
        })
}

/// Steps 1–4: bring the queue view up to date (`refresh`; a watcher's wake that changed
/// nothing ends here), reconcile blocked records,
/// audit landed ones, reclaim stranded ones, discover remote PRs, block every queued
/// record that fails a gate, and run the fault watch. The gates it computed are handed on
/// to [`select`] in the same tick.
pub fn prepare(shared: &Shared, wake: Wake, refresh: &Refresh) -> (PrepareReport, TickGates) {
    let mut report = PrepareReport::default();
    let mut gates = TickGates::default();
    let (refreshed, files_read) = {
        let mut view = shared.view();
        (view.refresh(&shared.store, refresh), view.files_read())
    };
    // For operators (and tests) counting what an idle daemon does: one line per wake.
    tracing::debug!(changed = refreshed.changed, files_read, "tick");
    for bad in &refreshed.newly_unreadable {
        tracing::warn!(file = %bad.file, "unreadable queue record: {}", bad.reason);
    }
    if refreshed.changed >= RELEASE_AFTER_READS {
        release_freed_memory();
    }
    if wake == Wake::Watcher && refreshed.changed == 0 {
        // A watcher's wake about files berth itself wrote (or that did not change).
        report.nothing_changed = true;
        return (report, gates);
    }
    // Verdicts the store refused earlier (ENOSPC, EIO) are written first.
    super::unsaved::retry(shared);
    crate::rules::output::next_tick();
    // A rule fallback not seen again during this tick and the next stops being listed.
    shared
        .decisions
        .fallbacks()
        .next_tick(shared.rules.current().hash());
    let mut memory = shared.memory.lock().unwrap_or_else(|e| e.into_inner());
    let now = crate::clock::now();
    let work = Work::of(shared, &mut memory, now);
    report.reconciled = reconcile(shared, &mut gates, &mut memory, &work.due);
    for stored in &work.in_flight {
        report.reclaimed += usize::from(reclaim(shared, stored, now));
    }
    let live = live_repos(shared, &mut gates, &mut memory);
    forget_gone_refusals(shared, &mut memory);
    report.discovered = discover(shared, &mut memory, &live);
    report.gate_blocked = gate_queued(shared, &mut gates);
    watch_faults(shared, &mut memory, &live, wake, !work.in_flight.is_empty());
    if report.reconciled + report.reclaimed + report.discovered + report.gate_blocked > 0 {
        tracing::info!(?report, "tick bookkeeping");
    }
    (report, gates)
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

/// A repo the tick asks the forge about: gated, by the identity read from its origin.
struct LiveRepo {
    repo: ForgeRepo,
    /// The path its records (or the configuration) name; discovered records get it.
    repo_path: String,
    /// Its live (queued or in-flight) records.
    records: Vec<StoredRecord>,
}

/// The repos to discover (DESIGN §3 step 3): every configured repo (config `repos` and the
/// project root), even with an empty queue, and every repo with a live record. Never a
/// repo whose records are all settled. Only gated repos are ever asked about: a planted
/// record's claimed identity never becomes a `gh --repo` (or a `GH_HOST`).
fn live_repos(
    shared: &Shared,
    gates: &mut TickGates,
    memory: &mut TickMemory,
) -> BTreeMap<String, LiveRepo> {
    let mut repos: BTreeMap<String, LiveRepo> = BTreeMap::new();
    fn add<'r>(
        repos: &'r mut BTreeMap<String, LiveRepo>,
        identity: &str,
        origin: &Option<String>,
        path: &str,
    ) -> &'r mut LiveRepo {
        repos
            .entry(identity.to_owned())
            .or_insert_with(|| LiveRepo {
                repo: ForgeRepo::new(identity, origin.clone().unwrap_or_default()),
                repo_path: path.to_owned(),
                records: Vec::new(),
            })
    }
    for path in shared.discover_roots().iter() {
        match gates.repo(&shared.allowlist(), path) {
            Ok(gate) => match &gate.origin {
                Ok((identity, origin)) => {
                    memory.passed(&Refused::Root(path.clone()));
                    add(&mut repos, identity, origin, path);
                }
                Err(refusal) => refused_root(memory, path, &refusal.reason),
            },
            Err(refusal) => refused_root(memory, path, &refusal.reason),
        }
    }
    let live: Vec<StoredRecord> = shared.view().live().cloned().collect();
    for stored in live {
        match gates.record(&shared.allowlist(), &stored.record) {
            Ok(gated) => add(
                &mut repos,
                &gated.identity,
                &gated.origin_url,
                &stored.record.repo_path,
            )
            .records
            .push(stored),
            // As gstack: its repo is not discovered (the record is blocked at the gate).
            Err(refusal) if matches!(refusal.gate, Gate::RepoPath | Gate::GitDir) => {
                refused_root(memory, &stored.record.repo_path, &refusal.reason)
            }
            Err(_) => {}
        }
    }
    repos
}

/// A repo to discover that fails the repo-path gate, in gstack's words.
fn refused_root(memory: &mut TickMemory, path: &str, reason: &str) {
    // Once per path and reason: a configured repo is asked about every tick (gstack
    // repeats the line every tick).
    if memory.first_refusal(Refused::Root(path.to_owned()), reason) {
        tracing::warn!("{}", gstack_text::skipping_discovery(reason));
    }
}

/// Forgets the refusals of records settled or gone and of repo paths no longer asked
/// about (not configured, and no live record's).
fn forget_gone_refusals(shared: &Shared, memory: &mut TickMemory) {
    let view = shared.view();
    let roots = shared.discover_roots();
    memory.prune_refusals(|subject| match subject {
        Refused::Record(id) => view.get(id).is_some_and(|s| !s.record.is_settled()),
        Refused::Root(path) => {
            roots.iter().any(|root| root == path)
                || view.live().any(|s| &s.record.repo_path == path)
        }
    });
}

/// Step 1: a blocked record the forge now reports merged becomes `landed`; a `landed` one
/// not yet proven is audited. Each record is due at most once per `reconcile_every_secs`,
/// and every due record of one repo is answered by that repo's one shared listing.
fn reconcile(
    shared: &Shared,
    gates: &mut TickGates,
    memory: &mut TickMemory,
    due: &[StoredRecord],
) -> usize {
    // Only records that pass the gates are ever asked about: a planted record's identity
    // must not become a `gh --repo` argument.
    let mut by_repo: BTreeMap<String, (ForgeRepo, Vec<&StoredRecord>)> = BTreeMap::new();
    for stored in due {
        let gated = match gates.record(&shared.allowlist(), &stored.record) {
            Ok(gated) => {
                memory.passed(&Refused::Record(stored.id.clone()));
                gated
            }
            Err(refusal) => {
                refused_reconcile(memory, stored, &refusal.reason);
                continue;
            }
        };
        by_repo
            .entry(gated.identity.clone())
            .or_insert_with(|| {
                let origin = gated.origin_url.clone().unwrap_or_default();
                (ForgeRepo::new(gated.identity.clone(), origin), Vec::new())
            })
            .1
            .push(stored);
    }
    let every = Duration::from_secs(shared.config.reconcile_every_secs.max(1));
    let mut changed = 0;
    for (repo, records) in by_repo.values() {
        let wanted: Vec<PrRef<'_>> = records.iter().map(|s| pr_ref(&s.record)).collect();
        let proofs = memory.proofs(shared.forge.as_ref(), repo, &wanted, every);
        for stored in records {
            if let Some(proof) = proofs.get(&stored.record.pr_number) {
                changed += usize::from(apply_proof(shared, stored, proof));
            }
        }
    }
    changed
}

/// A record due for a re-check that fails the gate, once per record and reason (gstack
/// repeats it every tick, G19): a blocked one in gstack's words.
fn refused_reconcile(memory: &mut TickMemory, stored: &StoredRecord, reason: &str) {
    if !memory.first_refusal(Refused::Record(stored.id.clone()), reason) {
        return;
    }
    let pr = stored.record.pr_number;
    match stored.record.status {
        Status::Blocked => {
            tracing::warn!(record = %stored.id, "{}", gstack_text::skipping_reconciliation(pr, reason))
        }
        _ => {
            tracing::warn!(record = %stored.id, "warning: skipping landed PR #{pr} audit: {reason}")
        }
    }
}

fn pr_ref(record: &Record) -> PrRef<'_> {
    PrRef {
        number: record.pr_number,
        feature_branch: &record.feature_branch,
        base_branch: &record.base_branch,
    }
}

/// Writes what the forge said about one due record; whether its status changed.
fn apply_proof(shared: &Shared, stored: &StoredRecord, proof: &crate::forge::MergeProof) -> bool {
    let checked_at = crate::clock::now_iso();
    let state = GithubState::Pr(proof.state);
    let from = stored.record.status;
    let result = match (from, proof.merged) {
        (Status::Blocked, true) => {
            shared.transition(&stored.id, Expect::OneOf(&[from]), Status::Landed, |r| {
                // The block's reason no longer holds (gstack test 70).
                r.last_error = None;
                r.reconciled_at = Some(checked_at.clone());
                r.last_github_checked_at = Some(checked_at.clone());
                r.last_github_state = Some(state.clone());
            })
        }
        (Status::Landed, false) => {
            shared.transition(&stored.id, Expect::OneOf(&[from]), Status::Blocked, |r| {
                r.last_github_checked_at = Some(checked_at.clone());
                r.last_github_state = Some(state.clone());
                r.last_error = Some(format!(
                    "audit: recorded as landed but {} reports PR #{} as {} (not merged)",
                    shared.forge.name(),
                    r.pr_number,
                    proof.state
                ));
            })
        }
        _ => shared.transition(&stored.id, Expect::OneOf(&[from]), from, |r| {
            r.last_github_checked_at = Some(checked_at.clone());
            r.last_github_state = Some(state.clone());
        }),
    };
    match result {
        Ok(updated) => {
            if updated.status != from {
                tracing::info!(record = %stored.id, "reconciled: {from} -> {}", updated.status);
            }
            updated.status != from
        }
        Err(e) => {
            tracing::warn!(record = %stored.id, "reconcile write skipped: {e}");
            false
        }
    }
}

/// Step 2: an in-flight record that no live process owns goes back to `queued`, unless it
/// changed since it was judged (its owner touched it: not stranded after all).
fn reclaim(shared: &Shared, stored: &StoredRecord, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Some(reason) = super::stranded::stranded_reason(shared, stored, now) else {
        return false;
    };
    if let Err(e) = super::stranded::end_strays(stored) {
        tracing::error!(record = %stored.id, "not reclaimed: {e}");
        return false;
    }
    let from = stored.record.status;
    let result = shared.transition(
        &stored.id,
        Expect::Claim(&stored.record),
        Status::Queued,
        |r| {
            if from == Status::DriftRepairing {
                r.retries = Some(0);
            }
            r.claimed_by = None;
            r.last_error = Some(format!("reclaimed: {reason}"));
        },
    );
    match result {
        Ok(_) => {
            tracing::warn!(record = %stored.id, "reclaimed stranded record: {reason}");
            true
        }
        Err(e) => {
            tracing::warn!(record = %stored.id, "reclaim skipped: {e}");
            false
        }
    }
}

/// Step 3: one forge listing per live repo, at most once per poll interval; a labelled PR
/// with a valid marker and no local record becomes a local `queued` record. Local wins.
fn discover(shared: &Shared, memory: &mut TickMemory, repos: &BTreeMap<String, LiveRepo>) -> usize {
    let every = Duration::from_secs(shared.config.poll_secs.max(1));
    let mut added = 0;
    for (identity, live) in repos {
        if !memory.discovery_due(identity, every) {
            continue;
        }
        let prs = match shared.forge.list_queued(&live.repo) {
            Ok(prs) => prs,
            Err(e) => {
                // One repo's failure never hides the others.
                tracing::warn!(repo = %identity, "{}", gstack_text::could_not_discover(&live.repo_path, &e));
                memory.discovered(identity, None);
                continue;
            }
        };
        memory.discovered(
            identity,
            Some(
                prs.iter()
                    .map(|p| (p.number, p.base_branch.clone()))
                    .collect(),
            ),
        );
        for pr in prs {
            let id = crate::safe_key::record_id(identity, &pr.base_branch, pr.number);
            if shared.store.path_of(&id).exists() || shared.view().get(&id).is_some() {
                continue;
            }
            // The forge found it labelled, marked and not a fork; the rule may narrow that.
            if !super::policy::accept_pr(shared, identity, &id, &pr) {
                continue;
            }
            let record = record_from_remote(identity, &pr, &live.repo_path);
            match shared.insert(&record) {
                Ok(id) => {
                    tracing::info!(record = %id, "discovered PR #{} on {identity}", pr.number);
                    added += 1;
                }
                Err(e) => tracing::warn!(repo = %identity, "PR #{}: not recorded: {e}", pr.number),
            }
        }
    }
    added
}

/// A local record for a PR found only on the forge, in the repo at `repo_path` (a local
/// record's or a configured one).
fn record_from_remote(identity: &str, pr: &QueuedPr, repo_path: &str) -> Record {
    // Paths come from the local record of the same repo or the configuration, never from
    // the PR body: whoever can edit a PR could otherwise point the landing at any checkout.
    let mut record = Record::queued(repo_path, &pr.base_branch, &pr.head_branch, pr.number);
    record.run_id = pr.marker.run_id().to_owned();
    record.version = pr.marker.version().to_owned();
    if crate::clock::parse_iso(pr.marker.queued_at()).is_some() {
        record.queued_at = pr.marker.queued_at().to_owned();
    }
    record.worktree_path = repo_path.to_owned();
    record.repo_identity = Some(identity.to_owned());
    record.pr_url = pr.url.clone();
    record
}

/// Step 4: every queued record that fails a gate is blocked by its full id; so is every
/// in-flight one this process is not landing (a planted `landing` record must not hold a
/// lane it could never land in).
fn gate_queued(shared: &Shared, gates: &mut TickGates) -> usize {
    let candidates: Vec<StoredRecord> = shared
        .view()
        .live()
        .filter(|s| {
            s.record.status == Status::Queued
                || (s.record.status.is_in_flight() && !shared.holds(&s.id))
        })
        .cloned()
        .collect();
    let mut blocked = 0;
    for stored in &candidates {
        if let Err(refusal) = gates.record(&shared.allowlist(), &stored.record) {
            let reason = gate_block_text(&stored.record, &refusal);
            match shared.transition(
                &stored.id,
                Expect::OneOf(&[stored.record.status]),
                Status::Blocked,
                |r| {
                    r.last_error = Some(reason.clone());
                },
            ) {
                Ok(_) => {
                    tracing::warn!(record = %stored.id, "{}", gate_block_log(&stored.record, &refusal));
                    blocked += 1;
                }
                Err(e) => tracing::warn!(record = %stored.id, "gate block not written: {e}"),
            }
        }
    }
    blocked
}

/// A refused repo path on a legacy record (no `repoIdentity`): gstack blocks it before
/// deriving an id from its repo, with its own text.
fn legacy_path_refusal(record: &Record, refusal: &GateError) -> bool {
    record.repo_identity.is_none() && matches!(refusal.gate, Gate::RepoPath | Gate::GitDir)
}

/// The `lastError` of a record blocked at the gate, in gstack's words.
fn gate_block_text(record: &Record, refusal: &GateError) -> String {
    if legacy_path_refusal(record, refusal) {
        gstack_text::repo_rejected_pre_id(&refusal.reason)
    } else {
        refusal.to_string()
    }
}

/// The log line for a record blocked at the gate: gstack's for a repo-path refusal.
fn gate_block_log(record: &Record, refusal: &GateError) -> String {
    match refusal.gate {
        Gate::RepoPath | Gate::GitDir => gstack_text::blocking_pr(
            record.pr_number,
            &refusal.reason,
            legacy_path_refusal(record, refusal),
        ),
        _ => format!("blocking PR #{}: {refusal}", record.pr_number),
    }
}

/// Faults (DESIGN §7): the detectors over the build-state runs, and, on a poll tick, over
/// the queue when its facts changed (the view, a remote answer) or a record is in flight
/// (whether it is stranded changes with the clock alone).
///
/// The queue detectors judge every live record, so they never run on a watcher's wake: a
/// burst of writes costs one run per poll interval, and the tick that a new record woke
/// costs what that record changed. A queue fault is raised within `poll_secs`.
fn watch_faults(
    shared: &Shared,
    memory: &mut TickMemory,
    repos: &BTreeMap<String, LiveRepo>,
    wake: Wake,
    in_flight: bool,
) {
    let dirs = crate::faults::watch::WatchDirs {
        faults_dir: shared.config.faults_dir_or_default(),
        state_dir: shared
            .config
            .build_state_dir
            .clone()
            .unwrap_or_else(crate::paths::default_build_state_dir),
    };
    let set = shared.rules.current();
    let runs = crate::faults::watch::tick_runs(&dirs, &set);
    if wake == Wake::Watcher {
        return;
    }
    let every = Duration::from_secs(shared.config.reconcile_every_secs.max(1));
    let mut repo_facts: Vec<RepoFacts> = Vec::new();
    for (identity, live) in repos.iter().filter(|(_, l)| !l.records.is_empty()) {
        let labelled: HashSet<u64> = memory
            .facts(identity, Vec::new())
            .labelled
            .unwrap_or_default()
            .iter()
            .map(|(n, _)| *n)
            .collect();
        // Queued PRs discovery did not list: is the PR closed? One shared listing says.
        let unlisted: Vec<PrRef<'_>> = live
            .records
            .iter()
            .filter(|s| {
                s.record.status == Status::Queued && !labelled.contains(&s.record.pr_number)
            })
            .map(|s| pr_ref(&s.record))
            .collect();
        memory.proofs(shared.forge.as_ref(), &live.repo, &unlisted, every);
        memory.locks(&shared.locks, &live.repo, every);
        repo_facts.push(memory.facts(
            identity,
            live.records.iter().map(|s| s.id.clone()).collect(),
        ));
    }
    // The detectors (rules, up to their deadline) read a copy: a landing's record write
    // never waits for them on the view's lock.
    let generation = shared.view().generation();
    let fallbacks = shared.decisions.fallbacks().active();
    let seen = (
        generation,
        memory.generation(),
        // Whether the budget ran out, not which pattern ran it out: one fault, not one a tick.
        serde_json::to_string(&(&fallbacks, runs.learned_budget.is_some())).unwrap_or_default(),
    );
    if memory.detected.as_ref() == Some(&seen) && !in_flight {
        return;
    }
    memory.detected = Some(seen);
    // Settled records (landed and proven, abandoned) can raise no queue fault: the
    // detectors see every other record.
    let (owned, unreadable) = {
        let view = shared.view();
        let owned: Vec<StoredRecord> = view.active().cloned().collect();
        (owned, view.unreadable())
    };
    let records: Vec<&StoredRecord> = owned.iter().collect();
    let now = crate::clock::now();
    let facts = QueueFacts {
        queue_dir: shared.store.dir(),
        records: &records,
        unreadable: &unreadable,
        stranded: &|stored| super::stranded::stranded_reason(shared, stored, now),
        repos: &repo_facts,
        rule_fallbacks: &fallbacks,
        learned_budget: runs.learned_budget.as_ref(),
    };
    // Counted by tests: how often the queue detectors run, and over how many records.
    tracing::debug!(live = records.len(), "queue detectors run");
    crate::faults::watch::tick_queue(&dirs, &set, &facts);
}

/// Step 5: at most the rules' `max_lanes` minus `running` candidates: the head of every
/// free lane, in the rules' `order`, each admitted by the rules' `admit`. A lane with a
/// record in flight (here or in another live daemon) or listed in `skip` is passed over,
/// never waited on; so is a record the rules asked to wait, or deferred by a `requeue`.
/// `gates` are the tick's (fresh ones after a landing finished).
pub fn select(
    shared: &Shared,
    skip: &HashSet<String>,
    running: usize,
    mut gates: TickGates,
) -> Selection {
    let mut selection = Selection::default();
    // Lanes are told apart by `lane_key`: two branches that `safe_key` folds together
    // (`rel/1`, `rel-1`) share one lock, and two spellings of one repository's origin
    // (a symlinked path, GitHub owner/name in another case) are one repository, so each
    // pair is one lane here too.
    let record_lane = |r: &Record| {
        lane_key(&Lane {
            repo_identity: r.identity_or_path(),
            base_branch: r.base_branch.clone(),
        })
    };
    let now = crate::clock::now();
    let (view, in_flight, queued) = {
        let records = shared.view();
        let view = policy::QueueView::of(records.live());
        let in_flight: HashSet<String> = records
            .live()
            .filter(|s| s.record.status.is_in_flight())
            .map(|s| record_lane(&s.record))
            .collect();
        let queued: Vec<StoredRecord> = records
            .live()
            .filter(|s| s.record.status == Status::Queued && !policy::deferred(&s.record, now))
            .cloned()
            .collect();
        (view, in_flight, queued)
    };
    if queued.is_empty() {
        return selection;
    }
    let free = policy::max_lanes(shared, view).saturating_sub(running);
    if free == 0 {
        return selection;
    }
    let queued: Vec<&StoredRecord> = queued.iter().collect();
    let ordered = policy::order(shared, &queued);
    let mut seen_lanes: HashSet<String> = HashSet::new();
    for (position, stored) in ordered.iter().map(|&i| queued[i]).enumerate() {
        if selection.candidates.len() == free {
            break;
        }
        if in_flight.contains(&record_lane(&stored.record)) {
            continue;
        }
        let Ok(gated) = gates.record(&shared.allowlist(), &stored.record) else {
            continue;
        };
        let lane = Lane {
            repo_identity: gated.identity.clone(),
            base_branch: stored.record.base_branch.clone(),
        };
        let lane_ref = lane_key(&lane);
        if skip.contains(&lane_ref) || seen_lanes.contains(&lane_ref) {
            continue;
        }
        let admission = policy::admit(shared, stored, &lane, view);
        match admission.decision {
            Admit::Go => {}
            // Left queued and untouched (a write would wake `--watch` again at once); the
            // lane stays open to the next record.
            Admit::Wait => continue,
            Admit::Block => {
                if block_by_policy(shared, &stored.id, &admission.reason) {
                    selection.policy_blocked += 1;
                }
                continue;
            }
        }
        policy::selected(shared, stored, position, queued.len());
        seen_lanes.insert(lane_ref);
        selection.candidates.push(Candidate {
            id: stored.id.clone(),
            record: stored.record.clone(),
            gated,
        });
    }
    selection
}

/// What one selection pass chose, and how many records the landing policy blocked.
#[derive(Debug, Default)]
pub struct Selection {
    pub candidates: Vec<Candidate>,
    pub policy_blocked: usize,
}

/// `admit` said block: blocked by its full id, with the rule's reason. Whether it was
/// written.
fn block_by_policy(shared: &Shared, id: &str, reason: &str) -> bool {
    let written = shared.transition(id, Expect::OneOf(&[Status::Queued]), Status::Blocked, |r| {
        r.last_error = Some(format!("policy: {reason}"));
    });
    match written {
        Ok(_) => {
            tracing::warn!(record = %id, "blocked by the landing policy: {reason}");
            true
        }
        Err(e) => {
            tracing::warn!(record = %id, "policy block not written: {e}");
            false
        }
    }
}
