//! One repository, one lane, however its `origin` is spelled.
//!
//! gstack's lock ref is computed from the origin *text*, so two spellings of one
//! repository (a symlinked or bind-mounted path, `file://` next to a path, a GitHub
//! owner/name in another case) get two refs, and alone they would give two lanes. berth
//! keeps reading and writing gstack's ref for its spelling, and also:
//!
//! - inside one daemon, tells lanes apart by [`lane_key`] (the repository as
//!   [`crate::identity::alias_key`] finds it, and the base branch), so it never runs two
//!   aliases of one lane at once;
//! - across daemons, first takes the lock refs every spelling shares ([`alias_lock_refs`]):
//!   `refs/gstack/release-locks/+repo/<base>` in the repository itself, whatever the
//!   transport (every path or URL that reaches the repository reaches that ref, so even
//!   aliases berth cannot see meet there: another host's mount, a network URL to a bare
//!   repo another berth reaches by its path, two host names of one server; `safe_key`
//!   never yields `+`, so no gstack identity names it); and, for a network origin whose
//!   spelling is not the canonical one (GitHub: lower case), the gstack ref of the
//!   canonical spelling, where a gstack daemon using that spelling meets berth.

use super::{LOCK_REF_PREFIX, Lane, cas, lock_ref_name};
use crate::identity::alias_key;
use crate::safe_key::safe_key;

/// The repository component of the lock ref every spelling of a local origin shares.
const LOCAL_REPO_KEY: &str = "+repo";

/// The key berth's own lane exclusion uses: aliases of one repository and base branch
/// give one key.
pub fn lane_key(lane: &Lane) -> String {
    lock_ref_name(&Lane {
        repo_identity: alias_key(&lane.repo_identity),
        base_branch: lane.base_branch.clone(),
    })
}

/// The lock refs shared by every spelling of `lane`'s repository reached through
/// `origin_url`, in the order they are taken (before gstack's ref): the repository's own
/// `+repo` ref, then the canonical spelling's gstack ref when that is not gstack's ref for
/// this spelling (a local origin has no other spelling gstack could share).
pub fn alias_lock_refs(origin_url: &str, lane: &Lane) -> Vec<String> {
    let repo_ref = format!(
        "{LOCK_REF_PREFIX}{LOCAL_REPO_KEY}/{}",
        safe_key(&lane.base_branch)
    );
    if cas::local_path(origin_url).is_some() {
        return vec![repo_ref];
    }
    let canonical = lock_ref_name(&Lane {
        repo_identity: alias_key(&lane.repo_identity),
        base_branch: lane.base_branch.clone(),
    });
    if canonical == lock_ref_name(lane) {
        vec![repo_ref]
    } else {
        vec![repo_ref, canonical]
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
        assert_eq!(alias_lock_refs(path, &lane(path)), [repo]);
        let url = format!("file://{path}");
        assert_eq!(
            alias_lock_refs(&url, &lane(&format!("file:{path}"))),
            [repo]
        );

        let upper = lane("github.com/Acme/Widget");
        assert_eq!(
            alias_lock_refs("git@github.com:Acme/Widget.git", &upper),
            [
                repo,
                "refs/gstack/release-locks/github.com-acme-widget/release-2.x"
            ]
        );
        let lower = lane("github.com/acme/widget");
        assert_eq!(
            alias_lock_refs("git@github.com:acme/widget.git", &lower),
            [repo]
        );
        assert_eq!(lane_key(&upper), lane_key(&lower));
        assert_eq!(lane_key(&lower), lock_ref_name(&lower));
    }
}
