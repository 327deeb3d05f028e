//! The investigator's flow for learned patterns: a proposal waits in
//! `pending-patterns.jsonl` (one JSON object a line), then is promoted into
//! `learned-patterns.json` or rejected into `rejected-patterns.jsonl` with a reason.
//!
//! Every step runs under the learned-patterns lock, so a promotion cannot race a hit count
//! or another promotion, and a duplicate (same category, or same kind and pattern, among
//! learned or pending patterns) is refused before anything is written. Lines berth cannot
//! read are kept as they are and reported.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::json_file;
use super::learned::{self, LearnedError, LearnedPattern, LearnedSet, PatternError};
use super::pid_lock::{PidLock, PidLockError};
use crate::atomic_file;
use crate::hostile_file::ReadError;

pub const PENDING_FILE: &str = "pending-patterns.jsonl";
pub const REJECTED_FILE: &str = "rejected-patterns.jsonl";

/// Why a proposal was not queued, promoted or rejected; each names the file or category.
#[derive(Debug, thiserror::Error)]
pub enum ProposalError {
    #[error("cannot create {}: {source}", .dir.display())]
    CreateDir { dir: PathBuf, source: io::Error },
    #[error(transparent)]
    Lock(#[from] PidLockError),
    #[error(transparent)]
    Learned(#[from] LearnedError),
    #[error("{}: {source}", .path.display())]
    Read { path: PathBuf, source: ReadError },
    #[error("cannot write {}: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
    /// The proposal itself is not a usable pattern.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("{category}: field `matcherKind`: `{kind}` is not one of {}", learned::NATIVE_KINDS.join(", "))]
    NotNative { category: String, kind: String },
    #[error(
        "{category}: refused, it duplicates learned entry {index} of {} (same category, or same matcherKind and pattern)",
        .learned.display()
    )]
    DuplicatesLearned {
        category: String,
        index: usize,
        learned: PathBuf,
    },
    #[error(
        "{category}: refused, it duplicates pending proposal on line {line} (same category, or same matcherKind and pattern)"
    )]
    DuplicatesPending { category: String, line: usize },
    #[error("no pending proposal with category `{category}` in {}", .pending.display())]
    NoProposal { category: String, pending: PathBuf },
    #[error("{} line {line}: {source}", .path.display())]
    BadLine {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("a rejection needs a reason (--reason)")]
    NoReason,
}

/// The investigator's files, beside `learned-patterns.json`.
#[derive(Clone, Debug)]
pub struct PatternFiles {
    pub learned: PathBuf,
    pub pending: PathBuf,
    pub rejected: PathBuf,
}

/// One line of the pending file.
#[derive(Debug)]
pub struct Proposal {
    /// 1-based line number, for messages.
    pub line: usize,
    pub raw: String,
    /// The validated pattern, or why the line is not a usable proposal.
    pub pattern: Result<LearnedPattern, PatternError>,
}

/// The pending file as read.
#[derive(Debug, Default)]
pub struct Pending {
    pub proposals: Vec<Proposal>,
}

impl Pending {
    fn find(&self, category: &str) -> Option<&Proposal> {
        self.proposals
            .iter()
            .find(|p| matches!(&p.pattern, Ok(pattern) if pattern.category == category))
    }

    fn duplicate(&self, pattern: &LearnedPattern) -> Option<&Proposal> {
        self.proposals.iter().find(|p| {
            matches!(&p.pattern, Ok(other) if other.category == pattern.category
                || (other.matcher_kind == pattern.matcher_kind && other.pattern == pattern.pattern))
        })
    }
}

impl PatternFiles {
    /// The files beside `learned` (`learned-patterns.json`).
    pub fn beside(learned: &Path) -> PatternFiles {
        let dir = learned.parent().unwrap_or(Path::new("."));
        PatternFiles {
            learned: learned.to_owned(),
            pending: dir.join(PENDING_FILE),
            rejected: dir.join(REJECTED_FILE),
        }
    }

    fn lock(&self) -> Result<PidLock, ProposalError> {
        if let Some(dir) = self.learned.parent().filter(|d| !d.as_os_str().is_empty()) {
            atomic_file::ensure_private_dir(dir).map_err(|source| ProposalError::CreateDir {
                dir: dir.to_owned(),
                source,
            })?;
        }
        Ok(PidLock::acquire_default(&learned::lock_path(
            &self.learned,
        ))?)
    }

    /// The learned set and the pending proposals, as they are now.
    pub fn read(&self) -> Result<(LearnedSet, Pending), ProposalError> {
        Ok((LearnedSet::load(&self.learned)?, self.read_pending()?))
    }

    fn read_pending(&self) -> Result<Pending, ProposalError> {
        let text = read_text(&self.pending)?.unwrap_or_default();
        let proposals = text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| Proposal {
                line: i + 1,
                raw: line.to_owned(),
                pattern: serde_json::from_str::<Value>(line)
                    .map_err(PatternError::from)
                    .and_then(|value| LearnedPattern::from_json(i, &value)),
            })
            .collect();
        Ok(Pending { proposals })
    }

    fn write_pending(&self, pending: &Pending, without_line: usize) -> Result<(), ProposalError> {
        let mut text = String::new();
        for proposal in pending.proposals.iter().filter(|p| p.line != without_line) {
            text.push_str(&proposal.raw);
            text.push('\n');
        }
        write(&self.pending, &text)
    }

    /// Queues `entry` as a proposal after validating it and refusing duplicates.
    pub fn propose(&self, entry: Map<String, Value>) -> Result<usize, ProposalError> {
        let _lock = self.lock()?;
        let mut entry = entry;
        entry
            .entry("proposedAt")
            .or_insert_with(|| json!(crate::clock::now_iso()));
        let value = Value::Object(entry);
        let pattern = LearnedPattern::from_json(0, &value)?;
        if !pattern.is_native() {
            // gstack's investigator parser refuses a kind outside the seven.
            return Err(ProposalError::NotNative {
                category: pattern.category,
                kind: pattern.matcher_kind,
            });
        }
        let (learned, pending) = self.read()?;
        refuse_duplicates(&pattern, &learned, &pending)?;
        let line = pending.proposals.last().map_or(0, |p| p.line) + 1;
        append_line(&self.pending, &value)?;
        Ok(line)
    }

    /// Moves the pending proposal of `category` into the learned file (with `learnedAt`
    /// now and `hitCount` 0), then drops it from the pending file.
    pub fn promote(&self, category: &str) -> Result<LearnedPattern, ProposalError> {
        let _lock = self.lock()?;
        let (learned, pending) = self.read()?;
        let proposal = pending
            .find(category)
            .ok_or_else(|| no_proposal(category, &self.pending))?;
        let Ok(pattern) = &proposal.pattern else {
            return Err(no_proposal(category, &self.pending));
        };
        if let Some(index) = learned.duplicate_of(pattern) {
            return Err(ProposalError::DuplicatesLearned {
                category: category.to_owned(),
                index,
                learned: self.learned.clone(),
            });
        }
        let mut entry: Map<String, Value> =
            serde_json::from_str(&proposal.raw).map_err(|source| ProposalError::BadLine {
                path: self.pending.clone(),
                line: proposal.line,
                source,
            })?;
        entry.remove("proposedAt");
        entry
            .entry("source")
            .or_insert_with(|| json!("investigator"));
        entry.insert("learnedAt".into(), json!(crate::clock::now_iso()));
        entry.insert("hitCount".into(), json!(0));
        entry.remove("lastHit");
        let mut entries = learned::read_array(&self.learned)?;
        entries.push(Value::Object(entry.clone()));
        // Learned first: a crash in between leaves the pattern active and still pending,
        // and a second promotion is refused as a duplicate rather than lost.
        learned::write_array(&self.learned, &entries)?;
        self.write_pending(&pending, proposal.line)?;
        Ok(LearnedPattern::from_json(
            entries.len() - 1,
            &Value::Object(entry),
        )?)
    }

    /// Drops the pending proposal of `category` and logs it, with `reason`, to the
    /// rejected file.
    pub fn reject(&self, category: &str, reason: &str) -> Result<(), ProposalError> {
        if reason.trim().is_empty() {
            return Err(ProposalError::NoReason);
        }
        let _lock = self.lock()?;
        let pending = self.read_pending()?;
        let proposal = pending
            .proposals
            .iter()
            .find(|p| match &p.pattern {
                Ok(pattern) => pattern.category == category,
                // Unusable lines can be rejected too, by the category they name.
                Err(_) => {
                    serde_json::from_str::<Value>(&p.raw)
                        .ok()
                        .and_then(|v| v.get("category").and_then(Value::as_str).map(str::to_owned))
                        .as_deref()
                        == Some(category)
                }
            })
            .ok_or_else(|| no_proposal(category, &self.pending))?;
        let mut logged: Map<String, Value> = serde_json::from_str(&proposal.raw)
            .unwrap_or_else(|_| Map::from_iter([("raw".to_owned(), json!(proposal.raw))]));
        logged.insert("rejectedAt".into(), json!(crate::clock::now_iso()));
        logged.insert("reason".into(), json!(reason));
        append_line(&self.rejected, &Value::Object(logged))?;
        self.write_pending(&pending, proposal.line)
    }
}

fn no_proposal(category: &str, pending: &Path) -> ProposalError {
    ProposalError::NoProposal {
        category: category.to_owned(),
        pending: pending.to_owned(),
    }
}

/// A JSON-lines file's text (empty when absent).
fn read_text(path: &Path) -> Result<Option<String>, ProposalError> {
    json_file::read_text(path).map_err(|source| ProposalError::Read {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<(), ProposalError> {
    atomic_file::write_atomic(path, text.as_bytes(), 0o600).map_err(|source| ProposalError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Rewrites a JSON-lines file with `value` as its last line.
fn append_line(path: &Path, value: &Value) -> Result<(), ProposalError> {
    let mut text = read_text(path)?.unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&value.to_string());
    text.push('\n');
    write(path, &text)
}

fn refuse_duplicates(
    pattern: &LearnedPattern,
    learned: &LearnedSet,
    pending: &Pending,
) -> Result<(), ProposalError> {
    if let Some(index) = learned.duplicate_of(pattern) {
        return Err(ProposalError::DuplicatesLearned {
            category: pattern.category.clone(),
            index,
            learned: learned.path.clone(),
        });
    }
    if let Some(other) = pending.duplicate(pattern) {
        return Err(ProposalError::DuplicatesPending {
            category: pattern.category.clone(),
            line: other.line,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(category: &str, kind: &str, pattern: &str) -> Map<String, Value> {
        match json!({"category": category, "severity": "MEDIUM", "description": "seen twice",
                     "matcherKind": kind, "pattern": pattern, "source": "investigator-7"})
        {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn propose_promote_reject_with_duplicates_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = PatternFiles::beside(&dir.path().join("learned-patterns.json"));
        assert_eq!(
            files
                .propose(proposal("FLAKY_NET", "stdout_contains", "ECONNRESET"))
                .unwrap(),
            1
        );
        assert_eq!(
            files
                .propose(proposal("BAD_TEST", "stdout_regex", "FAIL .*spec"))
                .unwrap(),
            2
        );
        let dup = files
            .propose(proposal("FLAKY_NET", "plan_contains", "x"))
            .unwrap_err()
            .to_string();
        assert!(dup.contains("pending proposal on line 1"), "{dup}");
        let dup = files
            .propose(proposal("OTHER", "stdout_contains", "ECONNRESET"))
            .unwrap_err()
            .to_string();
        assert!(dup.contains("duplicates"), "{dup}");
        let invalid = files
            .propose(proposal("BROKEN", "stdout_regex", "(x"))
            .unwrap_err()
            .to_string();
        assert!(invalid.contains("regex"), "{invalid}");
        let unknown = files
            .propose(proposal("GLOB", "stdout_glob", "*"))
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("`stdout_glob` is not one of"), "{unknown}");

        let promoted = files.promote("FLAKY_NET").unwrap();
        assert_eq!(
            (promoted.hit_count, promoted.source.as_deref()),
            (0, Some("investigator-7"))
        );
        let (learned, pending) = files.read().unwrap();
        assert_eq!(learned.patterns.len(), 1);
        assert_eq!(pending.proposals.len(), 1);
        let again = files
            .propose(proposal("FLAKY_NET", "plan_contains", "y"))
            .unwrap_err()
            .to_string();
        assert!(again.contains("learned entry 0"), "{again}");
        assert!(
            files
                .promote("FLAKY_NET")
                .unwrap_err()
                .to_string()
                .contains("no pending proposal")
        );

        assert!(files.reject("BAD_TEST", " ").is_err());
        files.reject("BAD_TEST", "matches every test run").unwrap();
        let (_, pending) = files.read().unwrap();
        assert!(pending.proposals.is_empty());
        let rejected = std::fs::read_to_string(&files.rejected).unwrap();
        let logged: Value = serde_json::from_str(rejected.trim()).unwrap();
        assert_eq!(logged["category"], "BAD_TEST");
        assert_eq!(logged["reason"], "matches every test run");
    }

    #[test]
    fn unreadable_pending_lines_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let files = PatternFiles::beside(&dir.path().join("learned-patterns.json"));
        std::fs::write(&files.pending, "{ torn\n").unwrap();
        files
            .propose(proposal("NEW_ONE", "plan_contains", "z"))
            .unwrap();
        files.promote("NEW_ONE").unwrap();
        assert_eq!(std::fs::read_to_string(&files.pending).unwrap(), "{ torn\n");
    }
}
