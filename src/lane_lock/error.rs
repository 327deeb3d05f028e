//! Everything a lock operation can fail with.

use super::*;

/// Everything that can go wrong; each message names the ref (and lane) and what to do.
/// URLs in messages have any password or token replaced by `***`.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("lane lock settings {settings:?} are invalid: {problem}")]
    InvalidSettings {
        settings: LockSettings,
        problem: &'static str,
    },
    #[error(
        "{ref_name:?} is not a usable lane lock ref: {problem}; check the repo identity and base branch (or the ref given to force-release)"
    )]
    InvalidRef {
        ref_name: String,
        problem: &'static str,
    },
    #[error(
        "{sha:?} is not a full 40-hex commit id; pass the sha exactly as the lock listing shows it"
    )]
    InvalidSha { sha: String },
    #[error(
        "lane lock scratch dir {}: {source}; berth needs a private directory it can write in its state dir",
        path.display()
    )]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `what` is gstack's words for it where gstack has them.
    #[error(
        "{what} for {ref_name}: {source}; this is a local libgit2 problem, check berth's state dir"
    )]
    LocalGit {
        what: &'static str,
        ref_name: String,
        #[source]
        source: git2::Error,
    },
    #[error(
        "{op} of lane lock {ref_name} on {url} failed: {source}; the lock state is unknown and nothing was assumed: skip the lane and retry later, and check the network and credentials if it persists"
    )]
    Remote {
        op: &'static str,
        ref_name: String,
        url: String,
        #[source]
        source: git2::Error,
    },
    #[error(
        "{url} rejected the {op} of lane lock {ref_name}: {status}; the lock was not updated (it stays valid until its expiresAt), retry on the next heartbeat"
    )]
    Rejected {
        op: &'static str,
        ref_name: String,
        url: String,
        status: String,
    },
    /// A local origin's write whose path changed under it ([`super::trail`]).
    #[error(
        "the {op} of lane lock {ref_name} on {url} did not reach the origin: {reason}; none of it counts: the lane is not taken, a held lock counts as lost, and nothing is retried through that path"
    )]
    Redirected {
        op: &'static str,
        ref_name: String,
        url: String,
        reason: String,
    },
    #[error(
        "lane lock {ref_name} on {url} is no longer ours: it now {}; stop the landing, another daemon or an operator took the lane",
        now_sha.as_deref().map_or_else(|| "does not exist".to_owned(), |sha| format!("points at {sha}"))
    )]
    Stolen {
        ref_name: String,
        url: String,
        now_sha: Option<String>,
    },
    #[error(
        "lane lock {ref_name} on {url} was not refreshed for longer than its TTL ({ttl:?}): ownership is lost; stop the landing and release the lock"
    )]
    Lost {
        ref_name: String,
        url: String,
        ttl: Duration,
    },
    /// `why` is gstack's words for the last failed step (`lock already held`, `stale lock
    /// steal failed`), or says which operation it was.
    #[error(
        "{why}: lane lock {ref_name} on {url}: {op} did not settle in {attempts} attempts (last: {last}); the ref kept changing or the remote kept refusing the update: skip the lane this tick, and if it persists check push rights to refs/gstack/release-locks/"
    )]
    Contended {
        why: &'static str,
        op: &'static str,
        ref_name: String,
        url: String,
        attempts: u32,
        last: String,
    },
}
