use super::*;
use crate::record::Record;

/// [`super::stranded_reason`] with no verdict listed beside any instance lock.
fn stranded_reason(stored: &StoredRecord, ttl: Duration, now: DateTime<Utc>) -> Option<String> {
    super::stranded_reason(stored, ttl, now, &|_, _| false)
}

fn in_flight(claimed_by: Option<String>, updated: Option<&str>) -> StoredRecord {
    let mut record = Record::from_json(serde_json::json!({
        "runId": "r", "repoPath": "/r", "baseBranch": "main", "featureBranch": "f",
        "prNumber": 1, "version": "1", "livingPlanPath": "/p", "worktreePath": "/r",
        "queuedAt": "2026-05-17T00:00:00Z", "status": "landing"
    }))
    .unwrap();
    record.claimed_by = claimed_by;
    record.last_updated_at = updated.map(str::to_owned);
    StoredRecord {
        id: "r".into(),
        path: "/q/r.json".into(),
        record,
        changed_at: None,
    }
}

/// A stamp of this machine for `pid` with its real start, naming `lock` if given.
fn stamp_of(pid: u32, lock: Option<&std::path::Path>) -> String {
    let start = crate::process_probe::start_ticks(pid).unwrap();
    let stamp = format!("{}:{pid}:{start}", machine());
    match lock {
        Some(lock) => format!("{stamp}:{}", lock.display()),
        None => stamp,
    }
}

/// [`stamp_of`] as this berth writes it: naming the file at `lock` and this user too.
fn stamp_of_file(pid: u32, lock: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt as _;
    let start = crate::process_probe::start_ticks(pid).unwrap();
    let meta = std::fs::metadata(lock).unwrap();
    let euid = nix::unistd::geteuid();
    format!(
        "{}:{pid}:{start}:{}.{}.{euid}:{}",
        machine(),
        meta.dev(),
        meta.ino(),
        lock.display()
    )
}

fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn a_running_owner_holds_a_fresh_record_and_a_dead_one_strands_it() {
    let now = crate::clock::now();
    let fresh = crate::clock::now_iso();
    let ttl = Duration::from_secs(3600);
    let me = stamp_of(std::process::id(), None);
    assert_eq!(
        stranded_reason(&in_flight(Some(me), Some(&fresh)), ttl, now),
        None
    );
    let dead = format!("{}:{}:1", machine(), dead_pid());
    let reason = stranded_reason(&in_flight(Some(dead), Some(&fresh)), ttl, now).unwrap();
    assert!(reason.contains("no longer running"), "{reason}");
}

/// The instance lock named in the stamp decides: held by the stamp's pid is alive; free
/// (the file the owner locked) is gone; held by another daemon (its file names another
/// pid) is gone, so a stamp naming a process that merely runs (pid 1) with a live daemon's
/// lock owns nothing.
#[test]
fn the_named_instance_lock_proves_an_owner_alive_or_gone() {
    let dir = tempfile::tempdir().unwrap();
    let lock = crate::instance::InstanceLock::acquire(dir.path(), "watch").unwrap();
    let path = std::fs::canonicalize(crate::instance::lock_path(dir.path())).unwrap();
    let mine = stamp_of_file(std::process::id(), &path);
    assert_eq!(owner_state(&mine), Owner::Alive);
    assert_eq!(
        owner_state(&stamp_of(std::process::id(), Some(&path))),
        Owner::Alive
    );
    let planted = stamp_of(1, Some(&path));
    let why = gone_owner(&planted).expect("pid 1 does not hold this lock");
    assert!(why.contains("held by another daemon"), "{why}");
    drop(lock);
    crate::instance::wait_until_free(dir.path());
    let why = gone_owner(&mine).expect("a free lock has no owner");
    assert!(why.contains("instance lock is free"), "{why}");
    // Only a file named as berth names its lock is ever opened.
    let other = dir.path().join("other.lock");
    std::fs::write(&other, "").unwrap();
    assert!(matches!(
        owner_state(&stamp_of(1, Some(&other))),
        Owner::Unknown(_)
    ));
}

/// A daemon that died mid-step is not gone while the guards of its steps still hold its
/// instance lock (they let go once the steps' process groups are dead): unknown, however
/// dead its pid; gone once the lock is free.
#[test]
fn a_dead_daemon_whose_lock_is_still_held_is_unknown_until_it_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let path = crate::instance::lock_path(dir.path());
    let pid = dead_pid();
    let holder = serde_json::json!({"pid": pid, "since": "2026-12-04T00:00:00Z", "mode": "watch", "startTicks": 7});
    std::fs::write(&path, holder.to_string()).unwrap();
    let guard_holds = std::fs::File::open(&path).unwrap();
    guard_holds.lock().unwrap();
    let path = std::fs::canonicalize(&path).unwrap();
    let stamp = format!("{}:{pid}:7:{}", machine(), path.display());
    match owner_state(&stamp) {
        Owner::Unknown(why) => assert!(why.contains("still being stopped"), "{why}"),
        other => panic!("a held lock's dead daemon was judged {other:?}"),
    }
    drop(guard_holds);
    let why = gone_owner(&stamp).expect("a free lock has no owner");
    assert!(why.contains("instance lock is free"), "{why}");
}

/// A record its owner has not written for the TTL is stranded, however alive the owner.
#[test]
fn a_running_owner_does_not_hold_an_untouched_record() {
    let now = crate::clock::parse_iso("2026-05-17T05:00:00Z").unwrap();
    let record = in_flight(
        Some(stamp_of(std::process::id(), None)),
        Some("2026-05-17T00:00:00Z"),
    );
    let reason = stranded_reason(&record, Duration::from_secs(60), now).unwrap();
    assert!(
        reason.contains("untouched since 2026-05-17T00:00:00"),
        "{reason}"
    );
}

/// `lastUpdatedAt` is data a planter writes; the file's ctime is not: a record dated a few
/// minutes ahead (within the skew) ages from when its file was written.
#[test]
fn the_file_change_time_caps_a_claimed_update_time() {
    let now = crate::clock::parse_iso("2026-05-17T05:00:00Z").unwrap();
    let mut record = in_flight(Some(stamp_of(1, None)), Some("2026-05-17T05:04:00Z"));
    let ttl = Duration::from_secs(60);
    assert_eq!(stranded_reason(&record, ttl, now), None);
    record.changed_at = crate::clock::parse_iso("2026-05-17T04:00:00Z");
    let reason = stranded_reason(&record, ttl, now).unwrap();
    assert!(
        reason.contains("untouched since 2026-05-17T04:00:00"),
        "{reason}"
    );
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
    let pid = dead_pid();
    // What a live berth with pid `pid` on a same-named machine writes.
    let stamp = format!("{}:{pid}:4242", stamp::host_name());
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
    assert_eq!(gone_owner(&stamp_of(std::process::id(), None)), None);
}

/// A live daemon whose `daemon.lock` was unlinked (a tmp cleaner, an operator's `rm` of
/// the berth dir's files) keeps its `flock` on the unlinked file. The next
/// `berth run --once` on that berth dir makes a new `daemon.lock`, takes it (no conflict:
/// another inode) and exits; the path then names a free lock that is not the owner's, so
/// the owner, pid and start time still running, is not judged gone, neither by a stamp
/// naming the file it locked nor by an older stamp naming none.
#[test]
fn a_live_daemon_whose_lock_file_was_replaced_is_not_gone() {
    let dir = tempfile::tempdir().unwrap();
    let live = crate::instance::InstanceLock::acquire(dir.path(), "watch").unwrap();
    let path = std::fs::canonicalize(crate::instance::lock_path(dir.path())).unwrap();
    let mine = stamp_of(std::process::id(), Some(&path));
    let with_file = stamp_of_file(std::process::id(), &path);
    assert_eq!(owner_state(&mine), Owner::Alive);
    std::fs::remove_file(&path).unwrap();
    // `berth run --once` on the same berth dir: it starts (the live daemon's lock is on
    // the unlinked file), and ends.
    let once = crate::instance::InstanceLock::acquire(dir.path(), "once")
        .expect("a second daemon started on the berth dir while the first runs");
    drop(once);
    // A child another test forks at that moment holds a copy of `once`'s descriptor, and
    // so its lock, until the child's exec closes it: judged then, the file reads as held
    // by this process. The lock is free once that copy is gone (at most a few ms).
    let free = || {
        matches!(
            crate::instance::probe_file(&path),
            Ok((crate::instance::Probe::Free, _))
        )
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !free() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let state = owner_state(&mine);
    let with_file_state = owner_state(&with_file);
    // Held by a later daemon (pid 1 by its file), the replaced file does not prove the
    // owner gone either.
    let holder = serde_json::json!({"pid": 1, "since": "2026-12-04T00:00:00Z", "mode": "watch"});
    std::fs::write(&path, holder.to_string()).unwrap();
    let later = std::fs::File::open(&path).unwrap();
    later.lock().unwrap();
    let held_state = owner_state(&with_file);
    drop(later);
    drop(live);
    for judged in [&with_file_state, &held_state] {
        assert!(
            matches!(judged, Owner::Unknown(_)),
            "a live daemon whose lock file was replaced judged {judged:?}"
        );
    }
    assert!(
        !matches!(state, Owner::Gone(_)),
        "a live daemon (this process, its pid and start unchanged, its flock held) judged {state:?}"
    );
}
