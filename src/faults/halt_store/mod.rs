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
//! Two runs of one safe run id share these names: a file there holding the other run's
//! whole run id is never written over, removed or moved for this one ([`shared_names`]).
//!
//! Architecture Invariant: a pending file that cannot be read is reported and left as it is;
//! berth never writes over it. Every file here is read without blocking, without following
//! a symlink, after checking the open handle is a regular file, and within a size cap.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::json;

use super::halt::HaltEvent;
use super::json_file::{self, JsonFileError};
use super::parse_budget::ParseError;
use super::registry;
use super::run_id::{file_run_id, fit_stem};
use crate::private_dir::{PrivateDir, PrivateDirError};

mod cap;
mod dirs;
mod held;
mod listing;
mod listing_reads;
mod run_lock;
mod said;
mod shared_names;
mod shown;
mod sweep;
mod sync;
mod unchanged;

use dirs::Sub;
use shown::Prior;

pub use cap::{CAP_RUN_ID, CapReached, MAX_PENDING_PER_RUN, MAX_PENDING_TOTAL};
pub use held::{HELD_QUEUE, HELD_RUNS, HELD_SCOPES, HeldFilings, MAX_HELD_KEPT};
pub use listing::{HaltStatus, LeftOut, ListedHalt, Listing, PartialListing};
pub use listing_reads::MAX_LISTING_READ_BYTES;

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
pub use crate::private_dir::MAX_NAMES_PER_LISTING;
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
    /// Events and resolved markers held back by a cap on pending files ([`cap`]); each is
    /// tried again on the next sync.
    pub withheld: usize,
    /// The detector ids this sync found raised and not in the registry, of faults it does
    /// not record (one it records is the same raised fault, and a registry cut to one id
    /// per fault would count its other ids every pass), whether filed, held by another
    /// registry of the run, withheld by a cap or not filed: each a detector call that
    /// raised a fault, which gstack's `persistHitCounts` counts.
    pub new_detectors: Vec<String>,
    /// Writes left undone, and syncs skipped, for a reason this pass said once already, here
    /// or at an earlier sync ([`HaltStoreError::SaidBefore`], a held filing said before): no
    /// line, but like a problem, made good only by a later pass.
    pub said_before: usize,
}

impl SyncReport {
    /// `problem` in the report: its line, or only counted if the pass said it before.
    fn problem(&mut self, problem: HaltStoreError) {
        match problem {
            HaltStoreError::SaidBefore { .. } => self.said_before += 1,
            problem => self.problems.push(problem.to_string()),
        }
    }
}

/// What [`HaltStore::mark_investigated`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Marked {
    /// Moved from `pending-investigations/` to this path.
    Moved(PathBuf),
    /// Not pending: someone (an investigator, gstack's drain) already moved it.
    AlreadyMoved,
    /// Not pending: the pending file of its name is this other run's, whose safe run id is
    /// the same ([`shared_names`]), and was left where it is. The id is cut.
    Another(String),
}

#[derive(Clone, Debug)]
pub struct HaltStore {
    dir: PathBuf,
    /// The pending files, counted at this store's first new filing; `None` until then.
    census: Arc<Mutex<Option<cap::Census>>>,
    /// Whether this store removed the registries of gone runs ([`sweep`]) yet.
    swept: Arc<std::sync::atomic::AtomicBool>,
    /// The subdirs this store writes, held open from their first use ([`dirs`]).
    opened: Arc<dirs::Opened>,
    /// The event files as this store's last listing read them ([`listing_reads`]).
    listed: Arc<listing_reads::ReadCache>,
    /// What one listing may read of files it did not read before; `None`: every file.
    listing_budget: Option<u64>,
    /// What this store's looks for runs' other registries read ([`PassReads`](super::registry::PassReads)):
    /// the fault watch makes one store a pass, so they are shared by one pass only.
    elsewhere: Arc<Mutex<super::registry::PassReads>>,
    /// The held filings this store's pass said ([`HaltStoreError::Taken`], by the SHA-256
    /// of the whole run id, file name and kind), each once a pass however many state files
    /// of the run raise its fault, kept for `berth doctor` when the pass ends ([`held`]);
    /// and the run locks the pass found held, each tried and said once a pass.
    held: Arc<Mutex<held::Held>>,
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
    /// A new file past a cap on pending files: not written, tried again later.
    #[error("{}: held back: {source}", .path.display())]
    Withheld { path: PathBuf, source: CapReached },
    /// The name holds another run's file, their safe run ids being one ([`shared_names`]):
    /// not written, tried again on a later pass. The ids are cut.
    #[error(
        "{}: run {run_id:?}'s file held back: the name holds run {other:?}'s; written once that is acknowledged or drained",
        .path.display()
    )]
    Taken {
        path: PathBuf,
        run_id: String,
        other: String,
    },
    /// A subdir is not one berth writes in (a symlink, another user's), or cannot be made.
    #[error(transparent)]
    Dir(#[from] PrivateDirError),
    /// Not tried again: this store found it so earlier in its pass and said so then (a
    /// subdir refused, a run's lock held); a caller counts it, without a line.
    #[error("{}: not tried again this pass, said when first found", .path.display())]
    SaidBefore { path: PathBuf },
    #[error("cannot move {} to {}: {source}", .from.display(), .to.display())]
    Move {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
}

/// The text of the pending file at `path` and what emit takes from it ([`Prior`]), `None`
/// if there is none: read within the cap and never parsed into a value, so a planted
/// 8 MiB event costs its bytes.
fn read_prior(dir: &PrivateDir, name: &str) -> Result<Option<(String, Prior)>, HaltStoreError> {
    let unreadable = |source: JsonFileError| HaltStoreError::Unreadable {
        path: dir.join(name),
        source,
    };
    let Some(text) = json_file::read_text_in(dir, name).map_err(|e| unreadable(e.into()))? else {
        return Ok(None);
    };
    let prior = Prior::parse(&text).map_err(|e| unreadable(ParseError::NotJson(e).into()))?;
    Ok(Some((text, prior)))
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
        HaltStore {
            dir: dir.into(),
            census: Arc::default(),
            swept: Arc::default(),
            opened: Arc::default(),
            listed: Arc::default(),
            listing_budget: None,
            elsewhere: Arc::default(),
            held: Arc::default(),
        }
    }

    /// A store kept for a process's life (the daemon's metrics and queue page): each listing
    /// reads at most [`MAX_LISTING_READ_BYTES`] of files it did not read before, so a
    /// listing answers in bounded time on a thread that must answer; the next one reads on.
    pub fn long_lived(dir: impl Into<PathBuf>) -> HaltStore {
        HaltStore {
            listing_budget: Some(MAX_LISTING_READ_BYTES),
            ..HaltStore::new(dir)
        }
    }

    /// Takes one place for a new pending file of `run_id` (`path`), or says which cap is
    /// reached. The census is counted at the store's first new file and kept up to date by
    /// its own writes; a file written meanwhile by someone else counts from the next store.
    fn admit(&self, run_id: &str, path: &Path) -> Result<(), HaltStoreError> {
        let mut census = self.census.lock().unwrap_or_else(|e| e.into_inner());
        if census.is_none() {
            let pending = self.ensure(Sub::Pending)?;
            let taken = cap::Census::take(&pending).map_err(io_problem("list", pending.path()))?;
            *census = Some(taken);
        }
        let census = census.as_mut().expect("counted above");
        census
            .admits(run_id)
            .map_err(|source| HaltStoreError::Withheld {
                path: path.to_owned(),
                source,
            })?;
        census.add(run_id);
        Ok(())
    }

    /// Files the one event that says filings are held back, past the caps; written only
    /// when it is not pending already.
    pub fn file_cap_event(&self) -> Result<(), HaltStoreError> {
        let event = cap::cap_event(&self.dir.join(PENDING_DIR));
        let name = Self::file_name(&event.run_id, "", &event.fault_id, "");
        if self
            .ensure(Sub::Pending)?
            .entry(&name)
            .is_ok_and(|e| e.is_some())
        {
            return Ok(());
        }
        self.write_event(&event, false).map(drop)
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
        self.dir
            .join(COLLAPSED_DIR)
            .join(collapsed_name(run_id, fault_id, capture))
    }

    /// `sub`, held open by this store from its first use ([`dirs`]).
    fn ensure(&self, sub: Sub) -> Result<Arc<PrivateDir>, HaltStoreError> {
        self.opened.get(&self.dir, sub)
    }

    /// What this store's pass held and said so far ([`held`]).
    fn pass(&self) -> MutexGuard<'_, held::Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Files one halt event as gstack's `emitHaltEvent` does: a pending file holding
    /// another stdout tail is archived under `collapsed/` and replaced by this capture with
    /// `occurrences = n + 1` (n = its `snapshot.occurrences`, else 1); one holding the same
    /// tail is rewritten in place. The run's resolved marker of the same fault is stale once
    /// it is raised again, and is removed. A pending event of another run at the name holds
    /// the filing back ([`shared_names`]). The event is first cut to what berth reads back
    /// ([`HaltEvent::fit_within`]), so that both daemons compare the tails berth wrote.
    pub fn emit(&self, event: &HaltEvent) -> Result<Emitted, HaltStoreError> {
        self.write_event(event, true)
    }

    /// [`HaltStore::emit`]; a new pending file only within the caps when `capped`.
    fn write_event(&self, event: &HaltEvent, capped: bool) -> Result<Emitted, HaltStoreError> {
        let pending_dir = self.ensure(Sub::Pending)?;
        let name = Self::file_name(&event.run_id, "", &event.fault_id, "");
        let pending = pending_dir.join(&name);
        let prior = read_prior(&pending_dir, &name)?;
        let prior_run = prior.as_ref().and_then(|(_, p)| p.run_id.clone());
        if let Some(other) = shared_names::another(prior_run, &event.run_id) {
            return Err(shared_names::taken(
                &pending_dir,
                &name,
                &event.run_id,
                &other,
            ));
        }
        let mut event = event.clone();
        event
            .fit_within(json_file::MAX_JSON_BYTES)
            .map_err(|source| HaltStoreError::TooLarge {
                path: pending.clone(),
                source,
            })?;
        let emitted = match prior {
            None => {
                if capped {
                    self.admit(&event.run_id, &pending)?;
                }
                Emitted::New
            }
            Some((_, prior))
                if prior.stdout_tail.as_deref() == Some(event.snapshot.stdout_tail.as_str()) =>
            {
                Emitted::Refreshed
            }
            Some((text, prior)) => {
                let capture = prior.occurrences.unwrap_or(1);
                self.archive(&event.run_id, &event.fault_id, capture, text.as_bytes())?;
                // A planted count may be u64::MAX: it stays there.
                let occurrences = capture.saturating_add(1);
                event.snapshot.occurrences = Some(occurrences);
                Emitted::Recurred { occurrences }
            }
        };
        let bytes = json_file::pretty(&event).map_err(io_problem("encode", &pending))?;
        pending_dir
            .write_atomic(&name, &bytes, 0o600)
            .map_err(io_problem("write", &pending))?;
        let marker = Self::file_name(&event.run_id, "RESOLVED-", &event.fault_id, "");
        // Another run's marker there is not this run's stale one: it stays for gstack's
        // drain, which pairs markers by whole ids and so moves it as an orphan.
        if shared_names::holder(&pending_dir, &marker, &event.run_id).is_none() {
            pending_dir.remove_if_there(&marker).map_err(io_problem(
                "remove the stale resolved marker",
                &pending_dir.join(&marker),
            ))?;
        }
        Ok(emitted)
    }

    /// Archives `prior` (the replaced pending file's text, as it was), capture number
    /// `capture` of the fault, to `collapsed/`, then prunes
    /// that fault's archives. An ack starts the pending file's count at 1 again while the
    /// archives from before it stay, so the archive takes the next number after the
    /// highest one there: none is written over, and the highest number stays the newest
    /// capture, which the pruning keeps.
    fn archive(
        &self,
        run_id: &str,
        fault_id: &str,
        capture: u64,
        prior: &[u8],
    ) -> Result<(), HaltStoreError> {
        let collapsed = self.ensure(Sub::Collapsed)?;
        let mut archives = archives(&collapsed, run_id, fault_id)?;
        let highest = archives.iter().map(|a| a.number).max();
        let number = match highest.map(|h| h.checked_add(1)) {
            None => capture,
            Some(Some(next)) => next.max(capture),
            // The numbers ran out (an archive planted as number u64::MAX): the archives are
            // numbered 1..=k again, oldest first, so that this capture still gets a name of
            // its own and stays the newest.
            Some(None) => renumber(&collapsed, run_id, fault_id, &mut archives)? + 1,
        };
        let name = collapsed_name(run_id, fault_id, number);
        collapsed
            .write_atomic(&name, prior, 0o600)
            .map_err(io_problem("write", &collapsed.join(&name)))?;
        archives.push(Archive {
            number,
            size: prior.len() as u64,
            name,
        });
        archives.sort_by_key(|a| std::cmp::Reverse(a.number));
        prune_archives(&collapsed, &archives)
    }

    /// Writes the resolved marker of a fault that cleared, as gstack's
    /// `emitHaltEventResolved` does: `{event, timestamp, runId, faultId}` and nothing else;
    /// never over another run's marker ([`shared_names`]).
    pub fn resolve(&self, run_id: &str, fault_id: &str) -> Result<(), HaltStoreError> {
        let pending = self.ensure(Sub::Pending)?;
        let name = Self::file_name(run_id, "RESOLVED-", fault_id, "");
        if let Some(other) = shared_names::holder(&pending, &name, run_id) {
            return Err(shared_names::taken(&pending, &name, run_id, &other));
        }
        let path = pending.join(&name);
        if !pending.entry(&name).is_ok_and(|e| e.is_some()) {
            self.admit(run_id, &path)?;
        }
        let marker = json!({
            "event": RESOLVED_EVENT,
            "timestamp": crate::clock::now_iso(),
            "runId": run_id,
            "faultId": fault_id,
        });
        let bytes = json_file::pretty(&marker).map_err(io_problem("encode", &path))?;
        pending
            .write_atomic(&name, &bytes, 0o600)
            .map_err(io_problem("write", &path))
    }

    /// gstack's `markInvestigated`: moves the pending event of (`run_id`, `fault_id`) to
    /// `processed/` under the same name. Its resolved marker, if any, stays for gstack's
    /// drain to pair. Finding no event, it makes no dir: one made by another user than the
    /// faults dir's owner (`sudo berth faults ack`) would lock the daemon's user out. An
    /// event there of another run of the same safe run id is left ([`shared_names`]).
    pub fn mark_investigated(
        &self,
        run_id: &str,
        fault_id: &str,
    ) -> Result<Marked, HaltStoreError> {
        let name = Self::file_name(run_id, "", fault_id, "");
        let Some(pending) = self.opened.existing(&self.dir, Sub::Pending)? else {
            return Ok(Marked::AlreadyMoved);
        };
        if pending
            .entry(&name)
            .map_err(io_problem("read", &pending.join(&name)))?
            .is_none()
        {
            return Ok(Marked::AlreadyMoved);
        }
        if let Some(other) = shared_names::holder(&pending, &name, run_id) {
            return Ok(Marked::Another(registry::said_cut(&other)));
        }
        let processed = self.ensure(Sub::Processed)?;
        match pending.rename_to(&name, &processed, &name) {
            Ok(()) => Ok(Marked::Moved(processed.join(&name))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Marked::AlreadyMoved),
            Err(source) => Err(HaltStoreError::Move {
                from: pending.join(&name),
                to: processed.join(&name),
                source,
            }),
        }
    }
}

/// One archived capture under `collapsed/`.
struct Archive {
    number: u64,
    size: u64,
    name: String,
}

/// The name of capture number `capture` of (`run_id`, `fault_id`) under `collapsed/`.
fn collapsed_name(run_id: &str, fault_id: &str, capture: u64) -> String {
    HaltStore::file_name(run_id, "", fault_id, &format!("-{capture}"))
}

/// The archived captures of one fault in `collapsed`: the files whose name is the name
/// [`collapsed_name`] gives their number.
fn archives(
    collapsed: &PrivateDir,
    run_id: &str,
    fault_id: &str,
) -> Result<Vec<Archive>, HaltStoreError> {
    let number_of = |name: &str| {
        let (_, number) = name.strip_suffix(".json")?.rsplit_once('-')?;
        let number: u64 = number.parse().ok()?;
        (name == collapsed_name(run_id, fault_id, number)).then_some(number)
    };
    let listed = collapsed.names_matching_up_to(MAX_NAMES_PER_LISTING, |n| number_of(n).is_some());
    let names = match listed.map_err(io_problem("list", collapsed.path()))? {
        (names, false) => names,
        // The highest number may be among the unread: a number taken now could replace it.
        (_, true) => {
            return Err(io_problem("list", collapsed.path())(io::Error::other(
                format!("more than {MAX_NAMES_PER_LISTING} archives of the fault"),
            )));
        }
    };
    Ok(names
        .into_iter()
        .filter_map(|name| {
            let number = number_of(&name)?;
            let size = collapsed.entry(&name).ok()??;
            Some(Archive {
                number,
                size: size.is_file.then_some(size.size)?,
                name,
            })
        })
        .collect())
}

/// Renames one fault's `archives` to the numbers 1..=k, keeping their order; returns k.
/// Taken in ascending order, each name is free when it is taken: an archive already
/// holding number i is among the first i and was renamed before.
fn renumber(
    collapsed: &PrivateDir,
    run_id: &str,
    fault_id: &str,
    archives: &mut [Archive],
) -> Result<u64, HaltStoreError> {
    archives.sort_by_key(|a| a.number);
    for (number, archive) in (1u64..).zip(archives.iter_mut()) {
        if archive.number == number {
            continue;
        }
        let name = collapsed_name(run_id, fault_id, number);
        collapsed
            .rename_to(&archive.name, collapsed, &name)
            .map_err(io_problem("renumber", &collapsed.join(&archive.name)))?;
        *archive = Archive {
            number,
            size: archive.size,
            name,
        };
    }
    Ok(archives.len() as u64)
}

/// Removes the oldest of one fault's `archives` (newest, the highest number, first) past
/// [`MAX_ARCHIVES_PER_FAULT`] or [`MAX_ARCHIVE_BYTES_PER_FAULT`]; the newest always stays.
fn prune_archives(collapsed: &PrivateDir, archives: &[Archive]) -> Result<(), HaltStoreError> {
    let mut total = 0u64;
    for (kept, archive) in archives.iter().enumerate() {
        total = total.saturating_add(archive.size);
        if kept == 0 || (kept < MAX_ARCHIVES_PER_FAULT && total <= MAX_ARCHIVE_BYTES_PER_FAULT) {
            continue;
        }
        collapsed
            .remove_if_there(&archive.name)
            .map_err(io_problem(
                "remove the old capture",
                &collapsed.join(&archive.name),
            ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
