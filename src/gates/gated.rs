//! What a record or repo is once it passed the gates. Only `gates` builds these, so a value
//! of these types is proof the gates ran; everything later reads them through accessors.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::lane_lock::repo_keys::Unlearnt;
use crate::lane_lock::{Lane, LaneKey, lane_key};
use crate::pinned_dir::PinnedDir;

use super::GateError;

/// A repository identity that passed the identity gate (gstack's canonical `host/owner/name`,
/// `/abs/path`, `file:/abs/path` or `path:<abs>`), as read from the repo's `origin`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Identity(String);

impl Identity {
    /// Only the identity gate makes one.
    pub(super) fn gated(identity: String) -> Identity {
        Identity(identity)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Identity {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Identity {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Identity {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<Identity> for String {
    fn from(identity: Identity) -> String {
        identity.0
    }
}

/// A repo that passed the gate: every path is a realpath inside the allowlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatedRepo {
    pub(super) path: PathBuf,
    pub(super) git_dir: PathBuf,
    pub(super) common_dir: PathBuf,
    pub(super) pin: Arc<PinnedDir>,
}

impl GatedRepo {
    /// The repo's realpath.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The repo's git dir (a `.git` directory, or where a `.git` file leads).
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// The repository's shared git dir: `git_dir` itself, or where a linked worktree's
    /// `commondir` leads. Two checkouts of one repository share it.
    pub fn common_dir(&self) -> &Path {
        &self.common_dir
    }

    /// The directory the gate checked, held open: later steps start in it and re-check
    /// the path against it (a producer may swap the path for a symlink meanwhile).
    pub fn pin(&self) -> &Arc<PinnedDir> {
        &self.pin
    }
}

/// Where a landing runs: the record's worktree if it passed the gate, else a scratch one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorktreeChoice {
    Use(PathBuf),
    Scratch { reason: String },
}

/// A record that passed every gate, with the resolved values later steps must use.
#[derive(Clone, Debug)]
pub struct GatedRecord {
    pub(super) repo: GatedRepo,
    pub(super) identity: Identity,
    pub(super) base_branch: String,
    pub(super) origin_url: Option<String>,
    pub(super) worktree: WorktreeChoice,
    pub(super) worktree_pin: Option<Arc<PinnedDir>>,
}

impl GatedRecord {
    pub fn repo(&self) -> &GatedRepo {
        &self.repo
    }

    /// The identity of the repo's `origin` (a record's own `repoIdentity` must name it).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The URL of the repo's `origin`, if it has one.
    pub fn origin_url(&self) -> Option<&str> {
        self.origin_url.as_deref()
    }

    pub fn worktree(&self) -> &WorktreeChoice {
        &self.worktree
    }

    /// The record's worktree held open, when [`WorktreeChoice::Use`].
    pub fn worktree_pin(&self) -> Option<&Arc<PinnedDir>> {
        self.worktree_pin.as_ref()
    }

    /// The record's lane, as gstack names its lock: the origin's identity (never the
    /// record's own spelling, which a legacy record does not even have) and the base branch.
    pub fn lane(&self) -> Lane {
        Lane {
            repo_identity: self.identity.0.clone(),
            base_branch: self.base_branch.clone(),
        }
    }

    /// The key that tells this record's lane apart from others inside one daemon
    /// ([`lane_key`]); the one way berth computes it for a record. An error while the
    /// repository of a local origin is not known yet: the lane waits.
    pub fn lane_key(&self) -> Result<LaneKey, Unlearnt> {
        lane_key(&self.lane())
    }
}

/// A repo path that passed the repo-path gate, with its origin's identity (or why that
/// identity is refused).
#[derive(Clone, Debug)]
pub struct RepoGate {
    pub(super) repo: GatedRepo,
    pub(super) origin: Result<(Identity, Option<String>), GateError>,
}

impl RepoGate {
    pub fn repo(&self) -> &GatedRepo {
        &self.repo
    }

    /// The origin's identity and URL, or why the identity gate refused them.
    pub fn origin(&self) -> Result<(&Identity, Option<&str>), &GateError> {
        self.origin
            .as_ref()
            .map(|(identity, url)| (identity, url.as_deref()))
    }
}
