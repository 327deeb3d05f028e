//! Every halt event under the halt dir with where it stands, for `berth faults list`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Serialize;

use super::listing_reads::{ListingReads, MAX_LISTING_READ_BYTES};
use super::shown::Shown;
use super::{HaltStore, MAX_NAMES_PER_LISTING, PENDING_DIR, PROCESSED_DIR, RESOLVED_EVENT};
use crate::private_dir::PrivateDir;

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
        // Only the fields shown, cut, kept per event, and nothing else of an event is built
        // ([`Shown`]): one event's text is held at a time, however many events of up to
        // 8 MiB a producer left in the halt dir.
        let mut detected: BTreeMap<(HaltStatus, String), ListedHalt> = BTreeMap::new();
        let mut reads = ListingReads::start(&self.listed);
        for (sub, status) in [
            (PENDING_DIR, HaltStatus::Pending),
            (PROCESSED_DIR, HaltStatus::Investigated),
        ] {
            let names = match json_names(&self.dir, sub) {
                Ok(names) => names,
                Err(bad) => {
                    listing.unreadable.push(bad);
                    continue;
                }
            };
            let Some((dir, names, cut)) = names else {
                continue;
            };
            if cut {
                listing.unreadable.push(crate::store::Unreadable {
                    file: dir.path().display().to_string(),
                    reason: format!(
                        "holds more than {MAX_NAMES_PER_LISTING} entries; only the first {MAX_NAMES_PER_LISTING} were read"
                    ),
                });
            }
            for name in names {
                let path = dir.join(&name);
                let Some(shown) = reads.shown(&dir, sub, &name) else {
                    continue;
                };
                let shown = match shown {
                    Ok(shown) => shown,
                    Err(reason) => {
                        listing.unreadable.push(crate::store::Unreadable {
                            file: path.display().to_string(),
                            reason: reason.to_string(),
                        });
                        continue;
                    }
                };
                if shown.event.as_deref() == Some(RESOLVED_EVENT) {
                    if let (Some(run), Some(id), HaltStatus::Pending) =
                        (shown.run_id, shown.fault_id, status)
                    {
                        resolved.insert((run, id));
                    }
                    continue;
                }
                detected.insert((status, name.clone()), listed(name, status, shown));
            }
        }
        if reads.skipped() > 0 {
            listing.unreadable.push(crate::store::Unreadable {
                file: self.dir.display().to_string(),
                reason: format!(
                    "listing partial: {} event files not read, past the {MAX_LISTING_READ_BYTES} bytes one listing reads of files it has not read before; a later listing reads them",
                    reads.skipped()
                ),
            });
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

/// What the listing shows of one detected event.
fn listed(file: String, status: HaltStatus, shown: Shown) -> ListedHalt {
    ListedHalt {
        file,
        status,
        run_id: shown.run_id.unwrap_or_default(),
        fault_id: shown.fault_id.unwrap_or_default(),
        kind: shown.kind.unwrap_or_default(),
        severity: shown.severity.unwrap_or_default(),
        message: shown.message.unwrap_or_default(),
        timestamp: shown.timestamp.unwrap_or_default(),
        occurrences: shown.occurrences.unwrap_or(1),
    }
}

/// `sub` of the halt dir `halts`, opened to be read and never through a symlink,
/// and the `*.json` names directly in it (not hidden, not `*.json.tmp.<pid>`), sorted,
/// of its first [`MAX_NAMES_PER_LISTING`] entries, and whether more were left unread; a
/// missing dir is `None`. Each listing opens it anew: a daemon lists for its whole life.
fn json_names(
    halts: &Path,
    sub: &str,
) -> Result<Option<(PrivateDir, Vec<String>, bool)>, crate::store::Unreadable> {
    let unreadable = |reason: String| crate::store::Unreadable {
        file: halts.join(sub).display().to_string(),
        reason,
    };
    let dir = match PrivateDir::open_to_read(halts, sub) {
        Ok(Some(dir)) => dir,
        Ok(None) => return Ok(None),
        Err(e) => return Err(unreadable(e.to_string())),
    };
    let (names, cut) = dir
        .names_up_to(MAX_NAMES_PER_LISTING)
        .map_err(|e| unreadable(format!("cannot read dir: {e}")))?;
    let mut names: Vec<String> = names
        .into_iter()
        .filter(|name| !name.starts_with('.') && name.ends_with(".json"))
        .collect();
    names.sort();
    Ok(Some((dir, names, cut)))
}
