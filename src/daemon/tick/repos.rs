//! The repos a poll round discovers (DESIGN §3 step 3), gated, and the refusals the tick
//! memory keeps about repo paths and records.

use std::collections::BTreeMap;

use crate::forge::ForgeRepo;
use crate::gates::{Gate, Identity};
use crate::gstack_text;
use crate::store::StoredRecord;

use crate::daemon::Shared;
use crate::daemon::forge_round::LiveRepo;
use crate::daemon::memory::{Refused, TickMemory};
use crate::daemon::tick_gates::TickGates;

/// The repos to discover (DESIGN §3 step 3): every configured repo (config `repos` and the
/// project root), even with an empty queue, and every repo with a live record. Never a
/// repo whose records are all settled. Only gated repos are ever asked about: a planted
/// record's claimed identity never becomes a `gh --repo` (or a `GH_HOST`).
pub fn live_repos(
    shared: &Shared,
    gates: &mut TickGates,
    memory: &mut TickMemory,
) -> BTreeMap<String, LiveRepo> {
    let mut repos: BTreeMap<String, LiveRepo> = BTreeMap::new();
    fn add<'r>(
        repos: &'r mut BTreeMap<String, LiveRepo>,
        identity: &Identity,
        origin: Option<&str>,
        path: &str,
    ) -> &'r mut LiveRepo {
        repos
            .entry(identity.to_string())
            .or_insert_with(|| LiveRepo {
                repo: ForgeRepo::new(identity.as_str(), origin.unwrap_or_default()),
                repo_path: path.to_owned(),
                records: Vec::new(),
            })
    }
    for path in shared.discover_roots().iter() {
        match gates.repo(&shared.allowlist(), path) {
            Ok(gate) => match gate.origin() {
                Ok((identity, origin)) => {
                    memory.passed(&Refused::Root(path.clone()));
                    add(&mut repos, identity, origin, path);
                }
                Err(refusal) => refused_root(memory, path, &refusal.reason),
            },
            Err(refusal) => refused_root(memory, path, &refusal.reason),
        }
    }
    let live: Vec<StoredRecord> = shared.crew.records.view().live().cloned().collect();
    for stored in live {
        match gates.record(&shared.allowlist(), &stored.record) {
            Ok(gated) => add(
                &mut repos,
                gated.identity(),
                gated.origin_url(),
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
pub fn forget_gone_refusals(shared: &Shared, memory: &mut TickMemory) {
    let view = shared.crew.records.view();
    let roots = shared.discover_roots();
    memory.prune_refusals(|subject| match subject {
        Refused::Record(id) => view.get(id).is_some_and(|s| !s.record.is_settled()),
        Refused::Root(path) => {
            roots.iter().any(|root| root == path)
                || view.live().any(|s| &s.record.repo_path == path)
        }
    });
}
