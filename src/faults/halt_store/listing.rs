//! Every halt event under the halt dir with where it stands, for `berth faults list`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::super::json_file;
use super::listing_reads::{ListingReads, MAX_LISTING_READ_BYTES};
use super::shown::{EventKey, Shown, WholeRunId};
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
    /// Its (run, fault) key from the whole ids, which resolved markers and `faults ack`
    /// match on: the shown ids are cut.
    #[serde(skip)]
    key: Option<EventKey>,
}

/// Everything under the halt dir, and every file that could not be read.
#[derive(Debug, Default, Serialize)]
pub struct Listing {
    pub halts: Vec<ListedHalt>,
    pub unreadable: Vec<crate::store::Unreadable>,
    /// What the listing left out though it was there to read; also said in `unreadable`.
    #[serde(skip)]
    pub left_out: LeftOut,
}

/// What a listing left out: a partial listing is never taken as the whole halt dir.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeftOut {
    /// Event files not read past a long-lived store's read budget; its next listing reads
    /// them.
    pub unread_files: usize,
    /// `pending-investigations/` held more names than a listing reads; no later listing
    /// reads the rest. (A cut `processed/`, which gstack never prunes, leaves out no
    /// pending event.)
    pub pending_cut: bool,
}

impl LeftOut {
    pub fn is_none(&self) -> bool {
        *self == LeftOut::default()
    }
}

/// `berth faults ack` without `--run` cannot tell which runs have the fault: the listing it
/// would pick from is partial.
#[derive(Debug, thiserror::Error)]
#[error(
    "the listing of {dir} is partial ({} event files not read, pending names cut: {}); say the run with --run",
    .left_out.unread_files,
    .left_out.pending_cut
)]
pub struct PartialListing {
    pub dir: String,
    pub left_out: LeftOut,
}

impl HaltStore {
    /// Every halt event (detected rows in `pending-investigations/` and `processed/`), with
    /// its status; files that cannot be read are listed apart.
    pub fn list(&self) -> Listing {
        let mut listing = Listing::default();
        let mut resolved: HashSet<EventKey> = HashSet::new();
        // Only the fields shown, cut, kept per event, and nothing else of an event is built
        // ([`Shown`]): one event's text is held at a time, however many events of up to
        // 8 MiB a producer left in the halt dir; and those fields once, shared with the reads.
        let mut detected: BTreeMap<(HaltStatus, String), Arc<Shown>> = BTreeMap::new();
        let mut reads = ListingReads::start(&self.listed, self.listing_budget);
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
                listing.left_out.pending_cut |= status == HaltStatus::Pending;
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
                    if let (Some(key), HaltStatus::Pending) = (shown.key(), status) {
                        resolved.insert(key);
                    }
                    continue;
                }
                detected.insert((status, name), shown);
            }
        }
        listing.left_out.unread_files = reads.skipped();
        if reads.skipped() > 0 {
            listing.unreadable.push(crate::store::Unreadable {
                file: self.dir.display().to_string(),
                reason: format!(
                    "listing partial: {} event files not read, past the {MAX_LISTING_READ_BYTES} bytes one listing of a long-lived store reads of files it has not read before; its next listing reads them",
                    reads.skipped()
                ),
            });
        }
        // A one-shot store's reads are dropped here, so each event's fields move into the
        // listing uncopied (a long-lived store keeps its reads, and the listing copies them).
        drop(reads);
        for ((status, name), shown) in detected {
            let shown = Arc::try_unwrap(shown).unwrap_or_else(|shared| (*shared).clone());
            let mut halt = listed(name, status, shown);
            if halt.status == HaltStatus::Pending && halt.key.is_some_and(|k| resolved.contains(&k))
            {
                halt.status = HaltStatus::Resolved;
            }
            listing.halts.push(halt);
        }
        listing
    }

    /// The run ids of the pending detected events with `fault_id` (matched whole), or that
    /// the listing was partial: a run it left out could be the one. The one run is its whole
    /// id, read again from its file, which ack moves its event by; several are each as
    /// listed (cut), for ack to name.
    pub fn pending_runs(&self, fault_id: &str) -> Result<Vec<String>, PartialListing> {
        let listing = self.list();
        if !listing.left_out.is_none() {
            return Err(PartialListing {
                dir: self.dir.display().to_string(),
                left_out: listing.left_out,
            });
        }
        let fault: [u8; 32] = Sha256::digest(fault_id).into();
        let mut halts: Vec<ListedHalt> = listing
            .halts
            .into_iter()
            .filter(|h| h.status != HaltStatus::Investigated)
            .filter(|h| h.key.is_some_and(|(_, of)| of == fault))
            .collect();
        if let [one] = halts.as_mut_slice()
            && let Some(whole) = self.whole_run_id(one)
        {
            one.run_id = whole;
        }
        Ok(halts.into_iter().map(|h| h.run_id).collect())
    }

    /// The whole run id of the pending `halt`, when its file still holds it (the listing's
    /// key); `None` when it cannot be read or changed since.
    fn whole_run_id(&self, halt: &ListedHalt) -> Option<String> {
        let pending = PrivateDir::open_to_read(&self.dir, PENDING_DIR).ok()??;
        let text =
            json_file::read_capped_in(&pending, &halt.file, json_file::MAX_JSON_BYTES).ok()??;
        let run = WholeRunId::parse(&text).ok()?.0?;
        let (listed_run, _) = halt.key?;
        (<[u8; 32]>::from(Sha256::digest(&run)) == listed_run).then_some(run)
    }
}

/// What the listing shows of one detected event.
fn listed(file: String, status: HaltStatus, shown: Shown) -> ListedHalt {
    let key = shown.key();
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
        key,
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
