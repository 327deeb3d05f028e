//! Running the detectors: one orchestrator state (with its plan, stdout log, review report
//! and worktree) through every `rules/detectors/*.rhai`, then the learned patterns through
//! `rules/learned.rhai`; or the queue's facts through `rules/detectors/queue/*.rhai`.
//!
//! Each detector is called on its own and its answer validated on its own: one detector's
//! error or timeout is reported and never hides another's faults.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{Dynamic, Map as RhaiMap};
use serde_json::Value;

use super::attachment::{self, AttachError, Keep};
use super::fault::Fault;
use super::json_file::{self, JsonFileError};
use super::learned::{LEARNED_PREFIX, LearnedSet, distinct, parse_learned_faults};
use super::learned_match::{Budget, Texts, window};
use super::parse_budget::ParseError;
use super::rules::{
    DETECT_FN, DETECTORS, LEARNED_FN, LEARNED_RULE, QUEUE_DETECTORS, StateDoc, parse_faults,
};
use super::state_file;
use super::state_jsonpath::Document;
use crate::rules::RuleSet;

mod error;

pub use super::state_file::MAX_STATE_BYTES;
pub use error::{BadAnswer, DetectError};
/// Plan and stdout text handed to rules: the head of a plan, the tail of a log. Below the
/// engine's string limit, so a rule can still build strings from them.
pub const MAX_TEXT_BYTES: usize = 2 * 1024 * 1024;
/// The review report gstack writes beside the state files.
pub const REVIEW_REPORT: &str = "plan-review-report.json";
/// Default iteration limits (detectors.md), overridable by gstack's environment variables.
pub const DEFAULT_MAX_ITER: i64 = 5;

/// A text file attached to a run, with where it came from.
#[derive(Clone, Debug)]
pub struct Attached<T> {
    pub path: PathBuf,
    pub content: T,
}

/// Everything the orchestrator detectors read about one run.
#[derive(Clone, Debug)]
pub struct RunInput {
    pub state: Arc<Document>,
    pub state_file: Option<PathBuf>,
    pub plan: Option<Attached<String>>,
    pub stdout: Option<Attached<String>>,
    pub review: Option<Attached<Value>>,
    /// The review report, when it was there but refused for what parsing it would hold:
    /// reported with the detectors' errors, never left out silently.
    pub review_refused: Option<(PathBuf, Arc<JsonFileError>)>,
    pub worktree: Option<PathBuf>,
    /// An attachment is there but the system failed to read it (`EMFILE`, `ENOMEM`,
    /// `EIO`…): the detectors ran without it, so what they found is not the run's answer
    /// and is worked out again on the next pass.
    pub unread: bool,
    /// The attachments the state named but may not have read, each saying why
    /// ([`attachment`]).
    pub withheld: Vec<String>,
}

/// What running the detectors found.
#[derive(Debug, Default)]
pub struct Detection {
    /// In detectors.md order, learned faults last.
    pub faults: Vec<Fault>,
    /// One line per detector that failed, naming the rule file and the reason.
    pub errors: Vec<DetectError>,
}

impl Detection {
    /// The categories of the faults, each once: what gstack's `persistHitCounts` counts.
    pub fn fired_categories(&self) -> Vec<&str> {
        distinct(self.faults.iter().map(|f| f.category.as_str()))
    }
}

impl RunInput {
    /// A run from its state file: the plan (`--plan`, else the state's `planFile`), the
    /// stdout log (`--stdout`, else the state's `stdoutLog`), the review report beside the
    /// state file and the state's `worktreePath`. Attachments that are absent or
    /// unreadable are left out (each detector then has nothing to say); the state file
    /// itself must be readable JSON.
    pub fn from_files(
        state_file: &Path,
        plan: Option<&Path>,
        stdout: Option<&Path>,
    ) -> Result<RunInput, DetectError> {
        let state = state_file::parse(state_file).map_err(|source| DetectError::State {
            path: state_file.to_owned(),
            source,
        })?;
        Ok(RunInput::from_state(state, Some(state_file), plan, stdout))
    }

    /// A run from an already parsed state.
    pub fn from_state(
        state: Value,
        state_file: Option<&Path>,
        plan: Option<&Path>,
        stdout: Option<&Path>,
    ) -> RunInput {
        RunInput::from_document(Arc::new(Document::new(state)), state_file, plan, stdout)
    }

    /// A run from a state already parsed into its document (the fault watch's cache).
    pub fn from_document(
        document: Arc<Document>,
        state_file: Option<&Path>,
        plan: Option<&Path>,
        stdout: Option<&Path>,
    ) -> RunInput {
        let named = AttachedPaths::of(document.value(), state_file, plan, stdout);
        let mut read = AttachReport::default();
        // A path the operator gave is theirs; one the state names is held to its owner.
        let named_by = |given: Option<&Path>| state_file.filter(|_| given.is_none());
        let (mut review, mut review_refused) = (None, None);
        if let Some(path) = named.review {
            match json_file::read_json(&path) {
                Ok(Some(content)) => review = Some(Attached { path, content }),
                Err(e @ JsonFileError::Parse(ParseError::TooCostly { .. })) => {
                    review_refused = Some((path, Arc::new(e)));
                }
                Err(JsonFileError::Read(crate::hostile_file::ReadError::Io(e))) => {
                    read.unread |= system_failed(&e);
                }
                // Absent or malformed: detectors.md says a malformed report is ignored.
                Ok(None) | Err(_) => {}
            }
        }
        RunInput {
            plan: named
                .plan
                .and_then(|path| attach_text(path, named_by(plan), Keep::Head, &mut read)),
            stdout: named
                .stdout
                .and_then(|path| attach_text(path, named_by(stdout), Keep::Tail, &mut read)),
            state: document,
            state_file: state_file.map(Path::to_owned),
            review,
            review_refused,
            worktree: named.worktree,
            unread: read.unread,
            withheld: read.withheld,
        }
    }

    /// The map every orchestrator detector receives as `input`.
    pub fn to_rule_input(&self) -> Dynamic {
        let mut map = RhaiMap::new();
        let path = |p: Option<&PathBuf>| {
            p.map_or(Dynamic::UNIT, |p| Dynamic::from(p.display().to_string()))
        };
        map.insert(
            "state".into(),
            Dynamic::from(StateDoc(Arc::clone(&self.state))),
        );
        map.insert("stateFile".into(), path(self.state_file.as_ref()));
        map.insert(
            "plan".into(),
            self.plan
                .as_ref()
                .map_or(Dynamic::UNIT, |a| Dynamic::from(a.content.clone())),
        );
        map.insert("planFile".into(), path(self.plan.as_ref().map(|a| &a.path)));
        map.insert(
            "stdout".into(),
            self.stdout
                .as_ref()
                .map_or(Dynamic::UNIT, |a| Dynamic::from(a.content.clone())),
        );
        map.insert(
            "stdoutFile".into(),
            path(self.stdout.as_ref().map(|a| &a.path)),
        );
        map.insert(
            "review".into(),
            self.review
                .as_ref()
                .and_then(|a| rhai::serde::to_dynamic(&a.content).ok())
                .unwrap_or(Dynamic::UNIT),
        );
        map.insert(
            "reviewFile".into(),
            path(self.review.as_ref().map(|a| &a.path)),
        );
        map.insert("worktree".into(), path(self.worktree.as_ref()));
        // Rules cannot look at the file system: the core answers the one question they need.
        map.insert(
            "worktreeExists".into(),
            Dynamic::from(self.worktree.as_ref().is_some_and(|w| w.is_dir())),
        );
        let (codex, test) = iteration_limits();
        let mut limits = RhaiMap::new();
        limits.insert("codexMaxIter".into(), Dynamic::from_int(codex));
        limits.insert("testMaxIter".into(), Dynamic::from_int(test));
        map.insert("limits".into(), Dynamic::from_map(limits));
        Dynamic::from_map(map)
    }
}

/// Where a run's attachments are, as named by its state: everything the detectors read
/// besides the state itself (and the environment's limits).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachedPaths {
    /// `--plan`, else the state's `planFile`.
    pub plan: Option<PathBuf>,
    /// `--stdout`, else the state's `stdoutLog`.
    pub stdout: Option<PathBuf>,
    /// The review report beside the state file.
    pub review: Option<PathBuf>,
    /// The state's `worktreePath`.
    pub worktree: Option<PathBuf>,
}

impl AttachedPaths {
    pub fn of(
        state: &Value,
        state_file: Option<&Path>,
        plan: Option<&Path>,
        stdout: Option<&Path>,
    ) -> AttachedPaths {
        let named = |field: &str| state.get(field).and_then(Value::as_str).map(PathBuf::from);
        AttachedPaths {
            plan: plan.map(Path::to_owned).or_else(|| named("planFile")),
            stdout: stdout.map(Path::to_owned).or_else(|| named("stdoutLog")),
            review: state_file
                .and_then(Path::parent)
                .map(|dir| dir.join(REVIEW_REPORT)),
            worktree: named("worktreePath"),
        }
    }
}

/// The iteration limits every detector sees (`limits`), from gstack's environment.
pub fn iteration_limits() -> (i64, i64) {
    (
        env_limit("GSTACK_BUILD_CODEX_MAX_ITER"),
        env_limit("GSTACK_BUILD_TEST_MAX_ITER"),
    )
}

/// The text at `path`, `None` when it cannot be had; `unread` is set when the system failed
/// to read what is there, and a file the state (`named_by`) may not have read adds why to
/// `withheld` ([`attachment`]).
fn attach_text(
    path: PathBuf,
    named_by: Option<&Path>,
    keep: Keep,
    read: &mut AttachReport,
) -> Option<Attached<String>> {
    let bytes = match attachment::read(&path, named_by, keep, MAX_TEXT_BYTES as u64) {
        Ok(bytes) => bytes,
        Err(AttachError::Io(e)) => {
            read.unread |= system_failed(&e);
            return None;
        }
        Err(AttachError::Withheld(why)) => {
            read.withheld.push(why.to_string());
            return None;
        }
    };
    Some(Attached {
        path,
        content: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// What reading a run's attachments could not do.
#[derive(Default)]
struct AttachReport {
    unread: bool,
    withheld: Vec<String>,
}

/// Whether a read failed for the system's reasons, worth trying again on the next pass
/// (out of descriptors or memory, an I/O error, an interrupted or busy call). Any other
/// failure is an answer about what the state names and stays so until a stamp moves: a
/// symlink (`ELOOP`, never followed), a socket (`ENXIO`), a path through a file
/// (`ENOTDIR`), a name too long (`ENAMETOOLONG`), no access (`EACCES`, `EPERM`: fixing the
/// mode moves the file's ctime, so the run is read again then), like a missing file.
fn system_failed(e: &std::io::Error) -> bool {
    use nix::libc::{
        EAGAIN, EBUSY, EINTR, EIO, EMFILE, ENFILE, ENOBUFS, ENOMEM, ESTALE, ETIMEDOUT,
    };
    matches!(
        e.raw_os_error(),
        Some(
            EMFILE | ENFILE | ENOMEM | ENOBUFS | EIO | EINTR | EAGAIN | EBUSY | ESTALE | ETIMEDOUT
        )
    )
}

/// A positive integer from the environment, else [`DEFAULT_MAX_ITER`].
fn env_limit(name: &str) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_MAX_ITER)
}

/// Calls one detector file and validates its answer.
pub fn run_detector(set: &RuleSet, file: &str, input: Dynamic) -> Result<Vec<Fault>, DetectError> {
    let answer = set.call(file, DETECT_FN, vec![input])?;
    let json: Value =
        rhai::serde::from_dynamic(&answer).map_err(|source| DetectError::NotJson {
            file: file.to_owned(),
            function: DETECT_FN,
            source,
        })?;
    parse_faults(&json).map_err(|e| DetectError::InvalidAnswer {
        file: file.to_owned(),
        function: DETECT_FN,
        source: BadAnswer::Detector(e),
    })
}

/// Every orchestrator detector over `run`, then the learned patterns of `learned`, with no
/// time limit on them (a one-off command).
pub fn detect_run(set: &RuleSet, run: &RunInput, learned: &LearnedSet) -> Detection {
    let mut budget = Budget::unlimited();
    let mut detection = detect_run_within(set, run, learned, &mut budget);
    // What the fault watch reports of its pass, said here as errors: a pattern with no
    // answer of its own did not match, and the command says so rather than "no faults".
    let unanswered: Vec<DetectError> = (budget.unanswered())
        .filter_map(|(at, why)| {
            let (index, category) = learned.patterns.get(at).map(|p| (p.index, &p.category))?;
            let category = category.clone();
            Some(DetectError::LearnedUnanswered {
                index,
                category,
                why,
            })
        })
        .collect();
    detection.errors.extend(unanswered);
    detection
        .errors
        .extend(budget.worker.failed.take().map(DetectError::from));
    detection
}

/// [`detect_run`] with the learned regexes held to what is left of one tick's `budget`.
pub fn detect_run_within(
    set: &RuleSet,
    run: &RunInput,
    learned: &LearnedSet,
    budget: &mut Budget,
) -> Detection {
    let mut detection = Detection::default();
    if let Some((path, source)) = &run.review_refused {
        detection.errors.push(DetectError::ReviewRefused {
            path: path.clone(),
            source: Arc::clone(source),
        });
    }
    let input = run.to_rule_input();
    for file in set.files_matching(DETECTORS) {
        match run_detector(set, file, input.clone()) {
            Ok(faults) => detection.faults.extend(faults),
            Err(error) => detection.errors.push(error),
        }
    }
    if !learned.patterns.is_empty() {
        apply_learned(set, run, &input, learned, budget, &mut detection);
    }
    detection
}

/// The learned pass (fault-detectors.md §3.2 step 5): the core matches the native kinds
/// over the windowed texts, then `rules/learned.rhai` decides which of those matches (and
/// which patterns of kinds the core does not know) become faults, given the categories
/// the built-in detectors already raised. Not called when nothing matched and every kind
/// is native: there is nothing to decide.
fn apply_learned(
    set: &RuleSet,
    run: &RunInput,
    input: &Dynamic,
    learned: &LearnedSet,
    budget: &mut Budget,
    detection: &mut Detection,
) {
    let stdout = run.stdout.as_ref().map(|a| window(&a.content));
    let plan = run.plan.as_ref().map(|a| window(&a.content));
    let state = run.state.value();
    let texts = Texts {
        stdout,
        plan,
        // gstack tests `state.failureReason ?? ""`; a non-string is not text to match.
        failure_reason: state.get("failureReason").and_then(Value::as_str),
    };
    let matched = learned.matching_within(run.state_file.as_deref(), &texts, &run.state, budget);
    let mut candidates: Vec<Value> = Vec::new();
    let mut matched = matched.into_iter().peekable();
    for pattern in &learned.patterns {
        if matched.peek().is_some_and(|m| std::ptr::eq(*m, pattern)) {
            matched.next();
            candidates.push(pattern.to_rule_json(true));
        } else if !pattern.is_native() {
            candidates.push(pattern.to_rule_json(false));
        }
    }
    if candidates.is_empty() {
        return;
    }
    let produced: Vec<&str> = detection.fired_categories();
    let (Some(mut map), Ok(candidates), Ok(produced)) = (
        input.clone().try_cast::<RhaiMap>(),
        rhai::serde::to_dynamic(&candidates),
        rhai::serde::to_dynamic(&produced),
    ) else {
        detection.errors.push(DetectError::PatternsNotRepresentable);
        return;
    };
    let text = |t: Option<&str>| t.map_or(Dynamic::UNIT, |t| Dynamic::from(t.to_owned()));
    // The rule sees the windows the core matched over, not the whole texts.
    map.insert("stdout".into(), text(stdout));
    map.insert("plan".into(), text(plan));
    map.insert("patterns".into(), candidates);
    map.insert("produced".into(), produced);
    let answer = set
        .call(LEARNED_RULE, LEARNED_FN, vec![Dynamic::from_map(map)])
        .map_err(DetectError::from)
        .and_then(|answer| {
            rhai::serde::from_dynamic::<Value>(&answer).map_err(|source| DetectError::NotJson {
                file: LEARNED_RULE.to_owned(),
                function: LEARNED_FN,
                source,
            })
        })
        .and_then(|json| {
            learned_faults(&json, learned).map_err(|source| DetectError::InvalidAnswer {
                file: LEARNED_RULE.to_owned(),
                function: LEARNED_FN,
                source,
            })
        });
    match answer {
        Ok(faults) => detection.faults.extend(faults),
        Err(error) => detection.errors.push(error),
    }
}

/// The learned rule's answer as faults: each must belong to a loaded pattern, and every
/// description says it is learned, whatever the rule does.
fn learned_faults(answer: &Value, learned: &LearnedSet) -> Result<Vec<Fault>, BadAnswer> {
    let mut faults = parse_learned_faults(answer).map_err(BadAnswer::Learned)?;
    for (i, fault) in faults.iter_mut().enumerate() {
        if learned.by_category(&fault.category).is_none() {
            return Err(BadAnswer::NotLoaded {
                number: i + 1,
                category: fault.category.clone(),
            });
        }
        if !fault.description.starts_with(LEARNED_PREFIX) {
            fault.description = format!("{LEARNED_PREFIX}{}", fault.description);
        }
    }
    Ok(faults)
}

/// How many unreadable queue files the queue detectors see by name (the first by file
/// name); `unreadableCount` counts them all. A directory of junk must not turn into a rule
/// input over the engine's size limits (10,000 files made UNREADABLE_RECORD fail and file
/// nothing) or into a halt event per file.
pub const MAX_UNREADABLE_LISTED: usize = 20;

/// The queue detectors over the queue's facts (records, unreadable files, locks, forge).
/// The unreadable files are cut to the first [`MAX_UNREADABLE_LISTED`] by name, with their
/// number (and `unreadableUnlisted`, those the view only counted) in `unreadableCount`.
pub fn detect_queue(set: &RuleSet, facts: &Value) -> Detection {
    let mut detection = Detection::default();
    let mut facts = facts.clone();
    if let Some(map) = facts.as_object_mut() {
        let mut unreadable = match map.remove("unreadable") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let unlisted = map
            .remove("unreadableUnlisted")
            .and_then(|n| n.as_u64())
            .unwrap_or(0);
        map.insert(
            "unreadableCount".into(),
            Value::from(unreadable.len() as u64 + unlisted),
        );
        unreadable.sort_by(|a, b| a["file"].as_str().cmp(&b["file"].as_str()));
        unreadable.truncate(MAX_UNREADABLE_LISTED);
        map.insert("unreadable".into(), Value::Array(unreadable));
    }
    let input = match rhai::serde::to_dynamic(&facts) {
        Ok(input) => input,
        Err(e) => {
            detection.errors.push(DetectError::FactsNotRepresentable(e));
            return detection;
        }
    };
    for file in set.files_matching(QUEUE_DETECTORS) {
        match run_detector(set, file, input.clone()) {
            Ok(faults) => detection.faults.extend(faults),
            Err(error) => detection.errors.push(error),
        }
    }
    detection
}

#[cfg(test)]
mod tests {
    use super::system_failed;
    use nix::libc;

    /// Only a failure the system may not repeat is read again on every pass; a refusal of
    /// what the state names (no access included) is kept until a stamp moves.
    #[test]
    fn only_a_failure_of_the_system_is_read_again() {
        let failed = |errno| system_failed(&std::io::Error::from_raw_os_error(errno));
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOMEM,
            libc::EIO,
            libc::EINTR,
        ] {
            assert!(failed(errno), "errno {errno} was taken for a refusal");
        }
        for errno in [
            libc::ENOENT,
            libc::EACCES,
            libc::EPERM,
            libc::ENAMETOOLONG,
            libc::ELOOP,
            libc::ENXIO,
            libc::ENOTDIR,
            libc::EISDIR,
        ] {
            assert!(
                !failed(errno),
                "errno {errno} was taken for a system failure"
            );
        }
        assert!(!system_failed(&std::io::Error::other("short read")));
    }
}
