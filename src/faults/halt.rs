//! Halt events: how a fault reaches an investigator, in gstack's format (DESIGN §7).
//!
//! The fault id is a contract: gstack's investigators and the TypeScript daemon derive the
//! same id from the same message, so one halt event file exists per (run, fault) whichever
//! daemon saw the fault first.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::fault::{Fault, Severity};

/// The kind detector faults are emitted as, as gstack does.
pub const DETECTOR_KIND: &str = "PHASE_FAILED";

/// How much of a run's stdout a halt event keeps: enough to recognise a recurrence and
/// to show an investigator where it stopped, small enough for a directory of them.
pub const STDOUT_TAIL_LINES: usize = 40;
pub const STDOUT_TAIL_BYTES: usize = 4096;

/// What part of a run a halt event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Phase(u64),
    Feature(String),
    All,
}

impl Scope {
    /// gstack's rule: `p<phaseIndex>` if there is a phase, else `f<featureNumber>` if there
    /// is a feature, else `all`.
    pub fn of(phase_index: Option<u64>, feature_number: Option<&str>) -> Scope {
        match (phase_index, feature_number) {
            (Some(p), _) => Scope::Phase(p),
            (None, Some(f)) => Scope::Feature(f.to_owned()),
            (None, None) => Scope::All,
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

/// `<kind>:<scope>:<first 8 hex of sha256("<kind>:<scope>:<message>")>`.
pub fn fault_id(kind: &str, scope: &Scope, message: &str) -> String {
    let digest = Sha256::digest(format!("{kind}:{scope}:{message}").as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{kind}:{scope}:{hex}")
}

/// One halt event file (`pending-investigations/<safeRunId>-<faultId>.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HaltEvent {
    pub run_id: String,
    pub fault_id: String,
    pub kind: String,
    pub scope: String,
    pub message: String,
    pub severity: Severity,
    pub category: String,
    pub description: String,
    /// detectors.md's grouping id, for investigators who sort by detector.
    pub detector_fault_id: String,
    pub evidence: Map<String, Value>,
    pub source_files: Vec<String>,
    pub stdout_tail: Option<String>,
    pub detected_at: String,
}

impl HaltEvent {
    /// A detector fault as gstack emits it: kind `PHASE_FAILED`, message
    /// `[<CATEGORY>] <description>`, the fault's severity, and scope `all` — gstack passes no
    /// phase or feature for detector faults, so ids agree with the TypeScript daemon's
    /// (`PHASE_FAILED:all:1fe2d874` for the hand-merged fixture).
    pub fn from_fault(run_id: &str, fault: &Fault, stdout_tail: Option<String>) -> HaltEvent {
        let scope = Scope::All;
        let message = format!("[{}] {}", fault.category, fault.description);
        HaltEvent {
            run_id: run_id.to_owned(),
            fault_id: fault_id(DETECTOR_KIND, &scope, &message),
            kind: DETECTOR_KIND.to_owned(),
            scope: scope.to_string(),
            message,
            severity: fault.severity,
            category: fault.category.clone(),
            description: fault.description.clone(),
            detector_fault_id: fault.detector_id(),
            evidence: fault.evidence.clone(),
            source_files: fault.source_files.clone(),
            stdout_tail,
            detected_at: crate::clock::now_iso(),
        }
    }
}

/// The last [`STDOUT_TAIL_LINES`] lines of `stdout`, at most [`STDOUT_TAIL_BYTES`] bytes.
pub fn stdout_tail(stdout: &str) -> String {
    let trimmed = stdout.trim_end();
    let start = trimmed
        .rmatch_indices('\n')
        .nth(STDOUT_TAIL_LINES - 1)
        .map_or(0, |(i, _)| i + 1);
    let mut tail = &trimmed[start..];
    if tail.len() > STDOUT_TAIL_BYTES {
        let mut cut = tail.len() - STDOUT_TAIL_BYTES;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = &tail[cut..];
    }
    tail.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_ids_match_gstack() {
        assert_eq!(
            fault_id("PHASE_FAILED", &Scope::All, "phase 2 spec-flip failed"),
            "PHASE_FAILED:all:1bb478f0"
        );
        assert_eq!(Scope::of(Some(2), Some("7")).to_string(), "p2");
        assert_eq!(Scope::of(None, Some("7")).to_string(), "f7");
        assert_eq!(Scope::of(None, None).to_string(), "all");
        let id = fault_id("PHASE_FAILED", &Scope::Phase(2), "phase 2 spec-flip failed");
        assert!(id.starts_with("PHASE_FAILED:p2:") && id.len() == "PHASE_FAILED:p2:".len() + 8);
    }

    #[test]
    fn detector_faults_become_phase_failed_events() {
        let fault = Fault {
            category: "HAND_MERGED_FEATURE".into(),
            severity: Severity::High,
            description: "Feature 1 carries mergeSha+prNumber but completedAt is missing. Likely a hand-merged PR.".into(),
            source_files: vec!["/s/x.json".into()],
            evidence: Map::new(),
        };
        let event = HaltEvent::from_fault("run-1", &fault, None);
        assert_eq!(event.fault_id, "PHASE_FAILED:all:1fe2d874");
        assert_eq!(
            event.message,
            format!("[HAND_MERGED_FEATURE] {}", fault.description)
        );
        assert_eq!(event.detector_fault_id, "HAND_MERGED_FEATURE:all:/s/x.json");
    }

    #[test]
    fn tails_keep_the_last_lines_within_the_byte_cap() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let tail = stdout_tail(&text);
        assert!(
            tail.starts_with("line 60\n") && tail.ends_with("line 99"),
            "{tail}"
        );
        let wide = "é".repeat(STDOUT_TAIL_BYTES);
        let tail = stdout_tail(&wide);
        assert!(tail.len() <= STDOUT_TAIL_BYTES && tail.chars().all(|c| c == 'é'));
        assert_eq!(stdout_tail("one"), "one");
    }
}
