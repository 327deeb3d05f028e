//! Running one step's command: its own process group, output to the attempt log, a
//! timeout, cancellation, and no process left behind.
//!
//! `kill_on_drop` only kills the direct child; an agent CLI's `git`, `gh` or test
//! processes would live on (crate-notes). So the child leads a new process group and berth
//! signals the whole group: SIGTERM, SIGKILL after a grace period, then reaps.
//!
//! The leader is reaped only after the final signal to the group. Until it is reaped its
//! pid cannot be reused, so `killpg` can never hit an unrelated group that happens to get
//! the same number. That is why exit is detected with `waitid(WNOWAIT)` (which leaves the
//! zombie in place) rather than with `Child::wait` (which reaps it).

use std::ffi::OsString;
use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::capped_log::CappedLog;
use super::group::ProcessGroup;
use super::guard::{Guard, LeaseEnd};
use super::lease::{Ended, Lease};
use super::log;
use super::marked::Mark;
use crate::pinned_dir::PinnedDir;

/// How often the leader is checked when no SIGCHLD arrives (a missed or coalesced signal
/// costs at most this much latency).
pub(super) const EXIT_POLL: Duration = Duration::from_millis(100);

/// How a step's command ended. `Display` completes the sentence "the landing command …".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran to its end: an exit code, or the signal that killed it.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// It ran past its timeout; its process group was terminated.
    TimedOut { after: Duration },
    /// Berth cancelled it (shutdown, or the lane was given up); its group was terminated.
    Cancelled,
    /// The lane lock's lease ran out before the command ended (berth did not refresh the
    /// lock in time: stopped, suspended or cut off from origin); its guard terminated the
    /// group before the lock could expire.
    LeaseExpired,
    /// The lane lock's heartbeat found the lock lost before the command could start, so it
    /// was not started.
    LockLost,
    /// The program could not be started (not found, not executable, bad cwd, …).
    SpawnFailed(String),
    /// The attempt log could not be opened, so the command was not started at all: berth
    /// never runs a landing whose output it cannot keep.
    LogFailed(String),
}

impl Outcome {
    /// Exit status 0: the only outcome that counts as the command succeeding.
    pub fn success(&self) -> bool {
        matches!(self, Self::Exited { code: Some(0), .. })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited { code: Some(0), .. } => f.write_str("exited successfully"),
            Self::Exited {
                code: Some(code), ..
            } => write!(f, "exited with status {code}"),
            Self::Exited {
                code: None,
                signal: Some(sig),
            } => match Signal::try_from(*sig) {
                Ok(name) => write!(f, "was killed by signal {sig} ({name})"),
                Err(_) => write!(f, "was killed by signal {sig}"),
            },
            Self::Exited {
                code: None,
                signal: None,
            } => f.write_str("ended with an unknown status"),
            Self::TimedOut { after } => write!(
                f,
                "timed out after {} and was stopped (its whole process group was terminated)",
                human_duration(*after)
            ),
            Self::Cancelled => f.write_str("was cancelled before it finished"),
            Self::LeaseExpired => f.write_str(
                "was stopped when its lane lock lease ran out (berth did not refresh the lock in time: it was paused, suspended or cut off from origin), before the lock could expire; its whole process group was terminated",
            ),
            Self::LockLost => f.write_str(
                "was not started: its lane lock was found lost before it could start",
            ),
            Self::SpawnFailed(err) => write!(f, "could not be started: {err}"),
            Self::LogFailed(err) => write!(
                f,
                "was not started because its log file could not be opened: {err}"
            ),
        }
    }
}

/// "300ms", "42s", "12m 5s", "1h 30m": short enough for a `lastError` (milliseconds only
/// under a second, seconds only under an hour).
pub(crate) fn human_duration(d: Duration) -> String {
    let shown = match d.as_secs() {
        0 => Duration::from_millis(d.subsec_millis().into()),
        secs if secs < 3600 => Duration::from_secs(secs),
        secs => Duration::from_secs(secs - secs % 60),
    };
    humantime::format_duration(shown).to_string()
}

/// Everything [`run_step`] needs: what to run, where, where its output goes, how long.
#[derive(Debug, Clone, Copy)]
pub struct StepCommand<'a> {
    /// The rendered argv; `argv[0]` is the program (looked up in `PATH` if bare).
    pub argv: &'a [OsString],
    /// The working directory, by name (for messages, and to start in when `start_in` is
    /// `None`).
    pub cwd: &'a Path,
    /// The directory the gate checked, held open: the child starts there by `fchdir`, so
    /// a path swapped since the check cannot send it elsewhere.
    pub start_in: Option<&'a PinnedDir>,
    /// Extra environment variables (the landing mark of [`super::strays`]).
    pub env: &'a [(&'a str, &'a str)],
    /// Open descriptors the command inherits under the same numbers (the pinned
    /// directories its `{repo}` and `{worktree}` name as `/proc/self/fd/N`).
    pub pass_fds: &'a [RawFd],
    /// The lane lock's lease: the step's guard stops the group when it runs out.
    pub lease: Option<&'a Lease>,
    /// The attempt log; stdout and stderr are appended to it.
    pub log_path: &'a Path,
    /// Wall-clock limit from spawn until the group is told to stop.
    pub timeout: Duration,
    /// Time between SIGTERM and SIGKILL to the group.
    pub grace: Duration,
    /// Runs right after the spawn, before the guard is told the step's group: a test's
    /// stand-in for berth stopped at that instant. The daemon sets none.
    pub after_spawn: Option<&'a SpawnHook>,
}

/// See [`StepCommand::after_spawn`].
#[doc(hidden)]
#[derive(Clone)]
pub struct SpawnHook(pub std::sync::Arc<dyn Fn() + Send + Sync>);

impl fmt::Debug for SpawnHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SpawnHook")
    }
}

/// What [`run_step`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRun {
    pub outcome: Outcome,
    /// Byte offset in the log where this run's output begins (after its header line).
    pub output_start: u64,
    pub elapsed: Duration,
}

/// Runs one command to its end, timeout or cancellation, and leaves nothing of it running.
///
/// The child gets a new process group, `/dev/null` as stdin, and a pipe berth drains into
/// the attempt log (capped to its head and tail, [`super::capped_log`]) as stdout and stderr. Once the leader exits, anything it left running in its group is
/// killed: a step's processes never outlive the step (they would race the next step or
/// the worktree's removal). On timeout or cancellation the group gets SIGTERM, then
/// SIGKILL once the leader has exited or `grace` has passed, whichever is first. If this
/// future is dropped midway, the group is killed with SIGKILL on drop.
///
/// A process that moves itself to another group or session (`setsid`) escapes the group
/// kill; it still carries `cmd.env` (the step's landing mark), by which the runner ends it
/// after the step, and the guard when berth dies, the lease runs out or this future is
/// dropped. One that also clears its environment escapes both: only a cgroup could follow
/// it.
pub async fn run_step(cmd: &StepCommand<'_>, cancel: &CancellationToken) -> StepRun {
    let started = Instant::now();
    // Berth was paused or starved past the lease before this step: not even its log is
    // opened. (Whether the lease still holds is looked at again right before the spawn.)
    if cmd.lease.is_some_and(Lease::expired) {
        tracing::warn!(log = %cmd.log_path.display(), "step not started: its lane lock lease has run out");
        return StepRun {
            outcome: Outcome::LeaseExpired,
            output_start: 0,
            elapsed: started.elapsed(),
        };
    }
    let header = format!(
        "==== berth {}: running {:?} in {:?}",
        crate::clock::now_iso(),
        cmd.argv,
        cmd.cwd
    );
    let log_path = cmd.log_path.to_owned();
    let opened =
        match tokio::task::spawn_blocking(move || log::open_for_run(&log_path, &header)).await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        };
    let (mut file, output_start) = match opened {
        Ok(opened) => opened,
        Err(err) => {
            let outcome = Outcome::LogFailed(err.to_string());
            tracing::warn!(log = %cmd.log_path.display(), "step not started: {outcome}");
            return StepRun {
                outcome,
                output_start: 0,
                elapsed: started.elapsed(),
            };
        }
    };

    let outcome = match file.try_clone().and_then(CappedLog::start) {
        Ok((capped, output)) => {
            let outcome = spawn_and_supervise(cmd, output, cancel).await;
            let drained = capped.finish().await;
            if drained.cut > 0 {
                tracing::info!(log = %cmd.log_path.display(), printed = drained.total, cut = drained.cut, "a step's output was cut to its head and tail");
            }
            outcome
        }
        Err(err) => Outcome::LogFailed(err.to_string()),
    };
    let elapsed = started.elapsed();
    let footer = format!(
        "==== berth {}: command {outcome} after {}",
        crate::clock::now_iso(),
        human_duration(elapsed)
    );
    let written = tokio::task::spawn_blocking(move || log::append_line(&mut file, &footer)).await;
    if let Err(err) = written
        .map_err(std::io::Error::other)
        .and_then(|result| result)
    {
        tracing::warn!(log = %cmd.log_path.display(), "could not append the closing line: {err}");
    }
    StepRun {
        outcome,
        output_start,
        elapsed,
    }
}

/// Why the step must not start now under its lease: the lane lock lost, or the lease run
/// out (the lock may be another daemon's by now, and a started group would run until its
/// guard's SIGKILL).
fn lease_ended(cmd: &StepCommand<'_>) -> Option<Outcome> {
    let outcome = match cmd.lease?.ended()? {
        Ended::LockLost => Outcome::LockLost,
        Ended::Expired => Outcome::LeaseExpired,
    };
    tracing::warn!(log = %cmd.log_path.display(), "step not started: its command {outcome}");
    Some(outcome)
}

/// Spawns the step with `output` (the write end of its capped log's pipe) as its stdout and
/// stderr, and supervises it; berth's own copies of `output` are closed once it started, so
/// the pipe ends when the step's processes do.
async fn spawn_and_supervise(
    cmd: &StepCommand<'_>,
    output: OwnedFd,
    cancel: &CancellationToken,
) -> Outcome {
    let Some(program) = cmd.argv.first() else {
        return Outcome::SpawnFailed("the command is empty".to_owned());
    };
    let mut command = match command_for(cmd, output) {
        Ok(command) => command,
        Err(e) => return Outcome::LogFailed(e.to_string()),
    };
    // Listen before the child exists so its exit cannot fall between spawn and the first
    // check; without a listener the poll below still notices, only later.
    let sigchld = match signal(SignalKind::child()) {
        Ok(listener) => Some(listener),
        Err(err) => {
            tracing::debug!("no SIGCHLD listener, polling only: {err}");
            None
        }
    };
    // Subscribed before the deadline is read, so an extension in between is not missed.
    let lease_watch = cmd.lease.map(Lease::watch);
    let lease_end = cmd
        .lease
        .zip(lease_watch.as_ref())
        .map(|(lease, watch)| LeaseEnd {
            deadline: *watch.borrow(),
            grace: lease.kill_grace(cmd.grace),
        });
    // Before the step exists, so that no instant of it is unguarded. Fail closed: a step
    // that could outlive berth or its lease is not started.
    let guard = match Guard::spawn(cmd.grace, lease_end, &Mark::new(cmd.env)) {
        Ok(guard) => guard,
        Err(err) => {
            return Outcome::SpawnFailed(format!(
                "could not start the guard that ends the step if berth dies: {err}"
            ));
        }
    };
    // The last look before the step exists: whatever came before it (the log, the guard's
    // fork, a checkout made while the lock was taken) took time in which the lock may
    // have been lost or the lease run out. Before the cancellation, which a lost lock
    // also brings (later, from another task): the verdict names the loss.
    if let Some(outcome) = lease_ended(cmd) {
        return outcome;
    }
    if cancel.is_cancelled() {
        return Outcome::Cancelled;
    }
    let spawned = command.spawn();
    drop(command);
    let mut child = match spawned {
        Ok(child) => child,
        // The OS reports a missing working directory as "No such file or directory" just
        // like a missing program; say which one it is.
        Err(err) if !cmd.cwd.is_dir() => {
            return Outcome::SpawnFailed(format!(
                "working directory {:?} is not usable: {err}",
                cmd.cwd
            ));
        }
        Err(err) => return Outcome::SpawnFailed(format!("{program:?}: {err}")),
    };
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        // Cannot happen for a child just spawned and not yet waited on; if it did, the
        // group could not be supervised, so the child is not left running.
        if let Err(err) = child.start_kill() {
            tracing::warn!("could not kill a step process without a pid: {err}");
        }
        return Outcome::SpawnFailed(format!("{program:?}: spawned without a pid"));
    };
    let pgid = Pid::from_raw(pid);
    if let Some(hook) = cmd.after_spawn {
        (hook.0)();
    }
    let mut group = ProcessGroup {
        child,
        pgid,
        reaped: false,
        sigchld,
        guard,
        lease: lease_watch,
    };
    if let Err(err) = group.guard.watch_group(pgid) {
        // The guard is gone (its lease ran out while berth was stopped, or it was killed):
        // nothing fences the step.
        tracing::error!(%pgid, "the step's guard is gone before it learned the step's group: {err}; terminating the group");
        group.terminate(Duration::ZERO).await;
        return Outcome::LeaseExpired;
    }
    group.supervise(cmd.timeout, cmd.grace, cancel).await
}

/// The step's command: its own process group, `/dev/null` as stdin, `output` as stdout and
/// stderr, started in the pinned checkout (or `cmd.cwd`) and inheriting `cmd.pass_fds`.
fn command_for(cmd: &StepCommand<'_>, output: OwnedFd) -> std::io::Result<Command> {
    let stderr = output.try_clone()?;
    let mut command = Command::new(&cmd.argv[0]);
    command
        .args(&cmd.argv[1..])
        .envs(cmd.env.iter().copied())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(stderr);
    match cmd.start_in {
        Some(dir) => {
            let fd = dir.fd().as_raw_fd();
            // SAFETY: fchdir is async-signal-safe; the descriptor is open in the child
            // until exec (it is close-on-exec, so the program does not inherit it).
            unsafe {
                command.pre_exec(move || {
                    nix::unistd::fchdir(BorrowedFd::borrow_raw(fd)).map_err(std::io::Error::from)
                });
            }
        }
        None => {
            command.current_dir(cmd.cwd);
        }
    }
    let pass_fds = cmd.pass_fds.to_vec();
    // SAFETY: fcntl is async-signal-safe. Clearing close-on-exec here changes only the
    // child's descriptor table: in berth the descriptors stay close-on-exec, so no other
    // step inherits them.
    unsafe {
        command.pre_exec(move || {
            for fd in &pass_fds {
                if nix::libc::fcntl(*fd, nix::libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_as_sentences() {
        let exited = |code, signal| Outcome::Exited { code, signal };
        assert_eq!(exited(Some(0), None).to_string(), "exited successfully");
        assert_eq!(exited(Some(3), None).to_string(), "exited with status 3");
        assert_eq!(
            exited(None, Some(9)).to_string(),
            "was killed by signal 9 (SIGKILL)"
        );
        assert!(
            Outcome::TimedOut {
                after: Duration::from_secs(1800)
            }
            .to_string()
            .starts_with("timed out after 30m and")
        );
        assert!(exited(Some(0), None).success());
        assert!(!exited(Some(1), None).success());
        assert!(!exited(None, Some(15)).success());
        assert!(!Outcome::Cancelled.success());
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(human_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(human_duration(Duration::from_millis(42_300)), "42s");
        assert_eq!(human_duration(Duration::from_secs(725)), "12m 5s");
        assert_eq!(human_duration(Duration::from_secs(5425)), "1h 30m");
    }
}
