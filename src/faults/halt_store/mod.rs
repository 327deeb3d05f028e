//! The halt-events dir (default `~/.gstack/skill-faults/`), shared with gstack and laid out
//! as gstack's `halt-events.ts` lays it out (`fault-detectors.md` §5):
//!
//! - `pending-investigations/<safeRunId>-<faultId>.json`: the latest capture of a fault
//!   (a [`HaltEvent`]); on a recurrence with another stdout tail it carries
//!   `snapshot.occurrences`;
//! - `collapsed/<safeRunId>-<faultId>-<n>.json`: earlier capture number `n`, archived when a
//!   recurrence replaced it;
//! - `pending-investigations/<safeRunId>-RESOLVED-<faultId>.json`: the fault cleared,
//!   `{event: "SKILL_FAULT_RESOLVED", timestamp, runId, faultId}`; gstack's drain moves it to
//!   `processed/` with its detected row;
//! - `processed/<same names>`: investigated (gstack's drain, or `berth faults ack`);
//! - `active-faults/`: berth's own per-state-file registries ([`super::registry`]).
//!
//! Architecture Invariant: a pending file that cannot be read is reported and left as it is;
//! berth never writes over it. Every file here is read without blocking, without following
//! a symlink, after checking the open handle is a regular file, and within a size cap.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::halt::HaltEvent;
use super::json_file::{self, JsonFileError};
use super::run_id::{file_run_id, fit_stem};
use crate::atomic_file;

mod listing;
mod sync;

pub use listing::{HaltStatus, ListedHalt, Listing};

pub const PENDING_DIR: &str = "pending-investigations";
pub const PROCESSED_DIR: &str = "processed";
pub const COLLAPSED_DIR: &str = "collapsed";
pub const ACTIVE_DIR: &str = "active-faults";
/// Archived captures kept per fault under `collapsed/`, and their total size: a fault that
/// clears and re-raises with a changing log would otherwise add one archive (~2 MiB) per
/// cycle forever. Past either, the oldest captures are removed; the numbers keep counting,
/// so the lowest number kept, minus one, is how many were dropped.
pub const MAX_ARCHIVES_PER_FAULT: usize = 20;
pub const MAX_ARCHIVE_BYTES_PER_FAULT: u64 = 16 * 1024 * 1024;
/// The `event` of a resolved marker; detected rows have no `event` key.
pub const RESOLVED_EVENT: &str = "SKILL_FAULT_RESOLVED";

/// What [`HaltStore::emit`] did with one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Emitted {
    /// No pending file was there: a new one was written.
    New,
    /// The pending file holds the same capture (same stdout tail): rewritten in place with
    /// a fresh timestamp, as gstack does.
    Refreshed,
    /// The pending file held another capture: it was archived under `collapsed/` and the
    /// new one, capture number `occurrences`, replaced it.
    Recurred { occurrences: u64 },
}

/// What one [`HaltStore::sync_run`] did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// `(halt id, what was written)` for every event filed.
    pub emitted: Vec<(String, Emitted)>,
    /// Halt ids whose resolved marker was written.
    pub resolved: Vec<String>,
    /// Files that could not be read or written, each naming the file and the reason.
    pub problems: Vec<String>,
}

/// What [`HaltStore::mark_investigated`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Marked {
    /// Moved from `pending-investigations/` to this path.
    Moved(PathBuf),
    /// Not pending: someone (an investigator, gstack's drain) already moved it.
    AlreadyMoved,
}

#[derive(Clone, Debug)]
pub struct HaltStore {
    dir: PathBuf,
}

/// Why a halt event file was not written, read or moved; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum HaltStoreError {
    /// `action` is what was being done (`write`, `remove the old capture`, …).
    #[error("{action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{}: {source}; left untouched", .path.display())]
    Unreadable {
        path: PathBuf,
        source: JsonFileError,
    },
    /// Even cut to an empty stdout tail and no phase, the event is larger than berth reads.
    #[error("{}: not written: {source}", .path.display())]
    TooLarge {
        path: PathBuf,
        source: super::halt::TooLarge,
    },
    #[error("cannot move {} to {}: {source}", .from.display(), .to.display())]
    Move {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
}

fn io_problem(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> HaltStoreError {
    let path = path.to_owned();
    move |source| HaltStoreError::Io {
        action,
        path,
        source,
    }
}

impl HaltStore {
    pub fn new(dir: impl Into<PathBuf>) -> HaltStore {
        HaltStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<safeRunId>-<infix><faultId><suffix>.json`. gstack writes the fault id as it is; a
    /// fault id comes from data (a phase index in a state file, a registry on disk), so a
    /// path separator in it is replaced before it can reach the file system. A run id (or
    /// fault id) too long for one file name is cut to fit ([`fit_stem`]); `<suffix>.json`
    /// is always kept whole.
    fn file_name(run_id: &str, infix: &str, fault_id: &str, suffix: &str) -> String {
        let fault_id = fault_id.replace(['/', '\\', '\0'], "_");
        let stem = format!("{}-{infix}{fault_id}", file_run_id(run_id));
        let tail = format!("{suffix}.json");
        format!("{}{tail}", fit_stem(&stem, tail.len()))
    }

    pub fn pending_path(&self, run_id: &str, fault_id: &str) -> PathBuf {
        self.dir
            .join(PENDING_DIR)
            .join(Self::file_name(run_id, "", fault_id, ""))
    }

    pub fn resolved_path(&self, run_id: &str, fault_id: &str) -> PathBuf {
        self.dir
            .join(PENDING_DIR)
            .join(Self::file_name(run_id, "RESOLVED-", fault_id, ""))
    }

    pub fn processed_path(&self, run_id: &str, fault_id: &str) -> PathBuf {
        self.dir
            .join(PROCESSED_DIR)
            .join(Self::file_name(run_id, "", fault_id, ""))
    }

    pub fn collapsed_path(&self, run_id: &str, fault_id: &str, capture: u64) -> PathBuf {
        self.dir.join(COLLAPSED_DIR).join(Self::file_name(
            run_id,
            "",
            fault_id,
            &format!("-{capture}"),
        ))
    }

    fn ensure(&self, sub: &str) -> Result<PathBuf, HaltStoreError> {
        let dir = self.dir.join(sub);
        atomic_file::ensure_private_dir(&dir).map_err(io_problem("create", &dir))?;
        Ok(dir)
    }

    /// Files one halt event as gstack's `emitHaltEvent` does: a pending file holding
    /// another stdout tail is archived under `collapsed/` and replaced by this capture with
    /// `occurrences = n + 1` (n = its `snapshot.occurrences`, else 1); one holding the same
    /// tail is rewritten in place. A resolved marker of the same fault is stale once it is
    /// raised again, and is removed. The event is first cut to what berth reads back
    /// ([`HaltEvent::fit_within`]), so that both daemons compare the tails berth wrote.
    pub fn emit(&self, event: &HaltEvent) -> Result<Emitted, HaltStoreError> {
        self.ensure(PENDING_DIR)?;
        let pending = self.pending_path(&event.run_id, &event.fault_id);
        let prior =
            json_file::read_json(&pending).map_err(|source| HaltStoreError::Unreadable {
                path: pending.clone(),
                source,
            })?;
        let mut event = event.clone();
        event
            .fit_within(json_file::MAX_JSON_BYTES)
            .map_err(|source| HaltStoreError::TooLarge {
                path: pending.clone(),
                source,
            })?;
        let emitted = match prior {
            None => Emitted::New,
            Some(prior)
                if prior
                    .pointer("/snapshot/stdoutTail")
                    .and_then(Value::as_str)
                    == Some(event.snapshot.stdout_tail.as_str()) =>
            {
                Emitted::Refreshed
            }
            Some(prior) => {
                let capture = prior
                    .pointer("/snapshot/occurrences")
                    .and_then(Value::as_u64)
                    .unwrap_or(1);
                self.archive(&event.run_id, &event.fault_id, capture, &prior)?;
                event.snapshot.occurrences = Some(capture + 1);
                Emitted::Recurred {
                    occurrences: capture + 1,
                }
            }
        };
        let bytes = json_file::pretty(&event).map_err(io_problem("encode", &pending))?;
        atomic_file::write_atomic(&pending, &bytes, 0o600)
            .map_err(io_problem("write", &pending))?;
        let marker = self.resolved_path(&event.run_id, &event.fault_id);
        match fs::remove_file(&marker) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_problem("remove the stale resolved marker", &marker)(e));
            }
            _ => {}
        }
        Ok(emitted)
    }

    /// Archives `prior`, capture number `capture` of the fault, to `collapsed/`, then prunes
    /// that fault's archives. An ack starts the pending file's count at 1 again while the
    /// archives from before it stay, so the archive takes the next number after the
    /// highest one there: none is written over, and the highest number stays the newest
    /// capture, which the pruning keeps.
    fn archive(
        &self,
        run_id: &str,
        fault_id: &str,
        capture: u64,
        prior: &Value,
    ) -> Result<(), HaltStoreError> {
        self.ensure(COLLAPSED_DIR)?;
        let mut archives = self.archives(run_id, fault_id)?;
        let number = archives
            .iter()
            .map(|a| a.number.saturating_add(1))
            .fold(capture, u64::max);
        let path = self.collapsed_path(run_id, fault_id, number);
        let bytes = json_file::pretty(prior).map_err(io_problem("encode", &path))?;
        atomic_file::write_atomic(&path, &bytes, 0o600).map_err(io_problem("write", &path))?;
        archives.push(Archive {
            number,
            size: bytes.len() as u64,
            path,
        });
        archives.sort_by_key(|a| std::cmp::Reverse(a.number));
        prune_archives(&archives)
    }

    /// The archived captures of one fault under `collapsed/`: the files whose name is the
    /// name [`HaltStore::collapsed_path`] gives their number.
    fn archives(&self, run_id: &str, fault_id: &str) -> Result<Vec<Archive>, HaltStoreError> {
        let dir = self.dir.join(COLLAPSED_DIR);
        let entries = fs::read_dir(&dir).map_err(io_problem("list", &dir))?;
        Ok(entries
            .flatten()
            .filter_map(|entry| {
                let path = entry.path();
                let (_, number) = path
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".json")?
                    .rsplit_once('-')?;
                let number: u64 = number.parse().ok()?;
                if path != self.collapsed_path(run_id, fault_id, number) {
                    return None;
                }
                let size = entry.metadata().ok().filter(|m| m.is_file())?.len();
                Some(Archive { number, size, path })
            })
            .collect())
    }

    /// Writes the resolved marker of a fault that cleared, as gstack's
    /// `emitHaltEventResolved` does: `{event, timestamp, runId, faultId}` and nothing else.
    pub fn resolve(&self, run_id: &str, fault_id: &str) -> Result<(), HaltStoreError> {
        self.ensure(PENDING_DIR)?;
        let path = self.resolved_path(run_id, fault_id);
        let marker = json!({
            "event": RESOLVED_EVENT,
            "timestamp": crate::clock::now_iso(),
            "runId": run_id,
            "faultId": fault_id,
        });
        let bytes = json_file::pretty(&marker).map_err(io_problem("encode", &path))?;
        atomic_file::write_atomic(&path, &bytes, 0o600).map_err(io_problem("write", &path))
    }

    /// gstack's `markInvestigated`: moves the pending event of (`run_id`, `fault_id`) to
    /// `processed/` under the same name. Its resolved marker, if any, stays for gstack's
    /// drain to pair.
    pub fn mark_investigated(
        &self,
        run_id: &str,
        fault_id: &str,
    ) -> Result<Marked, HaltStoreError> {
        let pending = self.pending_path(run_id, fault_id);
        self.ensure(PROCESSED_DIR)?;
        let processed = self.processed_path(run_id, fault_id);
        match fs::rename(&pending, &processed) {
            Ok(()) => Ok(Marked::Moved(processed)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Marked::AlreadyMoved),
            Err(source) => Err(HaltStoreError::Move {
                from: pending,
                to: processed,
                source,
            }),
        }
    }
}

/// One archived capture under `collapsed/`.
struct Archive {
    number: u64,
    size: u64,
    path: PathBuf,
}

/// Removes the oldest of one fault's `archives` (newest, the highest number, first) past
/// [`MAX_ARCHIVES_PER_FAULT`] or [`MAX_ARCHIVE_BYTES_PER_FAULT`]; the newest always stays.
fn prune_archives(archives: &[Archive]) -> Result<(), HaltStoreError> {
    let mut total = 0u64;
    for (kept, archive) in archives.iter().enumerate() {
        total = total.saturating_add(archive.size);
        if kept == 0 || (kept < MAX_ARCHIVES_PER_FAULT && total <= MAX_ARCHIVE_BYTES_PER_FAULT) {
            continue;
        }
        match fs::remove_file(&archive.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_problem("remove the old capture", &archive.path)(e));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::fault::{Fault, Severity};
    use crate::faults::halt::RunRef;

    fn event(run: &str, category: &str, tail: &str) -> HaltEvent {
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

    fn read(path: &Path) -> Value {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn archives_per_fault_are_capped_oldest_first_by_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = HaltStore::new(dir.path());
        let cycles = MAX_ARCHIVES_PER_FAULT as u64 + 10;
        for n in 0..=cycles {
            store
                .emit(&event("run", "X", &format!("tail {n}")))
                .unwrap();
        }
        // Another fault's archive is not this fault's to prune.
        store.emit(&event("run", "Y", "a")).unwrap();
        store.emit(&event("run", "Y", "b")).unwrap();
        let fault = event("run", "X", "").fault_id;
        let mut kept: Vec<u64> = fs::read_dir(dir.path().join(COLLAPSED_DIR))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_prefix(&format!("run-{fault}-"))?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect();
        kept.sort();
        let expected: Vec<u64> = (cycles - MAX_ARCHIVES_PER_FAULT as u64 + 1..=cycles).collect();
        assert_eq!(kept, expected);
        assert_eq!(
            fs::read_dir(dir.path().join(COLLAPSED_DIR))
                .unwrap()
                .count(),
            MAX_ARCHIVES_PER_FAULT + 1
        );
    }

    #[test]
    fn archives_per_fault_are_capped_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = HaltStore::new(dir.path());
        // Each capture carries a 3 MiB tail: the byte cap, not the count, prunes.
        let big = |n: u64| format!("{n}{}", "x".repeat(3 * 1024 * 1024));
        for n in 0..8 {
            store.emit(&event("run", "X", &big(n))).unwrap();
        }
        let sizes: Vec<u64> = fs::read_dir(dir.path().join(COLLAPSED_DIR))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .collect();
        assert!(sizes.len() < 7, "{} archives kept", sizes.len());
        assert!(sizes.iter().sum::<u64>() <= MAX_ARCHIVE_BYTES_PER_FAULT);
    }

    #[test]
    fn the_latest_capture_stays_pending_and_earlier_ones_are_collapsed() {
        let dir = tempfile::tempdir().unwrap();
        let store = HaltStore::new(dir.path());
        let first = event("run/1", "X", "tail a");
        assert_eq!(store.emit(&first).unwrap(), Emitted::New);
        let pending = store.pending_path("run/1", &first.fault_id);
        assert!(pending.ends_with(format!("run_1-{}.json", first.fault_id)));
        assert_eq!(store.emit(&first).unwrap(), Emitted::Refreshed);
        assert!(!dir.path().join(COLLAPSED_DIR).exists());
        let second = event("run/1", "X", "tail b");
        assert_eq!(
            store.emit(&second).unwrap(),
            Emitted::Recurred { occurrences: 2 }
        );
        let third = event("run/1", "X", "tail c");
        assert_eq!(
            store.emit(&third).unwrap(),
            Emitted::Recurred { occurrences: 3 }
        );
        let latest = read(&pending);
        assert_eq!(latest["snapshot"]["stdoutTail"], "tail c");
        assert_eq!(latest["snapshot"]["occurrences"], 3);
        let one = read(&store.collapsed_path("run/1", &first.fault_id, 1));
        assert_eq!(one["snapshot"]["stdoutTail"], "tail a");
        assert!(one["snapshot"].get("occurrences").is_none());
        let two = read(&store.collapsed_path("run/1", &first.fault_id, 2));
        assert_eq!(two["snapshot"]["stdoutTail"], "tail b");
        assert_eq!(two["snapshot"]["occurrences"], 2);
        let listing = store.list();
        assert_eq!(listing.halts.len(), 1, "collapsed captures are not events");
        assert_eq!(listing.halts[0].occurrences, 3);
        assert_eq!(listing.halts[0].status, HaltStatus::Pending);
    }

    #[test]
    fn unreadable_pending_files_are_reported_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = HaltStore::new(dir.path());
        let ev = event("r", "X", "a");
        fs::create_dir_all(dir.path().join(PENDING_DIR)).unwrap();
        let pending = store.pending_path("r", &ev.fault_id);
        fs::write(&pending, b"{ torn").unwrap();
        let err = store.emit(&ev).unwrap_err().to_string();
        assert!(
            err.contains("left untouched") && err.contains("not valid JSON"),
            "{err}"
        );
        assert_eq!(fs::read(&pending).unwrap(), b"{ torn");
        let report = store.sync_run("r", "/s/r.json", std::slice::from_ref(&ev));
        assert!(report.emitted.is_empty() && report.problems.len() == 1);
        let listing = store.list();
        assert_eq!(listing.unreadable.len(), 1);
        assert!(listing.unreadable[0].file.ends_with(".json"));

        // A FIFO or a symlink planted there is reported, never opened for a blocking read
        // or followed.
        fs::remove_file(&pending).unwrap();
        nix::unistd::mkfifo(&pending, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(
            store
                .emit(&ev)
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
        fs::remove_file(&pending).unwrap();
        let elsewhere = dir.path().join("elsewhere.json");
        fs::write(&elsewhere, b"{}").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &pending).unwrap();
        assert!(
            store
                .emit(&ev)
                .unwrap_err()
                .to_string()
                .contains("symbolic link")
        );
        assert_eq!(fs::read(&elsewhere).unwrap(), b"{}");
    }

    #[test]
    fn sync_files_new_faults_once_and_resolves_them_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = HaltStore::new(dir.path());
        let x = event("r", "X", "");
        let y = event("r", "Y", "");
        let report = store.sync_run("r", "/s/r.json", &[x.clone(), y.clone()]);
        assert_eq!(report.emitted.len(), 2);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let report = store.sync_run("r", "/s/r.json", &[x.clone(), y.clone()]);
        assert!(report.emitted.is_empty() && report.resolved.is_empty());
        let report = store.sync_run("r", "/s/r.json", std::slice::from_ref(&x));
        assert_eq!(report.resolved, vec![y.fault_id.clone()]);
        let report = store.sync_run("r", "/s/r.json", std::slice::from_ref(&x));
        assert!(report.resolved.is_empty(), "resolved only once");
        let marker = read(&store.resolved_path("r", &y.fault_id));
        assert_eq!(
            marker,
            json!({"event": "SKILL_FAULT_RESOLVED", "timestamp": marker["timestamp"],
                   "runId": "r", "faultId": y.fault_id})
        );
        let status_of = |id: &str| {
            let listing = store.list();
            listing
                .halts
                .iter()
                .find(|h| h.fault_id == id)
                .unwrap()
                .status
        };
        assert_eq!(status_of(&x.fault_id), HaltStatus::Pending);
        assert_eq!(status_of(&y.fault_id), HaltStatus::Resolved);
        // Raised again: the stale marker goes, the same capture is refreshed in place.
        let report = store.sync_run("r", "/s/r.json", &[x.clone(), y.clone()]);
        assert_eq!(
            report.emitted,
            vec![(y.fault_id.clone(), Emitted::Refreshed)]
        );
        assert!(!store.resolved_path("r", &y.fault_id).exists());
        assert_eq!(status_of(&y.fault_id), HaltStatus::Pending);
    }

    #[test]
    fn marking_investigated_moves_the_event_as_gstack_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = HaltStore::new(dir.path());
        let x = event("r 1", "X", "");
        store.emit(&x).unwrap();
        assert_eq!(store.pending_runs(&x.fault_id), ["r 1"]);
        let moved = store.mark_investigated("r 1", &x.fault_id).unwrap();
        let processed = dir
            .path()
            .join(PROCESSED_DIR)
            .join(format!("r_1-{}.json", x.fault_id));
        assert_eq!(moved, Marked::Moved(processed.clone()));
        assert_eq!(read(&processed)["faultId"], x.fault_id.as_str());
        assert!(!store.pending_path("r 1", &x.fault_id).exists());
        assert_eq!(
            store.mark_investigated("r 1", &x.fault_id).unwrap(),
            Marked::AlreadyMoved
        );
        assert!(store.pending_runs(&x.fault_id).is_empty());
        assert_eq!(store.list().halts[0].status, HaltStatus::Investigated);
    }

    /// A run's `.<run>.lock` in the active dir is berth's, but whoever can write the faults
    /// dir can hold it: each held one must not cost a fault round the full lock wait, on
    /// every round (40 held: 10 s a round).
    #[test]
    fn runs_whose_locks_another_process_holds_are_skipped_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let store = HaltStore::new(dir.path());
        let active = dir.path().join(ACTIVE_DIR);
        fs::create_dir_all(&active).unwrap();
        let runs: Vec<String> = (0..40).map(|i| format!("run-{i}")).collect();
        let held: Vec<fs::File> = runs
            .iter()
            .map(|run| {
                let lock = fs::File::create(active.join(format!(".{run}.lock"))).unwrap();
                lock.lock().unwrap();
                lock
            })
            .collect();
        let started = std::time::Instant::now();
        for run in &runs {
            let report = store.sync_run(run, "/s/r.json", &[event(run, "X", "a")]);
            assert!(
                report.emitted.is_empty() && report.problems.len() == 1,
                "{run}"
            );
        }
        let took = started.elapsed();
        assert!(
            took < crate::atomic_file::LOCK_WAIT * 10,
            "40 held run locks took {took:?}"
        );
        drop(held);
        let report = store.sync_run("run-0", "/s/r.json", &[event("run-0", "X", "a")]);
        assert_eq!(report.emitted.len(), 1, "released, the run is filed");
    }
}
