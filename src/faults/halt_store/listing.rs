//! Every halt event under the halt dir with where it stands, for `berth faults list`.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::super::json_file;
use super::{HaltStore, PENDING_DIR, PROCESSED_DIR, RESOLVED_EVENT};

/// Where a listed halt event stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HaltStatus {
    /// In `pending-investigations/`, waiting for an investigator.
    Pending,
    /// Pending, with a resolved marker beside it: the fault cleared.
    Resolved,
    /// Moved to `processed/`.
    Investigated,
}

/// One halt event as `berth faults list` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedHalt {
    pub file: String,
    pub status: HaltStatus,
    pub run_id: String,
    pub fault_id: String,
    pub kind: String,
    pub severity: String,
    pub message: String,
    pub timestamp: String,
    pub occurrences: u64,
}

/// Everything under the halt dir, and every file that could not be read.
#[derive(Debug, Default, Serialize)]
pub struct Listing {
    pub halts: Vec<ListedHalt>,
    pub unreadable: Vec<crate::store::Unreadable>,
}

impl HaltStore {
    /// Every halt event (detected rows in `pending-investigations/` and `processed/`), with
    /// its status; files that cannot be read are listed apart.
    pub fn list(&self) -> Listing {
        let mut listing = Listing::default();
        let mut resolved: HashSet<(String, String)> = HashSet::new();
        // Only the fields shown, cut, kept per event: one event's parse is held at a time,
        // however many events of up to 8 MiB a producer left in the halt dir.
        let mut detected: BTreeMap<(HaltStatus, String), ListedHalt> = BTreeMap::new();
        for (sub, status) in [
            (PENDING_DIR, HaltStatus::Pending),
            (PROCESSED_DIR, HaltStatus::Investigated),
        ] {
            let dir = self.dir.join(sub);
            let names = match json_names(&dir) {
                Ok(names) => names,
                Err(bad) => {
                    listing.unreadable.push(bad);
                    continue;
                }
            };
            for name in names {
                let path = dir.join(&name);
                let value = match json_file::read_json(&path) {
                    Ok(Some(value)) => value,
                    Ok(None) => continue,
                    Err(reason) => {
                        listing.unreadable.push(crate::store::Unreadable {
                            file: path.display().to_string(),
                            reason: reason.to_string(),
                        });
                        continue;
                    }
                };
                let text = |field: &str| value.get(field).and_then(Value::as_str);
                if text("event") == Some(RESOLVED_EVENT) {
                    if let (Some(run), Some(id), HaltStatus::Pending) =
                        (text("runId"), text("faultId"), status)
                    {
                        resolved.insert((run.to_owned(), id.to_owned()));
                    }
                    continue;
                }
                detected.insert((status, name.clone()), listed(name, status, &value));
            }
        }
        for (_, mut halt) in detected {
            if halt.status == HaltStatus::Pending
                && resolved.contains(&(halt.run_id.clone(), halt.fault_id.clone()))
            {
                halt.status = HaltStatus::Resolved;
            }
            listing.halts.push(halt);
        }
        listing
    }

    /// The run ids of the pending detected events with `fault_id`.
    pub fn pending_runs(&self, fault_id: &str) -> Vec<String> {
        self.list()
            .halts
            .into_iter()
            .filter(|h| h.fault_id == fault_id && h.status != HaltStatus::Investigated)
            .map(|h| h.run_id)
            .collect()
    }
}

/// A listed field (a message, an id) is cut past this many bytes, ending in `…`.
pub const MAX_FIELD_BYTES: usize = 4096;

/// What the listing shows of one detected event, its text fields cut.
fn listed(file: String, status: HaltStatus, value: &Value) -> ListedHalt {
    let text = |field: &str| cut(value.get(field).and_then(Value::as_str).unwrap_or_default());
    ListedHalt {
        file,
        status,
        run_id: text("runId"),
        fault_id: text("faultId"),
        kind: text("kind"),
        severity: text("severity"),
        message: text("message"),
        timestamp: text("timestamp"),
        occurrences: value
            .pointer("/snapshot/occurrences")
            .and_then(Value::as_u64)
            .unwrap_or(1),
    }
}

fn cut(text: &str) -> String {
    if text.len() <= MAX_FIELD_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_FIELD_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The `*.json` names directly in `dir` (not hidden, not `*.json.tmp.<pid>`), sorted; a
/// missing dir has none.
fn json_names(dir: &Path) -> Result<Vec<String>, crate::store::Unreadable> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(crate::store::Unreadable {
                file: dir.display().to_string(),
                reason: format!("cannot read dir: {e}"),
            });
        }
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.') && name.ends_with(".json"))
        .collect();
    names.sort();
    Ok(names)
}
