//! [`GitForge`]: a forge for remotes with no GitHub, answered from plain branches.
//!
//! A "PR" is its feature branch on `origin`; it is merged once the feature head is reachable
//! from (or equal to) the base branch head. Everything runs in-process with libgit2 against
//! a private scratch bare repo: the queued repo is never opened, so its config (hooks,
//! `core.fsmonitor`, `credential.helper`, `url.*.insteadOf`) plays no part, and credentials
//! come only from ssh-agent or the user's own git config (crate-notes.md).
//!
//! Limits worth knowing: there are no labels or markers (the local record is the only queue
//! signal, so [`PrCheck::labelled`] is always true and the marker is
//! [`MarkerCheck::NotApplicable`]); squash and rebase merges rewrite the commits and are not
//! recognised as merged; a feature branch with no commits of its own counts as merged.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use git2::{AutotagOption, Cred, CredentialType, Direction, FetchOptions, Oid, RemoteCallbacks};
use sha2::{Digest, Sha256};

use super::{
    Forge, ForgeError, ForgeKind, ForgeRepo, MarkerCheck, MergeProof, PrCheck, PrRef, PrState,
    QueuedPr, Subject, is_safe_branch,
};

/// Default wall-clock budget for one question (connect, list, fetch).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// libgit2's process-wide socket timeouts when nothing chose others first (the daemon's
/// lane lock chooses its `remote_timeout`): connect, and each read/write. They bound a
/// stalled server; [`DEFAULT_TIMEOUT`] (checked from progress callbacks) bounds a slow one.
const SOCKET_TIMEOUTS: crate::git_timeouts::Timeouts = crate::git_timeouts::Timeouts {
    connect: Duration::from_secs(30),
    io: Duration::from_secs(60),
};
/// Give up on authentication after this many offers, instead of libgit2's endless retry.
const MAX_AUTH_ATTEMPTS: u32 = 3;

mod local;

/// The git-branches forge.
#[derive(Debug)]
pub struct GitForge {
    scratch_dir: PathBuf,
    timeout: Duration,
    /// Serialises creating the scratch repo within this process.
    init: Mutex<()>,
}

/// What origin says about one feature/base pair.
struct Observation {
    state: PrState,
    base_head: Oid,
    /// Whether origin has the feature branch now.
    feature_present: bool,
}

impl GitForge {
    /// `scratch_dir` is berth's private bare repo for fetched objects (created on demand, mode
    /// 0700).
    pub fn new(scratch_dir: impl Into<PathBuf>) -> Self {
        Self {
            scratch_dir: scratch_dir.into(),
            timeout: DEFAULT_TIMEOUT,
            init: Mutex::new(()),
        }
    }

    /// Wall-clock budget for one question.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The network path's scratch repository, where fetched objects are kept.
    fn scratch(&self, subject: &Subject) -> Result<git2::Repository, ForgeError> {
        self.repository(&self.scratch_dir, subject)
    }

    /// Where the feature heads last seen on local origins are kept ([`local`]).
    fn local_seen_dir(&self) -> PathBuf {
        self.scratch_dir.with_file_name(local::LOCAL_SEEN)
    }

    /// The private bare repository at `dir` (created 0700 on demand).
    fn repository(
        &self,
        dir: &std::path::Path,
        subject: &Subject,
    ) -> Result<git2::Repository, ForgeError> {
        let scratch_err = |source| ForgeError::Scratch {
            subject: subject.clone(),
            path: dir.to_owned(),
            source,
        };
        // A poisoned lock only means another thread panicked mid-init; init is idempotent.
        let _guard = self
            .init
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(scratch_err)?;
        let meta = std::fs::metadata(dir).map_err(scratch_err)?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(scratch_err)?;
        }
        git2::Repository::open_bare(dir)
            .or_else(|_| git2::Repository::init_bare(dir))
            .map_err(|source| ForgeError::Git {
                subject: subject.clone(),
                op: "open the scratch repository",
                source,
            })
    }

    /// [`GitForge::observe_once`], again when a ref of origin vanished while it was listed
    /// (a lane lock released at that moment by another lane of the repo).
    fn observe(&self, repo: &ForgeRepo, pr: &PrRef<'_>) -> Result<Observation, ForgeError> {
        let mut attempt = 1;
        loop {
            match self.observe_once(repo, pr) {
                Err(ForgeError::Git { source, .. })
                    if attempt < crate::lane_lock::LIST_ATTEMPTS
                        && crate::lane_lock::ref_vanished(&source) =>
                {
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    /// Lists origin's heads once, fetches the two branches' objects into the scratch repo and
    /// decides the state from that single snapshot; a local origin is read in place
    /// ([`local`]).
    fn observe_once(&self, repo: &ForgeRepo, pr: &PrRef<'_>) -> Result<Observation, ForgeError> {
        let subject = Subject::pr(repo, pr.number);
        for (what, branch) in [("feature", pr.feature_branch), ("base", pr.base_branch)] {
            if !is_safe_branch(branch) {
                return Err(ForgeError::BadBranch {
                    subject,
                    what,
                    branch: branch.to_owned(),
                });
            }
        }
        match crate::lane_lock::local_origin(&repo.origin_url) {
            Some(Ok(dir)) => return local::observe(self, repo, pr, &dir),
            Some(Err(source)) => {
                return Err(ForgeError::Git {
                    subject,
                    op: "use origin's URL",
                    source,
                });
            }
            None => {}
        }
        let feature_ref = format!("refs/heads/{}", pr.feature_branch);
        let base_ref = format!("refs/heads/{}", pr.base_branch);
        let deadline = Instant::now() + self.timeout;
        let git_err = |op: &'static str, source: git2::Error| {
            if Instant::now() >= deadline {
                ForgeError::Timeout {
                    subject: subject.clone(),
                    command: format!("git fetch {feature_ref} {base_ref} from origin"),
                    after: self.timeout,
                }
            } else {
                ForgeError::Git {
                    subject: subject.clone(),
                    op,
                    source,
                }
            }
        };

        let scratch = self.scratch(&subject)?;
        // libgit2 fetches into one repo contend on its lock files (`shallow.lock`, ref
        // locks) and fail rather than wait: one question at a time per scratch repo, across
        // threads and processes.
        let lock_path = self.scratch_dir.join("berth-fetch.lock");
        let _one_at_a_time = crate::atomic_file::lock_exclusive(&lock_path).map_err(|source| {
            ForgeError::Scratch {
                subject: subject.clone(),
                path: lock_path.clone(),
                source,
            }
        })?;
        crate::git_timeouts::before_network_io(SOCKET_TIMEOUTS);
        let mut remote = scratch
            .remote_anonymous(&repo.origin_url)
            .map_err(|e| git_err("use origin's URL", e))?;
        let mut conn = remote
            .connect_auth(Direction::Fetch, Some(callbacks(deadline)), None)
            .map_err(|e| git_err("connect to origin", e))?;
        let (mut feature, mut base) = (None, None);
        for head in conn.list().map_err(|e| git_err("list origin's refs", e))? {
            if head.name() == feature_ref {
                feature = Some(head.oid());
            } else if head.name() == base_ref {
                base = Some(head.oid());
            }
        }
        let Some(base) = base else {
            return Err(ForgeError::MissingBase {
                subject,
                branch: pr.base_branch.to_owned(),
            });
        };
        let mut specs = vec![base_ref.clone()];
        if feature.is_some() {
            specs.push(feature_ref.clone());
        }
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks(deadline))
            .download_tags(AutotagOption::None)
            .update_fetchhead(false);
        conn.remote()
            .download(&specs, Some(&mut opts))
            .map_err(|e| git_err("fetch from origin", e))?;
        drop(conn);

        // The feature head last seen on origin, kept so that "merged, then the branch was
        // deleted" (the usual end of a PR) still proves merged instead of reading as closed.
        let seen = seen_ref(&repo.identity, pr.feature_branch);
        let candidate = match feature {
            Some(oid) => {
                if let Err(e) = scratch.reference(&seen, oid, true, "berth: feature head seen") {
                    tracing::warn!(repo = %repo.identity, pr = pr.number, error = %e,
                        "could not remember the feature head; a later branch deletion may read as closed");
                }
                Some(oid)
            }
            None => scratch.refname_to_id(&seen).ok(),
        };
        let merged = match candidate {
            Some(head) => {
                head == base
                    || scratch
                        .graph_descendant_of(base, head)
                        .map_err(|e| git_err("check ancestry", e))?
            }
            None => false,
        };
        let state = match (merged, feature.is_some()) {
            (true, _) => PrState::Merged,
            (false, true) => PrState::Open,
            (false, false) => PrState::Closed,
        };
        Ok(Observation {
            state,
            base_head: base,
            feature_present: feature.is_some(),
        })
    }
}

impl Forge for GitForge {
    fn kind(&self) -> ForgeKind {
        ForgeKind::Git
    }

    /// Opens (making it if need be) the repository the first question about `repo`
    /// opens: the one remembering feature heads for a local origin, the fetch scratch
    /// repository for a network one.
    fn warm_up(&self, repo: &ForgeRepo) {
        let subject = Subject::repo(repo);
        let opened = match crate::lane_lock::local_origin(&repo.origin_url) {
            Some(_) => self.repository(&self.local_seen_dir(), &subject),
            None => self.scratch(&subject),
        };
        if let Err(e) = opened {
            tracing::debug!("forge warm-up: {e}");
        }
    }

    /// Always empty: plain git has no PR listing, so discovery is local records only.
    fn list_queued(&self, _repo: &ForgeRepo) -> Result<Vec<QueuedPr>, ForgeError> {
        Ok(Vec::new())
    }

    /// Open while the feature branch exists on origin and is not merged; merged once it is
    /// reachable from the base; closed when it is gone unmerged. Head and base are the
    /// record's own (a branch *is* the PR here).
    fn check_pr(&self, repo: &ForgeRepo, pr: &PrRef<'_>) -> Result<PrCheck, ForgeError> {
        let seen = self.observe(repo, pr)?;
        Ok(PrCheck {
            number: pr.number,
            state: seen.state,
            labelled: true,
            marker: MarkerCheck::NotApplicable,
            head_branch: pr.feature_branch.to_owned(),
            base_branch: pr.base_branch.to_owned(),
            head_on_origin: Some(seen.feature_present),
            seen_on: "origin",
        })
    }

    /// Merged ⇔ the feature head is reachable from origin's base head, which is reported as
    /// the merge commit. There is no merge time in plain git.
    fn merge_proof(&self, repo: &ForgeRepo, pr: &PrRef<'_>) -> Result<MergeProof, ForgeError> {
        let seen = self.observe(repo, pr)?;
        let merged = seen.state == PrState::Merged;
        Ok(MergeProof {
            merged,
            state: seen.state,
            merged_at: None,
            merge_commit: merged.then(|| seen.base_head.to_string()),
        })
    }
}

/// `refs/berth/seen/<sha256(identity NUL branch)>`: one fixed-length component, so branch
/// names like `a` and `a/b` cannot collide as files and directories.
fn seen_ref(identity: &str, feature_branch: &str) -> String {
    let mut h = Sha256::new();
    h.update(identity.as_bytes());
    h.update([0]);
    h.update(feature_branch.as_bytes());
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("refs/berth/seen/{hex}")
}

/// Credentials from ssh-agent or the user's own git config only, a bounded number of tries,
/// and a wall-clock deadline enforced from the progress callbacks.
fn callbacks(deadline: Instant) -> RemoteCallbacks<'static> {
    let mut cb = RemoteCallbacks::new();
    let mut attempts = 0;
    cb.credentials(move |url, username, allowed| {
        attempts += 1;
        if attempts > MAX_AUTH_ATTEMPTS {
            return Err(git2::Error::from_str(
                "authentication failed: no accepted credential from ssh-agent or the user's git config",
            ));
        }
        let user = username.unwrap_or("git");
        if allowed.contains(CredentialType::SSH_KEY) {
            Cred::ssh_key_from_agent(user)
        } else if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            // The user's/system config, never the queued repo's: its credential.helper is a
            // program of the repo author's choosing.
            Cred::credential_helper(&git2::Config::open_default()?, url, username)
        } else if allowed.contains(CredentialType::USERNAME) {
            Cred::username(user)
        } else {
            Cred::default()
        }
    });
    cb.transfer_progress(move |_| Instant::now() < deadline);
    cb.sideband_progress(move |_| Instant::now() < deadline);
    cb
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostile_file::fifo_race::{answer_stuck_opens, fifo_included_by_config};

    #[test]
    fn seen_refs_are_fixed_length_and_distinct() {
        let a = seen_ref("github.com/acme/widget", "a");
        let ab = seen_ref("github.com/acme/widget", "a/b");
        let other = seen_ref("github.com/acme/other", "a");
        assert_ne!(a, ab);
        assert_ne!(a, other);
        assert_eq!(a.len(), "refs/berth/seen/".len() + 64);
        assert!(git2::Reference::is_valid_name(&a));
    }

    /// PR #1, `feature` into `main`.
    const PR_1: PrRef<'static> = PrRef {
        number: 1,
        feature_branch: "feature",
        base_branch: "main",
    };

    /// A git forge (its scratch in `dir`) whose accesses to an origin may take 2 s, and
    /// the local origin at `bare` as its repository.
    fn forge_within_2_s(dir: &std::path::Path, bare: &std::path::Path) -> (GitForge, ForgeRepo) {
        let forge = GitForge::new(dir.join("scratch.git")).with_timeout(Duration::from_secs(2));
        (
            forge,
            ForgeRepo::new("path:/origin", bare.to_str().unwrap()),
        )
    }

    /// A local origin that does not answer (a FIFO where a loose ref is, as one planted
    /// after the lock's look, or a hung mount) fails the claim check within the forge's
    /// own budget, as every other in-process access to a local origin does.
    #[test]
    fn a_local_origin_that_does_not_answer_fails_the_claim_check_within_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("origin.git");
        let origin = git2::Repository::init_bare(&bare).unwrap();
        let tree = origin.treebuilder(None).unwrap().write().unwrap();
        let tree = origin.find_tree(tree).unwrap();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        origin
            .commit(Some("refs/heads/main"), &sig, &sig, "base", &tree, &[])
            .unwrap();
        let fifo = bare.join("refs/heads/feature");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (forge, repo) = forge_within_2_s(dir.path(), &bare);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(format!("{:?}", forge.check_pr(&repo, &PR_1)));
        });
        let answer = rx.recv_timeout(Duration::from_secs(60));
        // Let a stuck open return.
        let _ = answer_stuck_opens(&fifo);
        let answer = answer.expect("the claim check on a local origin never returned");
        assert!(answer.contains("Err"), "{answer}");
    }

    /// A FIFO the look cannot see (the file origin's config includes) hangs libgit2's open
    /// of a local origin: the merge proof fails as timed out within the forge's budget
    /// (never "merged"), and the next question is refused at once while that read is stuck.
    #[test]
    fn a_local_origin_hung_past_the_look_times_the_merge_proof_out() {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("origin.git");
        git2::Repository::init_bare(&bare).unwrap();
        let included = fifo_included_by_config(&bare);
        let (forge, repo) = forge_within_2_s(dir.path(), &bare);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(
                forge
                    .merge_proof(&repo, &PR_1)
                    .map(|p| p.merged)
                    .map_err(|e| e.to_string()),
            );
            let _ = tx.send(
                forge
                    .check_pr(&repo, &PR_1)
                    .map(|_| false)
                    .map_err(|e| e.to_string()),
            );
        });
        let first = rx.recv_timeout(Duration::from_secs(60));
        let second = rx.recv_timeout(Duration::from_secs(60));
        let _ = answer_stuck_opens(&included);
        let first = first.expect("the merge proof on a hung local origin never returned");
        let first = first.expect_err("a merge proof read from a hung origin");
        assert!(first.contains("did not answer within 2 s"), "{first}");
        let second = second.expect("the claim check on a hung local origin never returned");
        let second = second.expect_err("a claim check on a hung origin");
        assert!(second.contains("has not returned"), "{second}");
        // A thread cannot be killed, and the second question waited for nothing.
        assert!(first.contains("abandoned"), "{first}");
        for said in [&first, &second] {
            assert!(
                !said.contains("killed and") && !said.contains("was killed"),
                "{said}"
            );
            assert!(!said.contains("timed out after"), "{said}");
        }
    }
}
