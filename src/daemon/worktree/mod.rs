//! Where a landing runs: a checkout of the feature branch's fetched head (DESIGN §3).
//!
//! berth fetches `+refs/heads/<feature>:refs/remotes/origin/<feature>` into the gated repo
//! (libgit2, no `git` process, so no hooks run), then lands in the record's `worktreePath`
//! only if that passed the gates and already is a clean checkout of that branch at that
//! head; otherwise in a private scratch worktree detached at `origin/<feature>`, made with
//! libgit2, and when the record settles kept for the repo's next landing if it can be
//! proven clean ([`scratch`], [`idle`]), removed otherwise. berth never resets anyone's
//! checkout: only its own scratch worktrees.
//!
//! Every directory is used through the descriptor the gate opened ([`PinnedDir`]): the
//! step starts there by `fchdir`, and each use by name (opening the repo, adding the
//! worktree, the merge proof) first checks that the name still leads to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use git2::{Oid, Repository, StatusOptions};

use crate::gates::{GatedRecord, GatedRepo, WorktreeChoice};
use crate::pinned_dir::{PinnedDir, PinnedDirError};

use super::Candidate;
use crate::forge::Forge;

mod ahead;
mod fetch;
mod idle;
mod scratch;

pub use ahead::Ahead;
use fetch::fetch_feature;
pub use fetch::{BranchGone, feature_on_origin};
pub use idle::IdleWorktrees;
use idle::Kept;
use scratch::Scratch;

/// A place to run the landing; a scratch one is kept or removed by [`Place::finish`]. The
/// record's own checkout is held locked for as long as the place lives.
pub struct Place {
    dir: Arc<PinnedDir>,
    scratch: Option<Kept>,
    _lock: Option<WorktreeGuard>,
}

/// How long adding or removing a scratch worktree waits for another landing's add or
/// remove in the same repo (then the landing is blocked, saying so). libgit2 reads every
/// worktree's `HEAD` when it adds one, and takes one it cannot read, e.g. another being
/// added or removed at that moment, for a checkout of the new branch; so berth's own
/// worktree changes in one repo take turns, under a lock file in the queue dir that every
/// daemon sharing the queue respects.
const ADMIN_LOCK_WAIT: Duration = Duration::from_secs(10);

impl Place {
    fn in_scratch(kept: Kept) -> Place {
        Place {
            dir: Arc::clone(&kept.dir),
            scratch: Some(kept),
            _lock: None,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory, held open: the step starts in it by descriptor.
    pub fn dir(&self) -> &PinnedDir {
        &self.dir
    }

    /// Removes a scratch worktree (its directory, its libgit2 admin entry and its branch).
    /// Failures are logged: the next landing of the record replaces it anyway.
    pub fn remove(self) {
        if let Some(kept) = self.scratch {
            discard(kept);
        }
    }

    /// The landing is done with its place: a scratch worktree is kept for the repo's next
    /// landing if it can be proven clean (reset to the commit it is at, HEAD detached, so
    /// it holds no branch another worktree may want) and a bound allows, removed
    /// otherwise. Blocking.
    pub fn finish(self, places: &Places) {
        let Some(kept) = self.scratch else {
            return;
        };
        // Opened again, not kept from the landing's fetch: a handle holds open every pack
        // it read until it is dropped, and the step must run with none of them held.
        let reset = Repository::open(&kept.scratch.repo)
            .map_err(scratch::Unclean::from)
            .and_then(|repo| kept.scratch.reset(&repo, &kept.dir, None));
        match reset {
            Ok(()) => {
                if let Some(over) = places.idle.give(kept) {
                    discard(over);
                }
            }
            Err(why) => {
                tracing::info!(worktree = %kept.scratch.path.display(), "scratch worktree not kept: {why}");
                discard(kept);
            }
        }
    }
}

/// Where landings run: the dir berth's scratch worktrees are made in, the ones kept
/// between landings, and the dir of the checkouts' landing locks (the queue dir, which every
/// daemon landing there shares).
#[derive(Debug)]
pub struct Places {
    root: PathBuf,
    idle: IdleWorktrees,
    /// The repos whose first scratch worktree was made ahead of their first landing.
    ahead: Arc<Ahead>,
    lock_dir: PathBuf,
}

impl Places {
    pub fn new(berth_dir: &Path, lock_dir: &Path) -> Places {
        Places {
            root: root(berth_dir),
            idle: IdleWorktrees::default(),
            ahead: Arc::default(),
            lock_dir: lock_dir.to_owned(),
        }
    }
}

/// Where berth's scratch worktrees are made.
pub fn root(berth_dir: &Path) -> PathBuf {
    berth_dir.join("worktrees")
}

/// Removes the scratch worktrees a killed daemon of this berth dir left (one daemon runs
/// per berth dir, so at its start none is in use): their admin entries in the repo are
/// then prunable, and no name is ever used twice. Only berth's own names, only
/// directories (a symlink is never followed). Blocking.
pub fn sweep_leftovers(berth_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(root(berth_dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let ours = entry.file_name().to_string_lossy().starts_with("berth-");
        if ours && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let path = entry.path();
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(worktree = %path.display(), "removed a scratch worktree a stopped daemon left")
                }
                Err(e) => {
                    tracing::warn!(worktree = %path.display(), "scratch worktree left by a stopped daemon not removed: {e}")
                }
            }
        }
    }
}

/// Removes every scratch worktree the daemon kept; when it stops. Blocking.
pub fn remove_idle(places: &Places) {
    for kept in places.idle.drain() {
        discard(kept);
    }
}

fn discard(kept: Kept) {
    if let Err(e) = kept.scratch.remove() {
        tracing::warn!(worktree = %kept.scratch.path.display(), "scratch worktree not fully removed: {e}");
    }
}

/// Held while a landing runs in a record's own worktree: two lanes of one repo often
/// share a checkout, and two landings in one working tree would corrupt each other. The
/// lock file lives in the queue dir, so every daemon sharing the queue respects it. Only
/// a landing that will run in the checkout takes it: a scratch worktree is per landing
/// and shares nothing, so lanes landing in scratch worktrees never wait for each other.
struct WorktreeGuard {
    _file: std::fs::File,
}

/// Why the landing could not get a checkout; each a sentence fit for a `lastError`.
#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    #[error(transparent)]
    Moved(#[from] PinnedDirError),
    #[error(transparent)]
    BranchGone(#[from] BranchGone),
    #[error("repo {} has no `origin` remote", .0.display())]
    NoOrigin(PathBuf),
    #[error("cannot fetch {remote_ref} from origin ({origin}): {message}")]
    Fetch {
        remote_ref: String,
        origin: String,
        message: String,
    },
    #[error("feature branch {feature} was not fetched into {tracking}")]
    NotFetched { feature: String, tracking: String },
    #[error(
        "feature branch {feature} moved on origin during the fetch ({advertised} advertised, {head} fetched)"
    )]
    MovedDuringFetch {
        feature: String,
        advertised: Oid,
        head: Oid,
    },
    #[error("cannot list origin ({origin}): {message}")]
    ListOrigin { origin: String, message: String },
    #[error("opening {}: {source}", .path.display())]
    Open { path: PathBuf, source: git2::Error },
    #[error("adding scratch worktree {}: {source}", .path.display())]
    Add { path: PathBuf, source: git2::Error },
    #[error("scratch worktree {} is not at {head}", .path.display())]
    NotAt { path: PathBuf, head: Oid },
    #[error("removing {}: {source}", .path.display())]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another landing kept changing the worktrees of {} for {}s: {source}", .repo.display(), ADMIN_LOCK_WAIT.as_secs())]
    AdminBusy {
        repo: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Git(#[from] git2::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Why the record's own checkout is not landed in (a scratch worktree is, instead).
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error("cannot open worktree lock {}: {source}", .lock.display())]
    NoLockFile {
        lock: PathBuf,
        source: std::io::Error,
    },
    #[error("worktree {} is in use by another landing", .0.display())]
    Busy(PathBuf),
    #[error("cannot lock worktree {}: {source}", .path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Moved(#[from] PinnedDirError),
    #[error("{}: {}", .path.display(), .source.message())]
    Git { path: PathBuf, source: git2::Error },
    #[error("worktree {} is on {on}, not on the feature branch {feature}", .path.display())]
    OtherBranch {
        path: PathBuf,
        on: String,
        feature: String,
    },
    #[error("worktree {} has no commit checked out", .0.display())]
    NoCommit(PathBuf),
    #[error("worktree {} is at {at}, not at origin/{feature} ({head})", .path.display())]
    OtherCommit {
        path: PathBuf,
        at: Oid,
        feature: String,
        head: Oid,
    },
    #[error("worktree {} has {changed} changed file(s); berth never resets anyone's checkout", .path.display())]
    Changed { path: PathBuf, changed: usize },
}

/// Takes the lock on the checkout at `path`, or says why not (busy, or no lock file).
fn try_lock(places: &Places, path: &Path) -> Result<WorktreeGuard, Unusable> {
    let key = crate::safe_key::safe_key(&path.to_string_lossy());
    let lock = places.lock_dir.join(format!(".worktree-{key}.lock"));
    let file = match crate::atomic_file::open_lock_file(&lock) {
        Ok(file) => file,
        Err(source) => return Err(Unusable::NoLockFile { lock, source }),
    };
    match file.try_lock() {
        Ok(()) => Ok(WorktreeGuard { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(Unusable::Busy(path.to_owned())),
        Err(std::fs::TryLockError::Error(source)) => Err(Unusable::Lock {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Checks that every directory the landing uses by name is still the one the gate
/// checked. The error is a `lastError` sentence.
pub fn verify_dirs(c: &Candidate, place: Option<&Place>) -> Result<(), PinnedDirError> {
    c.gated.repo().pin().verify()?;
    if let Some(place) = place {
        place.dir.verify()?;
    }
    Ok(())
}

/// Fetches the feature branch and picks (or makes) the checkout to land in. Blocking.
pub fn prepare(places: &Places, forge: &dyn Forge, c: &Candidate) -> Result<Place, WorktreeError> {
    let repo_path = c.gated.repo().path();
    let feature = &c.record.feature_branch;
    c.gated.repo().pin().verify()?;
    let pr_head = forge.pr_head_ref(c.record.pr_number);
    let (repo, head) = fetch_feature(c, repo_path, feature, pr_head)?;
    let reason = match (c.gated.worktree(), c.gated.worktree_pin()) {
        (WorktreeChoice::Use(path), Some(pin)) => {
            // Locked before it is looked at, so no other landing changes it in between;
            // a checkout another landing holds is not waited for: the scratch one is.
            match try_lock(places, path)
                .and_then(|lock| checkout_state(pin, feature, head).map(|()| lock))
            {
                Ok(lock) => {
                    tracing::info!(record = %c.id, worktree = %path.display(), "landing in the record's own worktree");
                    return Ok(Place {
                        dir: Arc::clone(pin),
                        scratch: None,
                        _lock: Some(lock),
                    });
                }
                Err(why) => why.to_string(),
            }
        }
        (WorktreeChoice::Scratch { reason }, _) => reason.clone(),
        (WorktreeChoice::Use(path), None) => format!("{} was not held open", path.display()),
    };
    tracing::info!(record = %c.id, "using a scratch worktree: {reason}");
    scratch_place(places, c, &repo, head)
}

/// A kept scratch worktree of the repo (`repo`, opened) reset to `head`, or a new one.
fn scratch_place(
    places: &Places,
    c: &Candidate,
    repo: &Repository,
    head: Oid,
) -> Result<Place, WorktreeError> {
    let repo_path = c.gated.repo().path();
    places.ahead.wait(repo_path, ahead::AHEAD_WAIT);
    let (taken, unfit) = places.idle.take(repo_path);
    unfit.into_iter().for_each(discard);
    if let Some(kept) = taken {
        let reset = kept
            .scratch
            .reset(repo, &kept.dir, Some(head))
            .and_then(|()| Ok(c.gated.repo().pin().verify()?));
        match reset {
            Ok(()) => {
                tracing::info!(record = %c.id, worktree = %kept.scratch.path.display(), "reusing a scratch worktree");
                return Ok(Place::in_scratch(kept));
            }
            Err(why) => {
                tracing::info!(record = %c.id, worktree = %kept.scratch.path.display(), "scratch worktree not reused: {why}");
                discard(kept);
            }
        }
    }
    let kept = add_fresh(places, c.gated.repo(), repo, c.id.as_str(), head)?;
    Ok(Place::in_scratch(kept))
}

/// A new scratch worktree of `repo` (`opened`: that repo, opened) detached at `head`, named
/// after the record `id` it is made for, its directory held open.
fn add_fresh(
    places: &Places,
    repo: &GatedRepo,
    opened: &Repository,
    id: &str,
    head: Oid,
) -> Result<Kept, WorktreeError> {
    let root = &places.root;
    crate::atomic_file::ensure_private_dir(root)?;
    // A fresh name every time: nothing planted in the repo's `.git/worktrees/` can be
    // mistaken for ours, and a killed daemon's leftover is never reused.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("berth-{id}-{:x}{nanos:x}", std::process::id());
    let admin_key = crate::safe_key::safe_key(&repo.path().to_string_lossy());
    let scratch = Scratch {
        repo: repo.path().to_owned(),
        path: root.join(&name),
        name,
        admin_lock: places
            .lock_dir
            .join(format!(".worktree-admin-{admin_key}.lock")),
    };
    scratch.add(opened, head)?;
    let pinned = repo
        .pin()
        .verify()
        .and_then(|()| PinnedDir::open(&scratch.path));
    match pinned {
        Ok(dir) => Ok(Kept::new(scratch, Arc::new(dir))),
        Err(why) => {
            if let Err(e) = scratch.remove() {
                tracing::warn!(worktree = %scratch.path.display(), "scratch worktree not fully removed: {e}");
            }
            Err(why.into())
        }
    }
}

/// Makes a scratch worktree of `gated`'s repo in the background, ahead of its first
/// landing, and keeps it for that landing to reset ([`ahead`]): the first time a queued
/// record `id` of the repo passes its gates, unless its landing will run in the record's
/// own checkout (one on the feature branch). Detached at the feature's last fetched head if
/// there is one (the reset then changes little), else at the repo's HEAD. Failures are
/// logged: the landing adds its own, as without.
pub fn make_ahead(places: &Arc<Places>, id: &str, gated: &GatedRecord, feature: &str) {
    let Some(turn) = places.ahead.start(gated.repo().path()) else {
        return;
    };
    let (places, gated, id) = (Arc::clone(places), gated.clone(), id.to_owned());
    let feature = feature.to_owned();
    let spawned = std::thread::Builder::new()
        .name("berth-worktree-ahead".into())
        .spawn(move || {
            if !lands_in_own_checkout(&gated, &feature) {
                add_ahead(&places, &gated, &id, &feature);
            }
            drop(turn);
        });
    if let Err(e) = spawned {
        tracing::debug!("scratch worktree not made ahead: {e}");
    }
}

fn add_ahead(places: &Places, gated: &GatedRecord, id: &str, feature: &str) {
    let repo = gated.repo();
    let tracking = format!("refs/remotes/origin/{feature}");
    let made = ahead_head(repo, &tracking)
        .and_then(|(opened, head)| add_fresh(places, repo, &opened, id, head));
    match made {
        Ok(kept) => {
            tracing::debug!(worktree = %kept.scratch.path.display(), "scratch worktree made ahead");
            if let Some(over) = places.idle.keep(kept) {
                discard(over);
            }
        }
        Err(e) => {
            tracing::debug!(repo = %repo.path().display(), "no scratch worktree made ahead: {e}")
        }
    }
}

/// Whether the landing will likely run in the record's own checkout: it passed the gates
/// and is on the feature branch ([`prepare`] checks the rest when the landing comes).
fn lands_in_own_checkout(gated: &GatedRecord, feature: &str) -> bool {
    let (WorktreeChoice::Use(_), Some(pin)) = (gated.worktree(), gated.worktree_pin()) else {
        return false;
    };
    pin.verify().is_ok()
        && Repository::open(pin.path()).is_ok_and(|repo| {
            repo.head().is_ok_and(|h| {
                h.name()
                    .is_ok_and(|name| name == format!("refs/heads/{feature}"))
            })
        })
}

/// The repo, opened, and the commit a scratch worktree made ahead is detached at:
/// `tracking`, else HEAD.
fn ahead_head(repo: &GatedRepo, tracking: &str) -> Result<(Repository, Oid), WorktreeError> {
    repo.pin().verify()?;
    let opened = open_repo(repo.path())?;
    let head = match opened.refname_to_id(tracking) {
        Ok(id) => id,
        Err(_) => opened.head()?.peel_to_commit()?.id(),
    };
    Ok((opened, head))
}

fn open_repo(path: &Path) -> Result<Repository, WorktreeError> {
    Repository::open(path).map_err(|source| WorktreeError::Open {
        path: path.to_owned(),
        source,
    })
}

/// `Ok` if `dir` is a checkout of `refs/heads/<feature>` at `head` with no change to a
/// tracked file; otherwise why not.
fn checkout_state(dir: &PinnedDir, feature: &str, head: Oid) -> Result<(), Unusable> {
    let path = || dir.path().to_owned();
    let git = |source| Unusable::Git {
        path: path(),
        source,
    };
    dir.verify()?;
    let repo = Repository::open(dir.path()).map_err(git)?;
    let on = repo
        .head()
        .ok()
        .and_then(|h| h.name().ok().map(str::to_owned))
        .filter(|name| name != "HEAD")
        .unwrap_or_else(|| "a detached HEAD".into());
    let feature = feature.to_owned();
    if on != format!("refs/heads/{feature}") {
        return Err(Unusable::OtherBranch {
            path: path(),
            on,
            feature,
        });
    }
    let at = repo
        .head()
        .ok()
        .and_then(|h| h.target())
        .ok_or_else(|| Unusable::NoCommit(path()))?;
    if at != head {
        return Err(Unusable::OtherCommit {
            path: path(),
            at,
            feature,
            head,
        });
    }
    let mut options = StatusOptions::new();
    options.include_untracked(false).include_ignored(false);
    let changed = repo.statuses(Some(&mut options)).map_err(git)?.len();
    if changed > 0 {
        return Err(Unusable::Changed {
            path: path(),
            changed,
        });
    }
    Ok(dir.verify()?)
}
