//! What the decision log says about landings that ended: how long each took (from its
//! claim to `landed`, for an ETA) and the latest landings and blocks. One pass over the
//! log, keeping at most [`MAX_LANDINGS`] durations and [`MAX_RECENT`] endings.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::record::Status;
use crate::rules::journal::{Entry, JournalLine};

/// Landing durations kept (the newest): enough for a median per lane.
pub const MAX_LANDINGS: usize = 500;
/// Landings and blocks kept for "recent" (the newest).
pub const MAX_RECENT: usize = 20;

/// One landing that ended `landed`, and how long it took from its claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimedLanding {
    pub record: String,
    pub took: Duration,
}

/// A record that ended `landed` or `blocked`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ending {
    pub time: String,
    pub record: String,
    pub pr: u64,
    pub repo: String,
    pub to: Status,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct History {
    /// Oldest first.
    pub landings: VecDeque<TimedLanding>,
    /// Newest first.
    pub recent: Vec<Ending>,
    /// Records claimed and not settled yet (in flight, or put back without a line): when
    /// the claim was logged.
    pub claimed: HashMap<String, String>,
}

impl History {
    pub fn read(berth_dir: &Path) -> std::io::Result<History> {
        let mut fold = HistoryFold::default();
        crate::rules::decisions::each_line(berth_dir, |line| fold.take(&line))?;
        Ok(fold.history())
    }

    fn take(&mut self, line: &JournalLine, recent: &mut VecDeque<Ending>) {
        let Entry::Status(change) = &line.entry else {
            return;
        };
        let record = &change.record;
        match change.to {
            Status::Claiming => {
                self.claimed.insert(record.clone(), line.time.clone());
            }
            Status::Landed | Status::Blocked => {
                let start = self.claimed.remove(record);
                let start = start.as_deref().and_then(crate::clock::parse_iso);
                if change.to == Status::Landed
                    && let (Some(start), Some(end)) = (start, line.at())
                    && let Ok(took) = (end - start).to_std()
                {
                    push_bounded(
                        &mut self.landings,
                        TimedLanding {
                            record: record.clone(),
                            took,
                        },
                        MAX_LANDINGS,
                    );
                }
                push_bounded(
                    recent,
                    Ending {
                        time: line.time.clone(),
                        record: record.clone(),
                        pr: change.pr,
                        repo: change.repo.clone(),
                        to: change.to,
                        reason: change.reason.clone(),
                    },
                    MAX_RECENT,
                );
            }
            // Put back (a requeue, a signal): the next claim starts the clock again.
            Status::Queued => {
                self.claimed.remove(record);
            }
            _ => {}
        }
    }
}

/// A [`History`] built a line at a time, oldest first, so a reader that follows the log
/// adds only what was appended.
#[derive(Debug, Default)]
pub struct HistoryFold {
    history: History,
    /// Oldest first.
    recent: VecDeque<Ending>,
}

impl HistoryFold {
    pub fn take(&mut self, line: &JournalLine) {
        self.history.take(line, &mut self.recent);
    }

    /// The history of the lines taken so far.
    pub fn history(&self) -> History {
        History {
            landings: self.history.landings.clone(),
            recent: self.recent.iter().rev().cloned().collect(),
            claimed: self.history.claimed.clone(),
        }
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, max: usize) {
    if queue.len() == max {
        queue.pop_front();
    }
    queue.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(value: serde_json::Value) -> JournalLine {
        serde_json::from_value(value).unwrap()
    }

    fn status(time: &str, record: &str, to: &str) -> JournalLine {
        line(
            json!({"time": time, "kind": "status", "record": record, "pr": 7, "repo": "r", "from": "queued", "to": to, "reason": ""}),
        )
    }

    #[test]
    fn a_landing_is_timed_from_its_last_claim_and_endings_are_newest_first() {
        let mut history = History::default();
        let mut recent = VecDeque::new();
        for line in [
            status("2026-01-01T00:00:00.000Z", "a", "claiming"),
            status("2026-01-01T00:00:05.000Z", "a", "queued"),
            status("2026-01-01T00:01:00.000Z", "a", "claiming"),
            status("2026-01-01T00:01:30.000Z", "a", "landed"),
            status("2026-01-01T00:02:00.000Z", "b", "claiming"),
            status("2026-01-01T00:02:10.000Z", "b", "blocked"),
            status("2026-01-01T00:02:20.000Z", "c", "claiming"),
            line(
                json!({"time": "2026-01-01T00:03:00.000Z", "kind": "decision", "ruleset": "h",
                "file": "policies/landing.rhai", "function": "admit", "record": "a",
                "decision": "admit", "reason": "", "fallback": false}),
            ),
        ] {
            history.take(&line, &mut recent);
        }
        assert_eq!(
            history.landings,
            [TimedLanding {
                record: "a".into(),
                took: Duration::from_secs(30)
            }]
        );
        assert_eq!(history.claimed["c"], "2026-01-01T00:02:20.000Z");
        assert_eq!(history.claimed.len(), 1);
        let order: Vec<_> = recent.iter().rev().map(|e| e.to).collect();
        assert_eq!(order, [Status::Blocked, Status::Landed]);
    }

    #[test]
    fn at_most_max_landings_are_kept() {
        let mut queue = VecDeque::new();
        for n in 0..MAX_LANDINGS + 3 {
            push_bounded(&mut queue, n, MAX_LANDINGS);
        }
        assert_eq!(queue.len(), MAX_LANDINGS);
        assert_eq!(queue.front(), Some(&3));
    }
}
