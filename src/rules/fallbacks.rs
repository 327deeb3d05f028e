//! `<berth_dir>/rule-fallbacks.json`: the rule calls that are failing closed right now, so
//! the fallback is visible while it lasts (DESIGN §8): `berth status` (another process)
//! shows why a record waits, and the queue detectors raise RULE_FAILING from the same list.
//!
//! A fallback stays listed while the same question keeps failing: the book keeps this
//! tick's and last tick's failures, so an entry leaves one tick after its question was
//! last asked and failed (an answer that passes removes it at once). A new daemon starts
//! from the list the last one left, for the same rule set only, so `run --once` after
//! `run --once` still raises RULE_FAILING. The file is rewritten only when the list
//! changes, never on every tick.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::contracts::Decided;

pub const FALLBACKS_FILE: &str = "rule-fallbacks.json";

/// One question answered by its fail-closed fallback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fallback {
    pub file: String,
    pub function: String,
    /// The record the question was about (none for `max_lanes` and `order`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// What berth did instead, e.g. `waiting: the admit rule failed (...)`.
    pub fallback: String,
    /// The hash of the rule set that failed.
    pub ruleset: String,
    /// The rule's error.
    pub error: String,
    /// When this question first failed, in this run of failures.
    pub since: String,
}

/// Which question: (function, record id or "").
type Key = (String, String);

#[derive(Debug, Default)]
struct Book {
    current: BTreeMap<Key, Fallback>,
    previous: BTreeMap<Key, Fallback>,
    /// What the file says now (`None` before this daemon's first write).
    written: Option<Vec<Fallback>>,
}

impl Book {
    fn active(&self) -> Vec<Fallback> {
        let mut all = self.previous.clone();
        all.extend(self.current.clone());
        all.into_values().collect()
    }
}

/// The daemon's list of failing rule calls.
#[derive(Debug)]
pub struct Fallbacks {
    path: PathBuf,
    book: Mutex<Book>,
}

impl Fallbacks {
    /// The book of the daemon using `berth_dir`, starting from what the last one left.
    pub fn new(berth_dir: &Path) -> Fallbacks {
        let left = read(berth_dir).unwrap_or_default();
        let current = left
            .into_iter()
            .map(|f| {
                (
                    (f.function.clone(), f.record.clone().unwrap_or_default()),
                    f,
                )
            })
            .collect();
        Fallbacks {
            path: berth_dir.join(FALLBACKS_FILE),
            book: Mutex::new(Book {
                current,
                ..Book::default()
            }),
        }
    }

    /// Notes the outcome of one decision: a failure is listed (keeping its first `since`),
    /// a valid answer to the same question clears it.
    pub fn note<T>(&self, decided: &Decided<T>, record: Option<&str>, fallback: &str) {
        let key = (decided.function.to_owned(), record.unwrap_or("").to_owned());
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        match &decided.error {
            Some(error) => {
                let since = book
                    .current
                    .get(&key)
                    .or_else(|| book.previous.get(&key))
                    .map_or_else(crate::clock::now_iso, |f| f.since.clone());
                let entry = Fallback {
                    file: decided.file.to_owned(),
                    function: decided.function.to_owned(),
                    record: record.map(str::to_owned),
                    fallback: fallback.to_owned(),
                    ruleset: decided.ruleset.clone(),
                    error: error.to_string(),
                    since,
                };
                book.current.insert(key, entry);
            }
            None => {
                book.current.remove(&key);
                book.previous.remove(&key);
            }
        }
        self.write_if_changed(&mut book);
    }

    /// Starts a tick with rule set `ruleset`: failures not seen again during it leave at
    /// its end; failures of another set (a reload or a restart fixed them) leave now.
    pub fn next_tick(&self, ruleset: &str) {
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        let mut current = std::mem::take(&mut book.current);
        current.retain(|_, f| f.ruleset == ruleset);
        book.previous = current;
        self.write_if_changed(&mut book);
    }

    /// Every question failing closed now.
    pub fn active(&self) -> Vec<Fallback> {
        self.book.lock().unwrap_or_else(|p| p.into_inner()).active()
    }

    /// Writes the file when the list differs from what it says; a daemon's first write
    /// (even of an empty list) replaces whatever a previous daemon left.
    fn write_if_changed(&self, book: &mut Book) {
        let active = book.active();
        if book.written.as_ref() == Some(&active) {
            return;
        }
        match write(&self.path, &active) {
            Ok(()) => book.written = Some(active),
            Err(e) => {
                tracing::warn!(file = %self.path.display(), "rule fallbacks not written: {e}")
            }
        }
    }
}

fn write(path: &Path, list: &[Fallback]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        crate::atomic_file::ensure_private_dir(dir)?;
    }
    let mut text = serde_json::to_string_pretty(list).map_err(io::Error::other)?;
    text.push('\n');
    crate::atomic_file::write_atomic(path, text.as_bytes(), 0o600)
}

/// What a daemon last listed in `berth_dir` (empty when none wrote the file).
pub fn read(berth_dir: &Path) -> io::Result<Vec<Fallback>> {
    let path = berth_dir.join(FALLBACKS_FILE);
    let text = match crate::hostile_file::read_regular(&path, MAX_FILE_BYTES) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    serde_json::from_slice(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The most `berth status` reads of the file.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleError;

    fn decided(error: bool) -> Decided<()> {
        Decided {
            value: (),
            file: "policies/landing.rhai",
            function: "admit",
            ruleset: "h".into(),
            error: error.then(|| RuleError::Invalid {
                file: "policies/landing.rhai".into(),
                function: "admit".into(),
                reason: "`decision` must be …".into(),
            }),
            args: Vec::new(),
        }
    }

    #[test]
    fn a_failure_is_listed_while_it_lasts_and_cleared_by_a_valid_answer() {
        let dir = tempfile::tempdir().unwrap();
        let book = Fallbacks::new(dir.path());
        book.next_tick("h");
        assert_eq!(read(dir.path()).unwrap(), []);
        book.note(&decided(true), Some("r1"), "waiting");
        book.note(&decided(true), Some("r2"), "waiting");
        let listed = read(dir.path()).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].record.as_deref(), Some("r1"));
        assert!(listed[0].error.contains("`decision` must be"));
        let since = listed[0].since.clone();
        // A new daemon starts from the list; next tick r1 fails again (same since), r2 is
        // answered.
        let book = Fallbacks::new(dir.path());
        book.next_tick("h");
        book.note(&decided(true), Some("r1"), "waiting");
        book.note(&decided(false), Some("r2"), "go");
        let listed = read(dir.path()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].since, since);
        // Two ticks without the question: gone.
        book.next_tick("h");
        assert_eq!(read(dir.path()).unwrap().len(), 1);
        book.next_tick("h");
        assert_eq!(read(dir.path()).unwrap(), []);
        // Another rule set's failures leave at once.
        book.note(&decided(true), Some("r1"), "waiting");
        book.next_tick("fixed");
        assert_eq!(read(dir.path()).unwrap(), []);
    }
}
