//! The queue as the page groups it: per repo and base branch, the records landing now and
//! the queued ones in the order the daemon's landing policy last gave (records it has not
//! ranked yet follow, oldest first, as the built-in order takes them).

use std::collections::BTreeMap;

use crate::record::Status;
use crate::store::{Scan, StoredRecord};

use super::eta::LaneName;

pub struct LaneView<'a> {
    pub name: LaneName,
    /// Claiming, landing or repairing drift (one, unless two daemons disagree).
    pub in_flight: Vec<&'a StoredRecord>,
    /// First to land first.
    pub queued: Vec<&'a StoredRecord>,
}

/// Every lane with a record in flight or queued, by repo then base branch.
pub fn lanes<'a>(scan: &'a Scan, order: &[String]) -> Vec<LaneView<'a>> {
    let rank = |id: &str| order.iter().position(|o| o == id).unwrap_or(usize::MAX);
    let mut by_lane: BTreeMap<LaneName, LaneView<'a>> = BTreeMap::new();
    for stored in &scan.records {
        let status = stored.record.status;
        let in_flight = matches!(
            status,
            Status::Claiming | Status::Landing | Status::DriftRepairing
        );
        if !in_flight && status != Status::Queued {
            continue;
        }
        let name = (
            stored.record.identity_or_path(),
            stored.record.base_branch.clone(),
        );
        let lane = by_lane.entry(name.clone()).or_insert_with(|| LaneView {
            name,
            in_flight: Vec::new(),
            queued: Vec::new(),
        });
        if in_flight {
            lane.in_flight.push(stored);
        } else {
            lane.queued.push(stored);
        }
    }
    let mut out: Vec<LaneView<'a>> = by_lane.into_values().collect();
    for lane in &mut out {
        lane.queued.sort_by(|a, b| {
            (rank(&a.id), &a.record.queued_at, a.record.pr_number).cmp(&(
                rank(&b.id),
                &b.record.queued_at,
                b.record.pr_number,
            ))
        });
    }
    out
}

/// Records that need an operator: blocked, each with its `lastError` (a gate refusal, a
/// failed landing).
pub fn blocked(scan: &Scan) -> Vec<&StoredRecord> {
    scan.records
        .iter()
        .filter(|s| s.record.status == Status::Blocked)
        .collect()
}
