//! [`GhForge`]: the GitHub CLI as a forge.
//!
//! Every call is one `gh` child process started from an argument vector (never a shell),
//! from `/` (never the queued repo, whose git config gh might otherwise consult), in its own
//! process group so a timeout kills gh and anything it spawned, with stdout and stderr
//! capped. The repository comes only from the validated identity via `--repo`; a GitHub
//! Enterprise host goes through `GH_HOST` (DESIGN §5).

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

mod supervise;

use super::in_flight::InFlight;
use super::leftover_calls::CallMark;
use super::marker::{QUEUE_LABEL, parse_marker};
use super::{
    BadOutput, Forge, ForgeError, ForgeKind, ForgeRepo, MarkerCheck, MergeProof, PrCheck, PrRef,
    PrState, QueuedPr, Subject,
};
use supervise::{Outcome, supervise};

/// How many queued PRs one discovery call asks for. Explicit, because gh's default (30)
/// would silently hide the rest of a busy queue.
pub const LIST_LIMIT: usize = 200;
/// Default per-call timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// gh's stdout is JSON we parse in memory; more than this is not a PR list.
pub const STDOUT_LIMIT: usize = 16 * 1024 * 1024;
/// stderr kept in memory; the rest is drained and dropped.
const STDERR_KEEP: usize = 64 * 1024;
/// stderr shown in an error message.
const STDERR_SHOWN: usize = 2000;
/// Time between SIGTERM and SIGKILL for a timed-out gh.
const KILL_GRACE: Duration = Duration::from_millis(500);
/// How often the wait loop looks at the child.
const POLL: Duration = Duration::from_millis(10);

const LIST_FIELDS: &str = "number,url,baseRefName,headRefName,body,isCrossRepository";
const CHECK_FIELDS: &str = "number,state,labels,body,headRefName,baseRefName";
const PROOF_FIELDS: &str = "state,mergedAt,mergeCommit";
/// The shared listing of reconcile, audit and the queue detectors: every PR's proof fields.
const STATES_FIELDS: &str = "number,state,mergedAt,mergeCommit";
/// How many of a repo's newest PRs (any state) the shared listing asks for. An older PR
/// that is asked about is asked for alone (`gh pr view`).
pub const STATES_LIMIT: usize = 200;

/// The GitHub CLI forge. Cheap to clone and share.
#[derive(Debug, Clone)]
pub struct GhForge {
    program: PathBuf,
    timeout: Duration,
    env: Vec<(OsString, OsString)>,
    /// The calls running, shared by every clone: what a stopping daemon ends.
    in_flight: Arc<InFlight>,
    /// The daemon's mark on every call, which its next start finds them by.
    mark: Option<CallMark>,
}

impl Default for GhForge {
    fn default() -> Self {
        Self::new()
    }
}

impl GhForge {
    /// `gh` from `PATH`, [`DEFAULT_TIMEOUT`] per call.
    pub fn new() -> Self {
        Self {
            program: PathBuf::from("gh"),
            timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
            in_flight: Arc::default(),
            mark: None,
        }
    }

    /// Use this `gh` executable (a bare name is looked up in `PATH`).
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Kill any call that runs longer than this.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Extra environment for every call (e.g. `GH_CONFIG_DIR` for a service account).
    /// `GH_HOST` is always decided by the repo identity and overrides anything set here; a
    /// `PATH` set here is also where a bare program name is looked up.
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Marks every call with `mark` (a daemon's), so that the daemon's next start ends what
    /// a SIGKILL left running ([`super::leftover_calls`]).
    pub fn with_mark(mut self, mark: Option<CallMark>) -> Self {
        self.mark = mark;
        self
    }

    /// Runs gh; returns its stdout parsed as JSON, and the command line for later messages.
    fn run_json(
        &self,
        target: &GhRepo<'_>,
        subject: &Subject,
        args: &[&str],
    ) -> Result<(Value, String), ForgeError> {
        let command = self.render(args);
        let stdout = self.run(target, subject, args, &command)?;
        match serde_json::from_slice(&stdout) {
            Ok(value) => Ok((value, command)),
            Err(e) => Err(ForgeError::BadOutput {
                subject: subject.clone(),
                command,
                detail: BadOutput::NotJson(e),
            }),
        }
    }

    fn render(&self, args: &[&str]) -> String {
        let mut out = self.program.display().to_string();
        for arg in args {
            out.push(' ');
            out.push_str(arg);
        }
        out
    }

    fn run(
        &self,
        target: &GhRepo<'_>,
        subject: &Subject,
        args: &[&str],
        command: &str,
    ) -> Result<Vec<u8>, ForgeError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // A daemon has no one to answer a prompt or read an upgrade notice.
            .env("GH_PROMPT_DISABLED", "1")
            .env("GH_NO_UPDATE_NOTIFIER", "1")
            .env_remove("GH_REPO");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(mark) = &self.mark {
            mark.apply(&mut cmd);
        }
        match target.enterprise_host() {
            Some(host) => cmd.env("GH_HOST", host),
            // An inherited GH_HOST would send a github.com question to another host.
            None => cmd.env_remove("GH_HOST"),
        };
        let stopped = || ForgeError::Stopped {
            subject: subject.clone(),
            command: command.to_owned(),
        };
        // Counted from before the spawn until the reap, so a stop never misses it.
        let _running = self.in_flight.start().ok_or_else(stopped)?;
        let mut child = cmd.spawn().map_err(|source| ForgeError::Spawn {
            subject: subject.clone(),
            program: self.program.display().to_string(),
            source,
        })?;
        let outcome = supervise(&mut child, self.timeout, &self.in_flight);
        match outcome {
            Outcome::Exited { status, stdout, .. } if status.success() => Ok(stdout),
            Outcome::Exited { status, stderr, .. } => Err(ForgeError::CommandFailed {
                subject: subject.clone(),
                command: command.to_owned(),
                status: describe_status(status),
                stderr: shown_stderr(&stderr),
            }),
            Outcome::Stopped => Err(stopped()),
            Outcome::TimedOut => Err(ForgeError::Timeout {
                subject: subject.clone(),
                command: command.to_owned(),
                after: self.timeout,
            }),
            Outcome::TooLarge => Err(ForgeError::OutputTooLarge {
                subject: subject.clone(),
                command: command.to_owned(),
                limit: STDOUT_LIMIT,
            }),
            Outcome::Lost(e) => Err(ForgeError::CommandFailed {
                subject: subject.clone(),
                command: command.to_owned(),
                status: format!("lost track of it: {e}"),
                stderr: "(not collected)".into(),
            }),
        }
    }
}

impl Forge for GhForge {
    fn kind(&self) -> ForgeKind {
        ForgeKind::GitHub
    }

    fn stop_calls(&self, within: Duration) -> bool {
        self.in_flight.stop(within)
    }

    fn list_queued(&self, repo: &ForgeRepo) -> Result<Vec<QueuedPr>, ForgeError> {
        let filter = ["--state", "open", "--label", QUEUE_LABEL];
        let (value, command, subject) = self.list(repo, &filter, LIST_LIMIT, LIST_FIELDS)?;
        let Value::Array(items) = value else {
            return Err(ForgeError::BadOutput {
                subject,
                command,
                detail: BadOutput::NotAList,
            });
        };
        if items.len() >= LIST_LIMIT {
            tracing::warn!(
                repo = %repo.identity,
                limit = LIST_LIMIT,
                "gh pr list hit its limit; queued PRs beyond it are not discovered this tick"
            );
        }
        Ok(items
            .iter()
            .filter_map(|item| queued_pr(&repo.identity, item))
            .collect())
    }

    fn check_pr(&self, repo: &ForgeRepo, pr: &PrRef<'_>) -> Result<PrCheck, ForgeError> {
        let target = GhRepo::parse(&repo.identity)?;
        let subject = Subject::pr(repo, pr.number);
        let (value, command) = self.view(&target, &subject, pr.number, CHECK_FIELDS)?;
        let bad = |detail: BadOutput| ForgeError::BadOutput {
            subject: subject.clone(),
            command: command.clone(),
            detail,
        };
        let number = value
            .get("number")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(BadOutput::NoNumber))?;
        let state = parse_state(&value).map_err(&bad)?;
        let labelled = match value.get("labels") {
            Some(Value::Array(labels)) => labels.iter().any(is_queue_label),
            Some(Value::Null) | None => false,
            Some(_) => return Err(bad(BadOutput::Labels)),
        };
        let marker = match value.get("body").and_then(Value::as_str).map(parse_marker) {
            Some(Ok(m)) => MarkerCheck::Valid(m),
            Some(Err(e)) => MarkerCheck::Invalid(e),
            None => MarkerCheck::Invalid(super::MarkerError::Missing),
        };
        let branch = |key: &'static str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| bad(BadOutput::NoText(key)))
        };
        Ok(PrCheck {
            number,
            state,
            labelled,
            marker,
            head_branch: branch("headRefName")?,
            base_branch: branch("baseRefName")?,
            // GitHub keeps a deleted head's name; the landing looks at origin when it
            // needs to know.
            head_on_origin: None,
            seen_on: "GitHub",
        })
    }

    /// GitHub publishes every PR's head on the base repository, forks included.
    fn pr_head_ref(&self, number: u64) -> Option<String> {
        Some(format!("refs/pull/{number}/head"))
    }

    fn merge_proof(&self, repo: &ForgeRepo, pr: &PrRef<'_>) -> Result<MergeProof, ForgeError> {
        let target = GhRepo::parse(&repo.identity)?;
        let subject = Subject::pr(repo, pr.number);
        let (value, command) = self.view(&target, &subject, pr.number, PROOF_FIELDS)?;
        proof_of(&value).map_err(|detail| ForgeError::BadOutput {
            subject: subject.clone(),
            command,
            detail,
        })
    }

    /// One `gh pr list --state all` for the repo's newest [`STATES_LIMIT`] PRs; a PR asked
    /// about that is older than those (the listing came back full without it) is asked
    /// for alone.
    fn merge_proofs(
        &self,
        repo: &ForgeRepo,
        prs: &[PrRef<'_>],
    ) -> Result<HashMap<u64, MergeProof>, ForgeError> {
        let (value, command, subject) =
            self.list(repo, &["--state", "all"], STATES_LIMIT, STATES_FIELDS)?;
        let bad = |detail: BadOutput| ForgeError::BadOutput {
            subject: subject.clone(),
            command: command.clone(),
            detail,
        };
        let Value::Array(items) = &value else {
            return Err(bad(BadOutput::NotAList));
        };
        let mut proofs = HashMap::new();
        for item in items {
            let number = item
                .get("number")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(BadOutput::UnnumberedPr))?;
            proofs.insert(number, proof_of(item).map_err(&bad)?);
        }
        let missing: Vec<PrRef<'_>> = prs
            .iter()
            .filter(|pr| !proofs.contains_key(&pr.number))
            .copied()
            .collect();
        if items.len() >= STATES_LIMIT {
            proofs.extend(super::proofs_one_by_one(self, repo, &missing));
        } else {
            for pr in &missing {
                tracing::warn!(repo = %repo.identity, "PR #{} is not in `{command}`", pr.number);
            }
        }
        Ok(proofs)
    }
}

/// A PR's merge proof from its `state`, `mergedAt` and `mergeCommit`.
fn proof_of(value: &Value) -> Result<MergeProof, BadOutput> {
    let state = parse_state(value)?;
    let merged_at = value
        .get("mergedAt")
        .and_then(Value::as_str)
        // gh has been seen to print Go's zero time for "never"; that is not a merge.
        .filter(|t| !t.is_empty() && !t.starts_with("0001-01-01"))
        .map(str::to_owned);
    let merge_commit = value
        .get("mergeCommit")
        .and_then(|c| c.get("oid"))
        .and_then(Value::as_str)
        .filter(|oid| !oid.is_empty())
        .map(str::to_owned);
    Ok(MergeProof {
        merged: state == PrState::Merged && merged_at.is_some(),
        state,
        merged_at,
        merge_commit,
    })
}

impl GhForge {
    /// `gh pr list --repo <owner/name> <filter> --limit <limit> --json <fields>`: the JSON,
    /// the command line, and the subject (the repo) errors name.
    fn list(
        &self,
        repo: &ForgeRepo,
        filter: &[&str],
        limit: usize,
        fields: &str,
    ) -> Result<(Value, String, Subject), ForgeError> {
        let target = GhRepo::parse(&repo.identity)?;
        let subject = Subject::repo(repo);
        let full_name = target.full_name();
        let limit = limit.to_string();
        let mut args = vec!["pr", "list", "--repo", &full_name];
        args.extend_from_slice(filter);
        args.extend(["--limit", &limit, "--json", fields]);
        let (value, command) = self.run_json(&target, &subject, &args)?;
        Ok((value, command, subject))
    }

    /// `gh pr view <N> --repo <owner/name> --json <fields>`: the JSON and the command line.
    fn view(
        &self,
        target: &GhRepo<'_>,
        subject: &Subject,
        number: u64,
        fields: &str,
    ) -> Result<(Value, String), ForgeError> {
        let number = number.to_string();
        let full_name = target.full_name();
        let args = [
            "pr", "view", &number, "--repo", &full_name, "--json", fields,
        ];
        let (value, command) = self.run_json(target, subject, &args)?;
        if !value.is_object() {
            return Err(ForgeError::BadOutput {
                subject: subject.clone(),
                command,
                detail: BadOutput::NotAnObject,
            });
        }
        Ok((value, command))
    }
}

/// A validated `host/owner/name` identity, ready for `--repo` and `GH_HOST`.
#[derive(Debug, PartialEq, Eq)]
struct GhRepo<'a> {
    host: &'a str,
    owner: &'a str,
    name: &'a str,
}

impl<'a> GhRepo<'a> {
    /// Only `[A-Za-z0-9._-]` segments, exactly three, none empty, `.`/`..` or starting with
    /// `-` (which gh would read as a flag). Anything else never reaches a command line.
    fn parse(identity: &'a str) -> Result<Self, ForgeError> {
        let refuse = |reason| ForgeError::NotGitHub {
            identity: identity.to_owned(),
            reason,
        };
        if identity.starts_with("path:") {
            return Err(refuse("a repo without an origin remote has no GitHub PRs"));
        }
        let mut parts = identity.split('/');
        let (Some(host), Some(owner), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refuse("expected exactly host/owner/name"));
        };
        for seg in [host, owner, name] {
            if seg.is_empty() || seg == "." || seg == ".." || seg.starts_with('-') {
                return Err(refuse("empty, dot or dash-led segment"));
            }
            if !seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err(refuse("segments may only use A-Z a-z 0-9 . _ -"));
            }
        }
        Ok(Self { host, owner, name })
    }

    fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    fn enterprise_host(&self) -> Option<&'a str> {
        (!self.host.eq_ignore_ascii_case("github.com")).then_some(self.host)
    }
}

/// One discovered PR, or `None` (with a warning) when it must not be queued.
fn queued_pr(identity: &str, item: &Value) -> Option<QueuedPr> {
    let Some(number) = item.get("number").and_then(Value::as_u64) else {
        tracing::warn!(repo = %identity, "dropping a listed PR without an integer number");
        return None;
    };
    // Missing counts as a fork: only a PR gh positively says is same-repo is landed.
    if item.get("isCrossRepository").and_then(Value::as_bool) != Some(false) {
        tracing::warn!(repo = %identity, pr = number, "dropping queued PR from a fork");
        return None;
    }
    let marker = match parse_marker(item.get("body").and_then(Value::as_str).unwrap_or("")) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(repo = %identity, pr = number, reason = %e, "dropping labelled PR without a valid queue marker");
            return None;
        }
    };
    let branch = |key: &str| {
        item.get(key)
            .and_then(Value::as_str)
            .filter(|b| !b.is_empty())
            .map(str::to_owned)
    };
    let (Some(head_branch), Some(base_branch)) = (branch("headRefName"), branch("baseRefName"))
    else {
        tracing::warn!(repo = %identity, pr = number, "dropping queued PR without head/base branch names");
        return None;
    };
    Some(QueuedPr {
        number,
        url: item.get("url").and_then(Value::as_str).map(str::to_owned),
        head_branch,
        base_branch,
        marker,
    })
}

fn parse_state(value: &Value) -> Result<PrState, BadOutput> {
    match value.get("state").and_then(Value::as_str) {
        Some(text) => {
            PrState::from_gstack(text).ok_or_else(|| BadOutput::UnknownState(text.to_owned()))
        }
        None => Err(BadOutput::NoState),
    }
}

/// gh prints labels as objects with a `name`; plain strings are accepted too, as gstack does.
fn is_queue_label(label: &Value) -> bool {
    match label {
        Value::String(name) => name == QUEUE_LABEL,
        other => other.get("name").and_then(Value::as_str) == Some(QUEUE_LABEL),
    }
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

fn shown_stderr(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return "(no stderr)".into();
    }
    match text.char_indices().nth(STDERR_SHOWN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_must_be_exactly_host_owner_name() {
        let ok = GhRepo::parse("github.com/acme/widget").expect("valid");
        assert_eq!(ok.full_name(), "acme/widget");
        assert_eq!(ok.enterprise_host(), None);
        let ghe = GhRepo::parse("ghe.example.com/acme/widget.js").expect("valid");
        assert_eq!(ghe.enterprise_host(), Some("ghe.example.com"));
        for bad in [
            "path:/home/u/code/widget",
            "acme/widget",
            "gitlab.example.com/group/sub/repo",
            "github.com/acme/",
            "github.com/-acme/widget",
            "github.com/acme/--upload-pack=x",
            "github.com/../widget",
            "github.com/./widget",
            "github.com/ac me/widget",
            "github.com/acme/wid;get",
            "github.com/acme/widget\n",
            "",
        ] {
            let err = GhRepo::parse(bad).expect_err(bad);
            assert!(
                err.to_string().contains("not a GitHub repository identity"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn stderr_is_trimmed_and_capped() {
        assert_eq!(shown_stderr(b"  boom \n"), "boom");
        assert_eq!(shown_stderr(b""), "(no stderr)");
        let long = "é".repeat(STDERR_SHOWN + 10);
        let shown = shown_stderr(long.as_bytes());
        assert_eq!(shown.chars().count(), STDERR_SHOWN + 1);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn labels_match_by_name() {
        assert!(is_queue_label(&serde_json::json!({"name": QUEUE_LABEL})));
        assert!(is_queue_label(&serde_json::json!(QUEUE_LABEL)));
        assert!(!is_queue_label(&serde_json::json!({"name": "other"})));
        assert!(!is_queue_label(&serde_json::json!(3)));
    }
}
