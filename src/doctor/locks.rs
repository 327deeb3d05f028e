//! The lane locks on each gated origin, the origins asked at once (or not at all,
//! `--offline`): holder, expiry, and whether the holder still runs.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Check, Verdict};
use crate::lane_lock::survey::{self, Listed, Reach};
use crate::lane_lock::{ListedLock, LockListing};

/// One check per lock (or per origin without one); `origins` maps url → identity.
pub fn lane_locks(
    berth_dir: &Path,
    origins: &BTreeMap<String, String>,
    reach: &Reach<'_>,
) -> Vec<Check> {
    let listed = survey::list_each(
        |timeout| crate::queue_report::lock_client_within(berth_dir, timeout),
        origins.keys().map(String::as_str),
        reach,
    );
    let mut checks = Vec::new();
    for (url, identity) in origins {
        let name = format!("lane locks of {identity}");
        match listed.get(url.as_str()) {
            Some(Listed::Locks(locks)) if locks.is_empty() => {
                checks.push(Check::new(name, Verdict::Ok, "none held"))
            }
            Some(Listed::Locks(locks)) => checks.extend(locks.iter().map(|lock| {
                let (verdict, detail) = judged(lock);
                Check::new(format!("{name}: {}", lock.ref_name), verdict, detail)
            })),
            Some(Listed::Failed(e)) => checks.push(Check::new(name, Verdict::Fail, e.to_string())),
            Some(Listed::Skipped) | None => checks.push(Check::new(
                name,
                Verdict::Warn,
                format!("not checked (--offline): {url}"),
            )),
        }
    }
    checks
}

fn judged(lock: &LockListing) -> (Verdict, String) {
    match &lock.state {
        ListedLock::Live(p) => (
            Verdict::Ok,
            format!("held by {} until {}", p.owner_id, p.expires_at),
        ),
        ListedLock::HolderGone { payload, reason } => (
            Verdict::Warn,
            format!(
                "held by {} until {} but the holder is gone ({reason}); the next landing takes it over",
                payload.owner_id, payload.expires_at
            ),
        ),
        ListedLock::Expired(p) => (
            Verdict::Warn,
            format!(
                "EXPIRED since {} (holder {}); the next landing takes it over",
                p.expires_at, p.owner_id
            ),
        ),
        ListedLock::Unreadable { reason } => (
            Verdict::Fail,
            format!(
                "UNREADABLE ({reason}); see `berth lock release {} --repo-path …`",
                lock.ref_name
            ),
        ),
    }
}
