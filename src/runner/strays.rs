//! Finding a record's landing processes on this host, and ending the ones a dead daemon
//! left behind.
//!
//! Every step runs with `BERTH_LANDING_RECORD=<the record's file>` (its queue dir's realpath
//! and `<id>.json`, see [`record_mark`]: two queue dirs on one host may hold the same id),
//! `BERTH_LANDING_OWNER=<the daemon's owner stamp>` and `BERTH_LANDING_STEP=<n>` in its
//! environment, which its children inherit. That mark is what
//! a later process goes by: the daemon's reclaim step (kill what a dead owner left running,
//! then requeue), and `retry`/`abandon` (refuse while a landing of the record still runs).
//! A step's guard normally kills the group within the grace after its daemon dies; the mark
//! covers what the guard could not (the guard killed too, a process that left the group).
//!
//! Only processes that carry the mark are ever signalled, with their process groups; a
//! process can only be marked by whoever started it, so nothing unrelated is touched.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::proc_scan;

/// The environment variable naming the record (its file, [`record_mark`]) a step lands.
pub const RECORD_ENV: &str = "BERTH_LANDING_RECORD";
/// The environment variable naming the daemon (owner stamp) that started the step.
pub const OWNER_ENV: &str = "BERTH_LANDING_OWNER";
/// The environment variable numbering the step among those its daemon started: what the
/// step's guard kills by ([`super::marked`]) is that step's alone, never the next step of
/// the same record, which may start while the guard still looks.
pub const STEP_ENV: &str = "BERTH_LANDING_STEP";

/// A number no other step of this process carries in [`STEP_ENV`].
pub fn next_step_number() -> String {
    static STEPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    STEPS
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_string()
}

/// Landing processes this process killed by their mark after their step or owner was gone
/// (`berth_landing_leftovers_killed_total`; a guard's own kills are another process's).
pub static LEFTOVERS_KILLED: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// How long [`end_strays`] waits for killed processes to go.
pub const STRAY_KILL_WAIT: Duration = Duration::from_secs(2);

/// The mark of record `id` in `queue_dir`: the queue dir's realpath (as given when it cannot
/// be resolved) joined with `<id>.json`, so the daemon and the CLI agree however each was
/// told where the queue is.
pub fn record_mark(queue_dir: &Path, id: &str) -> PathBuf {
    std::fs::canonicalize(queue_dir)
        .unwrap_or_else(|_| queue_dir.to_path_buf())
        .join(crate::store::file_name_of(id))
}

/// A running process marked as a landing of some record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LandingProcess {
    pub pid: i32,
    pub pgid: i32,
}

/// Running (not zombie) processes on this host marked as landing `record` (a
/// [`record_mark`]), by `owner` when given. Processes berth cannot read (another user's, as
/// non-root) are not seen.
pub fn landing_processes(record: &Path, owner: Option<&str>) -> Vec<LandingProcess> {
    scan(Some(record), owner, None).marked
}

/// What a look through `/proc` found.
#[derive(Debug, Default)]
struct Scan {
    /// Running processes that carry the mark.
    marked: Vec<LandingProcess>,
    /// Processes whose environment could not be read: the mark cannot be told.
    unreadable: Vec<i32>,
}

/// The processes of this host's `/proc` marked with `record` (any, when `None`) and
/// `owner` (any, when `None`), run as `user` (any, when `None`); this process is never
/// among them.
fn scan(record: Option<&Path>, owner: Option<&str>, user: Option<u32>) -> Scan {
    let mut found = Scan::default();
    for pid in proc_scan::pids() {
        if user.is_some_and(|user| proc_scan::uid(pid) != Some(user)) {
            continue;
        }
        match marked(pid, record, owner) {
            Environ::Marked => {
                if let Some(pgid) = proc_scan::running_pgid(pid) {
                    found.marked.push(LandingProcess { pid, pgid });
                }
            }
            Environ::Unmarked => {}
            Environ::Unreadable => found.unreadable.push(pid),
        }
    }
    found
}

/// Why berth cannot vouch that a gone owner's processes are all gone.
#[derive(Debug, thiserror::Error)]
pub enum StraysError {
    #[error("{0} is not a berth owner stamp")]
    NotAStamp(String),
    #[error("/proc is not this pid namespace's, or hides this process")]
    OtherNamespace,
    /// The uid the owner's steps ran as, when known.
    #[error(
        "its steps ran as {}, whose processes this user may not see",
        .0.map_or("an unknown user".to_owned(), |uid| format!("uid {uid}"))
    )]
    OtherUser(Option<u32>),
    #[error(
        "pid {} may be its step's (its user's, started after it) but cannot be read",
        pid_list(.0)
    )]
    Hidden(Vec<i32>),
    /// `left_by` says who left them (`a gone daemon`, `a finished step`).
    #[error(
        "landing processes left by {left_by} still run after SIGKILL: pid {}",
        pid_list(.pids)
    )]
    Survivors {
        left_by: &'static str,
        pids: Vec<i32>,
    },
}

fn pid_list(pids: &[i32]) -> String {
    let pids: Vec<String> = pids.iter().map(i32::to_string).collect();
    pids.join(", ")
}

/// Kills every process marked as landing `record` (a [`record_mark`]) by `owner` (a daemon
/// known to be gone), with its process group, and waits up to [`STRAY_KILL_WAIT`] for them
/// to go. Returns how many there were; `Err` lists the survivors.
pub fn end_strays(record: &Path, owner: &str) -> Result<usize, StraysError> {
    end_marked(Some(record), owner, owners_user(owner), "a gone daemon")
}

/// Kills what a step that has ended left running under its mark, as [`end_strays`] does.
/// A process that left the step's group (a `git gc` that git detached with `setsid`, a
/// script's `setsid … &`) is outside what the step's end and its guard kill; kept alive, it
/// would run on under the lane's next landing once this one releases the lock.
///
/// `owner` is this daemon, so its steps ran as this process's user, whoever owns the
/// instance lock's file.
pub fn end_step_leftovers(record: &Path, owner: &str) -> Result<usize, StraysError> {
    let user = nix::unistd::geteuid().as_raw();
    end_marked(Some(record), owner, user, "a finished step")
}

/// Before a gone daemon's lane lock is taken over: kills every process on this host marked
/// as started by `owner` (that daemon, proven gone), whatever record it lands. Its steps'
/// guards normally did so; this covers a guard that was killed too, and what a guard could
/// not wait for.
///
/// `Err` when berth cannot vouch that none is left, and then the lock must wait for its
/// TTL: `/proc` is not this pid namespace's; the owner ran as another user (its instance
/// lock's owner) and this process is not root, so `/proc` may hide its processes; or a
/// process of the owner's user that started after the owner has an environment this
/// process may not read. That last one is fail-closed on purpose: the user's non-dumpable
/// processes (`sudo`, `ssh-agent`) are what a step starts, inheriting its mark, and a dead
/// step's child, adopted by init or a subreaper, cannot be told by its parent. A process
/// that changed its real user too is not seen.
pub fn end_gone_owners_processes(owner: &str) -> Result<usize, StraysError> {
    let stamp = crate::ownership::Stamp::parse(owner)
        .ok_or_else(|| StraysError::NotAStamp(owner.to_owned()))?;
    if !crate::process_probe::proc_is_this_namespace() {
        return Err(StraysError::OtherNamespace);
    }
    let owner_uid = stamped_user(&stamp);
    let euid = nix::unistd::geteuid();
    if !euid.is_root() && owner_uid != Some(euid.as_raw()) {
        return Err(StraysError::OtherUser(owner_uid));
    }
    let hidden: Vec<i32> = scan(None, Some(owner), None)
        .unreadable
        .into_iter()
        .filter(|&pid| may_be_owners(pid, owner_uid, stamp.start))
        .collect();
    if !hidden.is_empty() {
        return Err(StraysError::Hidden(hidden));
    }
    end_marked(
        None,
        owner,
        owner_uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw()),
        "a gone daemon",
    )
}

/// Whether `pid` (whose environment cannot be read) may be a step of an owner that ran as
/// `owner_uid` (any user, when unknown) and started at `owner_start`: it runs as that user
/// and started no earlier. A process that cannot be told counts.
fn may_be_owners(pid: i32, owner_uid: Option<u32>, owner_start: u64) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Path::new(&format!("/proc/{pid}")).exists();
    };
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|uid| uid.parse::<u32>().ok());
    let started = crate::process_probe::start_ticks(pid as u32).ok();
    let users_match = match (owner_uid, uid) {
        (Some(owner), Some(uid)) => owner == uid,
        _ => true,
    };
    users_match && started.is_none_or(|started| started >= owner_start)
}

/// The user whose marked processes may be killed for `owner`: the one its steps ran as
/// ([`stamped_user`]), else this process's. Anyone can put a mark in an environment, so a
/// daemon run as root never kills another user's process by one.
fn owners_user(owner: &str) -> u32 {
    crate::ownership::Stamp::parse(owner)
        .as_ref()
        .and_then(stamped_user)
        .unwrap_or_else(|| nix::unistd::geteuid().as_raw())
}

/// The user a stamp's daemon (and so its steps) ran as: the one the stamp names, or, in an
/// older berth's stamp, the owner of its instance lock's file (a root daemon may keep a
/// file another user made, so that is a guess the newer stamp does not need).
fn stamped_user(stamp: &crate::ownership::Stamp<'_>) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    if let Some(id) = stamp.lock_id {
        return Some(id.euid);
    }
    stamp
        .daemon_lock
        .and_then(|lock| std::fs::symlink_metadata(lock).ok())
        .map(|lock| lock.uid())
}

fn end_marked(
    record: Option<&Path>,
    owner: &str,
    user: u32,
    left_by: &'static str,
) -> Result<usize, StraysError> {
    let user = Some(user);
    let strays = scan(record, Some(owner), user).marked;
    if strays.is_empty() {
        return Ok(0);
    }
    let own_group = nix::unistd::getpgrp().as_raw();
    let groups: BTreeSet<i32> = strays
        .iter()
        .map(|p| p.pgid)
        .filter(|&g| g > 1 && g != own_group)
        .collect();
    for group in &groups {
        let _ = killpg(Pid::from_raw(*group), Signal::SIGKILL);
    }
    for stray in &strays {
        let _ = kill(Pid::from_raw(stray.pid), Signal::SIGKILL);
    }
    LEFTOVERS_KILLED.inc_by(strays.len() as u64);
    tracing::warn!(
        record = record.map(|r| r.display().to_string()),
        owner,
        ?groups,
        "killed {} landing process(es) left by {left_by}",
        strays.len()
    );
    let deadline = Instant::now() + STRAY_KILL_WAIT;
    loop {
        let left = scan(record, Some(owner), user).marked;
        if left.is_empty() {
            return Ok(strays.len());
        }
        if Instant::now() >= deadline {
            return Err(StraysError::Survivors {
                left_by,
                pids: left.iter().map(|p| p.pid).collect(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a process's environment says of a mark.
enum Environ {
    Marked,
    Unmarked,
    /// It exists but may not be read (another user's, a non-dumpable process).
    Unreadable,
}

/// Whether `pid`'s environment carries the landing mark for `record` and `owner` (either
/// one any, when `None`).
fn marked(pid: i32, record: Option<&Path>, owner: Option<&str>) -> Environ {
    let environ = match proc_scan::environ(pid) {
        proc_scan::Environ::Read(environ) => environ,
        proc_scan::Environ::Unreadable => return Environ::Unreadable,
        proc_scan::Environ::Gone => return Environ::Unmarked,
    };
    let mut record_matches = false;
    let mut owner_matches = false;
    for (name, value) in proc_scan::vars(&environ) {
        if name == RECORD_ENV.as_bytes() {
            record_matches = record.is_none_or(|record| value == record.as_os_str().as_bytes());
        } else if name == OWNER_ENV.as_bytes() {
            owner_matches = owner.is_none_or(|owner| value == owner.as_bytes());
        }
    }
    if record_matches && owner_matches {
        Environ::Marked
    } else {
        Environ::Unmarked
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt as _;

    use super::*;

    /// A `sleep` carrying the landing marks, in its own group, as `uid` when given.
    fn spawn_marked(record: &Path, owner: &str, uid: Option<u32>) -> std::process::Child {
        let mut command = std::process::Command::new("sleep");
        command
            .arg("300")
            .env(RECORD_ENV, record)
            .env(OWNER_ENV, owner)
            .process_group(0);
        if let Some(uid) = uid {
            command.uid(uid);
        }
        command.spawn().unwrap()
    }

    /// Waits (bounded) until at least `count` processes carry the record's mark.
    fn wait_for_marked(record: &Path, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while landing_processes(record, None).len() < count {
            assert!(
                Instant::now() < deadline,
                "the marked processes never showed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the child ends by SIGKILL within 10 s (reaped either way). Not a look at once:
    /// a killed process leaves the scan (its environment is gone) a moment before it becomes
    /// a zombie its parent can reap, a moment that load stretches.
    fn ended_by_sigkill(mut child: std::process::Child) -> bool {
        use std::os::unix::process::ExitStatusExt as _;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return status.signal() == Some(Signal::SIGKILL as i32);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Whether the child still ran; it is ended and reaped either way.
    fn still_ran_then_ended(mut child: std::process::Child) -> bool {
        let ran = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        ran
    }

    /// A `daemon.lock` made by another user (nobody) than the root daemon that uses it.
    fn lock_made_by_nobody(queue: &Path) -> PathBuf {
        let lock = queue.join("daemon.lock");
        std::fs::write(&lock, "").unwrap();
        std::os::unix::fs::chown(&lock, Some(65534), Some(65534)).unwrap();
        lock
    }

    #[test]
    fn marked_processes_are_found_by_record_and_owner_and_killed_with_their_group() {
        let queue = tempfile::tempdir().unwrap();
        let record = record_mark(queue.path(), "strays-test");
        let other_queue = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 300 & wait"])
            .env(RECORD_ENV, &record)
            .env(OWNER_ENV, "host:1:2")
            .process_group(0)
            .spawn()
            .unwrap();
        wait_for_marked(&record, 2);
        assert!(landing_processes(&record, Some("host:9:9")).is_empty());
        assert!(landing_processes(&record_mark(queue.path(), "another-record"), None).is_empty());
        assert!(
            landing_processes(&record_mark(other_queue.path(), "strays-test"), None).is_empty(),
            "the same id in another queue dir is another record"
        );
        assert_eq!(end_strays(&record, "host:1:2").unwrap(), 2);
        child.wait().unwrap();
        assert!(landing_processes(&record, None).is_empty());
    }

    /// Anyone can put a mark in an environment: a daemon run as root ending a gone owner's
    /// landing kills the marked processes of that owner's user only.
    #[test]
    fn only_the_owners_users_marked_processes_are_killed() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let queue = tempfile::tempdir().unwrap();
        let record = record_mark(queue.path(), "strays-user-test");
        let others = spawn_marked(&record, "host:3:4", Some(65534));
        let own = spawn_marked(&record, "host:3:4", Some(0));
        wait_for_marked(&record, 2);
        let killed = end_strays(&record, "host:3:4");
        assert!(
            still_ran_then_ended(others),
            "another user's marked process was killed"
        );
        assert!(
            ended_by_sigkill(own),
            "the own marked process was not killed"
        );
        assert_eq!(killed.unwrap(), 1);
    }

    /// A daemon run as root on a berth dir whose `daemon.lock` another user made (that user
    /// ran berth on the dir first; a root daemon opens and keeps the file, owner and all)
    /// takes that user for the one its steps ran as: a finished step's marked leftover,
    /// running as root like the step, is never killed, and likewise a gone root daemon's
    /// step leftovers are left running when its lane lock is taken over.
    #[test]
    fn a_root_daemons_own_marked_leftover_is_killed_whoever_made_its_lock_file() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let queue = tempfile::tempdir().unwrap();
        let lock = lock_made_by_nobody(queue.path());
        let owner = format!("host~x:{}:7:{}", std::process::id(), lock.display());
        let record = record_mark(queue.path(), "strays-review7");
        let leftover = spawn_marked(&record, &owner, None);
        wait_for_marked(&record, 1);
        let ended = end_step_leftovers(&record, &owner);
        assert!(
            ended_by_sigkill(leftover),
            "a root daemon's own step leftover (root, marked with its record and owner) still runs after end_step_leftovers: {ended:?}"
        );
    }

    /// A gone root daemon's stamp names the user it ran as: its marked leftovers (root's)
    /// are killed before its lane lock is taken over, whoever made its lock file; another
    /// user's process carrying the same mark is not.
    #[test]
    fn a_gone_root_daemons_leftover_is_killed_whoever_made_its_lock_file() {
        use std::os::unix::fs::MetadataExt as _;
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let queue = tempfile::tempdir().unwrap();
        let lock = lock_made_by_nobody(queue.path());
        let meta = std::fs::metadata(&lock).unwrap();
        let owner = format!(
            "host~x:1:7:{}.{}.0:{}",
            meta.dev(),
            meta.ino(),
            lock.display()
        );
        let record = record_mark(queue.path(), "strays-gone-root");
        let others = spawn_marked(&record, &owner, Some(65534));
        let own = spawn_marked(&record, &owner, Some(0));
        wait_for_marked(&record, 2);
        let killed = end_strays(&record, &owner);
        assert!(
            ended_by_sigkill(own),
            "the gone root daemon's leftover still runs: {killed:?}"
        );
        assert!(
            still_ran_then_ended(others),
            "another user's marked process was killed"
        );
    }
}
