//! `<berth_dir>/decisions.jsonl`: one JSON line per policy decision and per status change
//! of a record, so `berth explain <PR>` can say why a record is where it is.
//!
//! Its lines are [`JournalLine`]s (`rules::journal`): written here, read by the functions
//! below and by `rules replay` and `capture`.
//!
//! The same decision repeated for the same record (a freeze window answering `wait` on
//! every tick) is written once, until the answer, the rule set or the record's status
//! changes: the log records decisions, not polls. Writing is best effort: a full disk must not stop a landing, so
//! a failed append is a warning.
//!
//! Bounded: past [`MAX_FILE_BYTES`] the daemon rotates the log to `decisions.1.jsonl` (the
//! older ones to `decisions.2.jsonl` … up to [`KEPT_GENERATIONS`], the oldest dropped), and
//! every reader takes all generations, oldest first.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

use super::contracts::Decided;
use super::facts::FactsStore;
use super::fallbacks::Fallbacks;
use super::journal::{About, Act, Decision, Entry, JournalLine, OperatorLine, StatusChange};
use super::rotation::Rotated;
use crate::record::{Record, Status};

pub const DECISIONS_FILE: &str = "decisions.jsonl";
/// The size at which the daemon rotates the decision log.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Rotated generations kept besides `decisions.jsonl`.
pub const KEPT_GENERATIONS: u32 = 4;

/// The decision log's files in `berth_dir`.
pub fn files(berth_dir: &Path) -> Rotated {
    Rotated::new(berth_dir, "decisions", KEPT_GENERATIONS)
}

/// The decision of an `order` line that picked a record to land.
pub const SELECTED: &str = "selected";

/// Which record a line is about: id, PR number and repo identity (or `path:<repo>`).
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub id: &'a str,
    pub pr: u64,
    pub repo: &'a str,
}

impl Subject<'_> {
    fn about(subject: Option<Subject<'_>>) -> About {
        About {
            record: subject.map(|s| s.id.to_owned()),
            pr: subject.map(|s| s.pr),
            repo: subject.map(|s| s.repo.to_owned()),
        }
    }
}

/// What was last written for one (record, function): the rule set, decision and reason.
type LastAnswer = (String, String, String);

/// (record, function) answers remembered so that a repeat is written once. Past it the
/// memory is dropped whole: each record's next answer is written again (a repeated line,
/// never a missed one).
pub const MAX_REMEMBERED: usize = 4096;

/// How many answers of each rule file and function were the built-in default since the
/// daemon started (every fallback, including repeats the log does not write again).
#[derive(Debug, Default)]
pub struct FallbackCounts(Mutex<BTreeMap<(&'static str, &'static str), u64>>);

impl FallbackCounts {
    fn add(&self, file: &'static str, function: &'static str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((file, function))
            .or_default() += 1;
    }

    /// `((file, function), count)` in file order.
    pub fn snapshot(&self) -> Vec<((&'static str, &'static str), u64)> {
        let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        counts.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// The append-only decision log of one daemon, and the list of its decisions that are
/// failing closed right now.
#[derive(Debug)]
pub struct DecisionLog {
    path: PathBuf,
    files: Rotated,
    max_bytes: u64,
    /// Held while one writer checks the size and rotates, so two never rotate at once.
    rotating: Mutex<()>,
    fallbacks: Fallbacks,
    /// (record, function) → (ruleset, decision, reason) last written.
    last: Mutex<HashMap<(String, &'static str), LastAnswer>>,
    fallback_counts: Arc<FallbackCounts>,
    facts: FactsStore,
    /// The candidates of the latest `order` call: a selection line refers to them.
    order_args: Mutex<Vec<Value>>,
}

impl DecisionLog {
    pub fn new(berth_dir: &Path) -> DecisionLog {
        DecisionLog::with_limit(berth_dir, MAX_FILE_BYTES)
    }

    /// A log rotated past `max_bytes`.
    pub fn with_limit(berth_dir: &Path, max_bytes: u64) -> DecisionLog {
        DecisionLog {
            path: berth_dir.join(DECISIONS_FILE),
            files: files(berth_dir),
            max_bytes,
            rotating: Mutex::new(()),
            fallbacks: Fallbacks::new(berth_dir),
            last: Mutex::new(HashMap::new()),
            fallback_counts: Arc::default(),
            facts: FactsStore::new(berth_dir),
            order_args: Mutex::new(Vec::new()),
        }
    }

    /// The fallback counters, shared with whoever reports them (the metrics).
    pub fn fallback_counts(&self) -> Arc<FallbackCounts> {
        Arc::clone(&self.fallback_counts)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The decisions failing closed right now.
    pub fn fallbacks(&self) -> &Fallbacks {
        &self.fallbacks
    }

    /// Logs one decision about `subject` (or about no record, e.g. `max_lanes`), and notes
    /// whether it is a fail-closed fallback.
    pub fn decision<T>(
        &self,
        decided: &Decided<T>,
        subject: Option<Subject<'_>>,
        decision: &str,
        reason: &str,
    ) {
        self.write_decision(decided, subject, decision, reason, &decided.args);
    }

    /// Keeps the candidates `order` was just asked to rank, for the selections it leads to.
    pub fn remember_order(&self, args: Vec<Value>) {
        *self.order_args.lock().unwrap_or_else(|p| p.into_inner()) = args;
    }

    /// Logs that `subject` was selected by the latest `order` call, with its candidates as
    /// the facts, so replay can rank them again.
    pub fn selection<T>(&self, decided: &Decided<T>, subject: Subject<'_>, reason: &str) {
        let args = self.order_args.lock().unwrap_or_else(|p| p.into_inner());
        self.write_decision(decided, Some(subject), SELECTED, reason, &args);
    }

    fn write_decision<T>(
        &self,
        decided: &Decided<T>,
        subject: Option<Subject<'_>>,
        decision: &str,
        reason: &str,
        args: &[Value],
    ) {
        self.fallbacks.note(
            decided,
            subject.map(|s| s.id),
            &format!("{decision}: {reason}"),
        );
        if decided.is_fallback() {
            self.fallback_counts.add(decided.file, decided.function);
        }
        let key = (subject.map_or("", |s| s.id).to_owned(), decided.function);
        let value = (
            decided.ruleset.clone(),
            decision.to_owned(),
            reason.to_owned(),
        );
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.get(&key) == Some(&value) {
                return;
            }
            if last.len() >= MAX_REMEMBERED {
                last.clear();
            }
            last.insert(key, value);
        }
        let facts = (!args.is_empty())
            .then(|| self.facts.put_args(args))
            .and_then(|stored| {
                stored
                    .map_err(|e| tracing::warn!(log = %self.path.display(), "decision facts not stored: {e}"))
                    .ok()
            });
        self.append(&JournalLine::now(Entry::Decision(Decision {
            ruleset: decided.ruleset.clone(),
            file: decided.file.to_owned(),
            function: decided.function.to_owned(),
            about: Subject::about(subject),
            decision: decision.to_owned(),
            reason: reason.to_owned(),
            fallback: decided.is_fallback(),
            error: decided.error.as_ref().map(ToString::to_string),
            facts,
        })));
    }

    /// Forgets the answers about records `present` says are gone from the queue.
    pub fn forget_gone(&self, present: impl Fn(&str) -> bool) {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(record, _), _| record.is_empty() || present(record));
    }

    /// How many answers are remembered.
    pub fn remembered(&self) -> usize {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Logs a record's move from `from` to `updated.status`. The record's next decisions
    /// are new events, so they are written even if they repeat earlier ones.
    pub fn status_change(&self, id: &str, from: Status, updated: &Record) {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(record, _), _| record != id);
        self.append(&JournalLine::now(Entry::Status(StatusChange {
            record: id.to_owned(),
            pr: updated.pr_number,
            repo: updated.identity_or_path(),
            from,
            to: updated.status,
            reason: updated.last_error.clone().unwrap_or_default(),
        })));
    }

    fn append(&self, line: &JournalLine) {
        if let Err(e) = append_line(&self.path, line) {
            tracing::warn!(log = %self.path.display(), "decision not logged: {e}");
        }
        let _rotating = self.rotating.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = self.files.rotate_past(self.max_bytes) {
            tracing::warn!(log = %self.path.display(), "decision log not rotated: {e}");
        }
    }
}

fn append_line(path: &Path, line: &JournalLine) -> io::Result<()> {
    let mut text = line.to_json();
    text.push('\n');
    // Never through a symlink planted in berth's dir.
    let mut file = crate::atomic_file::open_append_private(path)?;
    // One write of one line: O_APPEND keeps concurrent lines whole.
    file.write_all(text.as_bytes())
}

/// What an operator did by hand (`retry`, `abandon`, `lock release`), logged beside the
/// daemon's decisions so `berth explain` tells the whole story in order.
pub struct OperatorAct<'a> {
    pub act: Act,
    /// The record it was about (`retry`, `abandon`).
    pub subject: Option<Subject<'a>>,
    pub from: Option<Status>,
    pub to: Option<Status>,
    /// The lane lock it was about (`lock release`).
    pub lock_ref: Option<&'a str>,
    pub reason: &'a str,
}

/// Appends `act` to `<berth_dir>/decisions.jsonl`.
pub fn operator_act(berth_dir: &Path, act: &OperatorAct<'_>) -> io::Result<()> {
    crate::atomic_file::ensure_private_dir(berth_dir)?;
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()));
    append_line(
        &berth_dir.join(DECISIONS_FILE),
        &JournalLine::now(Entry::Operator(OperatorLine {
            act: act.act,
            about: Subject::about(act.subject),
            from: act.from,
            to: act.to,
            lock_ref: act.lock_ref.map(str::to_owned),
            reason: act.reason.to_owned(),
            user,
            process: crate::ownership::this_process(),
        })),
    )
}

/// Every line of the log about PR `pr` (of `repo`, when given), oldest first.
pub fn history(berth_dir: &Path, pr: u64, repo: Option<&str>) -> io::Result<Vec<JournalLine>> {
    pr_history(berth_dir, pr, repo).map(|history| history.lines)
}

/// What one pass over the log found for a PR's story.
#[derive(Debug, Default)]
pub struct PrHistory {
    /// Every line about the PR, oldest first.
    pub lines: Vec<JournalLine>,
    /// Every operator's `lock release` line, oldest first: which of them belong to the
    /// PR's lanes is known only from the queue.
    pub lock_releases: Vec<JournalLine>,
}

/// [`history`] and every forced lock release, in one read of the log.
pub fn pr_history(berth_dir: &Path, pr: u64, repo: Option<&str>) -> io::Result<PrHistory> {
    let mut found = PrHistory::default();
    each_line(berth_dir, |line| {
        let same_repo = repo.is_none_or(|r| line.repo() == Some(r));
        if line.pr() == Some(pr) && same_repo {
            found.lines.push(line);
        } else if is_lock_release(&line) {
            found.lock_releases.push(line);
        }
    })?;
    Ok(found)
}

/// A policy's `wait` that still holds a record: the latest `admit` answer about it was
/// `wait` and its status has not changed since.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyWait {
    pub reason: String,
    /// When the daemon wrote that answer (it writes a repeated answer once).
    pub since: String,
}

/// Record id → the policy `wait` holding it, from the log.
pub fn policy_waits(berth_dir: &Path) -> io::Result<HashMap<String, PolicyWait>> {
    let mut waits: HashMap<String, PolicyWait> = HashMap::new();
    each_line(berth_dir, |line| fold_wait(&mut waits, &line))?;
    Ok(waits)
}

/// One line of the log, oldest first, into the [`policy_waits`] it leaves.
pub fn fold_wait(waits: &mut HashMap<String, PolicyWait>, line: &JournalLine) {
    let record = line.record().unwrap_or("").to_owned();
    match &line.entry {
        // The record moved (by the daemon or an operator): an older wait is over.
        Entry::Status(_) | Entry::Operator(_) => {
            waits.remove(&record);
        }
        Entry::Decision(d) if d.function == "admit" => {
            if d.decision == "wait" {
                let wait = PolicyWait {
                    reason: d.reason.clone(),
                    since: line.time.clone(),
                };
                waits.insert(record, wait);
            } else {
                waits.remove(&record);
            }
        }
        Entry::Decision(_) => {}
    }
}

/// Whether a line about no PR of its own belongs in every [`PrHistory`]'s releases.
pub fn is_lock_release(line: &JournalLine) -> bool {
    matches!(
        &line.entry,
        Entry::Operator(OperatorLine {
            act: Act::LockRelease,
            lock_ref: Some(_),
            ..
        })
    )
}

/// Calls `f` with every whole line of the log, its rotated generations included, oldest
/// first (none when there is no log). A line that is not a [`JournalLine`] (torn by a crash
/// mid-append) is skipped.
pub(crate) fn each_line(berth_dir: &Path, mut f: impl FnMut(JournalLine)) -> io::Result<()> {
    #[cfg(test)]
    PASSES.with(|passes| passes.set(passes.get() + 1));
    files(berth_dir).each_line(|line| {
        if let Ok(line) = serde_json::from_str::<JournalLine>(&line) {
            f(line);
        }
    })
}

// The passes over the log this thread made, so a test counts them.
#[cfg(test)]
thread_local! {
    pub(crate) static PASSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::contracts::Decided;

    fn decided(ruleset: &str) -> Decided<()> {
        Decided {
            value: (),
            file: "policies/landing.rhai",
            function: "admit",
            ruleset: ruleset.into(),
            error: None,
            args: Vec::new(),
        }
    }

    /// Past its size bound the log rotates (`decisions.1.jsonl` … `decisions.4.jsonl`, the
    /// oldest dropped), and history (what `explain`, `status`, `replay` and `capture` read)
    /// still finds every line of the kept generations, oldest first.
    /// Churning 3 × the cap of records (each answered once, then again unchanged) keeps the
    /// memory at the cap and writes every new answer; answers about records gone from the
    /// queue are forgotten.
    #[test]
    fn remembered_answers_stay_at_the_cap_and_no_new_answer_is_missed() {
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::new(dir.path());
        let ids: Vec<String> = (0..3 * MAX_REMEMBERED).map(|n| format!("r-{n}")).collect();
        for id in &ids {
            let subject = Subject {
                id,
                pr: 1,
                repo: "github.com/acme/a",
            };
            log.decision(&decided("h"), Some(subject), "wait", "freeze");
            log.decision(&decided("h"), Some(subject), "wait", "freeze");
            assert!(log.remembered() <= MAX_REMEMBERED);
        }
        let mut written = std::collections::HashSet::new();
        each_line(dir.path(), |line| {
            written.insert(line.record().unwrap_or("").to_owned());
        })
        .unwrap();
        assert_eq!(written.len(), ids.len(), "a new answer was not written");
        log.forget_gone(|id| id == "r-0");
        assert_eq!(
            log.remembered(),
            0,
            "only answers about gone records were kept"
        );
    }

    #[test]
    fn the_log_rotates_by_size_and_history_reads_every_kept_generation() {
        const LIMIT: u64 = 1000;
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::with_limit(dir.path(), LIMIT);
        let a = Subject {
            id: "a-main-pr-1",
            pr: 1,
            repo: "github.com/acme/a",
        };
        for n in 0..60 {
            log.decision(
                &decided(&format!("h{n}")),
                Some(a),
                "wait",
                &format!("n{n}"),
            );
        }
        let files = files(dir.path());
        let mut kept = 0;
        let lines = |path: &std::path::Path| {
            std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
        };
        for path in files.oldest_first() {
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            assert!(len < LIMIT + 400, "{} is {len} bytes", path.display());
            kept += lines(&path);
        }
        assert!(!files.generation(KEPT_GENERATIONS + 1).exists());
        let reasons: Vec<String> = history(dir.path(), 1, None)
            .unwrap()
            .iter()
            .map(|line| {
                let value = serde_json::to_value(line).unwrap();
                value["reason"].as_str().expect("a reason").to_owned()
            })
            .collect();
        assert_eq!(reasons.len(), kept);
        let current = lines(&files.current());
        assert!(kept > current, "rotated lines are read too");
        let expected: Vec<String> = (60 - kept..60).map(|n| format!("n{n}")).collect();
        assert_eq!(reasons, expected, "the newest lines, oldest first");
    }

    /// `berth explain` reads decisions.jsonl: a FIFO planted there (or swapped in) must
    /// fail with a clear error, not hang it in a blocking open.
    #[test]
    fn a_fifo_decisions_log_does_not_hang_history() {
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(
            &dir.path().join(DECISIONS_FILE),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let berth_dir = dir.path().to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(history(&berth_dir, 1, None).is_err());
        });
        let refused = rx
            .recv_timeout(std::time::Duration::from_secs(3))
            .expect("history() still blocked on the FIFO after 3s");
        assert!(refused, "a FIFO is not a decisions log: expected an error");
    }

    #[test]
    fn repeated_decisions_are_written_once_and_history_filters_by_pr_and_repo() {
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::new(dir.path());
        let a = Subject {
            id: "a-main-pr-1",
            pr: 1,
            repo: "github.com/acme/a",
        };
        let b = Subject {
            id: "b-main-pr-1",
            pr: 1,
            repo: "github.com/acme/b",
        };
        for _ in 0..3 {
            log.decision(&decided("h1"), Some(a), "wait", "freeze");
        }
        log.decision(&decided("h1"), Some(b), "wait", "freeze");
        log.decision(&decided("h1"), Some(a), "go", "thawed");
        log.decision(&decided("h2"), Some(a), "go", "thawed");
        log.decision(&decided("h2"), Some(a), "go", "thawed");
        let mut record = crate::record::Record::from_json(serde_json::json!({
            "runId": "r", "repoPath": "/r", "baseBranch": "main", "featureBranch": "f",
            "prNumber": 1, "version": "1", "livingPlanPath": "/p", "worktreePath": "/r",
            "queuedAt": "2026-01-01T00:00:00Z", "status": "queued",
            "repoIdentity": "github.com/acme/a"
        }))
        .unwrap();
        record.status = Status::Claiming;
        log.status_change(a.id, Status::Queued, &record);
        // After a status change the same answer is a new event.
        log.decision(&decided("h2"), Some(a), "go", "thawed");
        let all = history(dir.path(), 1, None).unwrap();
        assert_eq!(all.len(), 6);
        let only_a: Vec<Value> = history(dir.path(), 1, Some("github.com/acme/a"))
            .unwrap()
            .iter()
            .map(|line| serde_json::to_value(line).unwrap())
            .collect();
        let decisions: Vec<&str> = only_a
            .iter()
            .map(|l| l["decision"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(decisions, ["wait", "go", "go", "", "go"]);
        assert_eq!(only_a[3]["kind"], "status");
        assert_eq!(only_a[3]["to"], "claiming");
        assert_eq!(only_a[0]["file"], "policies/landing.rhai");
        assert!(history(dir.path(), 2, None).unwrap().is_empty());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(log.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
