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

use git2::{ErrorCode, Oid, Repository};

use super::{GitForge, Observation, seen_ref};
use crate::forge::{ForgeError, ForgeRepo, PrRef, PrState, Subject};
use crate::lane_lock::Overdue;

/// The name of the repository (beside the network path's scratch repository) that holds
/// the feature heads last seen on local origins.
pub(super) const LOCAL_SEEN: &str = "forge-local-seen.git";

/// What `origin_dir` says about `pr`, read in place on a thread of its own within the
/// forge's timeout: libgit2's reads of a local origin block with no timeout of their own (a
/// FIFO at a ref, a hung mount), so past it the question fails as timed out and the
/// origin is read no more until that read returns ([`crate::lane_lock::run_on_local_origin`]).
pub(super) fn observe(
    forge: &GitForge,
    repo: &ForgeRepo,
    pr: &PrRef<'_>,
    origin_dir: &Path,
) -> Result<Observation, ForgeError> {
    let subject = Subject::pr(repo, pr.number);
    // Berth's own repository, opened here: only the origin is read on the thread.
    let seen_repo = forge.repository(&forge.local_seen_dir(), &subject)?;
    let question = Question {
        subject: subject.clone(),
        identity: repo.identity.clone(),
        feature_branch: pr.feature_branch.to_owned(),
        base_branch: pr.base_branch.to_owned(),
    };
    let dir = origin_dir.to_owned();
    let read = move || {
        let origin = crate::lane_lock::open_local_origin(&dir)
            .map_err(|e| question.git_err("open origin", e))?;
        read_in_place(&origin, &seen_repo, &question)
    };
    crate::lane_lock::run_on_local_origin(origin_dir, forge.timeout, None, read).map_err(
        |overdue| match overdue {
            Overdue::Late { .. } | Overdue::StillLate { .. } => ForgeError::Unanswered {
                read: format!(
                    "the read of refs/heads/{} and refs/heads/{} of {}",
                    pr.feature_branch,
                    pr.base_branch,
                    origin_dir.display()
                ),
                why: overdue.to_string(),
                subject,
            },
            Overdue::Spawn { .. } | Overdue::Lost(_) => ForgeError::Git {
                subject,
                op: "read origin",
                source: overdue.into(),
            },
        },
    )?
}

/// The question [`observe`] asks, owned by the thread that reads origin.
struct Question {
    subject: Subject,
    identity: String,
    feature_branch: String,
    base_branch: String,
}

impl Question {
    fn git_err(&self, op: &'static str, source: git2::Error) -> ForgeError {
        ForgeError::Git {
            subject: self.subject.clone(),
            op,
            source,
        }
    }
}

/// [`observe`]'s reads of `origin`, with the feature head remembered in `seen_repo`.
fn read_in_place(
    origin: &Repository,
    seen_repo: &Repository,
    q: &Question,
) -> Result<Observation, ForgeError> {
    let read = |name: &str| match origin.refname_to_id(name) {
        Ok(id) => Ok(Some(id)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(q.git_err("read origin's refs", e)),
    };
    let feature = read(&format!("refs/heads/{}", q.feature_branch))?;
    let Some(base) = read(&format!("refs/heads/{}", q.base_branch))? else {
        return Err(ForgeError::MissingBase {
            subject: q.subject.clone(),
            branch: q.base_branch.clone(),
        });
    };
    let odb = origin
        .odb()
        .map_err(|e| q.git_err("read origin's objects", e))?;
    seen_repo
        .set_odb(&odb)
        .map_err(|e| q.git_err("read origin's objects", e))?;
    let seen = seen_ref(&q.identity, &q.feature_branch);
    let candidate = match feature {
        Some(head) => {
            remember(seen_repo, &seen, head, q);
            Some(head)
        }
        None => seen_repo.refname_to_id(&seen).ok(),
    };
    let merged = match candidate {
        Some(head) => reachable(origin, base, head).map_err(|e| q.git_err("check ancestry", e))?,
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

/// Keeps `head` as the feature head last seen (unless it already is). One write at a time
/// in the process: libgit2 fails a ref write whose `.lock` another holds rather than wait,
/// and a landing's claim check and the poll round ask about the same PR at once.
fn remember(seen_repo: &Repository, seen: &str, head: Oid, q: &Question) {
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    if seen_repo.refname_to_id(seen).ok() == Some(head) {
        return;
    }
    if let Err(e) = seen_repo.reference(seen, head, true, "berth: feature head seen") {
        tracing::warn!(repo = %q.identity, pr = ?q.subject.pr, error = %e,
            "could not remember the feature head; a later branch deletion may read as closed");
    }
}

/// Whether `head` is `base` or one of its ancestors. A head origin no longer has (pruned
/// after its branch was deleted unmerged) is not.
///
/// The proof right after a landing mostly finds `head` as a parent of `base` (the merge
/// commit the landing pushed): those two commits read answer it. libgit2's ancestry walk
/// would go on down the base's side, without generation numbers as far back as where
/// `head` branched off, which without a commit-graph file reads every commit landed since
/// (a cost that grew with each landing). A parent line proves nothing by itself: it is
/// only an id, and one naming a blob, or an object origin lacks, is no ancestor (review
/// 48); so `head` must read as a commit too, as the walk would read it.
fn reachable(origin: &Repository, base: Oid, head: Oid) -> Result<bool, git2::Error> {
    let merged_at_base = || {
        origin
            .find_commit(base)
            .is_ok_and(|commit| commit.parent_ids().any(|parent| parent == head))
            && origin.find_commit(head).is_ok()
    };
    if head == base || merged_at_base() {
        return Ok(true);
    }
    match origin.graph_descendant_of(base, head) {
        Err(e) if e.code() == ErrorCode::NotFound => Ok(false),
        answer => answer,
    }
}
