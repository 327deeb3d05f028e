//! The forge layer: what berth asks the place where pull requests live.
//!
//! Three questions, asked synchronously (callers run them on a blocking thread):
//! which PRs are queued ([`Forge::list_queued`], discovery), is this PR still what the record
//! says ([`Forge::check_pr`] + [`verify_claim`], DESIGN §3 step 6), and did it really merge
//! ([`Forge::merge_proof`], landing, reconcile and audit).
//!
//! Two implementations: [`gh::GhForge`] drives the GitHub CLI, [`git::GitForge`] answers from
//! plain branches on `origin` for remotes with no GitHub. Both run nothing in the queued
//! repo's directory and read nothing from its config (DESIGN §4, §5).

mod claim;
pub mod gh;
pub mod git;
mod in_flight;
pub mod leftover_calls;
pub mod marker;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

pub use crate::forge_state::{ForgeKind, PrState};
pub use claim::{ClaimRefusal, verify_claim};
pub use marker::{MARKER_END, MARKER_START, Marker, MarkerError, MarkerPrNumber, QUEUE_LABEL};

/// A PR forge. Implementations are blocking and safe to share between threads.
pub trait Forge: Send + Sync {
    /// Which forge this is.
    fn kind(&self) -> ForgeKind;

    /// `"gh"` or `"git"`, for logs, status and rules.
    fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Discovery: open, non-fork PRs that carry [`QUEUE_LABEL`] and a valid marker.
    /// PRs that fail a filter are dropped with a warning naming repo and PR, never an error.
    fn list_queued(&self, repo: &ForgeRepo) -> Result<Vec<QueuedPr>, ForgeError>;

    /// Claim-time facts about one PR; judge them with [`verify_claim`].
    fn check_pr(&self, repo: &ForgeRepo, pr: &PrRef<'_>) -> Result<PrCheck, ForgeError>;

    /// Whether the PR merged into its base: after landing.
    fn merge_proof(&self, repo: &ForgeRepo, pr: &PrRef<'_>) -> Result<MergeProof, ForgeError>;

    /// The ref on `origin` that carries PR `number`'s head when its branch is not on
    /// origin (a PR from a fork): GitHub's `refs/pull/<N>/head`. `None` where a PR *is* its
    /// branch on origin (the git forge), so a missing branch means nothing to land.
    fn pr_head_ref(&self, _number: u64) -> Option<String> {
        None
    }

    /// Makes now what the forge's first question about `repo` would make on need (a
    /// private repository), so a landing does not wait for it; a failure is left for that
    /// question to meet. Asks nothing.
    fn warm_up(&self, _repo: &ForgeRepo) {}

    /// Ends the calls in flight (their processes killed and reaped) and refuses new ones,
    /// waiting at most `within`: the daemon is stopping, and nothing berth starts may
    /// outlive it. Whether none runs any more; a forge that starts no process has none.
    fn stop_calls(&self, _within: Duration) -> bool {
        true
    }

    /// Whether each of `prs` (all of `repo`) merged, in as few questions as the forge
    /// allows: reconcile, the landed audit and the queue detectors share this one answer.
    /// A PR the forge gave no answer for is missing from the map (and logged); an error
    /// means no answer at all. This default asks [`Forge::merge_proof`] once per PR.
    fn merge_proofs(
        &self,
        repo: &ForgeRepo,
        prs: &[PrRef<'_>],
    ) -> Result<HashMap<u64, MergeProof>, ForgeError> {
        Ok(proofs_one_by_one(self, repo, prs))
    }
}

/// [`Forge::merge_proofs`] by one [`Forge::merge_proof`] per PR; failures are logged and
/// leave that PR out.
pub fn proofs_one_by_one<F: Forge + ?Sized>(
    forge: &F,
    repo: &ForgeRepo,
    prs: &[PrRef<'_>],
) -> HashMap<u64, MergeProof> {
    let mut proofs = HashMap::new();
    for pr in prs {
        match forge.merge_proof(repo, pr) {
            Ok(proof) => {
                proofs.insert(pr.number, proof);
            }
            Err(e) => tracing::warn!("PR state unknown: {e}"),
        }
    }
    proofs
}

/// The repository a question is about.
///
/// Deliberately no local path: forges never touch the queued checkout (gh runs with `--repo`
/// from `/`, the git forge fetches into berth's own scratch repo), so there is nothing a
/// planted repo config or hook could hijack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeRepo {
    /// Canonical identity, e.g. `github.com/acme/widget`, or `path:/abs` with no origin.
    pub identity: String,
    /// `origin`'s URL as read (as data) from the gated repo; used by the git forge.
    pub origin_url: String,
}

impl ForgeRepo {
    pub fn new(identity: impl Into<String>, origin_url: impl Into<String>) -> Self {
        Self {
            identity: identity.into(),
            origin_url: origin_url.into(),
        }
    }
}

/// The record's view of a PR: what berth expects the forge to confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrRef<'a> {
    pub number: u64,
    pub feature_branch: &'a str,
    pub base_branch: &'a str,
}

/// One PR found by discovery. Head and base come from the forge, not the marker: they are
/// what would actually be merged.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedPr {
    pub number: u64,
    pub url: Option<String>,
    pub head_branch: String,
    pub base_branch: String,
    pub marker: Marker,
}

/// The marker as a forge found it.
#[derive(Debug, Clone, PartialEq)]
pub enum MarkerCheck {
    Valid(Marker),
    Invalid(MarkerError),
    /// The forge has no PR bodies (the git forge): nothing to check, nothing to refuse.
    NotApplicable,
}

/// Facts about one PR at claim time.
#[derive(Debug, Clone, PartialEq)]
pub struct PrCheck {
    /// The number the forge answered for (normally the one asked for).
    pub number: u64,
    pub state: PrState,
    /// Whether the PR carries [`QUEUE_LABEL`]. Always `true` on the git forge, which has no
    /// labels: the local record is the only queue signal there.
    pub labelled: bool,
    pub marker: MarkerCheck,
    pub head_branch: String,
    pub base_branch: String,
    /// Whether the feature branch is on origin: known on the git forge (a branch *is* the
    /// PR there); `None` from GitHub, which keeps a deleted head's name.
    pub head_on_origin: Option<bool>,
    /// Where the facts came from, for messages: `"GitHub"` or `"origin"`.
    pub seen_on: &'static str,
}

/// The answer to "did it merge?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeProof {
    /// The only field to act on: on GitHub `state == MERGED` with a merge time; on the git
    /// forge the feature head is reachable from the base branch.
    pub merged: bool,
    pub state: PrState,
    /// ISO-8601 merge time (GitHub only).
    pub merged_at: Option<String>,
    /// GitHub's merge commit, or the base branch head on the git forge.
    pub merge_commit: Option<String>,
}

/// Names what an error is about: the repo identity and, when there is one, the PR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub repo: String,
    pub pr: Option<u64>,
}

impl Subject {
    pub fn repo(repo: &ForgeRepo) -> Self {
        Self {
            repo: repo.identity.clone(),
            pr: None,
        }
    }

    pub fn pr(repo: &ForgeRepo, pr: u64) -> Self {
        Self {
            repo: repo.identity.clone(),
            pr: Some(pr),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pr {
            Some(pr) => write!(f, "{} PR #{pr}", self.repo),
            None => f.write_str(&self.repo),
        }
    }
}

/// A forge could not answer. Every variant names the repo (and PR when there is one).
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("{identity}: not a GitHub repository identity ({reason})")]
    NotGitHub {
        identity: String,
        reason: &'static str,
    },
    #[error("{subject}: {what} branch {branch:?} is not a safe git branch name")]
    BadBranch {
        subject: Subject,
        what: &'static str,
        branch: String,
    },
    #[error(
        "{subject}: could not start `{program}`: {source}{}",
        spawn_hint(program, source)
    )]
    Spawn {
        subject: Subject,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{subject}: `{command}` timed out after {after:?} and was killed")]
    Timeout {
        subject: Subject,
        command: String,
        after: Duration,
    },
    /// A read of a local origin in place gave no answer in time. Its thread cannot be
    /// killed: it is abandoned, the question fails closed, and its late end is logged.
    #[error("{subject}: {read}: {why}")]
    Unanswered {
        subject: Subject,
        read: String,
        why: String,
    },
    #[error("{subject}: `{command}` failed ({status}): {stderr}")]
    CommandFailed {
        subject: Subject,
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{subject}: `{command}` was stopped: berth is shutting down")]
    Stopped { subject: Subject, command: String },
    #[error("{subject}: `{command}` wrote more than {limit} bytes; output discarded")]
    OutputTooLarge {
        subject: Subject,
        command: String,
        limit: usize,
    },
    #[error("{subject}: `{command}` returned unexpected output: {detail}")]
    BadOutput {
        subject: Subject,
        command: String,
        detail: BadOutput,
    },
    #[error("{subject}: base branch {branch} does not exist on origin")]
    MissingBase { subject: Subject, branch: String },
    #[error("{subject}: git {op} failed: {source}")]
    Git {
        subject: Subject,
        op: &'static str,
        #[source]
        source: git2::Error,
    },
    #[error("{subject}: scratch repository {path}: {source}")]
    Scratch {
        subject: Subject,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What is wrong with a forge command's output.
#[derive(Debug, thiserror::Error)]
pub enum BadOutput {
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("expected a JSON array of PRs")]
    NotAList,
    #[error("expected a JSON object")]
    NotAnObject,
    #[error("no integer `number`")]
    NoNumber,
    #[error("a PR without an integer `number`")]
    UnnumberedPr,
    #[error("`labels` is not an array")]
    Labels,
    #[error("no string `{0}`")]
    NoText(&'static str),
    #[error("unknown PR state {0:?}")]
    UnknownState(String),
    #[error("no string `state`")]
    NoState,
}

/// DESIGN §5's branch rule (the gate's own check), asked again here because the git forge
/// builds refspecs from branch names.
fn is_safe_branch(branch: &str) -> bool {
    crate::gates::gate_branch(crate::gates::Gate::FeatureBranch, branch).is_ok()
}

/// The `gh` forge's program is not an executable berth can run: every discovery, claim
/// check and merge proof would fail, so the daemon does not start and `status` and
/// `doctor` say the same fix.
#[derive(Debug, thiserror::Error)]
#[error(
    "the forge is gh, but `{program}` cannot be run ({why}): install the GitHub CLI (https://cli.github.com) and `gh auth login`, or set forge = \"git\" in {config} (or pass --forge git)"
)]
pub struct MissingGh {
    pub program: String,
    pub why: String,
    /// The config file to edit, for the message.
    pub config: String,
}

impl MissingGh {
    /// `Ok` when `program` is an executable file on `PATH` (or at the path given);
    /// `config` is the file the message tells the operator to edit.
    pub fn check(program: &str, config: &str) -> Result<(), MissingGh> {
        which::which(program).map(drop).map_err(|e| MissingGh {
            program: program.to_owned(),
            why: e.to_string(),
            config: config.to_owned(),
        })
    }
}

/// The fix, appended to a spawn error, when the program is missing.
fn spawn_hint(program: &str, source: &std::io::Error) -> String {
    if source.kind() == std::io::ErrorKind::NotFound {
        let missing = MissingGh {
            program: program.to_owned(),
            why: "not found".into(),
            config: "the config".into(),
        };
        format!("; {missing}")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_names_repo_and_pr() {
        let repo = ForgeRepo::new("github.com/acme/widget", "");
        assert_eq!(
            Subject::pr(&repo, 9).to_string(),
            "github.com/acme/widget PR #9"
        );
        assert_eq!(Subject::repo(&repo).to_string(), "github.com/acme/widget");
    }
}
