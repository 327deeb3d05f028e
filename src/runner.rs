//! The landing runner: runs the operator's land and ship commands for one record and
//! reports what happened (DESIGN §3.6, §6).
//!
//! The runner records nothing. It returns a [`StepResult`] per step and the daemon, which
//! owns the state machine and asks the landing policy what a result means, writes
//! `landing` → `drift_repairing` → `landing` between steps. Keeping the two apart means a revival
//! by a signal (§6) can be honoured between steps, and the runner can be tested with real
//! processes without a queue.
//!
//! - [`CommandTemplate`]: argv templates with `{pr}`, `{branch}`, … placeholders, validated
//!   at config load and rendered without a shell or re-splitting.
//! - [`run_step`]: one command in its own process group with a timeout, cancellation and
//!   a per-attempt log; nothing it started survives it.
//! - [`output_shows_drift`]: the drift signatures that call for a `/ship` repair.
//! - [`Lease`]: the lane lock's deadline, held by each step's guard so a stopped or
//!   suspended berth cannot leave a landing running past its lock.

mod capped_log;
mod group;
mod guard;
mod lease;
mod log;
mod marked;
mod process;
pub mod retention;
mod strays;
mod template;

use std::fmt;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::pinned_dir::PinnedDir;

pub use capped_log::{HEAD_BYTES as LOG_HEAD_BYTES, TAIL_BYTES as LOG_TAIL_BYTES};
pub use lease::{LEASE_MARGIN, Lease, follow as follow_heartbeat, margin as lease_margin};
pub use log::{
    ATTEMPT_SEARCH_LIMIT, ClaimError, DRIFT_SCAN_CAP, DRIFT_SIGNATURES, InvalidRecordId,
    attempt_log_path, claim_attempt, output_shows_drift,
};
pub use process::{Outcome, SpawnHook, StepCommand, StepRun, run_step};
pub use strays::{
    LEFTOVERS_KILLED, LandingProcess, OWNER_ENV, RECORD_ENV, STRAY_KILL_WAIT, StraysError,
    end_gone_owners_processes, end_strays, landing_processes, record_mark,
};
pub use template::{CommandTemplate, StepVars, TemplateError};

/// A landing that runs longer than this is stuck, not slow: an agent landing a PR
/// normally needs minutes, and the lane stays locked while it runs.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Time between SIGTERM and SIGKILL to a step's process group (DESIGN §6: 2 s).
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);

/// Which of the two configured commands a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Land (merge) the PR.
    Land,
    /// Re-run `/ship` to repair release drift before landing again.
    Ship,
}

impl Step {
    /// The name used in log file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Land => "land",
            Self::Ship => "ship",
        }
    }

    /// The name an operator knows the command by, used in messages.
    fn command_name(self) -> &'static str {
        match self {
            Self::Land => "landing",
            Self::Ship => "ship",
        }
    }
}

/// What one step did, for the daemon to record (e.g. as `lastError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    pub step: Step,
    pub attempt: u32,
    pub outcome: Outcome,
    /// The log holding this step's output (shared with earlier runs of the same step in
    /// the same attempt; each run starts with a header line).
    pub log_path: PathBuf,
    pub elapsed: Duration,
    drift: bool,
}

impl StepResult {
    /// Whether the command exited 0.
    pub fn succeeded(&self) -> bool {
        self.outcome.success()
    }

    /// A land step that ran to a failing exit *and* printed a drift signature in this
    /// run's output. A timeout or cancellation is never drift: the command did not reach
    /// its verdict, and repairing on a half-finished run would hide the real fault.
    pub fn drift_detected(&self) -> bool {
        self.drift
    }
}

impl StepResult {
    /// The exit code, if the command exited (not killed, timed out or never started).
    pub fn exit_code(&self) -> Option<i32> {
        match self.outcome {
            Outcome::Exited { code, .. } => code,
            _ => None,
        }
    }

    pub fn timed_out(&self) -> bool {
        matches!(self.outcome, Outcome::TimedOut { .. })
    }
}

impl fmt::Display for StepResult {
    /// "landing command exited with status 3 (log: /path)": fit for `lastError`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} command {}", self.step.command_name(), self.outcome)?;
        if self.drift {
            f.write_str(" and reported release drift")?;
        }
        write!(f, " (log: {})", self.log_path.display())
    }
}

/// Runs a record's land and ship steps with the operator's templates.
#[derive(Debug, Clone)]
pub struct Runner {
    land: CommandTemplate,
    ship: CommandTemplate,
    logs_dir: PathBuf,
    timeout: Duration,
    grace: Duration,
    /// This process's owner stamp, marked on every step (see [`strays`]).
    owner: String,
    /// The queue dir whose records the steps land, for their mark ([`strays::record_mark`]).
    queue_dir: PathBuf,
    /// See [`StepCommand::after_spawn`]; tests only.
    after_spawn: Option<SpawnHook>,
}

impl Runner {
    /// A runner with [`DEFAULT_STEP_TIMEOUT`] and [`DEFAULT_KILL_GRACE`]; logs go under
    /// `logs_dir/<record id>/`.
    pub fn new(land: CommandTemplate, ship: CommandTemplate, logs_dir: impl Into<PathBuf>) -> Self {
        Self {
            land,
            ship,
            logs_dir: logs_dir.into(),
            timeout: DEFAULT_STEP_TIMEOUT,
            grace: DEFAULT_KILL_GRACE,
            owner: crate::ownership::this_process(),
            queue_dir: PathBuf::new(),
            after_spawn: None,
        }
    }

    /// The queue dir whose records this runner lands: steps are marked with the record's
    /// file there, so `retry`, `abandon` and the reclaim find them ([`strays`]).
    pub fn for_queue(mut self, queue_dir: &Path) -> Self {
        self.queue_dir = queue_dir.to_path_buf();
        self
    }

    /// The limit for each step, from spawn until SIGTERM.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs `hook` in every step right after its spawn, before its guard learns its group
    /// ([`StepCommand::after_spawn`]). For tests that stop berth there, deterministically.
    #[doc(hidden)]
    pub fn with_spawn_hook(mut self, hook: SpawnHook) -> Self {
        self.after_spawn = Some(hook);
        self
    }

    /// The time between SIGTERM and SIGKILL.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The attempt number a new landing of `record_id` uses, its land log claimed: see
    /// [`claim_attempt`].
    pub fn claim_attempt(&self, record_id: &str, from: u32) -> Result<u32, ClaimError> {
        claim_attempt(&self.logs_dir, record_id, from)
    }

    /// Runs `step` in `vars.worktree`, its output appended to
    /// [`attempt_log_path`]`(logs_dir, record_id, attempt, step)`. The only error is a
    /// record id that cannot name a log directory; everything that happens to the
    /// command is in the returned [`StepResult`].
    pub async fn run(
        &self,
        step: Step,
        record_id: &str,
        vars: &StepVars,
        attempt: u32,
        cancel: &CancellationToken,
    ) -> Result<StepResult, InvalidRecordId> {
        self.run_in(step, record_id, vars, None, attempt, cancel)
            .await
    }

    /// [`Runner::run`] for a landing: started in the pinned worktree, with `{repo}` and
    /// `{worktree}` naming the pinned directories, and stopped when `fence`'s lease runs
    /// out.
    pub async fn run_in(
        &self,
        step: Step,
        record_id: &str,
        vars: &StepVars,
        fence: Option<&Fence<'_>>,
        attempt: u32,
        cancel: &CancellationToken,
    ) -> Result<StepResult, InvalidRecordId> {
        let log_path = attempt_log_path(&self.logs_dir, record_id, attempt, step)?;
        let template = match step {
            Step::Land => &self.land,
            Step::Ship => &self.ship,
        };
        let argv = match fence {
            Some(fence) => template.render(&fence.pinned_vars(vars), &log_path),
            None => template.render(vars, &log_path),
        };
        let pass_fds: Vec<RawFd> = fence.map_or_else(Vec::new, Fence::fds);
        tracing::info!(
            record = record_id,
            step = step.as_str(),
            attempt,
            log = %log_path.display(),
            "starting {} command",
            step.command_name()
        );
        let record = strays::record_mark(&self.queue_dir, record_id);
        let mark_text = record.to_string_lossy();
        let step_number = strays::next_step_number();
        let mark = [
            (RECORD_ENV, &*mark_text),
            (OWNER_ENV, self.owner.as_str()),
            (strays::STEP_ENV, step_number.as_str()),
        ];
        let run = run_step(
            &StepCommand {
                argv: &argv,
                cwd: &vars.worktree,
                start_in: fence.map(|fence| fence.worktree),
                env: &mark,
                pass_fds: &pass_fds,
                lease: fence.map(|fence| fence.lease),
                log_path: &log_path,
                timeout: self.timeout,
                grace: self.grace,
                after_spawn: self.after_spawn.as_ref(),
            },
            cancel,
        )
        .await;
        self.end_leftovers(&record, record_id).await;
        let ran_to_failure =
            matches!(run.outcome, Outcome::Exited { .. }) && !run.outcome.success();
        let drift = step == Step::Land
            && ran_to_failure
            && scan_for_drift(&log_path, run.output_start).await;
        let result = StepResult {
            step,
            attempt,
            outcome: run.outcome,
            log_path,
            elapsed: run.elapsed,
            drift,
        };
        tracing::info!(
            record = record_id,
            step = step.as_str(),
            attempt,
            "{result}"
        );
        Ok(result)
    }

    /// Ends what the step left running under its mark once it has ended (see
    /// [`strays::end_step_leftovers`]), before anything judges or settles the landing and
    /// so before the lane's lock is let go. A survivor of SIGKILL is logged: it can only be
    /// a process stuck in the kernel, which runs no more of the step's commands.
    async fn end_leftovers(&self, record: &Path, record_id: &str) {
        let record = record.to_path_buf();
        let owner = self.owner.clone();
        let ended =
            tokio::task::spawn_blocking(move || strays::end_step_leftovers(&record, &owner)).await;
        match ended {
            Ok(Ok(_)) => {}
            Ok(Err(survivors)) => tracing::warn!(record = record_id, "{survivors}"),
            Err(e) => tracing::warn!(record = record_id, "leftover processes not looked for: {e}"),
        }
    }
}

/// What a landing's step is held to: the directories the gate pinned, and the lease.
#[derive(Debug, Clone, Copy)]
pub struct Fence<'a> {
    /// The gated repository, held open: `{repo}` names it.
    pub repo: &'a PinnedDir,
    /// The checkout the step starts in (by `fchdir`) and `{worktree}` names.
    pub worktree: &'a PinnedDir,
    /// The lane lock's lease: the step's guard stops it when the lease runs out.
    pub lease: &'a Lease,
}

impl Fence<'_> {
    /// `vars` with `{repo}` and `{worktree}` as `/proc/self/fd/N` of the pinned
    /// directories, which the step inherits: a name swapped for a symlink during the step
    /// cannot redirect it, since the path leads through the open descriptor.
    fn pinned_vars(&self, vars: &StepVars) -> StepVars {
        StepVars {
            repo: fd_path(self.repo),
            worktree: fd_path(self.worktree),
            ..vars.clone()
        }
    }

    fn fds(&self) -> Vec<RawFd> {
        vec![self.repo.fd().as_raw_fd(), self.worktree.fd().as_raw_fd()]
    }
}

fn fd_path(dir: &PinnedDir) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", dir.fd().as_raw_fd()))
}

/// Reads this run's output (capped) and looks for drift. An unreadable log counts as no
/// drift: the step failed anyway and is reported as such, never silently repaired.
async fn scan_for_drift(log_path: &Path, output_start: u64) -> bool {
    let path = log_path.to_owned();
    let read = tokio::task::spawn_blocking(move || {
        log::read_run_output(&path, output_start, DRIFT_SCAN_CAP)
    })
    .await;
    match read {
        Ok(Ok(output)) => output_shows_drift(&output),
        Ok(Err(err)) => {
            tracing::warn!(log = %log_path.display(), "could not read the log to look for drift: {err}");
            false
        }
        Err(err) => {
            tracing::warn!(log = %log_path.display(), "drift scan did not finish: {err}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(step: Step, code: i32, drift: bool) -> StepResult {
        StepResult {
            step,
            attempt: 1,
            outcome: Outcome::Exited {
                code: Some(code),
                signal: None,
            },
            log_path: PathBuf::from("/logs/r/attempt-1-land.log"),
            elapsed: Duration::from_secs(1),
            drift,
        }
    }

    #[test]
    fn step_results_read_as_last_errors() {
        assert_eq!(
            result(Step::Land, 3, false).to_string(),
            "landing command exited with status 3 (log: /logs/r/attempt-1-land.log)"
        );
        assert_eq!(
            result(Step::Land, 1, true).to_string(),
            "landing command exited with status 1 and reported release drift (log: /logs/r/attempt-1-land.log)"
        );
        let mut ship = result(Step::Ship, 0, false);
        ship.outcome = Outcome::Cancelled;
        assert!(ship.to_string().starts_with("ship command was cancelled"));
    }
}
