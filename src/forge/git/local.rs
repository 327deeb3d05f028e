//! The git forge's look at a local origin (a path or a `file://` URL): origin's two refs
//! read where they are, and the ancestry checked in origin's own object database.
//!
//! A fetch from a local origin lists every ref of origin (each read from its file) and
//! packs what it sends by walking the trees of everything the receiving repository
//! already has: for two yes/no questions per landing, a cost that grew with origin's refs
//! and with berth's own history. Nothing here writes to origin; it is opened as libgit2's
//! local transport would open it. The feature head last seen is still remembered: a ref in
//! a repository of its own ([`LOCAL_SEEN`]), which reads origin's objects while it writes
//! it (libgit2 creates a ref only to an object it can find), so the network path's scratch
//! repository never holds a ref to an object it lacks.

use std::path::Path;

use git2::{ErrorCode, Oid, Repository, RepositoryOpenFlags};

use super::{GitForge, Observation, seen_ref};
use crate::forge::{ForgeError, ForgeRepo, PrRef, PrState, Subject};

/// The name of the repository (beside the network path's scratch repository) that holds
/// the feature heads last seen on local origins.
pub(super) const LOCAL_SEEN: &str = "forge-local-seen.git";

/// What `origin_dir` says about `pr`, read in place.
pub(super) fn observe(
    forge: &GitForge,
    repo: &ForgeRepo,
    pr: &PrRef<'_>,
    origin_dir: &Path,
) -> Result<Observation, ForgeError> {
    let subject = Subject::pr(repo, pr.number);
    let git_err = |op: &'static str, source: git2::Error| ForgeError::Git {
        subject: subject.clone(),
        op,
        source,
    };
    let origin = Repository::open_ext(origin_dir, RepositoryOpenFlags::NO_SEARCH, [] as [&str; 0])
        .map_err(|e| git_err("open origin", e))?;
    let read = |name: &str| match origin.refname_to_id(name) {
        Ok(id) => Ok(Some(id)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(git_err("read origin's refs", e)),
    };
    let feature = read(&format!("refs/heads/{}", pr.feature_branch))?;
    let Some(base) = read(&format!("refs/heads/{}", pr.base_branch))? else {
        return Err(ForgeError::MissingBase {
            subject,
            branch: pr.base_branch.to_owned(),
        });
    };
    let seen_repo = forge.repository(&forge.local_seen_dir(), &subject)?;
    seen_repo
        .set_odb(
            &origin
                .odb()
                .map_err(|e| git_err("read origin's objects", e))?,
        )
        .map_err(|e| git_err("read origin's objects", e))?;
    let seen = seen_ref(&repo.identity, pr.feature_branch);
    let candidate = match feature {
        Some(head) => {
            remember(&seen_repo, &seen, head, repo, pr);
            Some(head)
        }
        None => seen_repo.refname_to_id(&seen).ok(),
    };
    let merged = match candidate {
        Some(head) => reachable(&origin, base, head).map_err(|e| git_err("check ancestry", e))?,
        None => false,
    };
    Ok(Observation {
        state: match (merged, feature.is_some()) {
            (true, _) => PrState::Merged,
            (false, true) => PrState::Open,
            (false, false) => PrState::Closed,
        },
        base_head: base,
        feature_present: feature.is_some(),
    })
}

/// Keeps `head` as the feature head last seen (unless it already is).
fn remember(seen_repo: &Repository, seen: &str, head: Oid, repo: &ForgeRepo, pr: &PrRef<'_>) {
    if seen_repo.refname_to_id(seen).ok() == Some(head) {
        return;
    }
    if let Err(e) = seen_repo.reference(seen, head, true, "berth: feature head seen") {
        tracing::warn!(repo = %repo.identity, pr = pr.number, error = %e,
            "could not remember the feature head; a later branch deletion may read as closed");
    }
}

/// Whether `head` is `base` or one of its ancestors. A head origin no longer has (pruned
/// after its branch was deleted unmerged) is not.
fn reachable(origin: &Repository, base: Oid, head: Oid) -> Result<bool, git2::Error> {
    if head == base {
        return Ok(true);
    }
    match origin.graph_descendant_of(base, head) {
        Err(e) if e.code() == ErrorCode::NotFound => Ok(false),
        answer => answer,
    }
}
