//! `berth explain`'s story of one PR (or one record): every policy decision about it and
//! every status change, from the daemon's decision log, with the operator's acts and the
//! forced releases of its lane's lock; and the record as it is now. The page per PR tells
//! the same story.

use std::collections::BTreeMap;
use std::path::Path;

use super::log_index::DecisionIndex;
use crate::gates::Allowlist;
use crate::lane_lock::lock_ref_name;
use crate::record::Status;
use crate::rules::decisions::PrHistory;
use crate::rules::journal::{Entry, JournalLine};
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
    pub lines: Vec<&'a JournalLine>,
    /// The record in the queue now, when it is there.
    pub now: Option<&'a StoredRecord>,
}

pub struct Story {
    pub pr: u64,
    /// Set when the story is of one record (asked for by id).
    pub only: Option<String>,
    /// Every line, oldest first (ISO times of one format: text order is time order).
    pub lines: Vec<JournalLine>,
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
        Self::read_with(store, allowlist, berth_dir, target, |pr| {
            crate::rules::decisions::pr_history(berth_dir, pr, repo)
        })
    }

    /// [`Story::read`] from `index`, which follows the decision log instead of reading it
    /// whole (the PR page, asked again and again).
    pub fn read_indexed(
        store: &QueueStore,
        allowlist: &Allowlist,
        berth_dir: &Path,
        target: &Target,
        repo: Option<&str>,
        index: &DecisionIndex,
    ) -> Result<Story, StoryError> {
        Self::read_with(store, allowlist, berth_dir, target, |pr| {
            index.pr_history(berth_dir, pr, repo)
        })
    }

    fn read_with(
        store: &QueueStore,
        allowlist: &Allowlist,
        berth_dir: &Path,
        target: &Target,
        pr_history: impl FnOnce(u64) -> std::io::Result<PrHistory>,
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
        let history = pr_history(pr).map_err(log_error)?;
        let mut lines = history.lines;
        if let Some(id) = &only {
            lines.retain(|line| line.record().unwrap_or("") == id);
        }
        let queue = now_records(store);
        lines.extend(lock_releases(
            allowlist,
            &history.lock_releases,
            &lines,
            &queue,
        ));
        // Stable: a line written first stays first within the same millisecond.
        lines.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(Story {
            pr,
            only,
            lines,
            queue,
        })
    }

    /// `explain --json`'s document (and `/api/pr/…`'s): `{"pr", "record", "lines": [...]}`,
    /// the lines as the decision log holds them, oldest first; pretty, with a line end.
    pub fn to_json(&self) -> String {
        let doc = serde_json::json!({"pr": self.pr, "record": self.only, "lines": self.lines});
        let mut text = serde_json::to_string_pretty(&doc).expect("a story is plain data");
        text.push('\n');
        text
    }

    /// One chapter per record (the same PR number can exist in several repos or bases),
    /// by record id.
    pub fn chapters(&self) -> Vec<Chapter<'_>> {
        let mut by_record: BTreeMap<&str, Vec<&JournalLine>> = BTreeMap::new();
        for line in &self.lines {
            by_record
                .entry(line.record().unwrap_or(""))
                .or_default()
                .push(line);
        }
        by_record
            .into_iter()
            .map(|(record, lines)| Chapter {
                record: record.to_owned(),
                repo: lines
                    .iter()
                    .filter_map(|l| l.repo())
                    .find(|r| !r.is_empty())
                    .unwrap_or(""),
                now: self.queue.get(record),
                lines,
            })
            .collect()
    }
}

/// `<time>  status    queued -> claiming: reason` or
/// `<time>  admit     wait: freeze window  [policies/landing.rhai, rules 1a2b3c4d5e6f]`.
pub fn describe(line: &JournalLine) -> String {
    let time = &line.time;
    let with_reason = |mut out: String, reason: &str| {
        if !reason.is_empty() {
            out.push_str(&format!(": {reason}"));
        }
        out
    };
    match &line.entry {
        Entry::Operator(op) => {
            let mut out = format!("{time}  operator        {} by {}", op.act.as_str(), op.user);
            if let Some(to) = op.to {
                let from = op.from.map_or("", Status::as_str);
                out.push_str(&format!(": {from} -> {to}"));
            }
            if let Some(lock) = &op.lock_ref {
                out.push_str(&format!(" of {lock}"));
            }
            with_reason(out, &op.reason)
        }
        Entry::Status(change) => with_reason(
            format!("{time}  status          {} -> {}", change.from, change.to),
            &change.reason,
        ),
        Entry::Decision(d) => {
            let mut out = format!(
                "{time}  {:<14}  {}: {}  [{}, rules {}]",
                d.function,
                d.decision,
                d.reason,
                d.file,
                short(&d.ruleset)
            );
            if d.fallback {
                out.push_str(&format!(
                    "\n      the rule failed ({}); the built-in default decided",
                    d.error.as_deref().unwrap_or("")
                ));
            }
            out
        }
    }
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
    releases: &[JournalLine],
    lines: &[JournalLine],
    queue: &BTreeMap<String, StoredRecord>,
) -> Vec<JournalLine> {
    let lanes: BTreeMap<String, String> = lines
        .iter()
        .filter_map(|line| queue.get(line.record()?))
        .filter_map(|stored| {
            let gated = allowlist.gate_record(&stored.record).ok()?;
            Some((stored.id.clone(), lock_ref_name(&gated.lane())))
        })
        .collect();
    let mut out = Vec::new();
    for (id, lane_ref) in &lanes {
        for release in releases {
            let mut line = release.clone();
            if let Entry::Operator(op) = &mut line.entry
                && op.lock_ref.as_ref() == Some(lane_ref)
            {
                op.about.record = Some(id.clone());
                out.push(line);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue_report::log_index::tests::release;
    use crate::rules::decisions::PASSES;

    /// A PR's page (`/pr/<n>`, `explain`) reads the decision log once, its lock releases
    /// included.
    #[test]
    fn a_story_reads_the_decision_log_once() {
        let berth = tempfile::tempdir().unwrap();
        let queue = tempfile::tempdir().unwrap();
        release(berth.path());
        let before = PASSES.with(std::cell::Cell::get);
        let story = Story::read(
            &QueueStore::new(queue.path()),
            &Allowlist::default(),
            berth.path(),
            &Target::Pr(7),
            None,
        )
        .unwrap();
        assert!(story.lines.is_empty());
        assert_eq!(PASSES.with(std::cell::Cell::get) - before, 1);
    }
}
