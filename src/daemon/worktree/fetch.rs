//! The landing's fetch of the feature branch into the gated repo, and the claim check's
//! look at whether origin still has it.

use std::path::Path;

use git2::{Oid, Repository};

use super::{WorktreeError, open_repo};
use crate::daemon::Candidate;

/// The feature branch is not on origin: the landing blocks, its `lastError` in gstack's
/// words (test 65), naming the branch.
#[derive(Debug, thiserror::Error)]
#[error("{}: the feature branch is not on origin ({origin}); nothing to land", crate::gstack_text::remote_ref_missing(.branch))]
pub struct BranchGone {
    branch: String,
    /// origin's URL, redacted.
    origin: String,
}

/// `git fetch origin +refs/heads/<feature>:refs/remotes/origin/<feature>` into the repo,
/// from the origin URL the gate read; the fetched head. When origin has no such branch and
/// the forge publishes PR heads on origin (`pr_head`: GitHub's `refs/pull/<N>/head`, a
/// fork's PR), that ref is fetched into the same tracking ref instead, where landing
/// commands look for the feature head. [`BranchGone`] when neither is on origin: a
/// tracking ref left by an earlier fetch is never landed. The repo, as opened for the
/// fetch, and the fetched head.
pub(super) fn fetch_feature(
    c: &Candidate,
    repo_path: &Path,
    feature: &str,
    pr_head: Option<String>,
) -> Result<(Repository, Oid), WorktreeError> {
    let (repo, url) = open_with_origin(c, repo_path)?;
    let tracking = format!("refs/remotes/origin/{feature}");
    let branch_ref = format!("refs/heads/{feature}");
    let mut wanted = vec![branch_ref.as_str()];
    wanted.extend(pr_head.as_deref());
    let fetched =
        crate::lane_lock::fetch_advertised(&repo, url, &wanted, &tracking).map_err(|e| {
            WorktreeError::Fetch {
                remote_ref: wanted.join(" or "),
                origin: crate::lane_lock::redact(url),
                message: e.message().to_owned(),
            }
        })?;
    let Some((fetched_ref, advertised)) = fetched else {
        return Err(BranchGone {
            branch: feature.to_owned(),
            origin: crate::lane_lock::redact(url),
        }
        .into());
    };
    if fetched_ref != branch_ref {
        tracing::info!(record = %c.id, "feature branch {feature} is not on origin (a fork's PR): landing its head from {fetched_ref}");
    }
    let Ok(head) = repo.refname_to_id(&tracking) else {
        return Err(WorktreeError::NotFetched {
            feature: feature.to_owned(),
            tracking,
        });
    };
    if head != advertised {
        return Err(WorktreeError::MovedDuringFetch {
            feature: feature.to_owned(),
            advertised,
            head,
        });
    }
    Ok((repo, head))
}

/// Whether origin has the feature branch (`git ls-remote`): what the claim check asks
/// when GitHub reports the PR closed, which is also what GitHub does to a PR whose head
/// branch was deleted. Blocking.
pub fn feature_on_origin(c: &Candidate) -> Result<bool, WorktreeError> {
    let (repo, url) = open_with_origin(c, c.gated.repo().path())?;
    let head_ref = format!("refs/heads/{}", c.record.feature_branch);
    let found = crate::lane_lock::advertised(&repo, url, &head_ref).map_err(|e| {
        WorktreeError::ListOrigin {
            origin: crate::lane_lock::redact(url),
            message: e.message().to_owned(),
        }
    })?;
    Ok(found.is_some())
}

/// The gated repo, opened after checking it still is the one the gate saw, and the origin
/// URL the gate read.
fn open_with_origin<'c>(
    c: &'c Candidate,
    repo_path: &Path,
) -> Result<(Repository, &'c str), WorktreeError> {
    let url = c
        .gated
        .origin_url()
        .ok_or_else(|| WorktreeError::NoOrigin(repo_path.to_owned()))?;
    c.gated.repo().pin().verify()?;
    Ok((open_repo(repo_path)?, url))
}
