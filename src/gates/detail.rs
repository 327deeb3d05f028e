//! berth's detail of a gate's refusal, after the subject it is about.

use std::io;
use std::path::PathBuf;

use crate::hostile_file::ReadError;

/// berth's detail of a refusal: what is wrong with a root, a repo's git dir or its files.
/// It follows the subject it is about (a path, a root, an allowlist entry).
#[derive(Debug, thiserror::Error)]
pub(super) enum Detail {
    #[error("not an absolute path")]
    RelativeRoot,
    #[error("resolves to `/`, which would allow every path")]
    RootIsSlash,
    #[error("it does not exist")]
    RootMissing,
    #[error("has no .git entry (not a git repo)")]
    NoDotGit,
    #[error("has a `.git` file berth cannot read: {0}")]
    DotGitUnreadable(ReadError),
    #[error("has a `.git` file with no `gitdir:` line")]
    NoGitdirLine,
    #[error("has a git dir {} that cannot be resolved: {source}", .path.display())]
    GitDirUnresolved { path: PathBuf, source: io::Error },
    #[error("has a git dir {} that is not a directory", .0.display())]
    GitDirNotDir(PathBuf),
    /// `allowlist` is the allowlist as [`Allowlist::describe`] says it.
    #[error(
        "has a git dir that resolves to {}, outside the daemon allowlist; {allowlist}",
        .real.display()
    )]
    GitDirOutside { real: PathBuf, allowlist: String },
    #[error("has a commondir {} that cannot be resolved: {source}", .path.display())]
    CommonDirUnresolved { path: PathBuf, source: io::Error },
    #[error("has a commondir that resolves to {}, outside the daemon allowlist", .0.display())]
    CommonDirOutside(PathBuf),
    #[error("has an unreadable commondir: {0}")]
    CommonDirUnreadable(Box<Detail>),
    #[error("has git files berth will not read: {0}")]
    GitFiles(Box<Detail>),
    #[error("{} {source}", .path.display())]
    Unreadable { path: PathBuf, source: ReadError },
    #[error("the git dir has no HEAD")]
    NoHead,
    #[error(
        "{} uses `include`/`includeIf`, which berth does not follow; inline those settings",
        .0.display()
    )]
    Includes(PathBuf),
}
