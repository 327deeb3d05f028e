//! How many files berth lets `pending-investigations/` hold: whoever writes build-state
//! files can make a run raise and clear faults with ever new ids, or start ever more runs,
//! and each filing adds a file that every listing (`faults list`, `doctor`, the pending
//! gauge, gstack's loaders) reads. Past a cap a new event or resolved marker is held back:
//! its fault stays out of the run's registry, so it is filed on a later pass once events
//! were acknowledged or drained, and one "halt cap reached" event says so. Nothing already
//! filed is ever removed to make room, and a recurrence of a filed fault (its own file
//! rewritten, its archives capped) is never held back.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use super::super::fault::Severity;
use super::super::halt::{DETECTOR_KIND, HaltEvent, Pointers, Scope, Snapshot, fault_id};
use super::super::run_id::file_run_id;
use super::RESOLVED_EVENT;
use super::shown::Shown;
use crate::hostile_file::ReadError;
use crate::private_dir::PrivateDir;

/// Files (events and resolved markers) one run may have pending: more than an investigator
/// goes through for one run (a 60-phase build raising three faults per phase holds 180
/// with their markers), so a run past it is broken as a whole.
pub const MAX_PENDING_PER_RUN: usize = 200;
/// Files all runs together may have pending: a listing reads each (~24 KiB a typical
/// event), so at most ~24 MiB per listing.
pub const MAX_PENDING_TOTAL: usize = 1_000;
/// The run id the cap's own event is filed under; it is filed past the caps.
pub const CAP_RUN_ID: &str = "berth-halt-cap";
const CAP_CATEGORY: &str = "HALT_CAP_REACHED";

/// Which cap held a filing back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapReached {
    #[error("the run has {MAX_PENDING_PER_RUN} files pending, its cap")]
    Run,
    #[error("pending-investigations/ holds {MAX_PENDING_TOTAL} files, its cap")]
    Total,
}

/// The pending files by run, counted once per [`super::HaltStore`] (the daemon makes one
/// per pass) and kept up to date with what that store files.
#[derive(Debug, Default)]
pub struct Census {
    total: usize,
    per_run: HashMap<String, usize>,
}

impl Census {
    /// Counts the `*.json` names in `pending` (what listings read). A name too long to
    /// carry its run id whole counts towards the total only. A dir holding more names than
    /// a listing reads is full: what was not read may be pending files.
    pub fn take(pending: &PrivateDir) -> io::Result<Census> {
        let mut census = Census::default();
        let (names, cut) = pending.names_up_to(super::MAX_NAMES_PER_LISTING)?;
        if cut {
            census.total = MAX_PENDING_TOTAL;
        }
        for name in names {
            let Some(name) = name.strip_suffix(".json") else {
                continue;
            };
            census.total += 1;
            for run in runs_of(pending, name) {
                *census.per_run.entry(run.to_owned()).or_default() += 1;
            }
        }
        Ok(census)
    }

    /// Whether one more file of `run_id` fits.
    pub fn admits(&self, run_id: &str) -> Result<(), CapReached> {
        if self.total >= MAX_PENDING_TOTAL {
            return Err(CapReached::Total);
        }
        match self.per_run.get(&file_run_id(run_id)) {
            Some(&n) if n >= MAX_PENDING_PER_RUN => Err(CapReached::Run),
            _ => Ok(()),
        }
    }

    /// One file of `run_id` was written.
    pub fn add(&mut self, run_id: &str) {
        self.total += 1;
        *self.per_run.entry(file_run_id(run_id)).or_default() += 1;
    }
}

/// The run part of a pending name without `.json`: `<safeRunId>-<KIND>:…` or
/// `<safeRunId>-RESOLVED-<KIND>:…`. A safe run id holds no `:`, so the first `:` ends the
/// kind.
fn run_key(stem: &str) -> Option<&str> {
    let (before, _) = stem.split_once(':')?;
    Some(before.rsplit_once('-')?.0)
}

/// A resolved marker (`{event, timestamp, runId, faultId}`) is far smaller than this; a
/// larger file is an event.
const MAX_MARKER_BYTES: u64 = 4096;

/// The runs a pending name counts against. `r-RESOLVED-<KIND>:…` is an event of run
/// `r-RESOLVED` or the resolved marker of run `r`: the file says which, and one that cannot
/// be read counts against both, so neither run escapes its cap.
fn runs_of<'a>(pending: &PrivateDir, stem: &'a str) -> Vec<&'a str> {
    let Some(run) = run_key(stem) else {
        return Vec::new();
    };
    let Some(marker_of) = run.strip_suffix("-RESOLVED") else {
        return vec![run];
    };
    let name = format!("{stem}.json");
    match super::super::json_file::read_capped_in(pending, &name, MAX_MARKER_BYTES) {
        Ok(Some(text)) => match Shown::parse(&text) {
            Ok(shown) if shown.event.as_deref() == Some(RESOLVED_EVENT) => vec![marker_of],
            _ => vec![run],
        },
        Err(ReadError::TooLarge { .. }) => vec![run],
        Ok(None) | Err(_) => vec![run, marker_of],
    }
}

/// The one event that says filings are held back. Its text is fixed, so it keeps one id
/// and one file, rewritten in place while the cap holds.
pub fn cap_event(pending: &Path) -> HaltEvent {
    let message = format!(
        "[{CAP_CATEGORY}] berth holds back new halt events: pending-investigations/ holds \
         {MAX_PENDING_TOTAL} files, or one run {MAX_PENDING_PER_RUN}. Acknowledge or drain \
         events; those held back are filed on a later pass (berth_halt_events_withheld \
         counts them)."
    );
    HaltEvent {
        fault_id: fault_id(DETECTOR_KIND, &Scope::All, &message),
        run_id: CAP_RUN_ID.to_owned(),
        state_slug: CAP_RUN_ID.to_owned(),
        kind: DETECTOR_KIND.to_owned(),
        severity: Severity::High,
        timestamp: crate::clock::now_iso(),
        message,
        pointers: Pointers {
            state_file: pending.display().to_string(),
            ..Pointers::default()
        },
        snapshot: Snapshot::default(),
        detector_id: format!("{CAP_CATEGORY}:all:*"),
        category: CAP_CATEGORY.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{run_key, runs_of};

    #[test]
    fn a_pending_name_gives_its_run() {
        assert_eq!(run_key("r-1-PHASE_FAILED:p0:1bb478f0"), Some("r-1"));
        assert_eq!(
            run_key("r-1-RESOLVED-PHASE_FAILED:all:1bb478f0"),
            Some("r-1-RESOLVED")
        );
        assert_eq!(run_key("r-1-RETRY_CAP_HIT:p2:00000000"), Some("r-1"));
        assert_eq!(run_key("no-colon"), None);
    }

    #[test]
    fn a_name_of_two_readings_counts_as_its_file_says_or_against_both() {
        let root = tempfile::tempdir().unwrap();
        let dir = crate::private_dir::PrivateDir::ensure(root.path(), "pending").unwrap();
        let marker = "r-RESOLVED-X:all:1";
        let event = "r-RESOLVED-X:all:2";
        let marker_json = r#"{"event":"SKILL_FAULT_RESOLVED","runId":"r","faultId":"X:all:1"}"#;
        std::fs::write(dir.path().join(format!("{marker}.json")), marker_json).unwrap();
        std::fs::write(
            dir.path().join(format!("{event}.json")),
            r#"{"runId":"r-RESOLVED"}"#,
        )
        .unwrap();
        assert_eq!(runs_of(&dir, marker), ["r"]);
        assert_eq!(runs_of(&dir, event), ["r-RESOLVED"]);
        assert_eq!(runs_of(&dir, "r-RESOLVED-X:all:3"), ["r-RESOLVED", "r"]);
    }
}
