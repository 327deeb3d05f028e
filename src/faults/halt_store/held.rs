//! The filings a pass held because their name holds another run's file
//! ([`HaltStoreError::Taken`](super::HaltStoreError::Taken)): said once a pass in the log,
//! and kept for `berth doctor` in `active-faults/.held-<scope>.json` (a dot name: no look
//! for registries reads it), which the next pass of that scope replaces or removes.

use serde::{Deserialize, Serialize};

use super::super::json_file;
use super::dirs::Sub;
use super::said::SaidOnce;
use super::{HaltStore, HaltStoreError, io_problem};

/// Held filings a pass keeps the lines of for `berth doctor` (each cut, under 1 KiB); the
/// rest are counted only.
pub const MAX_HELD_KEPT: usize = 20;

/// What a held write of the halt dir was: a filing (an event) or a clear (a marker).
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Filing,
    Clear,
}

/// What one pass held: each held filing (said once), the first [`MAX_HELD_KEPT`] lines of
/// them, and the run locks it found held (tried once, said once: `docs/limits.md`'s one try
/// per run per fault round).
#[derive(Debug, Default)]
pub struct Held {
    filings: SaidOnce,
    lines: Vec<String>,
    pub locks: SaidOnce,
}

impl Held {
    /// Notes `run_id`'s `kind` of write held at file `name`, said as `line`; whether it is
    /// new to this pass (to be said).
    pub fn note(&mut self, (kind, run_id): (Kind, &str), name: &str, line: &str) -> bool {
        let kind = match kind {
            Kind::Filing => "filing",
            Kind::Clear => "clear",
        };
        let new = self.filings.first(&[kind, run_id, name]);
        if new && self.lines.len() < MAX_HELD_KEPT {
            self.lines.push(line.to_owned());
        }
        new
    }
}

/// What `active-faults/.held-<scope>.json` holds: the last pass of that scope's held
/// filings, how many, and the first [`MAX_HELD_KEPT`] lines.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldFilings {
    pub updated_at: String,
    pub count: usize,
    pub lines: Vec<String>,
}

/// The passes that keep their held filings, each in its own file: the runs of the
/// build-state dir and the queue's run are synced by different passes.
pub const HELD_SCOPES: [&str; 2] = [HELD_RUNS, HELD_QUEUE];
/// The scope of a pass over the build-state dir's runs.
pub const HELD_RUNS: &str = "runs";
/// The scope of a pass of the queue detectors.
pub const HELD_QUEUE: &str = "queue";

fn held_name(scope: &str) -> String {
    format!(".held-{scope}.json")
}

impl HaltStore {
    /// Ends this store's pass of `scope` ([`HELD_SCOPES`]): writes what it held for
    /// `berth doctor`, or removes the file when it held nothing, and starts the next pass
    /// afresh (a store kept for several passes says each held filing once a pass).
    pub fn save_held(&self, scope: &str) -> Result<(), HaltStoreError> {
        let held = std::mem::take(&mut *self.pass());
        match self.write_held(scope, held) {
            // `active-faults/` was refused at a sync of this pass, and said there.
            Err(HaltStoreError::SaidBefore { .. }) => Ok(()),
            written => written,
        }
    }

    /// What this pass `held`, in the file of `scope`.
    fn write_held(&self, scope: &str, held: Held) -> Result<(), HaltStoreError> {
        let name = held_name(scope);
        if held.filings.is_empty() {
            // No dir made for a pass that held nothing.
            let Some(active) = self.opened.existing(&self.dir, Sub::Active)? else {
                return Ok(());
            };
            return active
                .remove_if_there(&name)
                .map_err(io_problem("remove", &active.join(&name)));
        }
        let active = self.ensure(Sub::Active)?;
        let file = HeldFilings {
            updated_at: crate::clock::now_iso(),
            count: held.filings.len(),
            lines: held.lines,
        };
        let path = active.join(&name);
        let bytes = json_file::pretty(&file).map_err(io_problem("encode", &path))?;
        active
            .write_atomic(&name, &bytes, 0o600)
            .map_err(io_problem("write", &path))
    }

    /// The held filings the last pass of each scope kept, by scope; a file that cannot be
    /// read or is not one is an error naming it.
    pub fn held_filings(&self) -> Vec<Result<HeldFilings, HaltStoreError>> {
        let active = match self.opened.existing(&self.dir, Sub::Active) {
            Ok(Some(active)) => active,
            Ok(None) => return Vec::new(),
            Err(e) => return vec![Err(e)],
        };
        HELD_SCOPES
            .iter()
            .filter_map(|scope| {
                let name = held_name(scope);
                let unreadable = |source: json_file::JsonFileError| HaltStoreError::Unreadable {
                    path: active.join(&name),
                    source,
                };
                let text = match json_file::read_text_in(&active, &name) {
                    Ok(text) => text?,
                    Err(e) => return Some(Err(unreadable(e.into()))),
                };
                Some(serde_json::from_str(&text).map_err(|e| {
                    unreadable(super::super::parse_budget::ParseError::NotJson(e).into())
                }))
            })
            .collect()
    }
}
