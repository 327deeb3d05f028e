//! The scratch worktrees kept between landings, for the next landing of their repo to
//! reset instead of adding a new one ([`super::scratch`]).
//!
//! One landing holds a worktree at a time (taken out, given back when it settles), so
//! concurrent lanes of a repo never share one. Kept worktrees are bounded in number
//! ([`MAX_IDLE`], [`MAX_IDLE_PER_REPO`]), uses ([`MAX_USES`]) and age ([`MAX_AGE`]); the daemon removes those it keeps when it stops, and
//! from then on keeps none (a worktree made ahead that finishes later is handed back).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::scratch::Scratch;
use crate::pinned_dir::PinnedDir;

/// Scratch worktrees kept at most, over every repo.
pub(crate) const MAX_IDLE: usize = 8;
/// Scratch worktrees kept at most per repo.
pub(crate) const MAX_IDLE_PER_REPO: usize = 4;
/// Landings one scratch worktree serves before it is removed.
pub(crate) const MAX_USES: u32 = 64;
/// Age past which a scratch worktree is removed instead of reused.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// A scratch worktree with its directory held open, when it was made and how often it
/// served.
#[derive(Debug)]
pub(super) struct Kept {
    pub scratch: Scratch,
    pub dir: Arc<PinnedDir>,
    born: Instant,
    uses: u32,
}

impl Kept {
    pub fn new(scratch: Scratch, dir: Arc<PinnedDir>) -> Kept {
        Kept {
            scratch,
            dir,
            born: Instant::now(),
            uses: 0,
        }
    }

    fn fit(&self) -> bool {
        self.uses < MAX_USES && self.born.elapsed() < MAX_AGE
    }
}

/// The daemon's kept scratch worktrees.
#[derive(Debug, Default)]
pub struct IdleWorktrees {
    kept: Mutex<Pool>,
}

#[derive(Debug, Default)]
struct Pool {
    kept: Vec<Kept>,
    /// Set when the stopping daemon drained the pool: nothing is kept after.
    closed: bool,
}

impl IdleWorktrees {
    /// A kept worktree of `repo` still fit for use, if any, and those found unfit (for the
    /// caller to remove).
    pub(super) fn take(&self, repo: &Path) -> (Option<Kept>, Vec<Kept>) {
        let mut pool = self.lock();
        let (mine, others): (Vec<Kept>, Vec<Kept>) =
            pool.kept.drain(..).partition(|k| k.scratch.repo == repo);
        pool.kept = others;
        let (mut fit, unfit): (Vec<Kept>, Vec<Kept>) = mine.into_iter().partition(Kept::fit);
        let taken = fit.pop();
        pool.kept.extend(fit);
        (taken, unfit)
    }

    /// Keeps `done` (one landing more served) unless that passes a bound; what is not
    /// kept is handed back for the caller to remove.
    pub(super) fn give(&self, mut done: Kept) -> Option<Kept> {
        done.uses += 1;
        self.keep(done)
    }

    /// Keeps `fresh`, a worktree made ahead of its repo's first landing (none served
    /// yet), unless that passes a bound; what is not kept is handed back.
    pub(super) fn keep(&self, fresh: Kept) -> Option<Kept> {
        if !fresh.fit() {
            return Some(fresh);
        }
        let mut pool = self.lock();
        let of_repo = pool
            .kept
            .iter()
            .filter(|k| k.scratch.repo == fresh.scratch.repo)
            .count();
        if pool.closed || pool.kept.len() >= MAX_IDLE || of_repo >= MAX_IDLE_PER_REPO {
            return Some(fresh);
        }
        pool.kept.push(fresh);
        None
    }

    /// Every kept worktree, for the stopping daemon to remove; nothing is kept after.
    pub(super) fn drain(&self) -> Vec<Kept> {
        let mut pool = self.lock();
        pool.closed = true;
        std::mem::take(&mut pool.kept)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(dir: &Path, repo: &str, n: usize) -> Kept {
        let name = format!("wt-{repo}-{n}");
        let path = dir.join(&name);
        std::fs::create_dir_all(&path).unwrap();
        let pinned = Arc::new(PinnedDir::open(&path).unwrap());
        Kept::new(
            Scratch {
                repo: dir.join(repo),
                name,
                path,
                admin_lock: dir.join("admin.lock"),
            },
            pinned,
        )
    }

    #[test]
    fn kept_worktrees_are_bounded_per_repo_and_in_all() {
        let dir = tempfile::tempdir().unwrap();
        let idle = IdleWorktrees::default();
        let over: Vec<_> = (0..MAX_IDLE_PER_REPO + 1)
            .filter_map(|n| idle.give(kept(dir.path(), "a", n)))
            .collect();
        assert_eq!(over.len(), 1, "one past the per-repo bound is handed back");
        let over: Vec<_> = (0..MAX_IDLE)
            .filter_map(|n| idle.give(kept(dir.path(), &format!("r{n}"), n)))
            .collect();
        assert_eq!(over.len(), MAX_IDLE_PER_REPO, "past the bound in all");
        let (taken, unfit) = idle.take(&dir.path().join("a"));
        assert!(taken.is_some_and(|k| k.scratch.repo == dir.path().join("a")));
        assert!(unfit.is_empty());
        assert!(idle.take(&dir.path().join("none")).0.is_none());
        assert_eq!(idle.drain().len(), MAX_IDLE - 1);
    }

    #[test]
    fn nothing_is_kept_once_the_stopping_daemon_drained_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let idle = IdleWorktrees::default();
        assert!(idle.keep(kept(dir.path(), "a", 0)).is_none());
        assert_eq!(idle.drain().len(), 1);
        assert!(idle.keep(kept(dir.path(), "a", 1)).is_some(), "handed back");
        assert!(idle.give(kept(dir.path(), "b", 2)).is_some(), "handed back");
        assert!(idle.drain().is_empty());
    }

    #[test]
    fn a_worktree_is_retired_after_its_uses() {
        let dir = tempfile::tempdir().unwrap();
        let idle = IdleWorktrees::default();
        let mut one = kept(dir.path(), "a", 0);
        for _ in 1..MAX_USES {
            assert!(idle.give(one).is_none());
            one = idle.take(&dir.path().join("a")).0.unwrap();
        }
        assert!(
            idle.give(one).is_some(),
            "retired after {MAX_USES} landings"
        );
    }
}
