//! The texts gstack's release daemon writes, so that berth's `lastError`s and log lines begin
//! with the same words (`../shared/gstack/release-daemon.md` Appendix A). Operators, scripts
//! and gstack's own tools match on these beginnings; berth adds its detail after them.
//!
//! One function per text, so every place that reports one of these situations says it the
//! same way, and one table-driven test pins each text to the spec.

use std::fmt::Display;

use crate::gates::Gate;

// ---- `lastError` values (A.1) ----

/// A record refused by a gate; gstack's wording where gstack has the gate.
pub fn gate_refusal(gate: Gate, reason: &str) -> String {
    match gate {
        // gstack's loop early gate, which berth's per-tick gate corresponds to.
        Gate::RepoPath | Gate::GitDir => format!("repoPath outside daemon allowlist: {reason}"),
        // gstack has no gate for these; berth says it the same way.
        Gate::FeatureBranch | Gate::BaseBranch | Gate::WorktreePath | Gate::RepoIdentity => {
            format!("{} rejected: {reason}", gate.field())
        }
    }
}

/// A legacy record (no `repoIdentity`) whose repo path fails the gate: gstack's discovery
/// pre-gate blocks it before deriving its id.
pub fn repo_rejected_pre_id(reason: &str) -> String {
    format!("repoPath rejected by daemon allowlist (pre-id derivation): {reason}")
}

/// The claim-time check of the PR (label, marker, and berth's extra checks) failed.
pub fn marker_verification_failed(error: impl Display) -> String {
    format!("queued PR marker verification failed: {error}")
}

/// The heartbeat lost the lane lock while a step ran.
pub fn lock_ownership_lost(error: impl Display) -> String {
    format!("release lock ownership lost during landing: {error}")
}

/// `exit <code>` as gstack prints it: `null` when the process was killed by a signal.
fn exit_text(code: Option<i32>) -> String {
    code.map_or_else(|| "null".to_owned(), |c| c.to_string())
}

/// The drift-repair ship step failed or timed out.
pub fn drift_ship_failed(code: Option<i32>, timed_out: bool) -> String {
    format!(
        "drift repair /ship failed (exit {}, timed_out={timed_out})",
        exit_text(code)
    )
}

/// The land step failed or timed out.
pub fn land_failed(code: Option<i32>, timed_out: bool, log: impl Display) -> String {
    format!(
        "land-and-deploy failed (exit {}, timed_out={timed_out}); see {log}",
        exit_text(code)
    )
}

/// The land step exited 0 but the forge does not report the PR merged. `forge` is
/// `GitHub` (gstack's only forge) or `origin` (berth's plain-git forge).
pub fn forge_disagrees(forge: &str, reason: impl Display, log: impl Display) -> String {
    format!("land-and-deploy reported success but {forge} disagrees: {reason}; see {log}")
}

/// The reason inside [`forge_disagrees`] when the forge answered with a state.
pub fn pr_not_merged(pr: u64, state: impl Display, forge: &str) -> String {
    format!(
        "PR #{pr} state is {state} on {forge} (sub-agent reported success but PR was not merged)"
    )
}

/// The feature branch is gone from origin. gstack's `lastError` is then its failed
/// fetch's message (test 65: `couldn't find remote ref feat/deleted`); berth says the same
/// whether it learns it at the claim check or at the fetch.
pub fn remote_ref_missing(branch: &str) -> String {
    format!("couldn't find remote ref {branch}")
}

/// A signal revived an in-flight record.
pub fn interrupted_by_signal(signal: impl Display) -> String {
    format!("interrupted by signal {signal} mid-landing")
}

// ---- log lines (A.2) ----

/// `--once` found nothing to process.
pub const QUEUE_EMPTY: &str = "release queue empty";

/// `--once` processed nothing but blocked records at the repo-path gate.
pub fn only_gate_blocked(count: usize) -> String {
    format!(
        "release queue: blocked {count} record(s) for disallowed repoPath; no eligible records to process"
    )
}

/// A processed record's final status.
pub fn pr_status(pr: u64, status: impl Display) -> String {
    format!("PR #{pr}: {status}")
}

/// The repo-path gate blocked a record (`warning: ` first for a legacy record, as gstack's
/// discovery pre-gate logs it).
pub fn blocking_pr(pr: u64, reason: &str, legacy: bool) -> String {
    let warning = if legacy { "warning: " } else { "" };
    format!("{warning}blocking PR #{pr}: disallowed repoPath: {reason}")
}

/// Listing one repo's queued PRs failed (the other repos are still listed).
pub fn could_not_discover(repo: impl Display, error: impl Display) -> String {
    format!("warning: could not discover queued PRs for {repo}: {error}")
}

/// A configured repo (or a queued record's repo) fails the repo-path gate: not asked about.
pub fn skipping_discovery(reason: &str) -> String {
    format!("warning: skipping discovery for disallowed repoPath: {reason}")
}

/// A blocked record due for a re-check fails the gate: the forge is not asked about it.
pub fn skipping_reconciliation(pr: u64, reason: &str) -> String {
    format!("warning: skipping blocked PR #{pr} reconciliation: {reason}")
}

/// The lane lock could not be taken.
pub fn lock_unavailable(base_branch: &str, reason: impl Display) -> String {
    format!("release lock unavailable for {base_branch}: {reason}")
}

/// A heartbeat refresh failed (ownership may or may not be lost).
pub fn heartbeat_failed(error: impl Display) -> String {
    format!("release lock heartbeat failed: {error}")
}

/// Releasing the lane lock after a landing failed.
pub fn could_not_release(lock_ref: &str, error: impl Display) -> String {
    format!("warning: could not release {lock_ref}: {error}")
}

/// A signal arrived after the lane lock was taken but before its heartbeat started, and
/// releasing it failed.
pub fn pre_heartbeat_release_failed(error: impl Display) -> String {
    format!("warning: failed to release lock during pre-heartbeat interrupt: {error}")
}

// ---- signal lines (A.2); `signal` is the signal's name, e.g. `SIGTERM` ----

/// A record in flight when the signal came had already settled on disk: left alone.
pub fn skipping_revive(signal: &str, run_id: &str, status: impl Display) -> String {
    format!("signal {signal}: skipping revive of {run_id}: already terminal ({status})")
}

/// A record in flight when the signal came could not be put back in the queue.
pub fn failed_to_revive(signal: &str, run_id: &str, error: impl Display) -> String {
    format!("signal {signal}: failed to revive record {run_id}: {error}")
}

/// The revival's count, logged when it counted anything.
pub fn revived_summary(signal: &str, revived: usize, skipped: usize, failed: usize) -> String {
    format!(
        "signal {signal}: revived {revived} record(s) to queued, {skipped} skipped (terminal on disk), {failed} failed"
    )
}

/// Releasing a held lane lock after the signal failed.
pub fn signal_release_failed(signal: &str, error: impl Display) -> String {
    format!("signal {signal}: lock release failed: {error}")
}

/// Releasing a held lane lock after the signal crashed (berth: its task panicked).
pub fn signal_release_threw(signal: &str, error: impl Display) -> String {
    format!("signal {signal}: lock release threw: {error}")
}

/// The lock release's count, always logged after a signal.
pub fn released_summary(signal: &str, released: usize, failed: usize, deferred: usize) -> String {
    format!(
        "signal {signal}: released {released} lock(s), {failed} failed, {deferred} deferred (budget exhausted)"
    )
}

// ---- lock reasons (A.3) ----

/// Someone holds a live lock.
pub fn lock_held_by(owner_id: &str, expires_at: &str) -> String {
    format!("release lock held by {owner_id} until {expires_at}")
}

/// The lock's payload cannot be read: the lane is refused (fail closed).
pub fn lock_payload_unreadable(sha: &str) -> String {
    format!("release lock payload unreadable at {sha}")
}

/// The lock's payload reads but its `expiresAt` does not.
pub fn lock_expiry_unreadable(owner_id: &str) -> String {
    format!("release lock expiry unreadable for {owner_id}")
}

/// Creating the lane lock lost to another creator (gstack: the push-create failed).
pub const LOCK_ALREADY_HELD: &str = "lock already held";

/// Taking over an expired lane lock lost to another taker.
pub const STALE_STEAL_FAILED: &str = "stale lock steal failed";

/// The lock commit for an acquire could not be written.
pub const LOCK_COMMIT_FAILED: &str = "could not create lock commit";

/// The lock commit for a refresh could not be written.
pub const HEARTBEAT_COMMIT_FAILED: &str = "could not create heartbeat lock commit";

/// A refresh found the lock ref gone.
pub const LOCK_REF_DISAPPEARED: &str = "release lock ref disappeared";

/// A refresh found the lock ref pointing at someone else's commit.
pub const LOCK_NOT_OWNED: &str = "release lock is no longer owned by this daemon";

/// A refresh failed without proof that someone else owns the lane.
pub const LOCK_HEARTBEAT_FAILED: &str = "release lock heartbeat failed";

#[cfg(test)]
mod tests {
    use super::*;

    /// Every text against Appendix A of the spec, with the placeholders filled in.
    #[test]
    fn every_text_is_gstacks() {
        let log = "/logs/land.log";
        let cases: Vec<(String, &str)> = vec![
            (
                gate_refusal(Gate::RepoPath, "why"),
                "repoPath outside daemon allowlist: why",
            ),
            (
                gate_refusal(Gate::GitDir, "why"),
                "repoPath outside daemon allowlist: why",
            ),
            (
                gate_refusal(Gate::FeatureBranch, "why"),
                "featureBranch rejected: why",
            ),
            (
                gate_refusal(Gate::BaseBranch, "why"),
                "baseBranch rejected: why",
            ),
            (
                gate_refusal(Gate::RepoIdentity, "why"),
                "repoIdentity rejected: why",
            ),
            (
                repo_rejected_pre_id("why"),
                "repoPath rejected by daemon allowlist (pre-id derivation): why",
            ),
            (
                marker_verification_failed("missing queued PR marker"),
                "queued PR marker verification failed: missing queued PR marker",
            ),
            (
                lock_ownership_lost(LOCK_NOT_OWNED),
                "release lock ownership lost during landing: release lock is no longer owned by this daemon",
            ),
            (
                drift_ship_failed(Some(2), false),
                "drift repair /ship failed (exit 2, timed_out=false)",
            ),
            (
                drift_ship_failed(None, true),
                "drift repair /ship failed (exit null, timed_out=true)",
            ),
            (
                land_failed(Some(1), false, log),
                "land-and-deploy failed (exit 1, timed_out=false); see /logs/land.log",
            ),
            (
                forge_disagrees("GitHub", pr_not_merged(999, "OPEN", "GitHub"), log),
                "land-and-deploy reported success but GitHub disagrees: PR #999 state is OPEN on GitHub (sub-agent reported success but PR was not merged); see /logs/land.log",
            ),
            (
                remote_ref_missing("feat/deleted"),
                "couldn't find remote ref feat/deleted",
            ),
            (
                interrupted_by_signal("SIGTERM"),
                "interrupted by signal SIGTERM mid-landing",
            ),
            (QUEUE_EMPTY.to_owned(), "release queue empty"),
            (
                only_gate_blocked(2),
                "release queue: blocked 2 record(s) for disallowed repoPath; no eligible records to process",
            ),
            (pr_status(7, "landed"), "PR #7: landed"),
            (
                blocking_pr(100, "why", false),
                "blocking PR #100: disallowed repoPath: why",
            ),
            (
                blocking_pr(100, "why", true),
                "warning: blocking PR #100: disallowed repoPath: why",
            ),
            (
                could_not_discover("/code/a", "boom"),
                "warning: could not discover queued PRs for /code/a: boom",
            ),
            (
                lock_unavailable("main", lock_held_by("h-1-pr-2", "2026-05-19T12:00:00.000Z")),
                "release lock unavailable for main: release lock held by h-1-pr-2 until 2026-05-19T12:00:00.000Z",
            ),
            (
                heartbeat_failed(LOCK_HEARTBEAT_FAILED),
                "release lock heartbeat failed: release lock heartbeat failed",
            ),
            (
                could_not_release("refs/gstack/release-locks/a/main", "boom"),
                "warning: could not release refs/gstack/release-locks/a/main: boom",
            ),
            (
                skipping_discovery("why"),
                "warning: skipping discovery for disallowed repoPath: why",
            ),
            (
                skipping_reconciliation(41, "why"),
                "warning: skipping blocked PR #41 reconciliation: why",
            ),
            (
                pre_heartbeat_release_failed("boom"),
                "warning: failed to release lock during pre-heartbeat interrupt: boom",
            ),
            (
                skipping_revive("SIGTERM", "run-1", "landed"),
                "signal SIGTERM: skipping revive of run-1: already terminal (landed)",
            ),
            (
                failed_to_revive("SIGINT", "run-1", "boom"),
                "signal SIGINT: failed to revive record run-1: boom",
            ),
            (
                revived_summary("SIGHUP", 1, 2, 3),
                "signal SIGHUP: revived 1 record(s) to queued, 2 skipped (terminal on disk), 3 failed",
            ),
            (
                signal_release_failed("SIGTERM", LOCK_NOT_OWNED),
                "signal SIGTERM: lock release failed: release lock is no longer owned by this daemon",
            ),
            (
                signal_release_threw("SIGTERM", "boom"),
                "signal SIGTERM: lock release threw: boom",
            ),
            (
                released_summary("SIGTERM", 1, 0, 2),
                "signal SIGTERM: released 1 lock(s), 0 failed, 2 deferred (budget exhausted)",
            ),
            (
                lock_payload_unreadable("abc"),
                "release lock payload unreadable at abc",
            ),
            (
                lock_expiry_unreadable("h-1-pr-2"),
                "release lock expiry unreadable for h-1-pr-2",
            ),
            (
                LOCK_REF_DISAPPEARED.to_owned(),
                "release lock ref disappeared",
            ),
            (LOCK_ALREADY_HELD.to_owned(), "lock already held"),
            (STALE_STEAL_FAILED.to_owned(), "stale lock steal failed"),
            (
                LOCK_COMMIT_FAILED.to_owned(),
                "could not create lock commit",
            ),
            (
                HEARTBEAT_COMMIT_FAILED.to_owned(),
                "could not create heartbeat lock commit",
            ),
            (
                LOCK_NOT_OWNED.to_owned(),
                "release lock is no longer owned by this daemon",
            ),
            (
                LOCK_HEARTBEAT_FAILED.to_owned(),
                "release lock heartbeat failed",
            ),
        ];
        for (ours, gstack) in cases {
            assert_eq!(ours, gstack);
        }
    }
}
