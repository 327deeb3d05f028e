//! Finding a record's landing processes on this host, and ending the ones a dead daemon
//! left behind.
//!
//! Every step runs with `BERTH_LANDING_RECORD=<the record's file>` (its queue dir's realpath
//! and `<id>.json`, see [`record_mark`]: two queue dirs on one host may hold the same id) and
//! `BERTH_LANDING_OWNER=<the daemon's owner stamp>` in its environment, which its children
//! inherit. That mark is what
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

/// The environment variable naming the record (its file, [`record_mark`]) a step lands.
pub const RECORD_ENV: &str = "BERTH_LANDING_RECORD";
/// The environment variable naming the daemon (owner stamp) that started the step.
pub const OWNER_ENV: &str = "BERTH_LANDING_OWNER";

/// A process's environment larger than this is not read (Linux caps argv+env at a few MiB;
/// a step's environment is far smaller).
const MAX_ENVIRON_BYTES: u64 = 1024 * 1024;

/// How long [`end_strays`] waits for killed processes to go.
pub const STRAY_KILL_WAIT: Duration = Duration::from_secs(2);

/// The mark of record `id` in `queue_dir`: the queue dir's realpath (as given when it cannot
/// be resolved) joined with `<id>.json`, so the daemon and the CLI agree however each was
/// told where the queue is.
pub fn record_mark(queue_dir: &Path, id: &str) -> PathBuf {
    std::fs::canonicalize(queue_dir)
        .unwrap_or_else(|_| queue_dir.to_path_buf())
        .join(format!("{id}.json"))
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
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me || !marked(pid, record, owner) {
            continue;
        }
        if let Some(pgid) = running_pgid(pid) {
            found.push(LandingProcess { pid, pgid });
        }
    }
    found
}

/// Kills every process marked as landing `record` (a [`record_mark`]) by `owner` (a daemon
/// known to be gone), with its process group, and waits up to [`STRAY_KILL_WAIT`] for them
/// to go. Returns how many there were; `Err` lists the survivors.
pub fn end_strays(record: &Path, owner: &str) -> Result<usize, String> {
    end_marked(record, owner, "a gone daemon")
}

/// Kills what a step that has ended left running under its mark, as [`end_strays`] does.
/// A process that left the step's group (a `git gc` that git detached with `setsid`, a
/// script's `setsid … &`) is outside what the step's end and its guard kill; kept alive, it
/// would run on under the lane's next landing once this one releases the lock.
pub fn end_step_leftovers(record: &Path, owner: &str) -> Result<usize, String> {
    end_marked(record, owner, "a finished step")
}

fn end_marked(record: &Path, owner: &str, left_by: &str) -> Result<usize, String> {
    let strays = landing_processes(record, Some(owner));
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
    tracing::warn!(
        record = %record.display(),
        owner,
        ?groups,
        "killed {} landing process(es) left by {left_by}",
        strays.len()
    );
    let deadline = Instant::now() + STRAY_KILL_WAIT;
    loop {
        let left = landing_processes(record, Some(owner));
        if left.is_empty() {
            return Ok(strays.len());
        }
        if Instant::now() >= deadline {
            let pids: Vec<String> = left.iter().map(|p| p.pid.to_string()).collect();
            return Err(format!(
                "landing processes left by {left_by} still run after SIGKILL: pid {}",
                pids.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid`'s environment carries the landing mark for `record` (and `owner`).
fn marked(pid: i32, record: &Path, owner: Option<&str>) -> bool {
    use std::io::Read as _;
    let Ok(file) = std::fs::File::open(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let mut environ = Vec::new();
    if file
        .take(MAX_ENVIRON_BYTES)
        .read_to_end(&mut environ)
        .is_err()
    {
        return false;
    }
    let mut record_matches = false;
    let mut owner_matches = owner.is_none();
    for var in environ.split(|&b| b == 0) {
        let Some(eq) = var.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, value) = (&var[..eq], &var[eq + 1..]);
        if name == RECORD_ENV.as_bytes() {
            record_matches = value == record.as_os_str().as_bytes();
        } else if let Some(owner) = owner
            && name == OWNER_ENV.as_bytes()
        {
            owner_matches = value == owner.as_bytes();
        }
    }
    record_matches && owner_matches
}

/// The process group of `pid`, unless it is a zombie (which runs nothing) or gone.
fn running_pgid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    // After the name: state, ppid, pgrp.
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt as _;

    use super::*;

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
        let deadline = Instant::now() + Duration::from_secs(5);
        while landing_processes(&record, None).len() < 2 {
            assert!(
                Instant::now() < deadline,
                "the marked processes never showed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(landing_processes(&record, Some("host:9:9")).is_empty());
        assert!(landing_processes(&record_mark(queue.path(), "another-record"), None).is_empty());
        assert!(
            landing_processes(&record_mark(other_queue.path(), "strays-test"), None).is_empty(),
            "the same id in another queue dir is another record"
        );
        assert_eq!(end_strays(&record, "host:1:2"), Ok(2));
        child.wait().unwrap();
        assert!(landing_processes(&record, None).is_empty());
    }
}
