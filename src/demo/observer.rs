//! Watches the demo world from the outside, as an operator would: the queue dir and the
//! lock refs on the remote. It narrates every change and remembers what it saw, so the
//! demo's checks are about what really happened.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::faults::halt_store::HaltStore;
use crate::lane_lock::LockClient;
use crate::record::Status;

use super::world::{DemoPr, World};
use super::{DemoError, say};

const POLL: Duration = Duration::from_millis(100);

pub struct Observer<'w> {
    world: &'w World,
    locks: Arc<LockClient>,
    statuses: BTreeMap<String, Status>,
    live_locks: BTreeSet<String>,
    seen_locks: BTreeSet<String>,
    landed: Vec<String>,
    most_in_flight: usize,
    halts: HaltStore,
    /// `(fault id, message)` of every halt event seen.
    seen_halts: BTreeSet<(String, String)>,
}

impl<'w> Observer<'w> {
    pub fn new(world: &'w World, locks: Arc<LockClient>) -> Observer<'w> {
        Observer {
            world,
            locks,
            statuses: BTreeMap::new(),
            live_locks: BTreeSet::new(),
            seen_locks: BTreeSet::new(),
            landed: Vec::new(),
            most_in_flight: 0,
            halts: HaltStore::long_lived(&world.faults_dir),
            seen_halts: BTreeSet::new(),
        }
    }

    /// Narrates until no record is queued or in flight and no lock is left.
    pub async fn watch_until_settled(&mut self) {
        loop {
            let busy = self.look_at_queue();
            let locks = self.look_at_locks().await;
            let halts = self.look_at_halts();
            if !busy && locks == 0 && halts > 0 {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Returns whether anything is still queued or in flight.
    fn look_at_queue(&mut self) -> bool {
        let Ok(scan) = self.world.queue.scan() else {
            return true;
        };
        let mut busy = false;
        let mut in_flight = 0;
        for stored in &scan.records {
            let status = stored.record.status;
            busy |= status == Status::Queued || status.is_in_flight();
            in_flight += usize::from(status.is_in_flight());
            if self.statuses.get(&stored.id) == Some(&status) {
                continue;
            }
            let before = self.statuses.insert(stored.id.clone(), status);
            let lane = &stored.record.base_branch;
            let why = match (status, &stored.record.last_error) {
                (Status::Blocked, Some(e)) => format!(": {e}"),
                _ => String::new(),
            };
            if let Some(before) = before {
                say(&format!(
                    "  PR #{} [{lane}] {before} -> {status}{why}",
                    stored.record.pr_number
                ));
            }
            if status == Status::Landed {
                self.landed.push(stored.id.clone());
            }
        }
        self.most_in_flight = self.most_in_flight.max(in_flight);
        busy
    }

    /// Narrates lock refs appearing and disappearing; returns how many are live.
    async fn look_at_locks(&mut self) -> usize {
        let Ok(now) = self.list_locks().await else {
            return self.live_locks.len();
        };
        for appeared in now.difference(&self.live_locks) {
            say(&format!("  lock ref {appeared} appeared on the remote"));
        }
        for gone in self.live_locks.difference(&now) {
            say(&format!("  lock ref {gone} is gone"));
        }
        self.seen_locks.extend(now.iter().cloned());
        self.live_locks = now;
        self.live_locks.len()
    }

    /// Narrates new halt events; returns how many have been seen.
    fn look_at_halts(&mut self) -> usize {
        for halt in self.halts.list().halts {
            let key = (halt.fault_id.clone(), halt.message.clone());
            if self.seen_halts.insert(key) {
                say(&format!(
                    "  halt event {} for run {} ({}): {}",
                    halt.fault_id, halt.run_id, halt.severity, halt.message
                ));
            }
        }
        self.seen_halts.len()
    }

    pub fn halt_seen(&self, fault_id: &str, message_prefix: &str) -> bool {
        self.seen_halts
            .iter()
            .any(|(id, message)| id == fault_id && message.starts_with(message_prefix))
    }

    async fn list_locks(&self) -> Result<BTreeSet<String>, DemoError> {
        let locks = Arc::clone(&self.locks);
        let url = self.world.origin_url.clone();
        let listed = tokio::task::spawn_blocking(move || locks.list(&url)).await??;
        Ok(listed.into_iter().map(|l| l.ref_name).collect())
    }

    pub fn lock_seen_for(&self, base: &str) -> bool {
        let suffix = format!("/{}", crate::safe_key::safe_key(base));
        self.seen_locks.iter().any(|r| r.ends_with(&suffix))
    }

    pub fn remaining_locks(&self) -> Result<Vec<String>, DemoError> {
        Ok(self
            .locks
            .list(&self.world.origin_url)?
            .into_iter()
            .map(|l| l.ref_name)
            .collect())
    }

    /// One record in flight at a time, and within each lane the queue order kept.
    pub fn landed_in_order(&self, prs: &[DemoPr]) -> bool {
        let position = |id: &str| self.landed.iter().position(|l| l == id);
        let lanes: BTreeSet<&str> = prs.iter().map(|p| p.base.as_str()).collect();
        let ordered = lanes.into_iter().all(|base| {
            let order: Vec<Option<usize>> = prs
                .iter()
                .filter(|p| p.base == base)
                .map(|p| position(&p.id))
                .collect();
            order.iter().all(Option::is_some) && order.windows(2).all(|w| w[0] < w[1])
        });
        ordered && self.most_in_flight <= 1
    }
}
