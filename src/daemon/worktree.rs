//! Where a landing runs: the record's own worktree when it passed the gate, otherwise a
//! private scratch worktree made with libgit2 (no `git` process, so no hooks run) and
//! removed when the record settles.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::gates::WorktreeChoice;

use super::{Candidate, Shared};

/// A place to run the landing; a scratch one is removed by [`Place::remove`].
pub struct Place {
    path: PathBuf,
    scratch: Option<Scratch>,
}

struct Scratch {
    repo: PathBuf,
    name: String,
}

impl Place {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes a scratch worktree (its directory, its libgit2 admin entry and its branch).
    /// Failures are logged: the next landing of the record replaces it anyway.
    pub fn remove(self) {
        let Some(scratch) = self.scratch else {
            return;
        };
        if let Err(e) = remove_scratch(&scratch.repo, &scratch.name, &self.path) {
            tracing::warn!(worktree = %self.path.display(), "scratch worktree not fully removed: {e:#}");
        }
    }
}

/// Held while a landing runs in a record's own worktree: two lanes of one repo often
/// share a checkout, and two landings in one working tree would corrupt each other. The
/// lock file lives in the queue dir, so every daemon sharing the queue respects it.
pub struct WorktreeGuard {
    _file: Option<std::fs::File>,
}

/// Takes the worktree's lock, or says it is busy. Scratch worktrees are per record and
/// need none.
pub fn try_lock(shared: &Shared, c: &Candidate) -> Result<WorktreeGuard, String> {
    let WorktreeChoice::Use(path) = &c.gated.worktree else {
        return Ok(WorktreeGuard { _file: None });
    };
    let key = crate::safe_key::safe_key(&path.to_string_lossy());
    let lock_path = shared.store.dir().join(format!(".worktree-{key}.lock"));
    let file = crate::atomic_file::open_lock_file(&lock_path)
        .map_err(|e| format!("cannot open worktree lock {}: {e}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(WorktreeGuard { _file: Some(file) }),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "worktree {} is in use by another landing",
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(format!("cannot lock worktree {}: {e}", path.display()))
        }
    }
}

pub fn prepare(shared: &Shared, c: &Candidate) -> anyhow::Result<Place> {
    match &c.gated.worktree {
        WorktreeChoice::Use(path) => Ok(Place {
            path: path.clone(),
            scratch: None,
        }),
        WorktreeChoice::Scratch { reason } => {
            tracing::info!(record = %c.id, "using a scratch worktree: {reason}");
            let root = shared.berth_dir.join("worktrees");
            crate::atomic_file::ensure_private_dir(&root)?;
            // A fresh name every time: nothing planted in the repo's `.git/worktrees/` can
            // be mistaken for ours, and a killed daemon's leftover is never reused.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let name = format!("berth-{}-{:x}{nanos:x}", c.id, std::process::id());
            let path = root.join(&name);
            add_scratch(&c.gated.repo.path, &name, &path)?;
            Ok(Place {
                path,
                scratch: Some(Scratch {
                    repo: c.gated.repo.path.clone(),
                    name,
                }),
            })
        }
    }
}

fn add_scratch(repo_path: &Path, name: &str, path: &Path) -> anyhow::Result<()> {
    let repo = git2::Repository::open(repo_path)
        .with_context(|| format!("opening {}", repo_path.display()))?;
    let head = repo.head()?.peel_to_commit()?;
    let branch = repo.branch(name, &head, true)?;
    let mut options = git2::WorktreeAddOptions::new();
    options.reference(Some(branch.get()));
    repo.worktree(name, path, Some(&options))
        .with_context(|| format!("adding scratch worktree {}", path.display()))?;
    Ok(())
}

/// Removes only what berth made: its own directory under the berth dir, then the repo's
/// admin entry and branch of that name, and only if the entry points at that directory.
/// libgit2 is never asked to delete a working tree: it would follow the admin entry's
/// `gitdir`, which a planted repo controls.
fn remove_scratch(repo_path: &Path, name: &str, path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
    }
    let repo = git2::Repository::open(repo_path)?;
    if let Ok(worktree) = repo.find_worktree(name)
        && worktree.path() == path
    {
        worktree.prune(None)?;
    }
    if let Ok(mut branch) = repo.find_branch(name, git2::BranchType::Local) {
        branch.delete()?;
    }
    Ok(())
}
