//! `berth explain`'s story of one PR (or one record): every policy decision about it and
//! every status change, from the daemon's decision log, with the operator's acts and the
//! forced releases of its lane's lock; and the record as it is now. The page per PR tells
//! the same story.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::gates::Allowlist;
use crate::lane_lock::{Lane, lock_ref_name};
use crate::rules::set::short;
use crate::store::{QueueStore, StoreError, StoredRecord};

#[derive(Debug, thiserror::Error)]
pub enum StoryError {
    #[error(transparent)]
    Record(#[from] StoreError),
    #[error("{path}: {source}")]
    Log {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// What `explain` asks about: a PR number, or one record by id.
pub enum Target {
    Pr(u64),
    Record(String),
}

impl Target {
    /// A number is a PR; anything else a record id.
    pub fn parse(text: &str) -> Target {
        match text.parse::<u64>() {
            Ok(pr) => Target::Pr(pr),
            Err(_) => Target::Record(text.to_owned()),
        }
    }
}

/// One record's part of a story.
pub struct Chapter<'a> {
    pub record: String,
    /// The repo the first line that names one names (a lock release names none).
    pub repo: &'a str,
    /// Oldest first.
    pub lines: Vec<&'a Value>,
    /// The record in the queue now, when it is there.
    pub now: Option<&'a StoredRecord>,
}

pub struct Story {
    pub pr: u64,
    /// Set when the story is of one record (asked for by id).
    pub only: Option<String>,
    /// Every line, oldest first (ISO times of one format: text order is time order).
    pub lines: Vec<Value>,
    /// The records in the queue now, by id.
    pub queue: BTreeMap<String, StoredRecord>,
}

impl Story {
    pub fn read(
        store: &QueueStore,
        allowlist: &Allowlist,
        berth_dir: &Path,
        target: &Target,
        repo: Option<&str>,
    ) -> Result<Story, StoryError> {
        // A record id names one record: its PR number, then only its lines.
        let (pr, only) = match target {
            Target::Pr(pr) => (*pr, None),
            Target::Record(id) => {
                let stored = store.load(id)?;
                (stored.record.pr_number, Some(stored.id))
            }
        };
        let log_error = |source| StoryError::Log {
            path: berth_dir.join(crate::rules::decisions::DECISIONS_FILE),
            source,
        };
        let mut lines = crate::rules::decisions::history(berth_dir, pr, repo).map_err(log_error)?;
        if let Some(id) = &only {
            lines.retain(|line| text(line, "record") == id);
        }
        let queue = now_records(store);
        lines.extend(lock_releases(allowlist, berth_dir, &lines, &queue).map_err(log_error)?);
        // Stable: a line written first stays first within the same millisecond.
        lines.sort_by(|a, b| text(a, "time").cmp(text(b, "time")));
        Ok(Story {
            pr,
            only,
            lines,
            queue,
        })
    }

    /// One chapter per record (the same PR number can exist in several repos or bases),
    /// by record id.
    pub fn chapters(&self) -> Vec<Chapter<'_>> {
        let mut by_record: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
        for line in &self.lines {
            by_record
                .entry(text(line, "record"))
                .or_default()
                .push(line);
        }
        by_record
            .into_iter()
            .map(|(record, lines)| Chapter {
                record: record.to_owned(),
                repo: lines
                    .iter()
                    .map(|l| text(l, "repo"))
                    .find(|r| !r.is_empty())
                    .unwrap_or(""),
                now: self.queue.get(record),
                lines,
            })
            .collect()
    }
}

pub fn text<'a>(line: &'a Value, key: &str) -> &'a str {
    line.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `<time>  status    queued -> claiming: reason` or
/// `<time>  admit     wait: freeze window  [policies/landing.rhai, rules 1a2b3c4d5e6f]`.
pub fn describe(line: &Value) -> String {
    let time = text(line, "time");
    if text(line, "kind") == "operator" {
        let mut out = format!(
            "{time}  operator        {} by {}",
            text(line, "act"),
            text(line, "user")
        );
        if line.get("to").is_some() {
            out.push_str(&format!(": {} -> {}", text(line, "from"), text(line, "to")));
        }
        if let Some(lock) = line.get("ref").and_then(Value::as_str) {
            out.push_str(&format!(" of {lock}"));
        }
        let reason = text(line, "reason");
        if !reason.is_empty() {
            out.push_str(&format!(": {reason}"));
        }
        return out;
    }
    if text(line, "kind") == "status" {
        let reason = text(line, "reason");
        let mut out = format!(
            "{time}  status          {} -> {}",
            text(line, "from"),
            text(line, "to")
        );
        if !reason.is_empty() {
            out.push_str(&format!(": {reason}"));
        }
        return out;
    }
    let mut out = format!(
        "{time}  {:<14}  {}: {}  [{}, rules {}]",
        text(line, "function"),
        text(line, "decision"),
        text(line, "reason"),
        text(line, "file"),
        short(text(line, "ruleset"))
    );
    if line.get("fallback").and_then(Value::as_bool) == Some(true) {
        out.push_str(&format!(
            "\n      the rule failed ({}); the built-in default decided",
            text(line, "error")
        ));
    }
    out
}

/// The records in the queue now, by id, when the queue is readable.
fn now_records(store: &QueueStore) -> BTreeMap<String, StoredRecord> {
    store
        .scan()
        .map(|scan| {
            scan.records
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect()
        })
        .unwrap_or_default()
}

/// Forced releases of the lane locks of the records in `lines` (known from the queue),
/// each repeated under every such record so it shows in that record's story. A record's
/// lane is the daemon's: its identity as the gates resolve it from `origin`.
fn lock_releases(
    allowlist: &Allowlist,
    berth_dir: &Path,
    lines: &[Value],
    queue: &BTreeMap<String, StoredRecord>,
) -> std::io::Result<Vec<Value>> {
    let lanes: BTreeMap<String, String> = lines
        .iter()
        .filter_map(|line| queue.get(text(line, "record")))
        .filter_map(|stored| {
            let gated = allowlist.gate_record(&stored.record).ok()?;
            let lane = Lane {
                repo_identity: gated.identity,
                base_branch: stored.record.base_branch.clone(),
            };
            Some((stored.id.clone(), lock_ref_name(&lane)))
        })
        .collect();
    let refs: BTreeSet<String> = lanes.values().cloned().collect();
    let releases = crate::rules::decisions::lock_releases(berth_dir, &refs)?;
    let mut out = Vec::new();
    for (id, lane_ref) in &lanes {
        for release in releases.iter().filter(|r| text(r, "ref") == lane_ref) {
            let mut line = release.clone();
            line["record"] = Value::from(id.as_str());
            out.push(line);
        }
    }
    Ok(out)
}
