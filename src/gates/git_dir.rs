//! A repo's git dir and the files libgit2 reads from it: every path they lead to allowed,
//! every file plain, small and without `include`s.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Allowlist, Detail};

/// A git config file larger than this is not a repo's config; berth will not parse it.
pub(super) const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

impl Allowlist {
    /// The `.git` entry of `repo`: a directory, or a file `gitdir: <path>` (a linked
    /// worktree); the dir it leads to, and a `commondir` inside it, must be allowed too.
    pub(super) fn gate_git_dir(&self, repo: &Path) -> Result<(PathBuf, PathBuf), Detail> {
        let dot_git = repo.join(".git");
        let meta = fs::symlink_metadata(&dot_git).map_err(|_| Detail::NoDotGit)?;
        let git_dir = if meta.is_file() || meta.file_type().is_symlink() && dot_git.is_file() {
            // The producer's repo: a FIFO swapped in must not hang the gate.
            let text = crate::hostile_file::read_regular_following(&dot_git, MAX_CONFIG_BYTES)
                .and_then(crate::hostile_file::utf8)
                .map_err(Detail::DotGitUnreadable)?;
            let target = text
                .lines()
                .next()
                .and_then(|line| line.strip_prefix("gitdir:"))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or(Detail::NoGitdirLine)?;
            repo.join(target)
        } else {
            dot_git
        };
        let real = git_dir
            .canonicalize()
            .map_err(|source| Detail::GitDirUnresolved {
                path: git_dir.clone(),
                source,
            })?;
        if !real.is_dir() {
            return Err(Detail::GitDirNotDir(real));
        }
        if !self.contains(&real) {
            return Err(Detail::GitDirOutside {
                real,
                allowlist: self.describe(),
            });
        }
        let common_real = match read_small_file(&real.join("commondir")) {
            Ok(Some(common)) => {
                let common_dir = real.join(common.trim());
                let common_real =
                    common_dir
                        .canonicalize()
                        .map_err(|source| Detail::CommonDirUnresolved {
                            path: common_dir.clone(),
                            source,
                        })?;
                if !self.contains(&common_real) {
                    return Err(Detail::CommonDirOutside(common_real));
                }
                common_real
            }
            Ok(None) => real.clone(),
            Err(reason) => return Err(Detail::CommonDirUnreadable(Box::new(reason))),
        };
        check_git_files(&real, &common_real).map_err(|e| Detail::GitFiles(Box::new(e)))?;
        Ok((real, common_real))
    }
}

/// The files libgit2 reads when berth opens the repo must be plain, small, and free of
/// `include`s: a FIFO or an include of one would hang the daemon inside libgit2, and an
/// include could pull config from outside the allowlist.
fn check_git_files(git_dir: &Path, common_dir: &Path) -> Result<(), Detail> {
    read_small_file(&git_dir.join("HEAD"))?.ok_or(Detail::NoHead)?;
    for config in [common_dir.join("config"), git_dir.join("config.worktree")] {
        let Some(text) = read_small_file(&config)? else {
            continue;
        };
        let includes = text.lines().any(|line| {
            let line = line.trim_start().to_ascii_lowercase();
            line.starts_with("[include") || line.starts_with("include.")
        });
        if includes {
            return Err(Detail::Includes(config));
        }
    }
    Ok(())
}

/// A regular file's text (`None` if absent), refusing anything else: FIFOs, devices,
/// directories, symlinks, oversized files.
fn read_small_file(path: &Path) -> Result<Option<String>, Detail> {
    match crate::hostile_file::read_regular_string(path, MAX_CONFIG_BYTES) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(source) => Err(Detail::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}
