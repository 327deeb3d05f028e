//! Learned patterns (`learned-patterns.json`, DESIGN §7): faults an investigator taught
//! berth as data. Loading keeps what gstack's loader keeps (fault-detectors.md §4.2: any
//! non-empty category, duplicates included) and refuses, with a warning naming the entry's
//! index, only an entry gstack refuses or one past berth's bounds (a regex over the size
//! limit, a path outside the `state_jsonpath` grammar). The valid set is compiled once per
//! version of the file ([`LearnedSource`]) and matched natively ([`super::learned_match`]);
//! `rules/learned.rhai` then decides which matches become faults and matches the kinds the
//! core does not know.
//!
//! Hits are counted back into the file as gstack's `persistHitCounts` does, under a
//! [`PidLock`], by an atomic rewrite that keeps every field berth does not know.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::fault::{Fault, FieldError, Severity, kind_of, required_text};
use super::json_file::{self, JsonFileError};
use super::learned_match::{
    Budget, COMPILED_BUDGET_BYTES, Compiled, Field, MatchError, Matcher, Regex, RunAnswers, Texts,
};
use super::pid_lock::PidLockError;
use super::state_jsonpath::{Document, PathError, StatePath};
use crate::hostile_file::ReadError;
use crate::rules::spec::Invalid;

mod answers;
mod digest;
mod hits;
mod source;

pub use hits::{HitCounts, MAX_PENDING_CATEGORIES, record_hits, record_hits_of_calls};
pub(crate) use hits::{read_array, write_array, write_counts};
pub use source::LearnedSource;

/// The prefix of every learned fault's description.
pub const LEARNED_PREFIX: &str = "[learned] ";

/// The seven matcher kinds the core matches natively (fault-detectors.md §4.3).
pub const NATIVE_KINDS: [&str; 7] = [
    "stdout_contains",
    "stdout_regex",
    "failureReason_contains",
    "failureReason_regex",
    "plan_contains",
    "plan_regex",
    "state_jsonpath",
];

/// How the core matches `kind` (`None`: not natively, the rule decides).
fn native(kind: &str) -> Option<(Option<Field>, bool)> {
    Some(match kind {
        "stdout_contains" => (Some(Field::Stdout), false),
        "stdout_regex" => (Some(Field::Stdout), true),
        "failureReason_contains" => (Some(Field::FailureReason), false),
        "failureReason_regex" => (Some(Field::FailureReason), true),
        "plan_contains" => (Some(Field::Plan), false),
        "plan_regex" => (Some(Field::Plan), true),
        "state_jsonpath" => (None, false),
        _ => return None,
    })
}

/// Why one entry of a pattern file (or one proposal) is not a usable pattern.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("must be a map, not {0}")]
    NotAMap(&'static str),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("field `severity`: `{0}` is not CRITICAL, HIGH or MEDIUM")]
    Severity(String),
    #[error("field `pattern`: not a usable regex: {0}")]
    Regex(MatchError),
    #[error("field `pattern`: {0}")]
    Path(PathError),
    #[error(
        "the compiled regexes before it already hold {memory} of the {COMPILED_BUDGET_BYTES} bytes all learned regexes may use, and it needs {cost}"
    )]
    OverBudget { memory: usize, cost: usize },
    /// A proposal's line that is not JSON at all.
    #[error("not valid JSON: {0}")]
    NotJson(#[from] serde_json::Error),
}

/// Why a pattern file as a whole is unusable (the message follows the file's name).
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Json(#[from] JsonFileError),
    #[error("must be a JSON array of patterns, not {0}")]
    NotArray(&'static str),
    #[error(transparent)]
    Matchers(#[from] MatchError),
    #[error("compiling the patterns panicked (a bug: please report it)")]
    Panicked,
}

/// Why a pattern file could not be loaded, counted or rewritten.
#[derive(Debug, thiserror::Error)]
pub enum LearnedError {
    #[error("{}: {source}", .path.display())]
    Load { path: PathBuf, source: SetError },
    #[error("{}: must be a JSON array, not {found}; left untouched", .path.display())]
    NotArray { path: PathBuf, found: &'static str },
    #[error("{}: {source}; left untouched", .path.display())]
    Unreadable {
        path: PathBuf,
        source: JsonFileError,
    },
    #[error("{}: {source}", .path.display())]
    Encode { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Lock(#[from] PidLockError),
}

/// Why a learned rule's answer is not a list of faults.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("a list of faults is expected, not {0}")]
    NotAList(&'static str),
    #[error("fault #{number}: {source}")]
    NotAFault {
        number: usize,
        source: serde_json::Error,
    },
    #[error("fault #{0}: `category` and `description` must not be empty")]
    Empty(usize),
}

/// One valid learned pattern.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LearnedPattern {
    /// Position in the file's array, for messages.
    #[serde(skip)]
    pub index: usize,
    pub category: String,
    pub severity: Severity,
    pub description: String,
    pub matcher_kind: String,
    pub pattern: String,
    pub source: Option<String>,
    pub learned_at: Option<String>,
    pub hit_count: u64,
    pub last_hit: Option<String>,
}

impl LearnedPattern {
    /// Validates one entry of the array (or one proposal) as gstack's loader does, plus
    /// berth's bounds on regexes and paths.
    pub fn from_json(index: usize, value: &Value) -> Result<LearnedPattern, PatternError> {
        LearnedPattern::compile(index, value).map(|(pattern, _)| pattern)
    }

    /// [`LearnedPattern::from_json`], keeping the compiled matcher.
    fn compile(index: usize, value: &Value) -> Result<(LearnedPattern, Matcher), PatternError> {
        let Value::Object(map) = value else {
            return Err(PatternError::NotAMap(kind_of(value)));
        };
        let category = trimmed_text(map, "category")?;
        let severity = trimmed_text(map, "severity")?;
        let severity =
            Severity::parse(severity).ok_or_else(|| PatternError::Severity(severity.to_owned()))?;
        let description = trimmed_text(map, "description")?;
        let kind = trimmed_text(map, "matcherKind")?;
        let pattern = trimmed_text(map, "pattern")?;
        let matcher = match native(kind) {
            None => Matcher::Rule,
            Some((Some(field), false)) => Matcher::Contains(field),
            Some((Some(field), true)) => {
                Matcher::Regex(field, Regex::compile(pattern).map_err(PatternError::Regex)?)
            }
            Some((None, _)) => {
                StatePath::parse(pattern).map_err(PatternError::Path)?;
                Matcher::Path
            }
        };
        let text = |field: &str| map.get(field).and_then(Value::as_str).map(str::to_owned);
        let pattern = LearnedPattern {
            index,
            category: category.to_owned(),
            severity,
            description: description.to_owned(),
            matcher_kind: kind.to_owned(),
            pattern: pattern.to_owned(),
            source: text("source"),
            learned_at: text("learnedAt"),
            // Not validated by gstack either: shown as 0 unless a count.
            hit_count: map.get("hitCount").and_then(Value::as_u64).unwrap_or(0),
            last_hit: text("lastHit"),
        };
        Ok((pattern, matcher))
    }

    /// Whether the core matches this pattern's kind (else `rules/learned.rhai` does).
    pub fn is_native(&self) -> bool {
        native(&self.matcher_kind).is_some()
    }

    /// The map a rule sees: the fields it needs to decide and to build the fault, and
    /// whether the core already matched it (`native`).
    pub fn to_rule_json(&self, native: bool) -> Value {
        json!({
            "index": self.index,
            "category": self.category,
            "severity": self.severity,
            "description": self.description,
            "matcherKind": self.matcher_kind,
            "pattern": self.pattern,
            "native": native,
        })
    }
}

/// A string field that is non-empty once trimmed, as gstack's loader requires.
fn trimmed_text<'a>(map: &'a Map<String, Value>, field: &str) -> Result<&'a str, FieldError> {
    match required_text(map, field)? {
        s if s.trim().is_empty() => Err(FieldError::Empty(field.to_owned())),
        s => Ok(s),
    }
}

/// The entries of a file that are loaded; those past it are skipped unread, with one
/// warning. gstack's curator adds a pattern at a time: a file of thousands is planted.
pub const MAX_PATTERNS: usize = 1_000;

/// The valid patterns of one file, compiled, and a warning for every entry skipped.
#[derive(Debug, Default)]
pub struct LearnedSet {
    pub path: PathBuf,
    pub patterns: Vec<LearnedPattern>,
    pub warnings: Vec<String>,
    compiled: Compiled,
    /// Each run's last answers (by its state file), for the patterns a budget leaves out.
    answers: Mutex<HashMap<PathBuf, RunAnswers>>,
    /// The order the runs take their turns at a tick's first match in.
    turns: Mutex<answers::Turns>,
    id: SetId,
    /// What the file said of its patterns (`None`: no file): a rewrite that keeps it keeps
    /// this set.
    digest: Option<digest::PatternsDigest>,
}

/// Tells a set from every other this process made: what the fault watch keys a run's
/// remembered detection by, with no pointer that a later set could reuse.
#[derive(Debug)]
struct SetId(u64);

impl Default for SetId {
    fn default() -> SetId {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        SetId(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

impl LearnedSet {
    /// This set's number among the sets this process made, none of them equal.
    pub fn id(&self) -> u64 {
        self.id.0
    }

    /// Loads `path`; a missing file is an empty set. Fails (naming the file) only when the
    /// file as a whole is unusable: unreadable, not JSON, or not an array.
    pub fn load(path: &Path) -> Result<LearnedSet, LearnedError> {
        match json_file::open_regular(path, json_file::MAX_JSON_BYTES) {
            Ok(None) => Ok(LearnedSet::empty(path)),
            Ok(Some(opened)) => LearnedSet::read(path, opened),
            Err(e) => Err(e.into()),
        }
        .map_err(|source| LearnedError::Load {
            path: path.to_owned(),
            source,
        })
    }

    /// The set in an opened file.
    fn read(path: &Path, opened: (File, Metadata)) -> Result<LearnedSet, SetError> {
        let text = json_file::read_opened(opened, json_file::MAX_JSON_BYTES)?;
        LearnedSet::from_value(path, &json_file::parse(&text)?)
    }

    fn empty(path: &Path) -> LearnedSet {
        LearnedSet {
            path: path.to_owned(),
            ..LearnedSet::default()
        }
    }

    /// The set of a parsed file: every entry validated and compiled.
    fn from_value(path: &Path, value: &Value) -> Result<LearnedSet, SetError> {
        let Value::Array(entries) = value else {
            return Err(SetError::NotArray(kind_of(value)));
        };
        let mut set = LearnedSet::empty(path);
        set.digest = Some(digest::PatternsDigest::of(value));
        if entries.len() > MAX_PATTERNS {
            set.warnings.push(format!(
                "{}: entries {MAX_PATTERNS} to {} skipped: only the first {MAX_PATTERNS} entries are loaded",
                path.display(),
                entries.len() - 1
            ));
        }
        let mut matchers = Vec::new();
        let mut memory = 0;
        for (index, entry) in entries.iter().enumerate().take(MAX_PATTERNS) {
            // A compile is CPU for the daemon's compiling thread: the tick goes first.
            std::thread::yield_now();
            let compiled = LearnedPattern::compile(index, entry).and_then(|(pattern, matcher)| {
                let cost = match &matcher {
                    Matcher::Regex(_, regex) => regex.memory(),
                    _ => 0,
                };
                if memory + cost > COMPILED_BUDGET_BYTES {
                    return Err(PatternError::OverBudget { memory, cost });
                }
                memory += cost;
                Ok((pattern, matcher))
            });
            match compiled {
                Ok((pattern, matcher)) => {
                    if matches!(matcher, Matcher::Rule) {
                        set.warnings.push(format!(
                            "{}: entry {index} ({}): matcherKind `{}` is not one of {}; left to rules/learned.rhai",
                            path.display(),
                            pattern.category,
                            pattern.matcher_kind,
                            NATIVE_KINDS.join(", ")
                        ));
                    }
                    set.patterns.push(pattern);
                    matchers.push(matcher);
                }
                Err(reason) => {
                    let name = entry
                        .get("category")
                        .and_then(Value::as_str)
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default();
                    set.warnings.push(format!(
                        "{}: entry {index}{name} skipped: {reason}",
                        path.display()
                    ));
                }
            }
        }
        set.compiled = Compiled::build(
            matchers
                .into_iter()
                .zip(set.patterns.iter().map(|p| p.pattern.as_str())),
        )?;
        Ok(set)
    }

    /// The index of a pattern already in the set with the same category, or the same kind
    /// and pattern (the curator's dedupe, fault-detectors.md §4.5).
    pub fn duplicate_of(&self, pattern: &LearnedPattern) -> Option<usize> {
        self.patterns
            .iter()
            .find(|p| {
                p.category == pattern.category
                    || (p.matcher_kind == pattern.matcher_kind && p.pattern == pattern.pattern)
            })
            .map(|p| p.index)
    }

    pub fn by_category(&self, category: &str) -> Option<&LearnedPattern> {
        self.patterns.iter().find(|p| p.category == category)
    }

    /// The patterns the core matched on this run, in file order.
    pub fn matching(&self, texts: &Texts<'_>, state: &Document) -> Vec<&LearnedPattern> {
        self.matching_within(None, texts, state, &mut Budget::unlimited())
    }

    /// [`LearnedSet::matching`] within one tick's `budget`: a regex the budget left out
    /// keeps its last answer for the run whose state file is `run`.
    pub fn matching_within(
        &self,
        run: Option<&Path>,
        texts: &Texts<'_>,
        state: &Document,
        budget: &mut Budget,
    ) -> Vec<&LearnedPattern> {
        let patterns: Vec<&str> = self.patterns.iter().map(|p| p.pattern.as_str()).collect();
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        let none = RunAnswers::default();
        let last = run.and_then(|run| answers.get(run)).unwrap_or(&none);
        let pass = |budget: &mut Budget| self.compiled.hits(&patterns, texts, state, budget, last);
        let now = match run {
            Some(run) => budget.pass_on(run, pass),
            None => pass(budget),
        };
        let matched = now
            .hit
            .iter()
            .enumerate()
            .filter_map(|(i, hit)| hit.then_some(&self.patterns[i]))
            .collect();
        if let Some(run) = run {
            answers.insert(run.to_owned(), now);
        }
        matched
    }
}

/// The learned rule's answer: a list of faults whose categories are whatever the learned
/// file holds (gstack keeps lower-case ones), so only their shape is checked here, not the
/// built-in detectors' identifier rule. Also the rule's contract for its tests.
pub fn parse_learned_faults(answer: &Value) -> Result<Vec<Fault>, AnswerError> {
    let Value::Array(items) = answer else {
        return Err(AnswerError::NotAList(kind_of(answer)));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let fault: Fault =
                serde_json::from_value(item.clone()).map_err(|source| AnswerError::NotAFault {
                    number: i + 1,
                    source,
                })?;
            if fault.category.trim().is_empty() || fault.description.trim().is_empty() {
                return Err(AnswerError::Empty(i + 1));
            }
            Ok(fault)
        })
        .collect()
}

/// [`parse_learned_faults`] as a rule contract validator.
pub fn validate_learned_faults(_args: &[Value], result: &Value) -> Result<(), Invalid> {
    parse_learned_faults(result).map(drop).map_err(Into::into)
}

/// The lock file that guards `path` (and the investigator files beside it).
pub fn lock_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{name}.lock"))
}

/// `categories` each once, in first-seen order: a call's fired list for [`record_hits`].
pub fn distinct<'a>(categories: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    for category in categories {
        if !seen.contains(&category) {
            seen.push(category);
        }
    }
    seen
}

#[cfg(test)]
mod answers_tests;

#[cfg(test)]
mod owners_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    pub(super) fn entry(category: &str, kind: &str, pattern: &str) -> Value {
        json!({"category": category, "severity": "HIGH", "description": "d", "matcherKind": kind,
               "pattern": pattern, "source": "inv", "learnedAt": "2026-05-17T00:00:00Z",
               "hitCount": 0, "note": "unknown field"})
    }

    #[test]
    fn loading_keeps_what_gstack_keeps_and_refuses_past_the_bounds_by_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learned-patterns.json");
        let entries = json!([
            entry("GOOD_ONE", "stdout_contains", "boom"),
            entry("lower_case", "stdout_regex", "ECONN(?=RESET)"),
            entry("GOOD_ONE", "plan_contains", "other"),
            entry("FUTURE_KIND", "stdout_glob", "x"),
            entry("BAD_REGEX", "stdout_regex", "(x"),
            entry("BAD_PATH", "state_jsonpath", "$..x"),
            {"category": "NO_SEVERITY", "description": "d", "matcherKind": "plan_regex", "pattern": "x"},
            entry("  ", "plan_contains", "x"),
            entry("HUGE_REGEX", "plan_regex", "[01]*1[01]{5000}x"),
            "not a map",
            entry("GOOD_TWO", "state_jsonpath", "$.features[?(@.prNumber)]"),
        ]);
        std::fs::write(&path, entries.to_string()).unwrap();
        let set = LearnedSet::load(&path).unwrap();
        let names: Vec<&str> = set.patterns.iter().map(|p| p.category.as_str()).collect();
        assert_eq!(
            names,
            [
                "GOOD_ONE",
                "lower_case",
                "GOOD_ONE",
                "FUTURE_KIND",
                "GOOD_TWO"
            ]
        );
        let expect = [
            ("entry 3 (FUTURE_KIND)", "left to rules/learned.rhai"),
            ("entry 4 (BAD_REGEX)", "not a usable regex"),
            ("entry 5 (BAD_PATH)", "state_jsonpath grammar"),
            ("entry 6 (NO_SEVERITY)", "`severity`: required"),
            ("entry 7 (  )", "`category`: must not be empty"),
            ("entry 8 (HUGE_REGEX)", "size limit"),
            ("entry 9 skipped", "must be a map"),
        ];
        assert_eq!(set.warnings.len(), expect.len(), "{:#?}", set.warnings);
        for (warning, (who, why)) in set.warnings.iter().zip(expect) {
            assert!(warning.contains(who) && warning.contains(why), "{warning}");
        }
        std::fs::write(&path, "{}").unwrap();
        assert!(
            LearnedSet::load(&path)
                .unwrap_err()
                .to_string()
                .contains("array")
        );
    }

    #[test]
    fn a_missing_field_is_tested_as_empty_text_by_regexes_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learned-patterns.json");
        let entries = json!([
            entry("STDOUT_EMPTY", "stdout_regex", "^$"),
            entry("REASON_EMPTY", "failureReason_regex", "^$"),
            entry("PLAN_EMPTY", "plan_regex", "^$"),
            entry("PLAN_HAS", "plan_contains", "x"),
        ]);
        std::fs::write(&path, entries.to_string()).unwrap();
        let set = LearnedSet::load(&path).unwrap();
        let state = Document::new(json!({}));
        let fired: Vec<&str> = set
            .matching(&Texts::default(), &state)
            .iter()
            .map(|p| p.category.as_str())
            .collect();
        assert_eq!(fired, ["STDOUT_EMPTY", "REASON_EMPTY", "PLAN_EMPTY"]);
    }

    fn patterns_a_and_b() -> Value {
        json!([
            entry("A", "stdout_contains", "x"),
            entry("B", "plan_contains", "y"),
            entry("B", "plan_regex", "invalid("),
            {"description": "no category"}
        ])
    }

    #[test]
    fn hits_count_every_entry_of_a_fired_category_once_per_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learned-patterns.json");
        record_hits(&path, &["B"]).unwrap();
        assert!(!path.exists(), "a missing file is not created");
        std::fs::write(&path, patterns_a_and_b().to_string()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        record_hits(&path, &["B", "B", "OTHER"]).unwrap();
        record_hits(&path, &["B"]).unwrap();
        // A pass's calls under one lock: one hit per call that fired the category.
        record_hits_of_calls(&path, &[vec!["B"], vec!["A", "B"], vec![]]).unwrap();
        let after: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(after[0]["hitCount"], 1);
        assert_eq!(after[1]["hitCount"], 4);
        assert_eq!(
            after[2]["hitCount"], 4,
            "an entry the loader skips is bumped too"
        );
        assert!(after[1]["lastHit"].is_string());
        assert_eq!(after[1]["note"], "unknown field");
        assert_eq!(after[3], json!({"description": "no category"}));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert!(!lock_path(&path).exists());
    }
}
