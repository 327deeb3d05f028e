//! Learned patterns (`learned-patterns.json`, DESIGN §7): faults an investigator taught
//! berth as data. Loading validates every entry (an invalid one is skipped with a warning
//! naming its index and why); hits are counted back into the file under a [`PidLock`],
//! with an atomic rewrite that keeps every field berth does not know.
//!
//! Applying the patterns is a rule (`rules/learned.rhai`), so a new matcher kind is a rule
//! edit; this module only guarantees that what reaches the rule is well-formed data.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use regex::RegexBuilder;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::fault::{MAX_DESCRIPTION_LEN, Severity, kind_of, required_text, valid_category};
use super::json_file;
use super::pid_lock::PidLock;
use super::state_jsonpath::{MAX_PATTERN_BYTES, StatePath};
use crate::atomic_file;

/// The prefix of every learned fault's description.
pub const LEARNED_PREFIX: &str = "[learned] ";

/// Regex patterns are held to the limits of the rules' `regex_is_match` primitive, which
/// is what matches them: a pattern valid here never fails inside `rules/learned.rhai`.
pub const MAX_REGEX_LEN: usize = 1024;
/// Compiled-size limit of one regex (program and lazy DFA), as the primitive sets it.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What a learned pattern looks at, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum MatcherKind {
    #[serde(rename = "stdout_contains")]
    StdoutContains,
    #[serde(rename = "stdout_regex")]
    StdoutRegex,
    #[serde(rename = "failureReason_contains")]
    FailureReasonContains,
    #[serde(rename = "failureReason_regex")]
    FailureReasonRegex,
    #[serde(rename = "plan_contains")]
    PlanContains,
    #[serde(rename = "plan_regex")]
    PlanRegex,
    #[serde(rename = "state_jsonpath")]
    StateJsonpath,
}

impl MatcherKind {
    pub const ALL: [MatcherKind; 7] = [
        MatcherKind::StdoutContains,
        MatcherKind::StdoutRegex,
        MatcherKind::FailureReasonContains,
        MatcherKind::FailureReasonRegex,
        MatcherKind::PlanContains,
        MatcherKind::PlanRegex,
        MatcherKind::StateJsonpath,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MatcherKind::StdoutContains => "stdout_contains",
            MatcherKind::StdoutRegex => "stdout_regex",
            MatcherKind::FailureReasonContains => "failureReason_contains",
            MatcherKind::FailureReasonRegex => "failureReason_regex",
            MatcherKind::PlanContains => "plan_contains",
            MatcherKind::PlanRegex => "plan_regex",
            MatcherKind::StateJsonpath => "state_jsonpath",
        }
    }

    pub fn parse(text: &str) -> Option<MatcherKind> {
        MatcherKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    fn is_regex(self) -> bool {
        matches!(
            self,
            MatcherKind::StdoutRegex | MatcherKind::FailureReasonRegex | MatcherKind::PlanRegex
        )
    }
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
    pub matcher_kind: MatcherKind,
    pub pattern: String,
    pub source: Option<String>,
    pub learned_at: Option<String>,
    pub hit_count: u64,
    pub last_hit: Option<String>,
}

impl LearnedPattern {
    /// Validates one entry of the array (or one proposal). `regexes` compiles regex
    /// patterns with the size limit and keeps them for matching.
    pub fn from_json(index: usize, value: &Value) -> Result<LearnedPattern, String> {
        let Value::Object(map) = value else {
            return Err(format!("must be a map, not {}", kind_of(value)));
        };
        let category = required_text(map, "category")?;
        if !valid_category(category) {
            return Err(format!(
                "field `category`: `{category}` is not an upper-case identifier (A-Z, 0-9, _)"
            ));
        }
        let severity = required_text(map, "severity")?;
        let severity = Severity::parse(severity).ok_or_else(|| {
            format!("field `severity`: `{severity}` is not CRITICAL, HIGH or MEDIUM")
        })?;
        let description = required_text(map, "description")?;
        if description.trim().is_empty() || description.len() > MAX_DESCRIPTION_LEN {
            return Err(format!(
                "field `description`: must be non-empty and at most {MAX_DESCRIPTION_LEN} bytes"
            ));
        }
        let kind = required_text(map, "matcherKind")?;
        let matcher_kind = MatcherKind::parse(kind).ok_or_else(|| {
            let known: Vec<&str> = MatcherKind::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "field `matcherKind`: `{kind}` is not one of {}",
                known.join(", ")
            )
        })?;
        let pattern = required_text(map, "pattern")?;
        if pattern.is_empty() {
            return Err("field `pattern`: must not be empty".into());
        }
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "field `pattern`: {} bytes, over the {MAX_PATTERN_BYTES}-byte limit",
                pattern.len()
            ));
        }
        if matcher_kind.is_regex() {
            validate_regex(pattern)
                .map_err(|e| format!("field `pattern`: not a usable regex: {e}"))?;
        }
        if matcher_kind == MatcherKind::StateJsonpath {
            StatePath::parse(pattern).map_err(|e| format!("field `pattern`: {e}"))?;
        }
        let hit_count = match map.get("hitCount") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_u64().ok_or_else(|| {
                format!("field `hitCount`: must be a non-negative integer, not {v}")
            })?,
        };
        Ok(LearnedPattern {
            index,
            category: category.to_owned(),
            severity,
            description: description.to_owned(),
            matcher_kind,
            pattern: pattern.to_owned(),
            source: optional_text(map, "source")?,
            learned_at: optional_text(map, "learnedAt")?,
            hit_count,
            last_hit: optional_text(map, "lastHit")?,
        })
    }

    /// Whether `entry` (a raw array element) is this pattern: same category, kind and
    /// pattern. Hit counting finds its entry this way, so an edit of the file between load
    /// and hit never bumps the wrong entry.
    fn is_entry(&self, entry: &Value) -> bool {
        entry.get("category").and_then(Value::as_str) == Some(self.category.as_str())
            && entry.get("matcherKind").and_then(Value::as_str) == Some(self.matcher_kind.as_str())
            && entry.get("pattern").and_then(Value::as_str) == Some(self.pattern.as_str())
    }

    /// The map a rule sees: the fields it needs to match and to build the fault.
    pub fn to_rule_json(&self) -> Value {
        json!({
            "category": self.category,
            "severity": self.severity,
            "description": self.description,
            "matcherKind": self.matcher_kind.as_str(),
            "pattern": self.pattern,
        })
    }
}

/// Compiles `pattern` with the matcher's limits, only to say whether it can be used.
fn validate_regex(pattern: &str) -> Result<(), String> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(format!(
            "{} bytes, over the {MAX_REGEX_LEN}-byte limit for regexes",
            pattern.len()
        ));
    }
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(drop)
        .map_err(|e| {
            // regex draws a caret diagram over several lines; a warning wants one.
            e.to_string()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
}

fn optional_text(map: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "field `{field}`: must be a string, not {}",
            kind_of(other)
        )),
    }
}

/// The valid patterns of one file, and a warning for every entry that was skipped.
#[derive(Clone, Debug, Default)]
pub struct LearnedSet {
    pub path: PathBuf,
    pub patterns: Vec<LearnedPattern>,
    pub warnings: Vec<String>,
}

impl LearnedSet {
    /// Loads `path`; a missing file is an empty set. Fails (naming the file) only when the
    /// file as a whole is unusable: unreadable, not JSON, or not an array.
    pub fn load(path: &Path) -> Result<LearnedSet, String> {
        let mut set = LearnedSet {
            path: path.to_owned(),
            ..LearnedSet::default()
        };
        let value = match json_file::read_json(path) {
            Ok(None) => return Ok(set),
            Ok(Some(value)) => value,
            Err(reason) => return Err(format!("{}: {reason}", path.display())),
        };
        let Value::Array(entries) = value else {
            return Err(format!(
                "{}: must be a JSON array of patterns, not {}",
                path.display(),
                kind_of(&value)
            ));
        };
        for (index, entry) in entries.iter().enumerate() {
            match LearnedPattern::from_json(index, entry) {
                Ok(pattern) => {
                    if let Some(first) = set.duplicate_of(&pattern) {
                        set.warnings.push(format!(
                            "{}: entry {index} ({}) skipped: duplicates entry {first} (same category, or same matcherKind and pattern)",
                            path.display(),
                            pattern.category
                        ));
                    } else {
                        set.patterns.push(pattern);
                    }
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
        Ok(set)
    }

    /// The index of a pattern already in the set with the same category, or the same kind
    /// and pattern.
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
}

/// The lock file that guards `path` (and the investigator files beside it).
pub fn lock_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{name}.lock"))
}

/// Bumps `hitCount` and sets `lastHit` of every pattern in `hits`, under the lock, by an
/// atomic rewrite that keeps unknown fields, order and the file's mode. A pattern no longer
/// in the file (edited meanwhile) is skipped with a warning.
pub fn record_hits(path: &Path, hits: &[&LearnedPattern]) -> Result<(), String> {
    if hits.is_empty() {
        return Ok(());
    }
    let _lock = PidLock::acquire_default(&lock_path(path))?;
    let mut entries = read_array(path)?;
    let now = crate::clock::now_iso();
    for hit in hits {
        let Some(entry) = entries.iter_mut().find(|e| hit.is_entry(e)) else {
            tracing::warn!(file = %path.display(), category = %hit.category, "learned pattern changed since it was loaded; hit not counted");
            continue;
        };
        if let Value::Object(map) = entry {
            let count = map.get("hitCount").and_then(Value::as_u64).unwrap_or(0);
            map.insert("hitCount".into(), json!(count + 1));
            map.insert("lastHit".into(), json!(now));
        }
    }
    write_array(path, &entries)
}

/// The raw array of a pattern file, for rewriting; a missing file is an empty array.
pub(crate) fn read_array(path: &Path) -> Result<Vec<Value>, String> {
    match json_file::read_json(path) {
        Ok(None) => Ok(Vec::new()),
        Ok(Some(Value::Array(entries))) => Ok(entries),
        Ok(Some(other)) => Err(format!(
            "{}: must be a JSON array, not {}; left untouched",
            path.display(),
            kind_of(&other)
        )),
        Err(reason) => Err(format!("{}: {reason}; left untouched", path.display())),
    }
}

/// Replaces a pattern file atomically, keeping its mode (0600 for a new one).
pub(crate) fn write_array(path: &Path, entries: &[Value]) -> Result<(), String> {
    let mode = std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o777);
    let bytes = json_file::pretty(&entries).map_err(|e| format!("{}: {e}", path.display()))?;
    atomic_file::write_atomic(path, &bytes, mode)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Identity of a file's content version: reload when any of these changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Signature {
    inode: u64,
    len: u64,
    modified_ns: i128,
}

fn signature(path: &Path) -> Option<Signature> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Signature {
        inode: meta.ino(),
        len: meta.len(),
        modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    })
}

/// The learned-patterns file, hot-reloaded: every [`LearnedSource::current`] checks the
/// file's identity and reloads it when it changed. A file that stops being loadable keeps
/// the last good set active and says why, once per version of the file.
#[derive(Debug)]
pub struct LearnedSource {
    path: PathBuf,
    state: Mutex<(Option<Signature>, Arc<LearnedSet>)>,
}

impl LearnedSource {
    pub fn new(path: PathBuf) -> LearnedSource {
        let empty = Arc::new(LearnedSet {
            path: path.clone(),
            ..LearnedSet::default()
        });
        LearnedSource {
            path,
            // A signature no file has, so the first call loads.
            state: Mutex::new((
                Some(Signature {
                    inode: u64::MAX,
                    len: u64::MAX,
                    modified_ns: i128::MIN,
                }),
                empty,
            )),
        }
    }

    /// The current set, reloaded if the file changed since the last call.
    pub fn current(&self) -> Arc<LearnedSet> {
        let now = signature(&self.path);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 == now {
            return Arc::clone(&state.1);
        }
        state.0 = now;
        match LearnedSet::load(&self.path) {
            Ok(set) => {
                for warning in &set.warnings {
                    tracing::warn!("learned patterns: {warning}");
                }
                state.1 = Arc::new(set);
            }
            Err(e) => tracing::error!(
                "learned patterns not reloaded, the last good set stays active: {e}"
            ),
        }
        Arc::clone(&state.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(category: &str, kind: &str, pattern: &str) -> Value {
        json!({"category": category, "severity": "HIGH", "description": "d", "matcherKind": kind,
               "pattern": pattern, "source": "inv", "learnedAt": "2026-05-17T00:00:00Z",
               "hitCount": 0, "note": "unknown field"})
    }

    #[test]
    fn invalid_entries_are_skipped_with_index_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learned-patterns.json");
        let entries = json!([
            entry("GOOD_ONE", "stdout_contains", "boom"),
            entry("BAD_KIND", "stdout_glob", "x"),
            entry("BAD_REGEX", "stdout_regex", "(x"),
            entry("BAD_PATH", "state_jsonpath", "$..x"),
            entry("GOOD_ONE", "plan_contains", "other"),
            entry("SAME_PATTERN", "stdout_contains", "boom"),
            {"category": "NO_SEVERITY", "description": "d", "matcherKind": "plan_regex", "pattern": "x"},
            entry("LONG", "plan_contains", &"x".repeat(MAX_PATTERN_BYTES + 1)),
            entry("HUGE_REGEX", "plan_regex", r"\w{1000}\w{1000}"),
            "not a map",
            entry("GOOD_TWO", "state_jsonpath", "$.features[?(@.prNumber)]"),
        ]);
        std::fs::write(&path, entries.to_string()).unwrap();
        let set = LearnedSet::load(&path).unwrap();
        let names: Vec<&str> = set.patterns.iter().map(|p| p.category.as_str()).collect();
        assert_eq!(names, ["GOOD_ONE", "GOOD_TWO"]);
        let expect = [
            ("entry 1 (BAD_KIND)", "`matcherKind`"),
            ("entry 2 (BAD_REGEX)", "not a usable regex"),
            ("entry 3 (BAD_PATH)", "state_jsonpath grammar"),
            ("entry 4 (GOOD_ONE)", "duplicates entry 0"),
            ("entry 5 (SAME_PATTERN)", "duplicates entry 0"),
            ("entry 6 (NO_SEVERITY)", "`severity`: required"),
            ("entry 7 (LONG)", "4096-byte limit"),
            ("entry 8 (HUGE_REGEX)", "size limit"),
            ("entry 9 skipped", "must be a map"),
        ];
        assert_eq!(set.warnings.len(), expect.len(), "{:#?}", set.warnings);
        for (warning, (who, why)) in set.warnings.iter().zip(expect) {
            assert!(warning.contains(who) && warning.contains(why), "{warning}");
        }
        std::fs::write(&path, "{}").unwrap();
        assert!(LearnedSet::load(&path).unwrap_err().contains("array"));
    }

    fn patterns_a_and_b() -> Value {
        json!([
            entry("A", "stdout_contains", "x"),
            entry("B", "plan_contains", "y")
        ])
    }

    #[test]
    fn hits_are_counted_keeping_unknown_fields_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learned-patterns.json");
        std::fs::write(&path, patterns_a_and_b().to_string()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let set = LearnedSet::load(&path).unwrap();
        let b = set.by_category("B").unwrap();
        record_hits(&path, &[b]).unwrap();
        record_hits(&path, &[b]).unwrap();
        let after: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(after[0]["hitCount"], 0);
        assert_eq!(after[1]["hitCount"], 2);
        assert!(after[1]["lastHit"].is_string());
        assert_eq!(after[1]["note"], "unknown field");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert!(!lock_path(&path).exists());
    }

    #[test]
    fn source_reloads_on_change_and_keeps_the_last_good_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learned-patterns.json");
        let source = LearnedSource::new(path.clone());
        assert!(source.current().patterns.is_empty());
        std::fs::write(
            &path,
            json!([entry("A", "stdout_contains", "x")]).to_string(),
        )
        .unwrap();
        assert_eq!(source.current().patterns.len(), 1);
        std::fs::write(&path, "[ torn").unwrap();
        assert_eq!(source.current().patterns.len(), 1, "last good set stays");
        std::fs::write(&path, patterns_a_and_b().to_string()).unwrap();
        assert_eq!(source.current().patterns.len(), 2);
    }
}
