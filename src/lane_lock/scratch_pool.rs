//! The lock operations' scratch repositories, reused between operations of this process.
//!
//! Making one costs a temp dir and a bare `git init` (seven directories and their files),
//! and removing it as many unlinks: on a busy filesystem that was most of berth's own time
//! per landing (a landing takes, refreshes and releases one or two lock refs). Each
//! operation still has a repository to itself (taken from the pool, given back when it
//! ends), so concurrent operations never see each other's refs; one is retired after
//! [`MAX_USES`] operations or [`MAX_AGE`], so what its fetches and lock commits store stays
//! bounded, and it is always far younger than the hour after which a starting berth sweeps
//! scratch dirs left by a killed process.
//!
//! The daemon's warm-up makes one ahead ([`ScratchPool::make_ahead`]); an operation that
//! finds none idle while that one is being made waits for it, at most [`AHEAD_WAIT`],
//! rather than making a second one beside it (the first landing's lock used to).

use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::transport::Scratch;

/// Operations one scratch repository serves before it is removed.
pub(crate) const MAX_USES: u32 = 64;
/// Age past which a scratch repository is removed instead of reused.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// Idle scratch repositories kept; more are removed when their operation ends.
pub(crate) const MAX_IDLE: usize = 4;
/// How long an operation that finds no idle repository waits for the one being made
/// ahead (a bare `git init`, milliseconds) before it makes its own.
pub(crate) const AHEAD_WAIT: Duration = Duration::from_secs(1);

/// One idle repository, with when it was made and how often it served.
struct Idle {
    scratch: Scratch,
    born: Instant,
    uses: u32,
}

/// Idle scratch repositories of one lock client, and whether one is being made ahead.
#[derive(Default)]
pub(crate) struct ScratchPool {
    shelf: Mutex<Shelf>,
    /// Told when the repository made ahead is idle (or its making ended without one).
    ahead_done: Condvar,
}

/// What the pool's lock guards.
#[derive(Default)]
struct Shelf {
    idle: Vec<Idle>,
    /// A repository is being made ahead, to be put with the idle ones.
    ahead: bool,
}

/// A scratch repository held by one operation; given back to the pool when dropped.
pub(crate) struct Pooled<'p> {
    pool: &'p ScratchPool,
    held: Option<Idle>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Scratch;

    fn deref(&self) -> &Scratch {
        &self.held.as_ref().expect("held until dropped").scratch
    }
}

impl std::fmt::Debug for ScratchPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScratchPool({} idle)", self.lock().idle.len())
    }
}

impl ScratchPool {
    /// A repository for one operation: an idle one still fit for use, its read ref
    /// `read_ref` emptied (an operation that failed between its read and its cleanup may
    /// have left it), or a new one under `dir`.
    pub(crate) fn take(&self, dir: &Path, read_ref: &str) -> std::io::Result<Pooled<'_>> {
        loop {
            let Some(idle) = self.pop_idle() else {
                break;
            };
            if !fit(&idle) {
                continue;
            }
            let cleared = match idle.scratch.repo.find_reference(read_ref) {
                Ok(mut left) => left.delete().is_ok(),
                Err(_) => true,
            };
            if cleared {
                return Ok(Pooled {
                    pool: self,
                    held: Some(idle),
                });
            }
        }
        let fresh = Idle {
            scratch: Scratch::create(dir)?,
            born: Instant::now(),
            uses: 0,
        };
        Ok(Pooled {
            pool: self,
            held: Some(fresh),
        })
    }

    /// Makes one repository under `dir` and puts it with the idle ones, unless one is idle
    /// or being made already. Operations that need one meanwhile wait for it.
    pub(crate) fn make_ahead(&self, dir: &Path) -> std::io::Result<()> {
        {
            let mut shelf = self.lock();
            if !shelf.idle.is_empty() || shelf.ahead {
                return Ok(());
            }
            shelf.ahead = true;
        }
        let turn = AheadTurn { pool: self };
        let scratch = Scratch::create(dir)?;
        let mut shelf = self.lock();
        if shelf.idle.len() < MAX_IDLE {
            shelf.idle.push(Idle {
                scratch,
                born: Instant::now(),
                uses: 0,
            });
        }
        drop(shelf);
        drop(turn);
        Ok(())
    }

    /// An idle repository; while none is and one is being made ahead, waits for that one,
    /// at most [`AHEAD_WAIT`].
    fn pop_idle(&self) -> Option<Idle> {
        let deadline = Instant::now() + AHEAD_WAIT;
        let mut shelf = self.lock();
        loop {
            if let Some(idle) = shelf.idle.pop() {
                return Some(idle);
            }
            if !shelf.ahead {
                return None;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            shelf = match self.ahead_done.wait_timeout(shelf, left) {
                Ok((shelf, _)) => shelf,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shelf> {
        self.shelf.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Ends a making ahead when dropped (also when it failed or panicked), waking the
/// operations waiting for it.
struct AheadTurn<'p> {
    pool: &'p ScratchPool,
}

impl Drop for AheadTurn<'_> {
    fn drop(&mut self) {
        self.pool.lock().ahead = false;
        self.pool.ahead_done.notify_all();
    }
}

fn fit(idle: &Idle) -> bool {
    idle.uses < MAX_USES && idle.born.elapsed() < MAX_AGE
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(mut idle) = self.held.take() else {
            return;
        };
        idle.uses += 1;
        // A panicking operation may have left anything behind: its repository goes.
        // One handed to an access left past its deadline may be written at any time.
        if std::thread::panicking()
            || !fit(&idle)
            || super::local_deadline::handed_to_late(idle.scratch.repo.path())
        {
            return;
        }
        let mut shelf = self.pool.lock();
        if shelf.idle.len() < MAX_IDLE {
            shelf.idle.push(idle);
        }
    }
}

/// Removes per-operation scratch repositories a killed process left in `scratch_dir`.
/// Only old ones: a live operation (here or in another berth process) is far younger
/// than twenty remote timeouts, and than an hour.
pub(crate) fn sweep_leftovers(scratch_dir: &Path, remote_timeout: Duration) {
    let max_age = (remote_timeout * 20).max(Duration::from_secs(3600));
    let Ok(entries) = std::fs::read_dir(scratch_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| std::time::SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age > max_age);
        if old
            && entry
                .file_name()
                .to_string_lossy()
                .starts_with(super::transport::SCRATCH_PREFIX)
            && let Err(e) = std::fs::remove_dir_all(entry.path())
        {
            tracing::warn!(path = %entry.path().display(), error = %e, "could not remove a stale lane-lock scratch repo");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ: &str = "refs/berth/read";

    #[test]
    fn a_repository_is_reused_with_its_read_ref_emptied_then_retired() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ScratchPool::default();
        let first_path = {
            let scratch = pool.take(dir.path(), READ).unwrap();
            let commit = scratch.write_lock_commit("lock").unwrap();
            scratch.repo.reference(READ, commit, true, "left").unwrap();
            scratch.repo.path().to_owned()
        };
        assert_eq!(pool.lock().idle.len(), 1);
        let again = pool.take(dir.path(), READ).unwrap();
        assert_eq!(
            again.repo.path(),
            first_path,
            "the idle repository is reused"
        );
        assert!(
            again.repo.find_reference(READ).is_err(),
            "its read ref is emptied"
        );
        drop(again);
        // Two uses so far; the last one retires it.
        for _ in 2..MAX_USES - 1 {
            drop(pool.take(dir.path(), READ).unwrap());
        }
        assert_eq!(pool.lock().idle.len(), 1);
        drop(pool.take(dir.path(), READ).unwrap());
        assert_eq!(
            pool.lock().idle.len(),
            0,
            "retired after {MAX_USES} operations"
        );
        assert!(!first_path.exists(), "and removed");
    }

    #[test]
    fn an_operation_takes_the_repository_being_made_ahead_instead_of_making_one() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ScratchPool::default();
        // The making ahead is under way (as `make_ahead` marks it) when the operation
        // comes; it ends with the repository put with the idle ones.
        pool.lock().ahead = true;
        let taken = std::thread::scope(|s| {
            let operation = s.spawn(|| pool.take(dir.path(), READ).unwrap().repo.path().to_owned());
            let turn = AheadTurn { pool: &pool };
            let made = Scratch::create(dir.path()).unwrap();
            let path = made.repo.path().to_owned();
            pool.lock().idle.push(Idle {
                scratch: made,
                born: Instant::now(),
                uses: 0,
            });
            drop(turn);
            (path, operation.join().unwrap())
        });
        assert_eq!(
            taken.1, taken.0,
            "the operation ran in the repository made ahead"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "one made, not two"
        );
    }

    #[test]
    fn a_repository_made_ahead_is_idle_and_an_operation_without_one_waits_no_longer() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ScratchPool::default();
        pool.make_ahead(dir.path()).unwrap();
        pool.make_ahead(dir.path()).unwrap();
        assert_eq!(pool.lock().idle.len(), 1, "made once, kept idle");
        assert!(!pool.lock().ahead);
        let (first, second) = (
            pool.take(dir.path(), READ).unwrap(),
            pool.take(dir.path(), READ).unwrap(),
        );
        assert_ne!(first.repo.path(), second.repo.path());
    }

    #[test]
    fn concurrent_operations_each_get_their_own_and_at_most_max_idle_stay() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ScratchPool::default();
        let held: Vec<_> = (0..MAX_IDLE + 2)
            .map(|_| pool.take(dir.path(), READ).unwrap())
            .collect();
        let paths: std::collections::HashSet<_> =
            held.iter().map(|s| s.repo.path().to_owned()).collect();
        assert_eq!(paths.len(), MAX_IDLE + 2);
        drop(held);
        assert_eq!(pool.lock().idle.len(), MAX_IDLE);
    }
}
