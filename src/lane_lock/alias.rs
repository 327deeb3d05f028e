//! One repository, one lane, however its `origin` is spelled.
//!
//! gstack's lock ref is computed from the origin *text*, so two spellings of one
//! repository (a symlinked or bind-mounted path, `file://` next to a path, a GitHub
//! owner/name in another case) get two refs, and alone they would give two lanes. berth
//! keeps reading and writing gstack's ref for its spelling, and also:
//!
//! - inside one daemon, tells lanes apart by [`lane_key`] (the repository as
//!   [`crate::identity::alias_key`] finds it, learnt off the daemon's loop by
//!   [`super::repo_keys`], and the base branch), so it never runs two aliases of one lane
//!   at once;
//! - across daemons, also takes the lock refs every spelling shares ([`lane_lock_refs`]):
//!   `refs/gstack/release-locks/+repo/<base>` in the repository itself, whatever the
//!   transport (every path or URL that reaches the repository reaches that ref, so even
//!   aliases berth cannot see meet there: another host's mount, a network URL to a bare
//!   repo another berth reaches by its path, two host names of one server; `safe_key`
//!   never yields `+`, so no gstack identity names it); and, for a network origin whose
//!   spelling is not the canonical one (GitHub: lower case), the gstack ref of the
//!   canonical spelling, where a gstack daemon using that spelling meets berth.

use super::repo_keys::{Unlearnt, key_of};
use super::{LOCK_REF_PREFIX, Lane, cas, lock_ref_name};
use crate::identity::alias_key;
use crate::safe_key::safe_key;

/// The repository component of the lock ref every spelling of a local origin shares.
const LOCAL_REPO_KEY: &str = "+repo";

/// The key berth's own lane exclusion uses (`lane`: aliases of one repository and base
/// branch give one key), with the repository key it was made of. A landing keeps the one
/// it was started under for all its bookkeeping (its release, the next landing's wait for
/// it, its backoff) and its own look compares against its `repo`: another landing's look
/// may move the table to a new repository meanwhile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaneKey {
    pub repo: String,
    pub lane: String,
}

/// A lane's [`LaneKey`]. Never looks at the origin: a local origin's repository comes
/// from the table learnt off the caller's thread ([`super::repo_keys`]), and while it is
/// not known the lane has no key and must not start.
pub fn lane_key(lane: &Lane) -> Result<LaneKey, Unlearnt> {
    let repo = key_of(&lane.repo_identity)?;
    Ok(LaneKey {
        lane: keyed(lane, repo.clone()),
        repo,
    })
}

fn keyed(lane: &Lane, repo: String) -> String {
    lock_ref_name(&Lane {
        repo_identity: repo,
        base_branch: lane.base_branch.clone(),
    })
}

/// Every lock ref berth takes for `lane` reached through `origin_url`, in the order it
/// takes them: gstack's ref for this spelling ([`lock_ref_name`]) and the refs every
/// spelling shares: the repository's own `+repo` ref, and for a network origin whose
/// spelling is not the canonical one, the canonical spelling's gstack ref. A local
/// origin's `+repo` ref comes first (no gstack daemon can hold it, so it decides between
/// berths at once); a network origin's comes after gstack's ref, so contenders with one
/// spelling still meet, and are told the holder, at gstack's ref.
pub fn lane_lock_refs(origin_url: &str, lane: &Lane) -> Vec<String> {
    let own = lock_ref_name(lane);
    let repo_ref = format!(
        "{LOCK_REF_PREFIX}{LOCAL_REPO_KEY}/{}",
        safe_key(&lane.base_branch)
    );
    if cas::local_path(origin_url).is_some() {
        return vec![repo_ref, own];
    }
    let canonical = lock_ref_name(&Lane {
        repo_identity: alias_key(&lane.repo_identity),
        base_branch: lane.base_branch.clone(),
    });
    if canonical == own {
        vec![own, repo_ref]
    } else {
        vec![canonical, own, repo_ref]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(identity: &str) -> Lane {
        Lane {
            repo_identity: identity.into(),
            base_branch: "release/2.x".into(),
        }
    }

    #[test]
    fn spellings_share_one_alias_ref() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        let repo = "refs/gstack/release-locks/+repo/release-2.x";
        assert!(git2::Reference::is_valid_name(repo));
        assert_eq!(
            lane_lock_refs(path, &lane(path)),
            [repo.to_owned(), lock_ref_name(&lane(path))]
        );
        let url = format!("file://{path}");
        assert_eq!(
            lane_lock_refs(&url, &lane(&format!("file:{path}")))[0],
            repo
        );

        let upper = lane("github.com/Acme/Widget");
        assert_eq!(
            lane_lock_refs("git@github.com:Acme/Widget.git", &upper),
            [
                "refs/gstack/release-locks/github.com-acme-widget/release-2.x",
                "refs/gstack/release-locks/github.com-Acme-Widget/release-2.x",
                repo,
            ]
        );
        let lower = lane("github.com/acme/widget");
        assert_eq!(
            lane_lock_refs("git@github.com:acme/widget.git", &lower),
            [
                "refs/gstack/release-locks/github.com-acme-widget/release-2.x",
                repo
            ]
        );
        assert_eq!(lane_key(&upper).unwrap(), lane_key(&lower).unwrap());
        assert_eq!(lane_key(&lower).unwrap().lane, lock_ref_name(&lower));
    }
}
