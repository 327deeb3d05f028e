//! Gates: the checks every record passes before berth runs anything in its directory.
//!
//! Architecture Invariant: gates live in the Rust core and no rule can switch them off.
//! A gate answers with the *resolved* value (the realpath), and every later operation uses
//! that value, so there is no window between checking a path and using it.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::hostile_file::ReadError;
use crate::pinned_dir::PinnedDir;
use crate::record::Record;

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

/// berth's detail of a refusal: what is wrong with a root, a repo's git dir or its files.
/// It follows the subject it is about (a path, a root, an allowlist entry).
#[derive(Debug, thiserror::Error)]
enum Detail {
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

/// A repo that passed the gate: every path is a realpath inside the allowlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatedRepo {
    pub path: PathBuf,
    pub git_dir: PathBuf,
    /// The repository's shared git dir: `git_dir` itself, or where a linked worktree's
    /// `commondir` leads. Two checkouts of one repository share it.
    pub common_dir: PathBuf,
    /// The directory the gate checked, held open: later steps start in it and re-check
    /// the path against it (a producer may swap the path for a symlink meanwhile).
    pub pin: Arc<PinnedDir>,
}

/// A git config file larger than this is not a repo's config; berth will not parse it.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Where a landing runs: the record's worktree if it passed the gate, else a scratch one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorktreeChoice {
    Use(PathBuf),
    Scratch { reason: String },
}

/// A record that passed every gate, with the resolved values later steps must use.
#[derive(Clone, Debug)]
pub struct GatedRecord {
    pub repo: GatedRepo,
    pub identity: String,
    pub origin_url: Option<String>,
    pub worktree: WorktreeChoice,
    /// The record's worktree held open, when [`WorktreeChoice::Use`].
    pub worktree_pin: Option<Arc<PinnedDir>>,
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

    /// The `.git` entry of `repo`: a directory, or a file `gitdir: <path>` (a linked
    /// worktree); the dir it leads to, and a `commondir` inside it, must be allowed too.
    fn gate_git_dir(&self, repo: &Path) -> Result<(PathBuf, PathBuf), Detail> {
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
        let origin = crate::identity::origin_url(&repo.path)
            .map_err(|e| refuse(Gate::RepoIdentity, raw, e.to_string()))
            .and_then(|origin_url| {
                let actual = crate::identity::repo_identity(&repo.path)
                    .map_err(|e| refuse(Gate::RepoIdentity, raw, e.to_string()))?;
                gate_identity(&actual)?;
                Ok((actual, origin_url))
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
            if !claimed.eq_ignore_ascii_case(&actual) {
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
            origin_url,
            worktree,
            worktree_pin,
        })
    }
}

/// A repo path that passed the repo-path gate, with its origin's identity (or why that
/// identity is refused).
#[derive(Clone, Debug)]
pub struct RepoGate {
    pub repo: GatedRepo,
    pub origin: Result<(String, Option<String>), GateError>,
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

/// DESIGN §5 branch gate: `[A-Za-z0-9._/-]+`, not starting with `-`, and a valid git
/// branch name (no `..`, `//`, `.lock` component, trailing `/` or `.`, leading `.`). The
/// reasons are gstack's (`featureBranch "<b>" contains characters outside the safe subset
/// …`, `… is not a valid git branch name`), then berth's detail.
pub fn gate_branch(gate: Gate, name: &str) -> Result<(), GateError> {
    let field = gate.field();
    if name.is_empty() {
        return Err(refuse(
            gate,
            name,
            format!("{field} is empty or not a string"),
        ));
    }
    let quoted = serde_json::Value::from(name).to_string();
    let unsafe_char = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-')));
    if unsafe_char.is_some() || name.starts_with('-') {
        let detail = match unsafe_char {
            Some(bad) => format!("character {bad:?} is not allowed"),
            None => "it starts with `-`".to_owned(),
        };
        return Err(refuse(
            gate,
            name,
            format!(
                "{field} {quoted} contains characters outside the safe subset [A-Za-z0-9._/-] (or starts with -): {detail}"
            ),
        ));
    }
    let invalid = |detail: &str| {
        Err(refuse(
            gate,
            name,
            format!("{field} {quoted} is not a valid git branch name: {detail}"),
        ))
    };
    if name.contains("..") || name.contains("//") {
        return invalid("it contains `..` or `//`");
    }
    if name.ends_with('/') || name.ends_with('.') {
        return invalid("it ends with `/` or `.`");
    }
    if name
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return invalid("a path component starts with `.` or ends with `.lock`");
    }
    if !git2::Reference::is_valid_name(&format!("refs/heads/{name}")) {
        return invalid("git refuses it as a ref name");
    }
    Ok(())
}

/// DESIGN §5 identity gate. berth computes identities as gstack does (see
/// [`crate::identity`]) and uses one only if it names one repository whatever the
/// directory it is read from:
/// - `host/path[/more]` of safe characters (GitHub's `host/owner/name`, nested groups, a
///   self-hosted `host/repo`); `gh --repo` needs exactly `host/owner/name`, which the gh
///   forge checks;
/// - a local remote: `/abs/path`, `file:/abs/path` (gstack's forms) or `path:/abs/path`
///   (no origin), absolute and without `.`/`..` components; a `file:` identity must not
///   hold a `%`: it is the URL's percent-encoding (`my%20repo`), not the directory's name.
///
/// A relative origin (`../widget.git`, `widget`) is refused: it would name a different
/// repository from every checkout.
pub fn gate_identity(identity: &str) -> Result<(), GateError> {
    let local = identity
        .strip_prefix("path:")
        .or_else(|| identity.strip_prefix("file:"))
        .or_else(|| identity.starts_with('/').then_some(identity));
    if let Some(path) = local {
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(refuse(
                Gate::RepoIdentity,
                identity,
                format!("repoIdentity {identity} is a local path that is not absolute"),
            ));
        }
        if p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
            || path.split('/').any(|s| s == "." || s == "..")
        {
            return Err(refuse(
                Gate::RepoIdentity,
                identity,
                format!("repoIdentity {identity} is a local path with `.` or `..` components"),
            ));
        }
        if identity.starts_with("file:") && path.contains('%') {
            return Err(refuse(
                Gate::RepoIdentity,
                identity,
                format!(
                    "repoIdentity {identity} holds percent-encoding from a file:// origin URL, so it does not name the directory; set origin to the plain path instead"
                ),
            ));
        }
        if path.chars().any(char::is_control) {
            return Err(refuse(
                Gate::RepoIdentity,
                identity,
                format!("repoIdentity {identity:?} holds control characters"),
            ));
        }
        return Ok(());
    }
    let segments: Vec<&str> = identity.split('/').collect();
    if segments.len() < 2 || matches!(segments[0], "." | "..") {
        return Err(refuse(
            Gate::RepoIdentity,
            identity,
            format!(
                "repoIdentity {identity} comes from a relative origin (expected host/owner/name, an absolute path or a file:// URL); a relative origin names a different repository from every checkout"
            ),
        ));
    }
    for segment in &segments {
        let safe = !segment.is_empty()
            && !segment.starts_with('-')
            && *segment != "."
            && *segment != ".."
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !safe {
            return Err(refuse(
                Gate::RepoIdentity,
                identity,
                format!(
                    "repoIdentity {identity} has segment {segment:?}, which is not of safe characters [A-Za-z0-9._-]"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_from_the_design_are_refused() {
        for bad in [
            "evil:refs/heads/main",
            "evil+force",
            "evil^",
            "evil~1",
            "--upload-pack=bad",
            "foo/../main",
            "a//b",
            "a.lock",
            "a/b.lock/c",
            "trailing/",
            "x@{1}",
            "tab\there",
            "nul\0",
            "",
            ".hidden",
            "a/.b",
            "-x",
            "dot.",
            "space here",
        ] {
            assert!(
                gate_branch(Gate::FeatureBranch, bad).is_err(),
                "{bad:?} passed"
            );
        }
        for good in ["main", "feat/x", "release/2.x", "user_a/fix-1.2", "v1.0.0"] {
            assert_eq!(gate_branch(Gate::BaseBranch, good), Ok(()), "{good}");
        }
    }

    #[test]
    fn identities() {
        for good in [
            "github.com/acme/widget",
            "gitlab.example.com/group/sub/repo",
            "path:/home/u/code/w",
            "/srv/git/widget",
            "file:/srv/git/widget",
            "/srv/git/my repo",
        ] {
            assert_eq!(gate_identity(good), Ok(()), "{good}");
        }
        for bad in [
            "github.com",
            "github.com/acme/../x",
            "github.com/-acme/x",
            "github.com/ac me/x",
            "github.com//x",
            "path:relative",
            "path:/a/../b",
            "github.com/acme/w;rm",
            "/srv/git/../x",
            "file:/srv/git/my%20repo",
            "../widget",
            "./relative/path/x",
            "widget",
            "https:",
            "github.com/acme/my%20repo",
        ] {
            assert!(gate_identity(bad).is_err(), "{bad:?} passed");
        }
        let why = |id: &str| gate_identity(id).unwrap_err().to_string();
        assert!(why("../widget").contains("relative origin"));
        assert!(why("file:/srv/git/my%20repo").contains("percent-encoding"));
        assert!(why("../widget").starts_with("repoIdentity rejected: "));
    }

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
