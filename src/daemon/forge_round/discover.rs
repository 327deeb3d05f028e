//! Step 3 (DESIGN §3): one forge listing per live repo, at most once per poll interval; a
//! labelled PR with a valid marker and no local record becomes a local `queued` record.
//! Local wins.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::forge::QueuedPr;
use crate::gstack_text;
use crate::record::Record;

use super::LiveRepo;
use crate::daemon::policy::{self, Policy};
use crate::daemon::{Records, Shared};

/// Discovers every repo of `repos` that is due; how many records it added.
pub fn run(
    shared: &Shared,
    repos: &BTreeMap<String, LiveRepo>,
    cancel: &CancellationToken,
) -> usize {
    let every = Duration::from_secs(shared.config().poll_secs.max(1));
    let mut added = 0;
    for (identity, live) in repos {
        if cancel.is_cancelled() {
            break;
        }
        if !shared.memory().discovery_due(identity, every) {
            continue;
        }
        let answer = shared.crew.forge.list_queued(&live.repo);
        let prs = match answer {
            Ok(prs) => prs,
            Err(e) => {
                // One repo's failure never hides the others.
                tracing::warn!(repo = %identity, "{}", gstack_text::could_not_discover(&live.repo_path, &e));
                shared.memory().discovered(identity, None);
                continue;
            }
        };
        let labelled = prs
            .iter()
            .map(|p| (p.number, p.base_branch.clone()))
            .collect();
        shared.memory().discovered(identity, Some(labelled));
        for pr in prs {
            added += usize::from(record_if_new(
                &shared.crew.records,
                shared.policy(),
                identity,
                live,
                &pr,
            ));
        }
    }
    added
}

/// Writes a local record for `pr` unless one exists or the rules decline it; whether it
/// wrote one.
fn record_if_new(
    records: &Records,
    policy: &Policy,
    identity: &str,
    live: &LiveRepo,
    pr: &QueuedPr,
) -> bool {
    let id = crate::safe_key::record_id(identity, &pr.base_branch, pr.number);
    if records.store().path_of(&id).exists() || records.view().get(&id).is_some() {
        return false;
    }
    // The forge found it labelled, marked and not a fork; the rule may narrow that.
    if !policy::accept_pr(policy, identity, &id, pr) {
        return false;
    }
    let record = record_from_remote(identity, pr, &live.repo_path);
    match records.insert(&record) {
        Ok(id) => {
            tracing::info!(record = %id, "discovered PR #{} on {identity}", pr.number);
            true
        }
        Err(e) => {
            tracing::warn!(repo = %identity, "PR #{}: not recorded: {e}", pr.number);
            false
        }
    }
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
