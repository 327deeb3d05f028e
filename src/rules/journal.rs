//! One line of `<berth_dir>/decisions.jsonl`, as one type: the decision log writes it
//! (`rules::decisions`) and every reader parses it (`explain`, `status`'s policy waits,
//! `rules replay` and `capture`), so a field renamed in one place is renamed for all.
//!
//! A line is `{"time", "kind", …}`, `kind` naming the rest:
//! - `decision`: `{"ruleset", "file", "function", "record"?, "pr"?, "repo"?, "decision",
//!   "reason", "fallback", "error"?, "facts"?}` — one rule's answer;
//! - `status`: `{"record", "pr", "repo", "from", "to", "reason"}` — a record moved;
//! - `operator`: `{"act", "record"?, "pr"?, "repo"?, "from"?, "to"?, "ref"?, "reason",
//!   "user", "process"}` — what an operator did by hand.
//!
//! The fields are written in that order (serde writes them in declaration order), so the
//! file reads the same as before the type existed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::Status;

/// One line of the decision log: when, and what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalLine {
    /// ISO time of one format, so text order is time order.
    pub time: String,
    #[serde(flatten)]
    pub entry: Entry,
}

/// What a line records, tagged by its `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Entry {
    Decision(Decision),
    Status(StatusChange),
    Operator(OperatorLine),
}

/// Which record a line is about, left out when it is about none (`max_lanes`, a forced
/// lock release).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct About {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
}

/// A rule's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The hash of the rule set that answered.
    pub ruleset: String,
    pub file: String,
    pub function: String,
    #[serde(flatten)]
    pub about: About,
    pub decision: String,
    pub reason: String,
    /// The rule failed and the built-in default answered.
    pub fallback: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The rule call's arguments as the facts store (`rules::facts`) names them, for
    /// replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<Value>,
}

/// A record's move from one status to another, by the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    pub record: String,
    pub pr: u64,
    pub repo: String,
    pub from: Status,
    pub to: Status,
    pub reason: String,
}

/// What an operator did by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Act {
    #[serde(rename = "retry")]
    Retry,
    #[serde(rename = "abandon")]
    Abandon,
    /// A forced release of a lane lock.
    #[serde(rename = "lock release")]
    LockRelease,
}

impl Act {
    pub fn as_str(self) -> &'static str {
        match self {
            Act::Retry => "retry",
            Act::Abandon => "abandon",
            Act::LockRelease => "lock release",
        }
    }
}

/// An operator's act, with who did it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatorLine {
    pub act: Act,
    /// The record it was about (`retry`, `abandon`).
    #[serde(flatten)]
    pub about: About,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Status>,
    /// The lane lock it was about (`lock release`).
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub lock_ref: Option<String>,
    pub reason: String,
    /// The login that did it (`$USER`, else the uid).
    pub user: String,
    /// The owner stamp of the process that did it (host, pid, start).
    pub process: String,
}

impl JournalLine {
    /// The line stamped now.
    pub fn now(entry: Entry) -> JournalLine {
        JournalLine {
            time: crate::clock::now_iso(),
            entry,
        }
    }

    /// The time the line was written, when it parses.
    pub fn at(&self) -> Option<DateTime<Utc>> {
        crate::clock::parse_iso(&self.time)
    }

    /// The decision, when the line is one.
    pub fn decision(&self) -> Option<&Decision> {
        match &self.entry {
            Entry::Decision(decision) => Some(decision),
            _ => None,
        }
    }

    /// The id of the record the line is about.
    pub fn record(&self) -> Option<&str> {
        match &self.entry {
            Entry::Decision(Decision { about, .. })
            | Entry::Operator(OperatorLine { about, .. }) => about.record.as_deref(),
            Entry::Status(change) => Some(&change.record),
        }
    }

    pub fn pr(&self) -> Option<u64> {
        match &self.entry {
            Entry::Decision(Decision { about, .. })
            | Entry::Operator(OperatorLine { about, .. }) => about.pr,
            Entry::Status(change) => Some(change.pr),
        }
    }

    /// The repo identity (or `path:<repo>`) of the record the line is about.
    pub fn repo(&self) -> Option<&str> {
        match &self.entry {
            Entry::Decision(Decision { about, .. })
            | Entry::Operator(OperatorLine { about, .. }) => about.repo.as_deref(),
            Entry::Status(change) => Some(&change.repo),
        }
    }

    /// The line as the log holds it: one line of JSON, no newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a journal line is plain data")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as the log held them before the type existed: each reads back into the type
    /// and is written again byte for byte.
    #[test]
    fn every_kind_of_line_reads_and_writes_unchanged() {
        let lines = [
            r#"{"time":"2026-01-01T00:00:00.000Z","kind":"decision","ruleset":"abc","file":"policies/landing.rhai","function":"admit","record":"a-main-pr-1","pr":1,"repo":"github.com/acme/a","decision":"wait","reason":"freeze","fallback":false,"facts":["0123",["45","67"]]}"#,
            r#"{"time":"2026-01-01T00:00:00.000Z","kind":"decision","ruleset":"abc","file":"policies/landing.rhai","function":"max_lanes","decision":"2","reason":"","fallback":true,"error":"boom"}"#,
            r#"{"time":"2026-01-01T00:00:01.000Z","kind":"status","record":"a-main-pr-1","pr":1,"repo":"github.com/acme/a","from":"queued","to":"drift_repairing","reason":""}"#,
            r#"{"time":"2026-01-01T00:00:02.000Z","kind":"operator","act":"retry","record":"a-main-pr-1","pr":1,"repo":"github.com/acme/a","from":"blocked","to":"queued","reason":"","user":"me","process":"h:1:2"}"#,
            r#"{"time":"2026-01-01T00:00:03.000Z","kind":"operator","act":"lock release","ref":"refs/gstack/lock/x","reason":"held by h","user":"me","process":"h:1:2"}"#,
        ];
        for text in lines {
            let line: JournalLine = serde_json::from_str(text).unwrap();
            assert_eq!(line.to_json(), text);
        }
        let status: JournalLine = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(status.record(), Some("a-main-pr-1"));
        assert_eq!(status.pr(), Some(1));
        let release: JournalLine = serde_json::from_str(lines[4]).unwrap();
        assert_eq!(release.record(), None);
        assert!(matches!(
            release.entry,
            Entry::Operator(OperatorLine {
                act: Act::LockRelease,
                ..
            })
        ));
    }

    #[test]
    fn a_line_of_an_unknown_kind_is_not_a_journal_line() {
        let text = r#"{"time":"2026-01-01T00:00:00.000Z","kind":"gossip","record":"a"}"#;
        assert!(serde_json::from_str::<JournalLine>(text).is_err());
    }
}
