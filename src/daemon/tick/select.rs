//! Step 5 (DESIGN §3): which queued records start landing now, one per free lane.

use std::collections::HashSet;

use crate::gates::GatedRecord;
use crate::lane_lock::LaneKey;
use crate::record::{Record, Status};
use crate::rules::contracts::landing::Admit;
use crate::store::{Expect, Move, StoredRecord};

use crate::daemon::tick_gates::TickGates;
use crate::daemon::{Shared, policy};

/// A queued record that passed every gate this tick, with the values the gates resolved.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: String,
    pub record: Record,
    pub gated: GatedRecord,
    /// The key its lane was weighed under: its landing keeps it to the end.
    pub key: LaneKey,
}

/// Step 5: at most the rules' `max_lanes` minus `running` candidates: the head of every
/// free lane, in the rules' `order`, each admitted by the rules' `admit`. A lane with a
/// record in flight (here or in another live daemon) or listed in `skip` is passed over,
/// never waited on; so is a record the rules asked to wait, or deferred by a `requeue`. A
/// record whose claim the store refused as too large is no lane's head: the lane stays open
/// to the next record.
/// `gates` are the tick's (fresh ones after a landing finished).
pub fn select(
    shared: &Shared,
    skip: &HashSet<String>,
    running: usize,
    mut gates: TickGates,
) -> Selection {
    let mut selection = Selection::default();
    let Snapshot {
        view,
        in_flight,
        queued,
    } = Snapshot::of(shared);
    if queued.is_empty() {
        return selection;
    }
    let in_flight = lanes_in_flight(shared, &mut gates, &in_flight);
    let free = policy::max_lanes(shared.policy(), view).saturating_sub(running);
    if free == 0 {
        return selection;
    }
    let queued: Vec<&StoredRecord> = queued.iter().collect();
    let ordered = policy::order(shared.policy(), &queued);
    let mut seen_lanes: HashSet<String> = HashSet::new();
    for (position, stored) in ordered.iter().map(|&i| queued[i]).enumerate() {
        if selection.candidates.len() == free {
            break;
        }
        if shared
            .crew
            .unclaimable
            .passes_over(&stored.id, &stored.path)
        {
            continue;
        }
        // A queued record whose verdict this daemon still keeps (an operator retried it
        // meanwhile) is not claimed again until that verdict is written or dropped: the
        // verdict's write expects the claim its own landing left, and a second landing in
        // the same daemon's name is one it must never be written over.
        if shared.crew.holds(&stored.id) {
            continue;
        }
        let Ok(gated) = gates.record(&shared.allowlist(), &stored.record) else {
            continue;
        };
        let Some(key) = in_flight.key_of_candidate(&stored.id, &gated) else {
            continue;
        };
        if in_flight.keys.contains(&key.lane)
            || skip.contains(&key.lane)
            || seen_lanes.contains(&key.lane)
        {
            continue;
        }
        let lane = gated.lane();
        let admission = policy::admit(shared.policy(), stored, &lane, view);
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
        policy::selected(shared.policy(), stored, position, queued.len());
        seen_lanes.insert(key.lane.clone());
        selection.candidates.push(Candidate {
            id: stored.id.clone(),
            record: stored.record.clone(),
            gated,
            key,
        });
    }
    selection
}

/// The lanes of the records in flight.
struct InFlight {
    keys: HashSet<String>,
    /// A record in flight has a local origin whose repository is not learnt yet: it may
    /// hold the lane of any local candidate, so none starts.
    unlearnt: bool,
}

impl InFlight {
    /// A candidate's lane key, or `None` while it is not known (the lane waits, fail
    /// closed: under its spelling it could run beside an alias of itself), or while a
    /// record in flight whose lane is not known may hold it.
    fn key_of_candidate(&self, id: &str, gated: &GatedRecord) -> Option<LaneKey> {
        let key = gated
            .lane_key()
            .inspect_err(|unlearnt| tracing::debug!(record = %id, "lane waits: {unlearnt}"))
            .ok()?;
        let local = crate::identity::local_identity_path(&gated.lane().repo_identity).is_some();
        if self.unlearnt && local {
            tracing::debug!(record = %id, "lane waits: a record in flight has a local origin whose repository berth has not learnt yet");
            return None;
        }
        Some(key)
    }
}

/// The lanes of the records in flight, keyed as candidates are ([`GatedRecord::lane_key`]):
/// by the identity the gates read from the repo's `origin`, so a legacy record in flight
/// (no `repoIdentity`) holds the lane its origin names, as its lock does. A record in
/// flight that fails a gate holds no lane: step 4 blocks it.
fn lanes_in_flight(shared: &Shared, gates: &mut TickGates, records: &[Record]) -> InFlight {
    let allowlist = shared.allowlist();
    let mut in_flight = InFlight {
        keys: HashSet::new(),
        unlearnt: false,
    };
    for gated in records
        .iter()
        .filter_map(|r| gates.record(&allowlist, r).ok())
    {
        match gated.lane_key() {
            Ok(key) => _ = in_flight.keys.insert(key.lane),
            Err(_) => in_flight.unlearnt = true,
        }
    }
    in_flight
}

/// What selection needs of the view, copied out so the rules run without its lock.
struct Snapshot {
    view: policy::QueueView,
    /// The records in flight.
    in_flight: Vec<Record>,
    /// The queued records not deferred by a `requeue`.
    queued: Vec<StoredRecord>,
}

impl Snapshot {
    fn of(shared: &Shared) -> Snapshot {
        let now = crate::clock::now();
        let records = shared.crew.records.view();
        Snapshot {
            view: policy::QueueView::of(records.live()),
            in_flight: records
                .live()
                .filter(|s| s.record.status.is_in_flight())
                .map(|s| s.record.clone())
                .collect(),
            queued: records
                .live()
                .filter(|s| s.record.status == Status::Queued && !policy::deferred(&s.record, now))
                .cloned()
                .collect(),
        }
    }
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
    let written = shared.crew.records.transition(
        Move::new(id, Expect::OneOf(&[Status::Queued]), Status::Blocked),
        |r| {
            r.last_error = Some(format!("policy: {reason}"));
        },
    );
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
