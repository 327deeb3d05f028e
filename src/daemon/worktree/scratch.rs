//! berth's own scratch worktrees of a repo: added detached at a head, reset to the next
//! landing's head when they can be proven clean, removed otherwise.
//!
//! Adding one is a checkout of the whole tree and removing it as many unlinks: for a large
//! repo the largest part of berth's own work per landing. So a landing's worktree is kept
//! ([`super::idle`]) and the next landing of the repo resets it, but only one whose state
//! berth can prove: its directory and admin entry still the ones berth made, no
//! `index.lock`, no merge or rebase under way, no untracked or ignored file, no tracked path
//! changed in kind (a file made a symlink), nothing no status shows ([`unseen`]); after the
//! reset, HEAD detached at the head, nothing changed and no index entry flagged. Whatever
//! fails that is removed, and a fresh one added.

use std::path::{Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{
    IndexEntryExtendedFlag, IndexEntryFlag, Oid, Repository, RepositoryOpenFlags, RepositoryState,
    Status, StatusOptions,
};

use super::WorktreeError;
use crate::pinned_dir::PinnedDir;

mod unseen;

/// One scratch worktree berth made: the repo it belongs to, its name there (its admin
/// entry `.git/worktrees/<name>`), and its directory under the berth dir.
#[derive(Debug)]
pub(super) struct Scratch {
    pub repo: PathBuf,
    pub name: String,
    pub path: PathBuf,
    /// The repo's worktree-admin lock ([`super::ADMIN_LOCK_WAIT`]).
    pub admin_lock: PathBuf,
}

/// Why a kept worktree is not reused (it is removed instead).
#[derive(Debug, thiserror::Error)]
pub(super) enum Unclean {
    #[error(transparent)]
    Moved(#[from] crate::pinned_dir::PinnedDirError),
    #[error("its admin entry no longer points at it")]
    NotOurs,
    #[error("its git dir is not its admin entry")]
    GitDirMoved,
    #[error("a step left {0}")]
    Lock(&'static str),
    #[error("a step left an operation under way ({0:?})")]
    InProgress(RepositoryState),
    #[error("a step left {0} untracked, ignored or retyped path(s)")]
    Junk(usize),
    #[error("after the reset, {0}")]
    NotReset(&'static str),
    #[error("its admin dir holds {0}, which a fresh worktree would not have")]
    AdminEntry(String),
    #[error("its commondir no longer leads to the repository's own git dir")]
    CommonDirMoved,
    #[error("the repository sets {0}, so the status cannot prove a file unchanged")]
    StatUntrusted(&'static str),
    #[error(transparent)]
    Unseen(#[from] unseen::Unseen),
    #[error(transparent)]
    Git(#[from] git2::Error),
}

impl Scratch {
    /// Adds the worktree at `self.path`, HEAD detached at `head`. libgit2 can only add a
    /// worktree on a branch, so it is added on a branch named like it, which is then let
    /// go. The branch is a plain ref, made and deleted without `git_branch_*`, which would
    /// also lock and rewrite the repo's shared `.git/config` (its `branch.<name>` section):
    /// a landing command of another lane may be writing that file at the same moment.
    /// `repo` is the repository at `self.repo`, opened by the caller.
    pub fn add(&self, repo: &Repository, head: Oid) -> Result<(), WorktreeError> {
        let (path, name) = (&self.path, &self.name);
        let _turn = self.admin_turn()?;
        let branch_ref = format!("refs/heads/{name}");
        let branch = repo.reference(&branch_ref, head, false, "berth: scratch worktree")?;
        let mut options = git2::WorktreeAddOptions::new();
        options.reference(Some(&branch));
        repo.worktree(name, path, Some(&options))
            .map_err(|source| WorktreeError::Add {
                path: path.to_owned(),
                source,
            })?;
        let worktree = Repository::open(path)?;
        worktree.set_head_detached(head)?;
        repo.find_reference(&branch_ref)?.delete()?;
        if worktree.head()?.target() != Some(head) {
            return Err(WorktreeError::NotAt {
                path: path.to_owned(),
                head,
            });
        }
        Ok(())
    }

    /// Resets the worktree to `head` (`None`: the commit it is at), HEAD detached, if its
    /// state proves it clean before and after; otherwise says why not. The steps are done
    /// with it: nothing else runs in it. `repo` is the repository at `self.repo`, opened by
    /// the caller (at a landing's start, the one its fetch opened, which spares an open
    /// and its parse of the config files). A handle holds paths, not descriptors:
    /// everything below is still looked up by name, as on a fresh open.
    pub fn reset(
        &self,
        repo: &Repository,
        dir: &PinnedDir,
        head: Option<Oid>,
    ) -> Result<(), Unclean> {
        dir.verify()?;
        // libgit2 adds a worktree's admin entry under the common dir: for a repo that is
        // itself a linked worktree, not under its own git dir.
        let admin = repo.commondir().join("worktrees").join(&self.name);
        if repo.find_worktree(&self.name)?.path() != self.path {
            return Err(Unclean::NotOurs);
        }
        let wt = Repository::open_ext(&self.path, RepositoryOpenFlags::NO_SEARCH, [] as [&str; 0])?;
        if !same_file(wt.path(), &admin) {
            return Err(Unclean::GitDirMoved);
        }
        no_lock(&admin)?;
        admin_is_gits_own(&admin, repo.commondir())?;
        stat_is_trusted(&wt)?;
        if wt.state() != RepositoryState::Clean {
            return Err(Unclean::InProgress(wt.state()));
        }
        unseen::look(dir.fd())?;
        let before = differences(&wt)?;
        if before.junk > 0 {
            return Err(Unclean::Junk(before.junk));
        }
        let at = wt.head()?.peel_to_commit()?.id();
        let target = head.unwrap_or(at);
        // A landing's end that left nothing changed needs no write; a landing's start
        // always resets, which also rewrites whatever index flags (assume-unchanged,
        // skip-worktree) could hide a change from the status.
        if head.is_some() || target != at || before.changed > 0 {
            hard_reset(&wt, &wt.find_commit(target)?)?;
            forget_the_last_landing(&admin)?;
            let after = differences(&wt)?;
            if after.junk + after.changed > 0 {
                return Err(Unclean::NotReset("files still differ from the head"));
            }
        } else if !wt.head_detached()? {
            wt.set_head_detached(at)?;
        }
        if !wt.head_detached()? || wt.head()?.target() != Some(target) {
            return Err(Unclean::NotReset("HEAD is not detached at the head"));
        }
        no_lock(&admin)?;
        Ok(dir.verify()?)
    }

    /// Removes only what berth made: its own directory under the berth dir, then the
    /// repo's admin entry and branch of that name, and only if the entry points at that
    /// directory. libgit2 is never asked to delete a working tree: it would follow the
    /// admin entry's `gitdir`, which a planted repo controls.
    pub fn remove(&self) -> Result<(), WorktreeError> {
        let (path, name) = (&self.path, &self.name);
        let _turn = self.admin_turn()?;
        // A directory that cannot be removed (a tree deeper than the descriptors
        // `remove_dir_all` may hold, review 49) still loses its admin entry below, and is
        // named in the error: left, the entry would keep the branch a step checked out
        // there "in use" for the repo's next landings.
        let removed = match path.exists() {
            true => std::fs::remove_dir_all(path).map_err(|source| WorktreeError::Remove {
                path: path.to_owned(),
                source,
            }),
            false => Ok(()),
        };
        let repo = Repository::open(&self.repo)?;
        if let Ok(worktree) = repo.find_worktree(name)
            && worktree.path() == path
            && worktree.prune(None).is_err()
        {
            // libgit2 refuses to prune an entry whose `commondir` a step pointed
            // elsewhere, or whose directory is still there; so the entry is removed by
            // hand.
            let admin = repo.commondir().join("worktrees").join(name);
            if std::fs::symlink_metadata(&admin).is_ok_and(|m| m.is_dir()) {
                std::fs::remove_dir_all(&admin).map_err(|source| WorktreeError::Remove {
                    path: admin.clone(),
                    source,
                })?;
            }
        }
        if let Ok(mut branch) = repo.find_reference(&format!("refs/heads/{name}")) {
            branch.delete()?;
        }
        removed
    }

    /// This landing's turn to add or remove a worktree of its repo, waited for at most
    /// [`super::ADMIN_LOCK_WAIT`].
    fn admin_turn(&self) -> Result<std::fs::File, WorktreeError> {
        crate::atomic_file::lock_exclusive_within(&self.admin_lock, super::ADMIN_LOCK_WAIT).map_err(
            |source| WorktreeError::AdminBusy {
                repo: self.repo.clone(),
                source,
            },
        )
    }
}

/// `Err` if git's index lock (or HEAD's) is in the worktree's admin dir: a step that
/// died mid-write, or one still writing.
fn no_lock(admin: &Path) -> Result<(), Unclean> {
    for lock in ["index.lock", "HEAD.lock"] {
        if std::fs::symlink_metadata(admin.join(lock)).is_ok() {
            return Err(Unclean::Lock(if lock == "HEAD.lock" {
                "a HEAD.lock"
            } else {
                "an index.lock"
            }));
        }
    }
    Ok(())
}

/// Removes what a step's git commands leave in the admin dir for the next ones to find
/// (`FETCH_HEAD`, `ORIG_HEAD`, `AUTO_MERGE`, and HEAD's reflog, where `@{-1}` and
/// `git checkout -` look): a fresh worktree has none of them, so in a reused one the next
/// step's `git reset --hard ORIG_HEAD` or `git merge FETCH_HEAD` would act on the last
/// landing's commits (review 48). [`admin_is_gits_own`] found each a plain file.
fn forget_the_last_landing(admin: &Path) -> Result<(), Unclean> {
    for name in ["FETCH_HEAD", "ORIG_HEAD", "AUTO_MERGE", "logs/HEAD"] {
        match std::fs::remove_file(admin.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Unclean::NotReset(
                    "a file of the last landing's could not be removed",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// What git itself keeps in a worktree's admin dir between commands. Anything else
/// (`config.worktree`, per-worktree `refs/`, `hooks`, `info/`) is a step's doing and
/// would reach the next landing, which a fresh worktree would not.
const GITS_OWN_ADMIN_ENTRIES: [&str; 8] = [
    "HEAD",
    "ORIG_HEAD",
    "FETCH_HEAD",
    "AUTO_MERGE",
    "index",
    "commondir",
    "gitdir",
    "logs",
];

/// `Err` unless the admin dir is a plain directory holding only what git keeps there,
/// with `commondir` leading to the repository's own git dir: a step that points it at a
/// repository of its own hands the next landing its config and hooks.
fn admin_is_gits_own(admin: &Path, common: &Path) -> Result<(), Unclean> {
    let unexpected = |name: &str| Unclean::AdminEntry(name.to_owned());
    if !std::fs::symlink_metadata(admin).is_ok_and(|m| m.is_dir()) {
        return Err(unexpected("no plain directory"));
    }
    for entry in std::fs::read_dir(admin).map_err(|_| unexpected("an unreadable listing"))? {
        let entry = entry.map_err(|_| unexpected("an unreadable listing"))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type().map_err(|_| unexpected(&name))?;
        let expected = match name.as_ref() {
            "logs" => kind.is_dir() && logs_hold_only_head(&entry.path()),
            other => {
                kind.is_file() && GITS_OWN_ADMIN_ENTRIES.contains(&other) && single_link(&entry)
            }
        };
        if !expected {
            return Err(unexpected(&name));
        }
    }
    let text = crate::hostile_file::read_regular_string(&admin.join("commondir"), 4096)
        .map_err(|_| Unclean::CommonDirMoved)?;
    let named = Path::new(text.trim_end_matches('\n'));
    if same_file(&admin.join(named), common) {
        Ok(())
    } else {
        Err(Unclean::CommonDirMoved)
    }
}

/// A worktree's `logs/` holds its HEAD's reflog and nothing else.
fn logs_hold_only_head(logs: &Path) -> bool {
    std::fs::read_dir(logs).is_ok_and(|entries| {
        entries.into_iter().all(|entry| {
            entry.is_ok_and(|e| {
                e.file_name() == "HEAD"
                    && e.file_type().is_ok_and(|t| t.is_file())
                    && single_link(&e)
            })
        })
    })
}

/// Whether the listed file (not followed, looked at from its listing's directory, not by a
/// path resolved again) has one link: git appends to a reflog in place, so a step's hard
/// link from `logs/HEAD` to a file elsewhere would take berth's next HEAD write there
/// (review 49).
fn single_link(entry: &std::fs::DirEntry) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    entry.metadata().is_ok_and(|m| m.nlink() == 1)
}

/// `Err` if the repository tells git to trust less of a file's stat data than a change
/// always moves (its ctime): the status could then take an edited file for unchanged.
fn stat_is_trusted(wt: &Repository) -> Result<(), Unclean> {
    let config = wt.config()?.snapshot()?;
    if config.get_bool("core.trustctime").ok() == Some(false) {
        return Err(Unclean::StatUntrusted("core.trustctime = false"));
    }
    if config.get_bool("core.ignoreStat").ok() == Some(true) {
        return Err(Unclean::StatUntrusted("core.ignoreStat = true"));
    }
    if config
        .get_str("core.checkStat")
        .is_ok_and(|v| v.eq_ignore_ascii_case("minimal"))
    {
        return Err(Unclean::StatUntrusted("core.checkStat = minimal"));
    }
    Ok(())
}

/// How a worktree differs from its HEAD.
struct Differences {
    /// Paths a reset would not undo: untracked, ignored, changed in kind (a file made a
    /// symlink).
    junk: usize,
    /// Tracked paths changed, which a reset undoes.
    changed: usize,
}

/// `git reset --hard <commit>`, HEAD detached there, mostly with one write of the index
/// where libgit2's hard reset makes two (its checkout writes the index, then the reset
/// reads the tree into it and writes it again). Each write is a new `index.lock` file, and
/// on a file system that charges for every new file (ext4 without a journal scans the
/// inodes freed in the last 30 s) that is most of its cost. The checkout, with force,
/// writes the files that differ and the index; it keeps the old index's entries as its
/// stat cache, so no unchanged file is hashed. The read of the tree that follows in
/// libgit2's reset only matters when an entry carries what the checkout leaves as it found
/// it: an assume-unchanged or skip-worktree flag, an intent-to-add entry, a conflict
/// stage. Then the tree is read into the index, and the assume-unchanged flags that read
/// copies from the old entries (libgit2's reset keeps them) are dropped: kept, a flag would
/// hide the next step's edits of that file from every status, berth's own check after this
/// reset included. HEAD is only ever detached: no branch a step checked out moves.
fn hard_reset(wt: &Repository, commit: &git2::Commit<'_>) -> Result<(), git2::Error> {
    let mut checkout = CheckoutBuilder::new();
    checkout.force();
    wt.checkout_tree(commit.as_object(), Some(&mut checkout))?;
    let mut index = wt.index()?;
    let hides = IndexEntryExtendedFlag::SKIP_WORKTREE | IndexEntryExtendedFlag::INTENT_TO_ADD;
    let left_by_a_step = |entry: &git2::IndexEntry| {
        IndexEntryFlag::from_bits_retain(entry.flags).is_valid()
            || IndexEntryExtendedFlag::from_bits_retain(entry.flags_extended).intersects(hides)
    };
    if index.has_conflicts() || index.iter().any(|entry| left_by_a_step(&entry)) {
        index.read_tree(&commit.tree()?)?;
        let assumed: Vec<_> = index
            .iter()
            .filter(|entry| IndexEntryFlag::from_bits_retain(entry.flags).is_valid())
            .collect();
        for mut entry in assumed {
            entry.flags &= !IndexEntryFlag::VALID.bits();
            index.add(&entry)?;
        }
        index.write()?;
    }
    wt.set_head_detached(commit.id())?;
    wt.cleanup_state()
}

fn differences(wt: &Repository) -> Result<Differences, git2::Error> {
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .include_ignored(true)
        .recurse_untracked_dirs(false)
        .recurse_ignored_dirs(false)
        .exclude_submodules(false);
    let statuses = wt.statuses(Some(&mut options))?;
    let beyond_reset = Status::WT_NEW | Status::IGNORED | Status::WT_TYPECHANGE;
    let junk = statuses
        .iter()
        .filter(|s| s.status().intersects(beyond_reset))
        .count();
    Ok(Differences {
        junk,
        changed: statuses.len() - junk,
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
