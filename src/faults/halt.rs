//! Halt events: how a fault reaches an investigator, in gstack's format
//! (`fault-detectors.md` §5.2–§5.3, §6 "dual-emit").
//!
//! The fault id is a contract: gstack's investigators and the TypeScript monitor derive the
//! same id from the same message and scope, so one halt event file exists per (run, fault)
//! whichever daemon saw the fault first, and each recognises the other's file as the same
//! capture (same `snapshot.stdoutTail`) or a recurrence.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::fault::{Fault, Severity};

/// The kind detector faults are emitted as, as gstack's monitor does.
pub const DETECTOR_KIND: &str = "PHASE_FAILED";

/// How much of a run's stdout a halt event keeps: gstack's `buildHaltSnapshot` splits the
/// log on `\n` and keeps the last 200 pieces. Both daemons must cut the same tail, or each
/// would see the other's capture as a recurrence.
pub const STDOUT_TAIL_LINES: usize = 200;

/// What part of a run a halt event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Phase(String),
    Feature(String),
    All,
}

impl Scope {
    /// gstack's rule over the snapshot: `p<phase.index>` if the snapshot's phase has a
    /// numeric index, else `f<feature.number>` if its feature has a non-empty string number,
    /// else `all`.
    pub fn of_snapshot(phase: Option<&Value>, feature: Option<&Value>) -> Scope {
        if let Some(Value::Number(index)) = phase.and_then(|p| p.get("index")) {
            return Scope::Phase(js_number(index));
        }
        match feature.and_then(|f| f.get("number")) {
            Some(Value::String(number)) if !number.is_empty() => Scope::Feature(number.clone()),
            _ => Scope::All,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Phase(p) => write!(f, "p{p}"),
            Scope::Feature(n) => write!(f, "f{n}"),
            Scope::All => f.write_str("all"),
        }
    }
}

/// A JSON number as JavaScript's template literal prints it (`1`, not `1.0`).
pub fn js_number(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if !(n.is_i64() || n.is_u64()) => super::rules::js_float(f),
        _ => n.to_string(),
    }
}

/// `<kind>:<scope>:<first 8 hex of sha256("<kind>:<scope>:<message>")>`.
pub fn fault_id(kind: &str, scope: &Scope, message: &str) -> String {
    let digest = Sha256::digest(format!("{kind}:{scope}:{message}").as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{kind}:{scope}:{hex}")
}

/// Where an investigator finds the run: gstack's `pointers`, every one a string, `""` when
/// unknown.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pointers {
    pub state_file: String,
    pub stdout_log: String,
    pub living_plan: String,
    pub worktree_path: String,
}

/// gstack's `snapshot`, as its monitor fills it for a detector fault: the phase the fault
/// names (with its iteration counts) and the stdout tail. berth leaves out `worktreeHead`:
/// the worktree is named by a state file, and berth does not open a repository there.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iteration_history: Option<Map<String, Value>>,
    pub stdout_tail: String,
    /// The files the state named that berth would not read, each saying why
    /// ([`super::attachment`]); absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<String>,
    /// Set on a recurrence with another stdout tail: how many captures there have been.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurrences: Option<u64>,
}

/// The run a fault belongs to, as a halt event names it.
#[derive(Clone, Debug, Default)]
pub struct RunRef<'a> {
    pub run_id: &'a str,
    pub state_slug: &'a str,
    pub pointers: Pointers,
    /// The run's state, where a fault's `evidence.phaseIndex` finds its phase.
    pub state: Option<&'a Value>,
    /// [`stdout_tail`] of the run's log, `""` without one.
    pub stdout_tail: String,
    /// [`Snapshot::withheld`].
    pub withheld: Vec<String>,
}

/// One halt event file (`pending-investigations/<safeRunId>-<faultId>.json`), in gstack's
/// schema and key order.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HaltEvent {
    pub fault_id: String,
    pub run_id: String,
    pub state_slug: String,
    pub kind: String,
    pub severity: Severity,
    pub timestamp: String,
    pub message: String,
    pub pointers: Pointers,
    pub snapshot: Snapshot,
    /// Not written: the detector id (`<category>:<phase>:<src>`) the event files, which is
    /// what gstack's monitor keys its active-fault registry by, as berth's registry keeps
    /// it ([`registry::key`]: a long one cut to a fixed size).
    ///
    /// [`registry::key`]: super::registry::key
    #[serde(skip)]
    pub detector_id: String,
    /// Not written: the fault's category.
    #[serde(skip)]
    pub category: String,
}

impl HaltEvent {
    /// A detector fault as gstack's monitor files it: kind `PHASE_FAILED`, the fault's
    /// severity, message `[<CATEGORY>] <description>`, and the snapshot of the phase its
    /// `evidence.phaseIndex` names (no feature), which scopes the id to `p<index>`. The
    /// hand-merged fixture's fault is `PHASE_FAILED:all:1fe2d874`.
    pub fn from_fault(run: &RunRef<'_>, fault: &Fault) -> HaltEvent {
        let phase = run
            .state
            .zip(fault.evidence.get("phaseIndex"))
            .and_then(|(state, index)| phase_at(state, index));
        let iteration_history = phase.map(|phase| {
            ["testRun", "testFix", "codexReview"]
                .into_iter()
                .filter_map(|loop_name| {
                    let count = phase.get(loop_name)?.get("iterations")?;
                    Some((loop_name.to_owned(), count.clone()))
                })
                .collect()
        });
        let message = format!("[{}] {}", fault.category, fault.description);
        let scope = Scope::of_snapshot(phase, None);
        HaltEvent {
            fault_id: fault_id(DETECTOR_KIND, &scope, &message),
            run_id: run.run_id.to_owned(),
            state_slug: run.state_slug.to_owned(),
            kind: DETECTOR_KIND.to_owned(),
            severity: fault.severity,
            timestamp: crate::clock::now_iso(),
            message,
            pointers: run.pointers.clone(),
            snapshot: Snapshot {
                phase: phase.cloned(),
                iteration_history,
                stdout_tail: run.stdout_tail.clone(),
                withheld: run.withheld.clone(),
                occurrences: None,
            },
            detector_id: super::registry::key(&fault.detector_id()),
            category: fault.category.clone(),
        }
    }
}

/// An event that does not fit what berth reads back even without its stdout tail and phase.
#[derive(Debug, thiserror::Error)]
#[error("the halt event takes more than {cap} bytes without its stdout tail and phase")]
pub struct TooLarge {
    pub cap: u64,
}

impl HaltEvent {
    /// Cuts this event to at most `cap` bytes as [`json_file::pretty`] writes it, so berth
    /// can read back every event it files. JSON escapes a control byte to six bytes, so a
    /// tail within the read cap of the log can be six times that written: the tail keeps
    /// its end, cut by its written size. Only an event too large without any tail loses its
    /// phase snapshot (its id already names the phase). The room for `occurrences` is set
    /// aside, so a capture and its recurrences keep the same cut of the same log.
    ///
    /// [`json_file::pretty`]: super::json_file::pretty
    pub fn fit_within(&mut self, cap: u64) -> Result<(), TooLarge> {
        let tail = std::mem::take(&mut self.snapshot.stdout_tail);
        let occurrences = self.snapshot.occurrences.replace(u64::MAX);
        let mut bytes = self.written_bytes(cap);
        if bytes.is_none() {
            self.snapshot.phase = None;
            self.snapshot.iteration_history = None;
            bytes = self.written_bytes(cap);
        }
        self.snapshot.occurrences = occurrences;
        let Some(bytes) = bytes else {
            self.snapshot.stdout_tail = tail;
            return Err(TooLarge { cap });
        };
        self.snapshot.stdout_tail = tail_within(tail, cap - bytes);
        Ok(())
    }

    /// What this event takes written, `None` past `cap`: counted as it is written, never
    /// built, since a phase of deeply nested arrays pretty prints to ~100× its size.
    fn written_bytes(&self, cap: u64) -> Option<u64> {
        super::json_file::pretty_len_within(self, cap)
    }
}

/// The longest end of `tail` that takes at most `room` bytes inside a JSON string.
fn tail_within(tail: String, room: u64) -> String {
    let mut used = 0u64;
    let mut start = tail.len();
    for (at, c) in tail.char_indices().rev() {
        used += super::json_file::escaped_len(c);
        if used > room {
            return tail[start..].to_owned();
        }
        start = at;
    }
    tail
}

/// `state.phases[index]` as JavaScript indexes a list with a number: a whole, non-negative
/// index within the list, else nothing.
fn phase_at<'s>(state: &'s Value, index: &Value) -> Option<&'s Value> {
    let index = index.as_f64()?;
    if index < 0.0 || index.fract() != 0.0 {
        return None;
    }
    state.get("phases")?.as_array()?.get(index as usize)
}

/// gstack's stdout tail: the log split on `\n`, the last [`STDOUT_TAIL_LINES`] pieces.
pub fn stdout_tail(stdout: &str) -> String {
    let start = stdout
        .rmatch_indices('\n')
        .nth(STDOUT_TAIL_LINES - 1)
        .map_or(0, |(i, _)| i + 1);
    stdout[start..].to_owned()
}

/// Test support: the event of a HIGH fault, as the halt store and its readers' tests file.
#[cfg(test)]
pub(crate) mod sample {
    use super::{Fault, HaltEvent, RunRef, Severity};

    /// The event of a HIGH fault `category` ("`category` happened") of run `run` (its state
    /// slug too), whose stdout tail is `tail`.
    pub fn event(run: &str, category: &str, tail: &str) -> HaltEvent {
        let fault = Fault {
            category: category.into(),
            severity: Severity::High,
            description: format!("{category} happened"),
            source_files: vec![],
            evidence: Default::default(),
        };
        let run_ref = RunRef {
            run_id: run,
            state_slug: run,
            stdout_tail: tail.to_owned(),
            ..RunRef::default()
        };
        HaltEvent::from_fault(&run_ref, &fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fault(category: &str, description: &str, evidence: Value) -> Fault {
        Fault {
            category: category.into(),
            severity: Severity::High,
            description: description.into(),
            source_files: vec![],
            evidence: evidence.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn fault_ids_match_gstack() {
        assert_eq!(
            fault_id("PHASE_FAILED", &Scope::All, "phase 2 spec-flip failed"),
            "PHASE_FAILED:all:1bb478f0"
        );
        let e2e =
            "[HAND_MERGED_FEATURE] Feature 1 carries mergeSha+prNumber but completedAt is missing.";
        let feature = json!({"number": "1"});
        let scope = Scope::of_snapshot(None, Some(&feature));
        assert_eq!(
            fault_id("PHASE_FAILED", &scope, e2e),
            "PHASE_FAILED:f1:077cb347"
        );
        // A numeric feature number falls through to `all`; a phase wins over a feature.
        assert_eq!(
            Scope::of_snapshot(None, Some(&json!({"number": 1}))),
            Scope::All
        );
        let phase = json!({"index": 2.0});
        assert_eq!(
            Scope::of_snapshot(Some(&phase), Some(&feature)).to_string(),
            "p2"
        );
        assert_eq!(
            Scope::of_snapshot(Some(&json!({"index": "2"})), None),
            Scope::All
        );
    }

    #[test]
    fn detector_faults_are_filed_as_the_monitor_files_them() {
        let state: Value = serde_json::from_str(include_str!(
            "../../fixtures/hand-merged-feature-state.json"
        ))
        .unwrap();
        let run = RunRef {
            run_id: "polis-mesh-lane-b",
            state_slug: "polis-mesh-lane-b",
            state: Some(&state),
            ..RunRef::default()
        };
        let hand_merged = fault(
            "HAND_MERGED_FEATURE",
            "Feature 1 carries mergeSha+prNumber but completedAt is missing. Likely a hand-merged PR.",
            json!({}),
        );
        let event = HaltEvent::from_fault(&run, &hand_merged);
        assert_eq!(event.fault_id, "PHASE_FAILED:all:1fe2d874");
        assert_eq!(event.detector_id, "HAND_MERGED_FEATURE:all:*");
        assert_eq!(event.snapshot.phase, None);

        // A phase fault is scoped to the phase its evidence names, with its snapshot.
        let codex = fault(
            "CODEX_CONVERGENCE",
            "Codex review did not converge after 5 iterations (limit 5).",
            json!({"phaseIndex": 0, "iterationCount": 5}),
        );
        let event = HaltEvent::from_fault(&run, &codex);
        let message =
            "[CODEX_CONVERGENCE] Codex review did not converge after 5 iterations (limit 5).";
        assert_eq!(event.message, message);
        assert_eq!(
            event.fault_id,
            fault_id("PHASE_FAILED", &Scope::Phase("0".into()), message)
        );
        assert!(event.fault_id.starts_with("PHASE_FAILED:p0:"));
        let written = serde_json::to_value(&event).unwrap();
        let keys: Vec<&str> = written
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "faultId",
                "runId",
                "stateSlug",
                "kind",
                "severity",
                "timestamp",
                "message",
                "pointers",
                "snapshot"
            ]
        );
        assert_eq!(
            written["snapshot"],
            json!({"phase": {"index": 0, "number": 1, "status": "committed"},
                   "iterationHistory": {}, "stdoutTail": ""})
        );
        assert_eq!(
            written["pointers"],
            json!({"stateFile": "", "stdoutLog": "", "livingPlan": "", "worktreePath": ""})
        );
        // An index past the phases, or not a whole number, names no phase.
        for index in [json!(7), json!(0.5), json!(-1), json!("0")] {
            let f = fault("X", "d", json!({ "phaseIndex": index }));
            assert!(
                HaltEvent::from_fault(&run, &f)
                    .fault_id
                    .starts_with("PHASE_FAILED:all:")
            );
        }
    }

    #[test]
    fn an_event_is_cut_by_its_written_size() {
        let run = RunRef {
            run_id: "r",
            state_slug: "r",
            stdout_tail: format!("head{}\"\\end", "\u{1}\n".repeat(1000)),
            ..RunRef::default()
        };
        let f = fault("X", "d", json!({}));
        let whole = HaltEvent::from_fault(&run, &f);
        let written = |e: &HaltEvent| crate::faults::json_file::pretty(e).unwrap().len() as u64;
        let mut same = whole.clone();
        same.fit_within(written(&whole) + 100).unwrap();
        assert_eq!(same, whole);
        for cap in [written(&whole) - 1, 2000, 1000] {
            let mut cut = whole.clone();
            cut.fit_within(cap).unwrap();
            cut.snapshot.occurrences = Some(u64::MAX);
            assert!(written(&cut) <= cap, "{} > {cap}", written(&cut));
            assert!(cut.snapshot.stdout_tail.ends_with("\"\\end"));
            assert!(
                whole
                    .snapshot
                    .stdout_tail
                    .ends_with(&cut.snapshot.stdout_tail)
            );
        }
        let mut none = whole.clone();
        assert!(none.fit_within(100).is_err());
    }

    #[test]
    fn tails_keep_the_last_200_pieces_as_gstack_splits_them() {
        let text: String = (0..300).map(|i| format!("line {i}\n")).collect();
        let tail = stdout_tail(&text);
        // The last piece is the empty one after the final newline.
        assert!(
            tail.starts_with("line 101\n") && tail.ends_with("line 299\n"),
            "{tail}"
        );
        assert_eq!(tail.split('\n').count(), STDOUT_TAIL_LINES);
        assert_eq!(stdout_tail("one"), "one");
        assert_eq!(stdout_tail(""), "");
    }
}
