//! A scratch worktree made ahead of a repo's first landing.
//!
//! Adding a scratch worktree is a checkout of the whole tree: done on the first landing's
//! path, it is the largest one-time cost a daemon pays for a repo. So when the daemon first
//! sees a queued record of a repo pass its gates, one is added in the background and kept
//! with the idle ones ([`super::idle`]) for the landing to reset to its head (which changes
//! only the files that differ). A landing that needs a scratch worktree while the repo's is
//! still being made waits for it ([`AHEAD_WAIT`]) rather than adding a second one beside
//! it. Once per repo per process, for at most [`MAX_AHEAD_REPOS`] repos: a warm-up, never
//! a periodic task.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Repos a process makes a scratch worktree ahead for; later ones add theirs at their
/// first landing, as every landing did before.
pub(crate) const MAX_AHEAD_REPOS: usize = super::idle::MAX_IDLE;
/// How long a landing waits for its repo's scratch worktree still being made ahead (then
/// it adds its own); the same as it would wait for that add's turn in the repo.
pub(crate) const AHEAD_WAIT: Duration = super::ADMIN_LOCK_WAIT;

/// The repos a scratch worktree was made ahead for, and whether that is still under way.
#[derive(Debug, Default)]
pub struct Ahead {
    repos: Mutex<HashMap<PathBuf, Making>>,
    made: Condvar,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Making {
    UnderWay,
    Done,
}

/// Marks the repo's making done when dropped (also when it failed or panicked), waking
/// the landings waiting for it.
pub(super) struct Turn {
    ahead: Arc<Ahead>,
    repo: PathBuf,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.ahead.lock().insert(self.repo.clone(), Making::Done);
        self.ahead.made.notify_all();
    }
}

impl Ahead {
    /// The turn to make `repo`'s scratch worktree ahead: the first time the repo is seen
    /// and while fewer than [`MAX_AHEAD_REPOS`] were, otherwise `None`.
    pub(super) fn start(self: &Arc<Self>, repo: &Path) -> Option<Turn> {
        let mut repos = self.lock();
        if repos.contains_key(repo) || repos.len() >= MAX_AHEAD_REPOS {
            return None;
        }
        repos.insert(repo.to_owned(), Making::UnderWay);
        Some(Turn {
            ahead: Arc::clone(self),
            repo: repo.to_owned(),
        })
    }

    /// Waits, at most `limit`, while `repo`'s scratch worktree is being made ahead.
    pub(super) fn wait(&self, repo: &Path, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut repos = self.lock();
        while repos.get(repo) == Some(&Making::UnderWay) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            repos = match self.made.wait_timeout(repos, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Making>> {
        self.repos.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_repo_is_made_ahead_once_and_at_most_the_bound_of_repos() {
        let ahead = Arc::new(Ahead::default());
        let repo = |n: usize| PathBuf::from(format!("/r{n}"));
        assert!(ahead.start(&repo(0)).is_some());
        assert!(ahead.start(&repo(0)).is_none(), "once per repo");
        for n in 1..MAX_AHEAD_REPOS {
            assert!(ahead.start(&repo(n)).is_some());
        }
        assert!(ahead.start(&repo(MAX_AHEAD_REPOS)).is_none(), "bounded");
    }

    #[test]
    fn a_landing_waits_for_the_making_under_way_and_no_longer() {
        let ahead = Arc::new(Ahead::default());
        let repo = PathBuf::from("/r");
        let (started, finish) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let maker = {
            let (ahead, repo) = (Arc::clone(&ahead), repo.clone());
            std::thread::spawn(move || {
                let turn = ahead.start(&repo).unwrap();
                started.send(()).unwrap();
                done_rx.recv().unwrap();
                drop(turn);
            })
        };
        finish.recv().unwrap();
        let waiter = {
            let (ahead, repo) = (Arc::clone(&ahead), repo.clone());
            std::thread::spawn(move || ahead.wait(&repo, Duration::from_secs(600)))
        };
        done_tx.send(()).unwrap();
        maker.join().unwrap();
        waiter.join().unwrap();
        assert_eq!(ahead.lock().get(&repo), Some(&Making::Done));
        // Nothing under way: no wait at all, whatever the limit.
        ahead.wait(&repo, Duration::from_secs(600));
        ahead.wait(Path::new("/never-seen"), Duration::from_secs(600));
    }
}
