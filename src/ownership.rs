//! Who holds an in-flight record, and whether that holder is still alive.
//!
//! A daemon stamps `claimedBy = <machine>:<pid>:<start>` when it claims a record. `<start>` is
//! the process start time from `/proc`, so a recycled pid is not mistaken for the owner.
//! `<machine>` is the hostname plus this boot's id and the pid namespace ([`machine`]):
//! machines that share a hostname (cloned VMs, containers given one `--hostname`, pods on
//! the host network) never judge each other's live processes gone.
//! A record whose owner cannot be checked (another host, a gstack daemon) is judged by age
//! alone: untouched for longer than the lock TTL means nobody is working on it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::record::Record;

/// This process's owner stamp.
pub fn this_process() -> String {
    owner_stamp(std::process::id())
}

fn owner_stamp(pid: u32) -> String {
    let start = process_start_ticks(pid).unwrap_or(0);
    format!("{}:{pid}:{start}", machine())
}

/// This machine as an owner stamp names it: `<hostname>~<boot id, 8 hex>~<pid namespace>`.
/// Only a stamp with exactly this prefix is checked against `/proc`; any other (another
/// machine, an older boot, another pid namespace, gstack's owner ids) is judged by age.
pub fn machine() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| {
            id.trim()
                .replace('-', "")
                .chars()
                .take(8)
                .collect::<String>()
        })
        .unwrap_or_default();
    let pid_ns = std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|link| {
            let link = link.to_string_lossy().into_owned();
            let inode = link.strip_prefix("pid:[")?.strip_suffix(']')?.to_owned();
            Some(inode)
        })
        .unwrap_or_default();
    format!("{}~{boot}~{pid_ns}", host_name())
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Field 22 of `/proc/<pid>/stat`: the process start time in clock ticks since boot.
fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past its end.
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(19)?.parse().ok()
}

/// How far ahead of this host's clock a timestamp may be before it counts as invalid:
/// clocks of machines sharing a queue or a remote drift a little, never by minutes.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// Why an in-flight record is stranded (no live process owns it), or `None` if it is
/// owned or not in flight.
pub fn stranded_reason(record: &Record, ttl: Duration, now: DateTime<Utc>) -> Option<String> {
    if !record.status.is_in_flight() {
        return None;
    }
    match record.claimed_by.as_deref().map(owner_state) {
        // A live owner on this host is working on it, however long its landing takes.
        Some(Owner::Alive) => return None,
        Some(Owner::Gone(reason)) => return Some(reason),
        Some(Owner::Unknown) | None => {}
    }
    let touched = record
        .last_updated_at
        .as_deref()
        .and_then(crate::clock::parse_iso);
    let skew = chrono::Duration::from_std(MAX_CLOCK_SKEW).unwrap_or_default();
    match touched {
        // A time in the future would hold the lane for as long as it is ahead: invalid.
        Some(at) if at > now + skew => Some(format!(
            "{} with lastUpdatedAt {} in the future (more than {} min ahead of this host's clock), so its owner cannot be judged",
            record.status,
            crate::clock::iso(at),
            MAX_CLOCK_SKEW.as_secs() / 60
        )),
        Some(at) if (now - at).to_std().unwrap_or_default() <= ttl => None,
        Some(at) => Some(format!(
            "{} untouched since {} (longer than the lock TTL of {}s)",
            record.status,
            crate::clock::iso(at),
            ttl.as_secs()
        )),
        None => Some(format!("{} with no readable lastUpdatedAt", record.status)),
    }
}

/// Why the holder named by `stamp` is known to be gone: a berth owner stamp of this host
/// whose process (pid and start time) no longer runs. `None` when it runs, or when it
/// cannot be told (another host, gstack's own owner ids).
pub fn gone_owner(stamp: &str) -> Option<String> {
    match owner_state(stamp) {
        Owner::Gone(reason) => Some(reason),
        Owner::Alive | Owner::Unknown => None,
    }
}

enum Owner {
    Alive,
    Gone(String),
    /// Another host's process, or a stamp berth did not write: only age can tell.
    Unknown,
}

fn owner_state(stamp: &str) -> Owner {
    let mut parts = stamp.rsplitn(3, ':');
    let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return Owner::Unknown;
    };
    let (Ok(start), Ok(pid)) = (start.parse::<u64>(), pid.parse::<u32>()) else {
        return Owner::Unknown;
    };
    if host != machine() {
        return Owner::Unknown;
    }
    match process_start_ticks(pid) {
        Some(now_start) if now_start == start || start == 0 => Owner::Alive,
        Some(_) => Owner::Gone(format!(
            "owner {stamp} is gone (its pid now belongs to another process)"
        )),
        None => Owner::Gone(format!("owner {stamp} is no longer running")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(claimed_by: Option<String>, updated: Option<&str>) -> Record {
        let mut record = Record::from_json(serde_json::json!({
            "runId": "r", "repoPath": "/r", "baseBranch": "main", "featureBranch": "f",
            "prNumber": 1, "version": "1", "livingPlanPath": "/p", "worktreePath": "/r",
            "queuedAt": "2026-05-17T00:00:00Z", "status": "landing"
        }))
        .unwrap();
        record.claimed_by = claimed_by;
        record.last_updated_at = updated.map(str::to_owned);
        record
    }

    #[test]
    fn live_owner_holds_and_dead_owner_strands() {
        let now = crate::clock::now();
        let fresh = crate::clock::now_iso();
        let ttl = Duration::from_secs(3600);
        assert_eq!(
            stranded_reason(&in_flight(Some(this_process()), Some(&fresh)), ttl, now),
            None
        );

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = owner_stamp(child.id());
        child.wait().unwrap();
        let reason = stranded_reason(&in_flight(Some(dead), Some(&fresh)), ttl, now).unwrap();
        assert!(reason.contains("no longer running"), "{reason}");
    }

    #[test]
    fn a_live_owner_is_never_stranded_by_age() {
        let now = crate::clock::parse_iso("2026-05-17T05:00:00Z").unwrap();
        let record = in_flight(Some(this_process()), Some("2026-05-17T00:00:00Z"));
        assert_eq!(stranded_reason(&record, Duration::from_secs(60), now), None);
    }

    #[test]
    fn unknown_owner_is_judged_by_age() {
        let now = crate::clock::parse_iso("2026-05-17T05:00:00Z").unwrap();
        let ttl = Duration::from_secs(2 * 3600);
        let foreign = Some("other-host:1:1".to_owned());
        assert_eq!(
            stranded_reason(
                &in_flight(foreign.clone(), Some("2026-05-17T04:00:00Z")),
                ttl,
                now
            ),
            None
        );
        let reason =
            stranded_reason(&in_flight(foreign, Some("2026-05-17T01:00:00Z")), ttl, now).unwrap();
        assert!(reason.contains("longer than the lock TTL"), "{reason}");
        assert!(stranded_reason(&in_flight(None, None), ttl, now).is_some());
    }

    /// The lane lock lives on a shared remote, and two machines can share a
    /// hostname (`ubuntu`, `localhost`, cloned VMs, containers given one `--hostname`).
    /// A live berth on such a machine stamps `<host>:<pid>:<start>`; on this machine that
    /// pid is not running (or is another process), so this berth judges the holder
    /// "gone" and takes over the live lock (`lane_lock::holder_gone`) and reclaims its
    /// records. The hostname alone does not prove the stamp was written on this machine
    /// (this boot): such a stamp must stay "unknown" (judged by age only).
    #[test]
    fn a_holder_on_another_machine_with_this_hostname_is_not_judged_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        // What a live berth with pid `pid` on a same-named machine writes.
        let stamp = format!("{}:{pid}:4242", host_name());
        assert_eq!(
            gone_owner(&stamp),
            None,
            "a stamp of another machine sharing this hostname was judged gone"
        );
    }

    #[test]
    fn a_timestamp_beyond_the_clock_skew_is_invalid() {
        let now = crate::clock::parse_iso("2026-05-17T05:00:00Z").unwrap();
        let ttl = Duration::from_secs(2 * 3600);
        let foreign = Some("other-host:1:1".to_owned());
        let within = in_flight(foreign.clone(), Some("2026-05-17T05:04:00Z"));
        assert_eq!(stranded_reason(&within, ttl, now), None);
        let planted = in_flight(foreign, Some("2999-01-01T00:00:00Z"));
        let reason = stranded_reason(&planted, ttl, now).unwrap();
        assert!(reason.contains("in the future"), "{reason}");
        assert_eq!(gone_owner("other-host:1:1"), None);
        assert_eq!(gone_owner(&this_process()), None);
    }
}
