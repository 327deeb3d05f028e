//! `berth rules replay`: asks a candidate rule set the questions the daemon recorded in its
//! decision log, with the exact facts each question was asked with (`rules::facts`), and
//! says what would have changed.
//!
//! Every recorded decision with facts is replayed in recorded order through the same
//! contract functions the daemon calls, so a candidate that fails is judged by its
//! fail-closed answer, as the daemon would have acted on it. An `order` selection is
//! replayed as a ranking: the candidate ranks the recorded candidates, and its pick is the
//! first record of the selected record's lane that a policy `wait` was not holding at the
//! time. Two answers are the same when their decision is; reasons are shown, not compared.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::contracts::discovery::{self, PrFacts};
use super::contracts::landing::{self, Admit, LandFacts};
use super::decisions::{SELECTED, each_line};
use super::facts::FactsIndex;
use super::journal::{Decision, Entry, JournalLine};
use super::set::RuleSet;

/// Which recorded decisions to replay.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Only decisions at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only decisions about records of this repo identity (or `path:<repo>`).
    pub repo: Option<String>,
}

/// What the candidate answered where the recorded decision differs.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Answer {
    pub decision: String,
    pub reason: String,
}

/// One recorded decision the candidate answers differently (or fails on).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    pub function: String,
    pub record: Option<String>,
    pub pr: Option<u64>,
    pub repo: Option<String>,
    pub time: String,
    pub recorded: Answer,
    pub candidate: Answer,
    /// The candidate's rule failed and this is its fail-closed answer.
    pub failed: bool,
}

/// Per function: how many replayed decisions are the same, differ, or fail.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    pub same: usize,
    pub differ: usize,
    pub fail: usize,
}

/// How much longer (or shorter) a record would have waited under the candidate's `admit`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitChange {
    pub record: String,
    pub pr: Option<u64>,
    /// When the recorded history let it go.
    pub recorded_go: Option<String>,
    /// When the candidate would first have let it go, probed at the times of later
    /// decisions; `None` when it still held it at the end of the history.
    pub candidate_go: Option<String>,
    /// Seconds later (positive) or sooner (negative) than recorded; with no `candidate_go`,
    /// at least this much later.
    pub change_secs: i64,
}

/// The outcome of a replay.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    pub replayed: usize,
    /// Decisions in scope without facts (logged before facts were recorded, or whose facts
    /// were rotated out of the store): counted, never guessed.
    pub not_replayable: usize,
    pub functions: BTreeMap<String, Tally>,
    pub differences: Vec<Difference>,
    pub waits: Vec<WaitChange>,
}

impl Replay {
    /// Whether the candidate would have decided anything differently.
    pub fn changed(&self) -> bool {
        self.functions.values().any(|t| t.differ + t.fail > 0)
    }
}

impl Scope {
    fn covers(&self, line: &JournalLine) -> bool {
        let recent = self
            .since
            .is_none_or(|since| line.at().is_some_and(|t| t >= since));
        let repo = self
            .repo
            .as_deref()
            .is_none_or(|r| line.repo().unwrap_or("") == r);
        recent && repo
    }
}

/// Replays the decisions of `berth_dir`'s log in `scope` against `set`.
pub fn replay(berth_dir: &Path, set: &RuleSet, scope: &Scope) -> io::Result<Replay> {
    let mut lines = Vec::new();
    each_line(berth_dir, |line| lines.push(line))?;
    let facts = FactsIndex::load_for(
        berth_dir,
        lines
            .iter()
            .filter(|l| scope.covers(l))
            .filter_map(|l| l.decision()?.facts.as_ref()),
    )?;
    let mut replay = Replay::default();
    let mut waiting = Waiting::default();
    for (index, line) in lines.iter().enumerate() {
        waiting.follow(line);
        let Some(decision) = line.decision().filter(|_| scope.covers(line)) else {
            continue;
        };
        let Some(args) = decision.facts.as_ref().and_then(|refs| facts.resolve(refs)) else {
            replay.not_replayable += 1;
            continue;
        };
        let Some(asked) = ask(set, decision, &args, &waiting) else {
            replay.not_replayable += 1;
            continue;
        };
        replay.replayed += 1;
        let recorded = Answer {
            decision: decision.decision.clone(),
            reason: decision.reason.clone(),
        };
        let tally = replay
            .functions
            .entry(decision.function.clone())
            .or_default();
        if asked.failed {
            tally.fail += 1;
        } else if asked.answer.decision == recorded.decision {
            tally.same += 1;
            continue;
        } else {
            tally.differ += 1;
        }
        if decision.function == "admit" {
            replay.waits.extend(wait_change(
                set,
                line,
                &args,
                &asked.answer,
                &lines[index + 1..],
            ));
        }
        replay
            .differences
            .push(difference(line, decision, recorded, asked));
    }
    Ok(replay)
}

fn difference(
    line: &JournalLine,
    decision: &Decision,
    recorded: Answer,
    asked: Asked,
) -> Difference {
    let text = |t: &Option<String>| t.clone().filter(|t| !t.is_empty());
    Difference {
        function: decision.function.clone(),
        record: text(&decision.about.record),
        pr: decision.about.pr,
        repo: text(&decision.about.repo),
        time: line.time.clone(),
        recorded,
        candidate: asked.answer,
        failed: asked.failed,
    }
}

/// The records a policy `wait` held at each point of the history (as `status` reads it).
#[derive(Default)]
struct Waiting(HashSet<String>);

impl Waiting {
    fn follow(&mut self, line: &JournalLine) {
        let record = line.record().unwrap_or("");
        match &line.entry {
            Entry::Status(_) | Entry::Operator(_) => {
                self.0.remove(record);
            }
            Entry::Decision(d) if d.function == "admit" => {
                if d.decision == Admit::Wait.as_str() {
                    self.0.insert(record.to_owned());
                } else {
                    self.0.remove(record);
                }
            }
            Entry::Decision(_) => {}
        }
    }
}

/// The candidate's answer to one recorded question.
struct Asked {
    answer: Answer,
    failed: bool,
}

/// Asks `set` the recorded question; `None` when the recorded facts do not fit the
/// function (a log line berth does not know how to replay).
fn ask(set: &RuleSet, line: &Decision, args: &[Value], waiting: &Waiting) -> Option<Asked> {
    let asked = |decision: String, reason: String, failed: bool| Asked {
        answer: Answer { decision, reason },
        failed,
    };
    let recorded_record = line.about.record.as_deref().unwrap_or("");
    match (line.function.as_str(), args) {
        ("admit", [record, ctx]) => {
            let d = landing::admit(set, record, ctx);
            let failed = d.is_fallback();
            Some(asked(
                d.value.decision.as_str().into(),
                d.value.reason,
                failed,
            ))
        }
        ("on_land_result", [record, facts, ctx]) => {
            let facts: LandFacts = serde_json::from_value(facts.clone()).ok()?;
            let d = landing::on_land_result(set, record, &facts, ctx);
            let failed = d.is_fallback();
            Some(asked(
                d.value.decision.as_str().into(),
                d.value.reason,
                failed,
            ))
        }
        ("max_lanes", [ctx]) => {
            let d = landing::max_lanes(set, ctx);
            let failed = d.is_fallback();
            Some(asked(d.value.to_string(), String::new(), failed))
        }
        ("accept_pr", [pr]) => {
            let pr: PrFacts = serde_json::from_value(pr.clone()).ok()?;
            let d = discovery::accept_pr(set, &pr);
            let decision = if d.value.accept { "accept" } else { "reject" };
            Some(asked(
                decision.into(),
                d.value.reason.clone(),
                d.is_fallback(),
            ))
        }
        ("order", [Value::Array(candidates)]) => {
            let d = discovery::order(set, candidates.clone());
            let failed = d.is_fallback();
            if line.decision != SELECTED {
                // A recorded failure of `order` ("built-in order"): the same when the
                // candidate fails too.
                let decision = if failed {
                    line.decision.as_str()
                } else {
                    "rule order"
                };
                return Some(asked(decision.into(), String::new(), failed));
            }
            let pick = pick_in_lane(candidates, &d.value, recorded_record, waiting)?;
            let decision = if pick == recorded_record {
                SELECTED.to_owned()
            } else {
                format!("{SELECTED} {pick} instead")
            };
            Some(asked(
                decision,
                format!("candidate order: {}", d.value.join(", ")),
                failed,
            ))
        }
        _ => None,
    }
}

/// The first record of `selected`'s lane in `ranking` that no policy wait held.
fn pick_in_lane(
    candidates: &[Value],
    ranking: &[String],
    selected: &str,
    waiting: &Waiting,
) -> Option<String> {
    let by_id: HashMap<&str, &Value> = candidates
        .iter()
        .filter_map(|c| Some((c.get("id")?.as_str()?, c)))
        .collect();
    let lane = lane_of(by_id.get(selected)?);
    ranking
        .iter()
        .filter(|id| !waiting.0.contains(id.as_str()) || id.as_str() == selected)
        .find(|id| by_id.get(id.as_str()).is_some_and(|c| lane_of(c) == lane))
        .cloned()
}

/// A candidate's lane as the record names it (identity, else path; and base).
fn lane_of(record: &Value) -> (String, String) {
    let text = |key: &str| {
        record
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let repo = Some(text("repoIdentity"))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| format!("path:{}", text("repoPath")));
    (repo, text("baseBranch"))
}

/// Most times a held record's `admit` is asked again at, to find when the candidate would
/// have let it go (spread evenly over the later history).
const MAX_PROBES: usize = 256;

/// How much longer or shorter the record of an `admit` decision would have waited.
fn wait_change(
    set: &RuleSet,
    line: &JournalLine,
    args: &[Value],
    candidate: &Answer,
    later: &[JournalLine],
) -> Option<WaitChange> {
    let [record, ctx] = args else { return None };
    let at = line.at()?;
    let id = line.record().unwrap_or("");
    let recorded = line.decision()?.decision.as_str();
    let go = Admit::Go.as_str();
    let (recorded_go, candidate_go) = if recorded == go && candidate.decision != go {
        let probe = |t: DateTime<Utc>| {
            landing::admit(set, record, &ctx_at(ctx, t)).value.decision == Admit::Go
        };
        (Some(at), probe_times(later).into_iter().find(|t| probe(*t)))
    } else if candidate.decision == go && recorded != go {
        (first_go_of(id, later), Some(at))
    } else {
        return None;
    };
    let end = later.last().and_then(JournalLine::at).unwrap_or(at);
    let change = match (recorded_go, candidate_go) {
        (Some(r), Some(c)) => c - r,
        (Some(r), None) => end - r,
        (None, Some(c)) => c - end,
        (None, None) => return None,
    };
    Some(WaitChange {
        record: id.to_owned(),
        pr: line.pr(),
        recorded_go: recorded_go.map(crate::clock::iso),
        candidate_go: candidate_go.map(crate::clock::iso),
        change_secs: change.num_seconds(),
    })
}

/// When the history next let `id` go: its next `admit` go or selection.
fn first_go_of(id: &str, later: &[JournalLine]) -> Option<DateTime<Utc>> {
    later.iter().find_map(|l| {
        let d = l.decision()?;
        let go = d.decision == Admit::Go.as_str() || d.decision == SELECTED;
        (l.record() == Some(id) && go).then(|| l.at()).flatten()
    })
}

/// The distinct times of the later history, at most [`MAX_PROBES`] of them.
fn probe_times(later: &[JournalLine]) -> Vec<DateTime<Utc>> {
    let mut times: Vec<DateTime<Utc>> = later.iter().filter_map(JournalLine::at).collect();
    times.dedup();
    let step = times.len().div_ceil(MAX_PROBES).max(1);
    times.into_iter().step_by(step).collect()
}

/// `ctx` as it would have been at `at`.
fn ctx_at(ctx: &Value, at: DateTime<Utc>) -> Value {
    let mut ctx = ctx.clone();
    if let Value::Object(map) = &mut ctx {
        map.insert("now".into(), Value::String(crate::clock::iso(at)));
        map.insert("nowEpoch".into(), Value::from(at.timestamp()));
    }
    ctx
}
