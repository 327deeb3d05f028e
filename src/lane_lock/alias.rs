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
//! - across daemons, first takes a second lock ref that every spelling shares
//!   ([`alias_lock_ref`]): for a local origin a ref of the repository itself,
//!   `refs/gstack/release-locks/+repo/<base>` (every path that reaches the bare repo reaches
//!   that ref, so even aliases berth cannot see, such as another host's mount, meet there;
//!   `safe_key` never yields `+`, so no gstack identity names it); for a network origin
//!   the gstack ref of the canonical spelling (GitHub: lower case), when the spelling is
//!   not already it.

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

/// The lock ref shared by every spelling of `lane`'s repository reached through
/// `origin_url`, taken before gstack's ref; `None` when gstack's ref already is it.
pub fn alias_lock_ref(origin_url: &str, lane: &Lane) -> Option<String> {
    if cas::local_path(origin_url).is_some() {
        return Some(format!(
            "{LOCK_REF_PREFIX}{LOCAL_REPO_KEY}/{}",
            safe_key(&lane.base_branch)
        ));
    }
    let canonical = lock_ref_name(&Lane {
        repo_identity: alias_key(&lane.repo_identity),
        base_branch: lane.base_branch.clone(),
    });
    (canonical != lock_ref_name(lane)).then_some(canonical)
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
        let local = alias_lock_ref(path, &lane(path)).unwrap();
        assert_eq!(local, "refs/gstack/release-locks/+repo/release-2.x");
        assert!(git2::Reference::is_valid_name(&local));
        let url = format!("file://{path}");
        assert_eq!(
            alias_lock_ref(&url, &lane(&format!("file:{path}"))),
            Some(local)
        );

        let upper = lane("github.com/Acme/Widget");
        assert_eq!(
            alias_lock_ref("git@github.com:Acme/Widget.git", &upper).as_deref(),
            Some("refs/gstack/release-locks/github.com-acme-widget/release-2.x")
        );
        let lower = lane("github.com/acme/widget");
        assert_eq!(
            alias_lock_ref("git@github.com:acme/widget.git", &lower),
            None
        );
        assert_eq!(lane_key(&upper), lane_key(&lower));
        assert_eq!(lane_key(&lower), lock_ref_name(&lower));
    }
}
