//! `berth rules capture`: recorded decisions as rule-test cases, so an incident becomes a
//! regression test in one command.
//!
//! Each recorded decision with facts becomes `{"name", "function", "args", "expect"}` in
//! the `*.tests.json` of the rule file that answered it (`rules test` runs them). `expect`
//! pins the decision only (`{"decision": …}`, `{"accept": …}`, or the number of lanes), so
//! rewording a reason does not break the case. Left out, and counted: fail-closed answers
//! (they are the core's, not the rule's), `order` selections (the log keeps the pick, not
//! the ranking), and decisions whose facts are not in the store.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::decisions::each_line;
use super::facts::FactsIndex;
use super::journal::{Decision, JournalLine};

/// Which decisions to capture.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    /// A record id, or a PR number: only decisions about it.
    pub record: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Selector {
    fn picks(&self, line: &JournalLine) -> bool {
        let time = line.at();
        let about = self.record.as_deref().is_none_or(|want| {
            line.record() == Some(want) || line.pr().map(|n| n.to_string()).as_deref() == Some(want)
        });
        let after = self.since.is_none_or(|s| time.is_some_and(|t| t >= s));
        let before = self.until.is_none_or(|u| time.is_some_and(|t| t <= u));
        line.decision().is_some() && about && after && before
    }
}

/// The captured cases by tests file (`policies/landing.tests.json`, …), and what was left
/// out.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Captured {
    pub files: BTreeMap<String, Vec<Value>>,
    pub skipped: usize,
}

impl Captured {
    pub fn cases(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }
}

/// Captures the decisions of `berth_dir`'s log that `selector` picks.
pub fn capture(berth_dir: &Path, selector: &Selector) -> io::Result<Captured> {
    let mut picked = Vec::new();
    each_line(berth_dir, |line| {
        if selector.picks(&line) {
            picked.push(line);
        }
    })?;
    let refs = picked.iter().filter_map(|l| l.decision()?.facts.as_ref());
    let facts = FactsIndex::load_for(berth_dir, refs)?;
    let mut captured = Captured::default();
    for line in &picked {
        let Some(decision) = line.decision() else {
            continue;
        };
        let case = decision
            .facts
            .as_ref()
            .and_then(|refs| facts.resolve(refs))
            .and_then(|args| case_of(&line.time, decision, args));
        match case {
            Some((file, case)) => captured.files.entry(file).or_default().push(case),
            None => captured.skipped += 1,
        }
    }
    Ok(captured)
}

/// The tests file and the case for one recorded decision, if it makes one.
fn case_of(time: &str, line: &Decision, args: Vec<Value>) -> Option<(String, Value)> {
    if line.fallback {
        return None;
    }
    let decision = line.decision.as_str();
    let function = line.function.as_str();
    let expect = match function {
        "admit" | "on_land_result" => json!({"decision": decision}),
        "accept_pr" => json!({"accept": decision == "accept"}),
        "max_lanes" => json!(decision.parse::<u64>().ok()?),
        _ => return None,
    };
    let file = line.file.strip_suffix(".rhai")?.to_owned() + ".tests.json";
    let about = line.about.pr.map_or(String::new(), |pr| format!(" #{pr}"));
    let name = format!("captured: {function}{about} → {decision} at {time}");
    let case = json!({"name": name, "function": function, "args": args, "expect": expect});
    Some((file, case))
}

/// The cases a new tests file under `root` starts from: the shipped ones when the root
/// does not override their rule file, since the root's tests file replaces the shipped one.
fn shipped_cases(root: &Path, tests_file: &str) -> Vec<Value> {
    let rule_file = tests_file.replace(".tests.json", ".rhai");
    if root.join(&rule_file).exists() {
        return Vec::new();
    }
    super::embedded::FILES
        .iter()
        .find(|(name, _)| *name == tests_file)
        .and_then(|(_, text)| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// Adds the captured cases to the tests files under `root` (a rules root), keeping the
/// cases already there and skipping any whose name is taken; how many were added.
pub fn add_to_root(root: &Path, captured: &Captured) -> io::Result<usize> {
    let mut added = 0;
    for (file, cases) in &captured.files {
        let path = root.join(file);
        let mut existing: Vec<Value> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a JSON list of cases: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => shipped_cases(root, file),
            Err(e) => return Err(e),
        };
        let taken: HashSet<String> = existing
            .iter()
            .filter_map(|c| c.get("name")?.as_str().map(str::to_owned))
            .collect();
        let fresh: Vec<Value> = cases
            .iter()
            .filter(|c| c["name"].as_str().is_some_and(|n| !taken.contains(n)))
            .cloned()
            .collect();
        if fresh.is_empty() {
            continue;
        }
        added += fresh.len();
        existing.extend(fresh);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(&existing).map_err(io::Error::other)? + "\n";
        crate::atomic_file::write_atomic(&path, text.as_bytes(), 0o644)?;
    }
    Ok(added)
}
