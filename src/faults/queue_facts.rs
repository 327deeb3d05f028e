//! The facts the release-queue detectors judge: the records (with the core's verdict on
//! who owns each in-flight one), the files that are not records, the lane locks on each
//! repo's origin, and where the forge disagrees with the queue.
//!
//! Rules see no file system, process table or network, so the core gathers these. The
//! remote facts cost a forge listing and a lock listing per repository; they are refreshed
//! at most every `reconcile_every_secs` per repository (the tick's own reconcile pace),
//! and a failed listing is logged and leaves that repository's remote facts empty.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::daemon::Shared;
use crate::forge::{ForgeRepo, PrRef, PrState};
use crate::lane_lock::ListedLock;
use crate::record::Status;

/// A repository's remote facts and when they were fetched.
#[derive(Clone)]
struct Remote {
    fetched: Instant,
    /// `(number, base branch)` of every labelled PR the forge listed; `None` if the
    /// listing failed.
    labelled: Option<Vec<(u64, String)>>,
    /// Lane locks on the repository's origin.
    locks: Vec<Value>,
    /// PR number → state, for queued records missing from the labelled listing.
    states: HashMap<u64, PrState>,
}

static REMOTES: LazyLock<Mutex<HashMap<String, Remote>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The input map of `rules/detectors/queue/*.rhai`.
pub fn gather(shared: &Shared) -> Value {
    let queue_dir = shared.store.dir().display().to_string();
    let scan = match shared.store.scan() {
        Ok(scan) => scan,
        Err(e) => {
            tracing::warn!("fault watch: cannot scan the queue: {e}");
            return json!({"queueDir": queue_dir, "records": [], "unreadable": [], "locks": [],
                          "remote": {"labelledWithoutRecord": [], "closedQueued": []},
                          "ruleFallbacks": shared.decisions.fallbacks().active()});
        }
    };
    let now = crate::clock::now();
    let ttl = shared.config.lock_ttl();
    let records: Vec<Value> = scan
        .records
        .iter()
        .map(|stored| {
            let r = &stored.record;
            json!({
                "id": stored.id,
                "file": stored.path.display().to_string(),
                "status": r.status.as_str(),
                "prNumber": r.pr_number,
                "repo": r.identity_or_path(),
                "baseBranch": r.base_branch,
                "lastGithubState": r.last_github_state,
                "lastError": r.last_error,
                "stranded": crate::ownership::stranded_reason(r, ttl, now),
            })
        })
        .collect();

    // One entry per gated repository with a live record: only gated repos are ever asked
    // about (a planted record's identity must not become a forge argument).
    let mut repos: BTreeMap<String, (ForgeRepo, Vec<&crate::store::StoredRecord>)> =
        BTreeMap::new();
    for stored in scan
        .records
        .iter()
        .filter(|s| !matches!(s.record.status, Status::Landed | Status::Abandoned))
    {
        let Ok(gated) = shared.allowlist.gate_record(&stored.record) else {
            continue;
        };
        let repo = ForgeRepo::new(
            gated.identity.clone(),
            gated.origin_url.clone().unwrap_or_default(),
        );
        repos
            .entry(gated.identity.clone())
            .or_insert_with(|| (repo, Vec::new()))
            .1
            .push(stored);
    }
    let every = Duration::from_secs(shared.config.reconcile_every_secs.max(1));
    let known: HashSet<&str> = scan.records.iter().map(|s| s.id.as_str()).collect();
    let mut locks = Vec::new();
    let mut labelled_without_record = Vec::new();
    let mut closed_queued = Vec::new();
    for (identity, (repo, stored)) in &repos {
        let remote = remote_facts(shared, repo, stored, every);
        locks.extend(remote.locks.iter().cloned());
        let Some(labelled) = &remote.labelled else {
            continue;
        };
        for (number, base) in labelled {
            let id = crate::safe_key::record_id(identity, base, *number);
            if !known.contains(id.as_str()) {
                labelled_without_record
                    .push(json!({"repo": identity, "prNumber": number, "id": id}));
            }
        }
        for s in stored.iter().filter(|s| s.record.status == Status::Queued) {
            if let Some(PrState::Closed) = remote.states.get(&s.record.pr_number) {
                closed_queued.push(json!({
                    "id": s.id, "file": s.path.display().to_string(), "repo": identity,
                    "prNumber": s.record.pr_number, "state": "closed",
                }));
            }
        }
    }
    json!({
        "queueDir": queue_dir,
        "records": records,
        "unreadable": scan.unreadable,
        "locks": locks,
        "remote": {"labelledWithoutRecord": labelled_without_record, "closedQueued": closed_queued},
        // RULE_FAILING: the landing and discovery questions failing closed right now.
        "ruleFallbacks": shared.decisions.fallbacks().active(),
    })
}

/// The cached remote facts of `repo`, refreshed when older than `every`.
fn remote_facts(
    shared: &Shared,
    repo: &ForgeRepo,
    stored: &[&crate::store::StoredRecord],
    every: Duration,
) -> Remote {
    if let Some(cached) = REMOTES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&repo.identity)
        .filter(|r| r.fetched.elapsed() < every)
    {
        return cached.clone();
    }
    let labelled = match shared.forge.list_queued(repo) {
        Ok(prs) => Some(
            prs.into_iter()
                .map(|pr| (pr.number, pr.base_branch))
                .collect::<Vec<_>>(),
        ),
        Err(e) => {
            tracing::warn!(repo = %repo.identity, "fault watch: forge listing failed: {e}");
            None
        }
    };
    let mut states = HashMap::new();
    if let Some(labelled) = &labelled {
        let listed: HashSet<u64> = labelled.iter().map(|(n, _)| *n).collect();
        for s in stored
            .iter()
            .filter(|s| s.record.status == Status::Queued && !listed.contains(&s.record.pr_number))
        {
            let pr = PrRef {
                number: s.record.pr_number,
                feature_branch: &s.record.feature_branch,
                base_branch: &s.record.base_branch,
            };
            match shared.forge.merge_proof(repo, &pr) {
                Ok(proof) => {
                    states.insert(s.record.pr_number, proof.state);
                }
                Err(e) => tracing::warn!(record = %s.id, "fault watch: PR state unknown: {e}"),
            }
        }
    }
    let locks = if repo.origin_url.is_empty() {
        Vec::new()
    } else {
        match shared.locks.list(&repo.origin_url) {
            Ok(listing) => listing
                .into_iter()
                .map(|lock| {
                    let (state, payload) = match &lock.state {
                        // Not expired yet; the next acquire takes it over.
                        ListedLock::Live(p) | ListedLock::HolderGone { payload: p, .. } => {
                            ("live", Some(p))
                        }
                        ListedLock::Expired(p) => ("expired", Some(p)),
                        ListedLock::Unreadable { .. } => ("unreadable", None),
                    };
                    json!({
                        "ref": lock.ref_name,
                        "repo": repo.identity,
                        "state": state,
                        "expiresAt": payload.map(|p| p.expires_at.clone()),
                        "ownerId": payload.map(|p| p.owner_id.clone()),
                    })
                })
                .collect(),
            Err(e) => {
                tracing::warn!(repo = %repo.identity, "fault watch: lock listing failed: {e}");
                Vec::new()
            }
        }
    };
    let remote = Remote {
        fetched: Instant::now(),
        labelled,
        locks,
        states,
    };
    REMOTES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(repo.identity.clone(), remote.clone());
    remote
}
