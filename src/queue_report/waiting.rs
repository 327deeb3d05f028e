//! Why a queued record waits, as `berth status` and the queue page tell it: the landing
//! policy's `wait` (the daemon's decision log), a `berthNotBefore` a requeue set, and its
//! lane's lock held on the repo's origin. Another process's view: each part is read, never
//! asked of a daemon.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::gates::Allowlist;
use crate::lane_lock::survey::{self, Listed, Reach};
use crate::lane_lock::{
    ListedLock, LockClient, LockError, LockListing, LockSettings, lock_ref_name,
};
use crate::record::Status;
use crate::rules::decisions::PolicyWait;
use crate::store::Scan;

/// The reasons one queued record is not landing now (each `None` when it does not apply).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Waiting {
    pub policy: Option<PolicyWait>,
    /// `berthNotBefore`: the record is passed over until then.
    pub not_before: Option<String>,
    pub lane_busy: Option<LaneBusy>,
}

/// A live lane lock on the record's lane: someone else is landing there.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LaneBusy {
    #[serde(rename = "ref")]
    pub lock_ref: String,
    pub holder: String,
    pub expires_at: String,
}

impl Waiting {
    pub fn is_empty(&self) -> bool {
        self.policy.is_none() && self.not_before.is_none() && self.lane_busy.is_none()
    }

    /// `policy wait: freeze (since T); retry after T; lane busy: lock held by X until T`.
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        if let Some(wait) = &self.policy {
            parts.push(format!(
                "policy wait: {} (since {})",
                wait.reason, wait.since
            ));
        }
        if let Some(at) = &self.not_before {
            parts.push(format!("retry after {at}"));
        }
        if let Some(busy) = &self.lane_busy {
            parts.push(format!(
                "lane busy: {} held by {} until {}",
                busy.lock_ref, busy.holder, busy.expires_at
            ));
        }
        parts.join("; ")
    }
}

/// Every queued record that waits, by id, and what could not be read on the way.
#[derive(Default)]
pub struct Waits {
    pub by_record: BTreeMap<String, Waiting>,
    pub problems: Vec<String>,
}

/// Record id → the policy `wait` holding it.
pub type PolicyWaits = std::collections::HashMap<String, PolicyWait>;

pub fn read(
    allowlist: &Allowlist,
    berth_dir: &Path,
    scan: &Scan,
    reach: &Reach<'_>,
    policy_waits: impl FnOnce() -> std::io::Result<PolicyWaits>,
) -> Waits {
    let mut waits = Waits::default();
    let queued: Vec<_> = scan
        .records
        .iter()
        .filter(|s| s.record.status == Status::Queued)
        .collect();
    if queued.is_empty() {
        return waits;
    }
    let mut policy = policy_waits().unwrap_or_else(|e| {
        waits.problems.push(format!(
            "policy waits: {} unreadable: {e}",
            berth_dir
                .join(crate::rules::decisions::DECISIONS_FILE)
                .display()
        ));
        Default::default()
    });
    // The lock ref of each record's lane and the origin it lives on, for the records that
    // pass the gates (the daemon blocks the others; that is not waiting).
    let lanes: BTreeMap<&str, (String, String)> = queued
        .iter()
        .filter_map(|s| {
            let gated = allowlist.gate_record(&s.record).ok()?;
            let url = gated.origin_url()?.to_owned();
            Some((s.id.as_str(), (url, lock_ref_name(&gated.lane()))))
        })
        .collect();
    let locks = list_locks(
        berth_dir,
        lanes.values().map(|(url, _)| url.as_str()),
        reach,
    );
    for stored in queued {
        let mut waiting = Waiting {
            policy: policy.remove(&stored.id),
            not_before: stored.record.extra.get_str(crate::daemon::NOT_BEFORE_FIELD),
            lane_busy: None,
        };
        if let Some((url, lock_ref)) = lanes.get(stored.id.as_str()) {
            waiting.lane_busy = match locks.get(url.as_str()) {
                Some(Listed::Locks(listed)) => busy(listed, lock_ref),
                _ => None,
            };
        }
        if !waiting.is_empty() {
            waits.by_record.insert(stored.id.clone(), waiting);
        }
    }
    for (url, listed) in &locks {
        match listed {
            Listed::Failed(e) => waits
                .problems
                .push(format!("lane locks on {url} not listed: {}", chain(&**e))),
            Listed::Skipped => waits
                .problems
                .push(format!("lane locks on {url} not listed (--offline)")),
            Listed::Locks(_) => {}
        }
    }
    waits
}

/// The lane locks on each origin, listed once per origin, the origins at once.
fn list_locks<'a>(
    berth_dir: &Path,
    urls: impl Iterator<Item = &'a str>,
    reach: &Reach<'_>,
) -> BTreeMap<&'a str, Listed> {
    survey::list_each(
        |timeout| lock_client_within(berth_dir, timeout),
        urls,
        reach,
    )
}

/// The lock client another process uses to read (or force) a berth dir's lane locks: its
/// scratch repo lives in `berth_dir`.
pub fn lock_client(berth_dir: &Path) -> Result<LockClient, LockError> {
    lock_client_within(berth_dir, crate::lane_lock::DEFAULT_REMOTE_TIMEOUT)
}

/// [`lock_client`] whose remote calls are bounded by `timeout`.
pub fn lock_client_within(berth_dir: &Path, timeout: Duration) -> Result<LockClient, LockError> {
    crate::atomic_file::ensure_private_dir(berth_dir).map_err(|source| LockError::Scratch {
        path: berth_dir.to_owned(),
        source,
    })?;
    let settings = LockSettings {
        remote_timeout: timeout,
        ..LockSettings::default()
    };
    LockClient::new(&berth_dir.join("lock-scratch.git"), settings)
}

/// `error: cause: cause`, every source in order.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The live lock on `lock_ref`, if any: an expired one, or one whose holder is gone, is
/// taken over by the next landing, so it holds nothing up.
fn busy(listed: &[LockListing], lock_ref: &str) -> Option<LaneBusy> {
    listed.iter().find_map(|lock| match &lock.state {
        ListedLock::Live(payload) if lock.ref_name == lock_ref => Some(LaneBusy {
            lock_ref: lock.ref_name.clone(),
            holder: payload.owner_id.clone(),
            expires_at: payload.expires_at.clone(),
        }),
        _ => None,
    })
}
