//! Gates: the checks every record passes before berth runs anything in its directory.
//!
//! Architecture Invariant: gates live in the Rust core and no rule can switch them off.
//! A gate answers with the *resolved* value (the realpath), and every later operation uses
//! that value, so there is no window between checking a path and using it.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::pinned_dir::PinnedDir;
use crate::record::Record;

mod detail;
mod gated;
mod git_dir;
mod names;

use detail::Detail;
pub use gated::{GatedRecord, GatedRepo, Identity, RepoGate, WorktreeChoice};
pub use names::{gate_branch, gate_identity};

/// The environment variable gstack uses for extra allowed repo roots (colon-separated).
pub const ALLOWLIST_ENV: &str = "GSTACK_DAEMON_REPO_ALLOWLIST";

/// Repo roots allowed under `$HOME` by default, as in gstack.
pub const DEFAULT_HOME_PREFIXES: [&str; 5] = [
    "Documents",
    ".gstack/build-worktrees",
    "code",
    "Development",
    "src",
];

/// Which gate refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    RepoPath,
    GitDir,
    FeatureBranch,
    BaseBranch,
    WorktreePath,
    RepoIdentity,
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Gate::RepoPath => "repo path",
            Gate::GitDir => "git dir",
            Gate::FeatureBranch => "feature branch",
            Gate::BaseBranch => "base branch",
            Gate::WorktreePath => "worktree path",
            Gate::RepoIdentity => "repo identity",
        })
    }
}

impl Gate {
    /// The record field the gate checks, as gstack names it in its texts.
    pub fn field(self) -> &'static str {
        match self {
            Gate::RepoPath | Gate::GitDir => "repoPath",
            Gate::FeatureBranch => "featureBranch",
            Gate::BaseBranch => "baseBranch",
            Gate::WorktreePath => "worktreePath",
            Gate::RepoIdentity => "repoIdentity",
        }
    }
}

/// A refusal: the gate, the value it refused and why. Its text becomes `lastError`, and
/// starts with gstack's wording where gstack has the gate (`repoPath outside daemon
/// allowlist: …`, `featureBranch rejected: …`; see [`crate::gstack_text`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", crate::gstack_text::gate_refusal(self.gate, &self.reason))]
pub struct GateError {
    pub gate: Gate,
    pub value: String,
    /// gstack's reason text (which names the value), then berth's detail.
    pub reason: String,
}

fn refuse(gate: Gate, value: &str, reason: impl Into<String>) -> GateError {
    GateError {
        gate,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// The roots under which a repo may live, each already a realpath.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    prefixes: Vec<PathBuf>,
}

impl Allowlist {
    /// Builds the allowlist from the defaults under `home`, the colon-separated `extra`
    /// entries (gstack's env var) and the configured project root. Returns the entries it
    /// refused, with why, so the caller can log them.
    pub fn build(
        home: Option<&Path>,
        extra: Option<&str>,
        project_root: Option<&Path>,
    ) -> (Allowlist, Vec<String>) {
        let mut list = Allowlist::default();
        let mut refused = Vec::new();
        if let Some(home) = home {
            for rel in DEFAULT_HOME_PREFIXES {
                // A default that does not exist can hold no repo; skip it quietly.
                if let Ok(real) = home.join(rel).canonicalize() {
                    list.push(real);
                }
            }
        }
        for entry in std::env::split_paths(extra.unwrap_or("")) {
            let entry = entry.to_string_lossy();
            let entry_trimmed = entry.trim();
            if entry_trimmed.is_empty() {
                if extra.is_some_and(|e| !e.is_empty()) {
                    refused.push(format!("{ALLOWLIST_ENV}: empty entry ignored"));
                }
                continue;
            }
            match resolve_root(Path::new(entry_trimmed)) {
                Ok(real) => list.push(real),
                Err(reason) => refused.push(format!(
                    "{ALLOWLIST_ENV}: entry {entry_trimmed:?} ignored: {reason}"
                )),
            }
        }
        if let Some(root) = project_root {
            // gstack drops a project root whose realpath fails (the env entries it keeps
            // as written): a root that does not exist adds nothing.
            let exists = root.try_exists().unwrap_or(false);
            match resolve_root(root)
                .and_then(|real| exists.then_some(real).ok_or(Detail::RootMissing))
            {
                Ok(real) => list.push(real),
                Err(reason) => {
                    refused.push(format!("project root {} ignored: {reason}", root.display()))
                }
            }
        }
        (list, refused)
    }

    /// The process's allowlist: `$HOME` defaults, `GSTACK_DAEMON_REPO_ALLOWLIST`, and the
    /// project root.
    pub fn from_env(project_root: Option<&Path>) -> (Allowlist, Vec<String>) {
        let extra = std::env::var(ALLOWLIST_ENV).ok();
        Allowlist::build(
            crate::paths::home_dir().as_deref(),
            extra.as_deref(),
            project_root,
        )
    }

    /// Adds configured roots (`allowed_roots`, `--allowed-root`, the config's `repos`),
    /// each resolved to its realpath; returns the refused ones with why, each named by
    /// `source`.
    pub fn extend<'p>(
        &mut self,
        source: &str,
        roots: impl IntoIterator<Item = &'p Path>,
    ) -> Vec<String> {
        let mut refused = Vec::new();
        for root in roots {
            match resolve_root(root) {
                Ok(real) => self.push(real),
                Err(reason) => refused.push(format!(
                    "{source}: entry {} ignored: {reason}",
                    root.display()
                )),
            }
        }
        refused
    }

    fn push(&mut self, real: PathBuf) {
        if !self.prefixes.contains(&real) {
            self.prefixes.push(real);
        }
    }

    pub fn prefixes(&self) -> &[PathBuf] {
        &self.prefixes
    }

    /// Whether a realpath sits under (or is) an allowed root; compares whole components.
    pub fn contains(&self, real: &Path) -> bool {
        self.prefixes.iter().any(|p| real.starts_with(p))
    }

    fn describe(&self) -> String {
        if self.prefixes.is_empty() {
            return format!(
                "the allowlist is empty: set allowed_roots in the config, --allowed-root, {ALLOWLIST_ENV} or --project-root"
            );
        }
        let list: Vec<String> = self
            .prefixes
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!("allowed roots: {}", list.join(", "))
    }

    /// DESIGN §5 repo-path gate: non-empty, absolute, no `..`, exists, a directory, its
    /// realpath under an allowed root, a `.git` dir or file whose git dir passes too.
    pub fn gate_repo_path(&self, raw: &str) -> Result<GatedRepo, GateError> {
        self.gate_dir_with_git(Gate::RepoPath, raw)
    }

    fn gate_dir_with_git(&self, gate: Gate, raw: &str) -> Result<GatedRepo, GateError> {
        let field = gate.field();
        if raw.trim().is_empty() {
            return Err(refuse(
                gate,
                raw,
                format!("{field} is empty or not a string"),
            ));
        }
        let lexical = Path::new(raw);
        if !lexical.is_absolute() {
            return Err(refuse(gate, raw, format!("{field} is not absolute: {raw}")));
        }
        if lexical.components().any(|c| c == Component::ParentDir) {
            return Err(refuse(gate, raw, format!("{field} {raw} contains `..`")));
        }
        let real = lexical.canonicalize().map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                "does not exist"
            } else {
                "realpath failed"
            };
            refuse(gate, raw, format!("{field} {raw} {why}: {e}"))
        })?;
        if !real.is_dir() {
            return Err(refuse(
                gate,
                raw,
                format!("{field} {raw} is not a directory"),
            ));
        }
        let pin = PinnedDir::open(&real).map_err(|why| refuse(gate, raw, why.to_string()))?;
        let shown = format!("{field} {raw} (realpath {})", real.display());
        if real == Path::new("/") || !self.contains(&real) {
            return Err(refuse(
                gate,
                raw,
                format!(
                    "{shown} is outside the daemon allowlist (set {ALLOWLIST_ENV} to extend); {}",
                    self.describe()
                ),
            ));
        }
        let (git_dir, common_dir) = self
            .gate_git_dir(&real)
            .map_err(|reason| refuse(gate, raw, format!("{shown} {reason}")))?;
        Ok(GatedRepo {
            path: real,
            git_dir,
            common_dir,
            pin: Arc::new(pin),
        })
    }

    /// DESIGN §5 worktree gate: the record's worktree is used only if it passes the same
    /// gate as a repo path **and** is a checkout of the same repository (same common git
    /// dir); otherwise the landing gets a private scratch worktree. With `Use`, the
    /// worktree held open.
    pub fn choose_worktree(
        &self,
        raw: &str,
        repo: &GatedRepo,
    ) -> (WorktreeChoice, Option<Arc<PinnedDir>>) {
        match self.gate_dir_with_git(Gate::WorktreePath, raw) {
            Ok(gated) if gated.common_dir == repo.common_dir => {
                (WorktreeChoice::Use(gated.path), Some(gated.pin))
            }
            Ok(gated) => (
                WorktreeChoice::Scratch {
                    reason: refuse(
                        Gate::WorktreePath,
                        raw,
                        format!(
                            "worktreePath {raw} is a checkout of another repository ({}), not of {}",
                            gated.common_dir.display(),
                            repo.path.display()
                        ),
                    )
                    .to_string(),
                },
                None,
            ),
            Err(e) => (
                WorktreeChoice::Scratch {
                    reason: e.to_string(),
                },
                None,
            ),
        }
    }

    /// Every gate of DESIGN §5 for one record, in order; the first refusal wins.
    pub fn gate_record(&self, record: &Record) -> Result<GatedRecord, GateError> {
        self.gate_record_in(record, &self.gate_repo(&record.repo_path)?)
    }

    /// The part of [`Allowlist::gate_record`] that depends only on the repo path (the
    /// repo-path gate, `origin`'s URL and identity): the same for every record of one repo,
    /// so a tick computes it once per distinct path and finishes each record with
    /// [`Allowlist::gate_record_in`].
    pub fn gate_repo(&self, raw: &str) -> Result<RepoGate, GateError> {
        let repo = self.gate_repo_path(raw)?;
        // The identity is the URL's, from the one read: read apart, a config rewritten
        // between the reads would gate a record under one repo's identity (its lane, its
        // lock) while berth fetches from and locks on another's URL.
        let origin = crate::identity::origin_url(&repo.path)
            .map_err(|e| refuse(Gate::RepoIdentity, raw, e.to_string()))
            .and_then(|origin_url| {
                let actual = crate::identity::identity_of(&repo.path, origin_url.as_deref());
                gate_identity(&actual)?;
                Ok((Identity::gated(actual), origin_url))
            });
        Ok(RepoGate { repo, origin })
    }

    /// The rest of the gates for `record` in a repo that passed [`Allowlist::gate_repo`]
    /// (the record's `repoPath` must be the path `repo` was gated from).
    pub fn gate_record_in(
        &self,
        record: &Record,
        repo: &RepoGate,
    ) -> Result<GatedRecord, GateError> {
        gate_branch(Gate::FeatureBranch, &record.feature_branch)?;
        gate_branch(Gate::BaseBranch, &record.base_branch)?;
        let (actual, origin_url) = repo.origin.clone()?;
        let repo = &repo.repo;
        if let Some(claimed) = &record.repo_identity {
            gate_identity(claimed)?;
            if !claimed.eq_ignore_ascii_case(actual.as_str()) {
                return Err(refuse(
                    Gate::RepoIdentity,
                    claimed,
                    format!(
                        "the repo at {} has origin identity {actual}; a record may not claim another repo's lane",
                        repo.path.display()
                    ),
                ));
            }
        }
        let (worktree, worktree_pin) = self.choose_worktree(&record.worktree_path, repo);
        Ok(GatedRecord {
            repo: repo.clone(),
            identity: actual,
            base_branch: record.base_branch.clone(),
            origin_url,
            worktree,
            worktree_pin,
        })
    }
}

/// A root must be absolute and must not resolve to `/` (which would allow everything).
fn resolve_root(root: &Path) -> Result<PathBuf, Detail> {
    if !root.is_absolute() {
        return Err(Detail::RelativeRoot);
    }
    // A root that does not exist yet is kept as written: only a realpath equal to it (no
    // symlinks on the way) can match it later.
    let real = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    if real == Path::new("/") {
        return Err(Detail::RootIsSlash);
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_refuses_root_empty_and_relative_entries() {
        let (list, refused) =
            Allowlist::build(None, Some("/:relative::/tmp/.."), Some(Path::new("/")));
        assert!(list.prefixes().is_empty(), "{:?}", list.prefixes());
        assert_eq!(refused.len(), 5, "{refused:?}");
        assert!(refused.iter().any(|r| r.contains("empty entry")));
        assert!(refused.iter().any(|r| r.contains("project root / ignored")));
    }

    #[test]
    fn a_project_root_that_does_not_exist_adds_no_allowed_root() {
        let (list, refused) =
            Allowlist::build(None, None, Some(Path::new("/nonexistent/berth/project")));
        assert!(list.prefixes().is_empty(), "{:?}", list.prefixes());
        assert_eq!(
            refused,
            ["project root /nonexistent/berth/project ignored: it does not exist"]
        );
    }
}
