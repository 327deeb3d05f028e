//! A broken ref above a lane's lock ref in a local origin.
//!
//! A file or symlink at `refs/gstack/release-locks/<identity>` (or at
//! `refs/gstack/release-locks` itself) keeps git from making the directory the lock ref
//! needs ("non-directory in the way"), for every lane of the repository; a symlink there
//! would also lead git's write out of the origin, so the walk to the ref's `.lock` refuses
//! it ([`super::lock_dir`]). A valid ref there is listed and judged as a ref in the way
//! ([`super::in_the_way`]); anything else is a broken ref, listed by no one, and is judged
//! here before the write: it holds the lane, named, until the cap, then is set aside
//! ([`super::broken_ref`]). Only the components at and below
//! `refs/gstack/release-locks` are looked at.

use std::path::{Path, PathBuf};

use super::LOCK_REF_PREFIX;
use super::broken_ref::{self, Node, Room};
use super::leftover::FileId;

/// The broken ref on `room`'s lock ref's path, if one stands there: the shallowest node
/// at or below `refs/gstack/release-locks` that is no directory, when it is no ref either
/// (a valid ref there is [`super::in_the_way`]'s to judge).
pub(super) fn find(room: &Room<'_>) -> Option<(PathBuf, FileId)> {
    let ref_name = room.lock_ref;
    let slashes = ref_name.match_indices('/').map(|(at, _)| at);
    for above in slashes.filter(|&at| at >= LOCK_REF_PREFIX.len() - 1) {
        let name = Path::new(&ref_name[..above]);
        match broken_ref::judge(room.origin.path(), name) {
            Node::Directory => continue,
            Node::Missing | Node::Ref => return None,
            Node::Broken(file) => return Some((name.to_owned(), file)),
        }
    }
    None
}

/// Holds the lane while a broken ref on `room`'s lock ref's path is younger than the cap
/// (`Err` naming it); past it, sets it aside.
pub(super) fn clear(room: &Room<'_>) -> Result<(), git2::Error> {
    match find(room) {
        Some((name, file)) => room.settle(&name, file),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::lane_lock::tests::set_aside_in;
    use crate::lane_lock::{Acquire, Lane, LockClient, LockSettings, lock_ref_name};
    use crate::ownership::MAX_CLOCK_SKEW;

    fn lane() -> Lane {
        Lane {
            repo_identity: "github.com/acme/widget".into(),
            base_branch: "main".into(),
        }
    }

    /// A bare origin in `dir` named `name` with `plant` called on the path of the lane's
    /// identity directory (`refs/gstack/release-locks/<identity>`, above the lock ref).
    fn origin_with(dir: &Path, name: &str, plant: impl FnOnce(&Path)) -> (String, PathBuf) {
        let lock_ref = lock_ref_name(&lane());
        let above = lock_ref.rsplit_once('/').unwrap().0.to_owned();
        let bare = dir.join(name);
        git2::Repository::init_bare(&bare).unwrap();
        let planted = bare.join(&above);
        std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
        plant(&planted);
        (bare.to_str().unwrap().to_owned(), planted)
    }

    fn client(dir: &Path) -> LockClient {
        LockClient::new(&dir.join("scratch"), LockSettings::default()).unwrap()
    }

    /// Dates every sighting `client` keeps back past the cap any lock lasts.
    fn as_if_seen_long_ago(client: &LockClient) {
        let cap =
            chrono::Duration::from_std(crate::lane_lock::LONGEST_TTL + MAX_CLOCK_SKEW).unwrap();
        let long_ago = crate::clock::now() - cap - chrono::Duration::seconds(1);
        client.sightings.expiry.all_seen_since(long_ago);
    }

    fn take(client: &LockClient, url: &str) -> Result<Acquire, crate::lane_lock::LockError> {
        client.acquire(url, &lane(), "me", Path::new("/a"))
    }

    /// The first try at `url`'s lane is held by `planted`, its answer naming it and saying
    /// `why`; once it was seen as long ago as any lock lasts, the lane is taken (and let go).
    fn held_then_taken_past_the_cap(client: &LockClient, url: &str, planted: &Path, why: &str) {
        let first = format!("{:?}", take(client, url));
        assert!(
            first.contains(&*planted.to_string_lossy()) && first.contains(why),
            "the first try does not name {}: {first}",
            planted.display()
        );
        as_if_seen_long_ago(client);
        let outcome = take(client, url);
        let Ok(Acquire::Acquired(held)) = outcome else {
            panic!("{why}: still keeps the lane past the cap: first {first}; then {outcome:?}");
        };
        client.release(&held).unwrap();
    }

    /// Before its cap a broken ref holds the lane as any commit in the way that is no lock
    /// does: the answer names it, why it is in the way and when berth moves it, not git's
    /// bare error on every try.
    #[test]
    fn a_broken_ref_above_the_lock_ref_holds_the_lane_named_before_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let (url, planted) = origin_with(dir.path(), "locks.git", |at| {
            std::fs::write(at, "junk\n").unwrap();
        });
        let above = lock_ref_name(&lane())
            .rsplit_once('/')
            .unwrap()
            .0
            .to_owned();
        let client = client(dir.path());
        for _ in 0..2 {
            let outcome = take(&client, &url);
            let Ok(Acquire::Unreadable { reason, .. }) = &outcome else {
                panic!("{outcome:?}");
            };
            assert!(reason.contains(&format!("`{above}`")), "{reason}");
            assert!(reason.contains("no ref"), "{reason}");
            assert!(reason.contains("moves it out of refs/ at "), "{reason}");
        }
        assert_eq!(std::fs::read_to_string(&planted).unwrap(), "junk\n");
    }

    /// A file that is no ref (a broken ref: garbage where git expects an id) at the lane's
    /// identity directory keeps git from making room for the lock ref, for every lane of
    /// the repository. It holds the lane, named, until as long after its first sighting as
    /// any lock lasts, and is then moved out of refs/, kept.
    #[test]
    fn a_broken_ref_above_the_lock_ref_holds_the_lane_then_is_set_aside_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let (url, planted) = origin_with(dir.path(), "locks.git", |at| {
            std::fs::write(at, "junk\n").unwrap();
        });
        held_then_taken_past_the_cap(&client(dir.path()), &url, &planted, "moves it out");
        let kept: Vec<_> = set_aside_in(Path::new(&url))
            .iter()
            .map(|path| std::fs::read_to_string(path).unwrap())
            .collect();
        assert_eq!(kept, ["junk\n"], "the broken ref was not kept aside");
    }

    /// A dangling symlink at the lane's identity directory is a broken ref too (git reads
    /// it as none, and would follow it when it writes): it holds the lane, named, until the
    /// cap, and is then set aside (renamed, never followed), not refused by the walk for
    /// good.
    #[test]
    fn a_symlink_above_the_lock_ref_holds_the_lane_then_is_set_aside_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let nowhere = dir.path().join("nowhere");
        let (url, planted) = origin_with(dir.path(), "locks.git", |at| {
            std::os::unix::fs::symlink(&nowhere, at).unwrap();
        });
        held_then_taken_past_the_cap(&client(dir.path()), &url, &planted, "is a symlink");
        let aside = set_aside_in(Path::new(&url));
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read_link(&aside[0]).unwrap(), nowhere);
        assert!(!nowhere.exists(), "the rename followed the symlink");
    }

    /// Each broken ref waits for the cap from its own first sighting: one in another
    /// origin (or at another path, or another file at the same path) seen as long ago as
    /// any lock lasts does not let this one be set aside at first sight.
    #[test]
    fn a_broken_ref_waits_from_its_own_first_sighting() {
        let dir = tempfile::tempdir().unwrap();
        let junk = |at: &Path| std::fs::write(at, "junk\n").unwrap();
        let (old_url, _) = origin_with(dir.path(), "old.git", junk);
        let (new_url, planted) = origin_with(dir.path(), "new.git", junk);
        let client = client(dir.path());
        assert!(!matches!(take(&client, &old_url), Ok(Acquire::Acquired(_))));
        as_if_seen_long_ago(&client);
        let Ok(Acquire::Acquired(held)) = take(&client, &old_url) else {
            panic!("the broken ref seen long ago was not set aside");
        };
        client.release(&held).unwrap();
        let outcome = take(&client, &new_url);
        assert!(
            !matches!(outcome, Ok(Acquire::Acquired(_))) && planted.exists(),
            "a broken ref first seen now was set aside at once: {outcome:?}"
        );
    }
}
