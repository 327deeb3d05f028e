//! A ref where git needs room for a lane's lock ref, below it (`<lock ref>/x`) or above it
//! (a prefix, here the repository's `refs/gstack/release-locks/<identity>`), makes every
//! create of the lock ref fail on git's directory/file conflict. It is judged like a lock:
//! a live one holds the lane, named, and is never removed; an expired one is removed by
//! compare-and-swap and the lane taken; one that is no lock holds the lane, named, until
//! as long after berth first saw it as any lock lasts (that end is tested in the library:
//! `lane_lock::in_the_way`). Over a local path (berth's `git update-ref` child) and over
//! `git daemon` (a push).

use std::path::Path;

use berth::lane_lock::{Acquire, LockWrite, lock_ref_name};

use crate::lane_lock::{
    LONG_TTL, Reach, Remote, acquired, client, gstack_payload, gstack_write_to, lane, remote_by,
};
use crate::lock_cas::racing_client;

const REACHES: [Reach; 2] = [Reach::Path, Reach::GitDaemon];

/// Each origin with a ref in the way of lane `main`'s lock ref, below it and above it.
fn each_way(test: impl Fn(&Remote, &str)) {
    let lock_ref = lock_ref_name(&lane("main"));
    let above = lock_ref.rsplit_once('/').unwrap().0.to_owned();
    for reach in REACHES {
        for planted in [format!("{lock_ref}/x"), above.clone()] {
            test(&remote_by(reach), &planted);
        }
    }
}

/// Plants at `ref_name` a commit that is no lock; its sha.
pub(crate) fn plant_no_lock(remote: &Remote, ref_name: &str) -> String {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&remote.bare)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let tree = git(&["hash-object", "-t", "tree", "-w", "/dev/null"]);
    let commit = git(&["commit-tree", &tree, "-m", "planted"]);
    git(&["update-ref", ref_name, &commit]);
    commit
}

/// A gstack lock of lane `main` held by `owner`, expiring in `expires_in`, at `ref_name`.
fn plant_lock(url: &str, ref_name: &str, owner: &str, expires_in: chrono::Duration) -> String {
    let body = serde_json::to_string_pretty(&gstack_payload(owner, "main", expires_in)).unwrap();
    gstack_write_to(url, ref_name, &body)
}

#[test]
fn a_ref_in_the_way_that_is_no_lock_holds_the_lane_named_and_is_left_alone() {
    each_way(|remote, planted| {
        let sha = plant_no_lock(remote, planted);
        let (_dir, daemon) = client(LONG_TTL);
        for _ in 0..3 {
            let outcome = daemon.acquire(&remote.url, &lane("main"), "me", Path::new("/a"));
            let Ok(Acquire::Unreadable { sha: found, reason }) = &outcome else {
                panic!("{planted} over {}: {outcome:?}", remote.url);
            };
            assert_eq!(found, &sha);
            assert!(reason.contains(planted), "{reason}");
        }
        assert_eq!(remote.sha(planted), Some(sha), "{planted} was removed");
        assert_eq!(remote.sha(&lock_ref_name(&lane("main"))), None);
    });
}

#[test]
fn a_live_lock_in_the_way_is_a_holder_and_is_never_removed() {
    each_way(|remote, planted| {
        let sha = plant_lock(
            &remote.url,
            planted,
            "other-daemon",
            chrono::Duration::hours(1),
        );
        let (_dir, daemon) = client(LONG_TTL);
        for _ in 0..3 {
            let outcome = daemon.acquire(&remote.url, &lane("main"), "me", Path::new("/a"));
            let Ok(Acquire::HeldElsewhere {
                holder,
                sha: found,
                ref_name,
            }) = &outcome
            else {
                panic!("{planted} over {}: {outcome:?}", remote.url);
            };
            assert_eq!((holder.owner_id.as_str(), found), ("other-daemon", &sha));
            assert_eq!(ref_name, planted);
        }
        assert_eq!(remote.sha(planted), Some(sha), "a live lock was removed");
    });
}

/// A lock at `ref_name` on `url` of a daemon that is gone, expired a minute ago.
fn plant_expired_lock(url: &str, ref_name: &str) {
    plant_lock(url, ref_name, "gone-daemon", chrono::Duration::minutes(-1));
}

#[test]
fn an_expired_lock_in_the_way_is_removed_and_the_lane_taken() {
    each_way(|remote, planted| {
        plant_expired_lock(&remote.url, planted);
        let (_dir, daemon) = client(LONG_TTL);
        let held = acquired(daemon.acquire(&remote.url, &lane("main"), "me", Path::new("/a")));
        assert_eq!(
            remote.sha(planted),
            None,
            "{planted} was left over {}",
            remote.url
        );
        assert_eq!(
            remote.sha(&lock_ref_name(&lane("main"))),
            Some(held.sha().to_string())
        );
    });
}

/// The removal of an expired lock in the way is a compare-and-swap: a holder that takes
/// that ref between berth's look and its delete keeps it, and holds the lane.
#[test]
fn a_lock_in_the_way_retaken_before_its_removal_is_kept_and_holds_the_lane() {
    each_way(|remote, planted| {
        plant_expired_lock(&remote.url, planted);
        let retaken = std::sync::Arc::new(std::sync::Mutex::new(None));
        let (_dir, daemon) = racing_client(LockWrite::Clear, {
            let (url, planted, retaken) = (
                remote.url.clone(),
                planted.to_owned(),
                std::sync::Arc::clone(&retaken),
            );
            move || {
                let sha = plant_lock(&url, &planted, "new-holder", chrono::Duration::hours(1));
                *retaken.lock().unwrap() = Some(sha);
            }
        });
        let outcome = daemon.acquire(&remote.url, &lane("main"), "me", Path::new("/a"));
        let retaken = retaken
            .lock()
            .unwrap()
            .clone()
            .expect("the removal was never tried");
        let Ok(Acquire::HeldElsewhere { holder, sha, .. }) = &outcome else {
            panic!("{planted} over {}: {outcome:?}", remote.url);
        };
        assert_eq!((holder.owner_id.as_str(), sha), ("new-holder", &retaken));
        assert_eq!(
            remote.sha(planted),
            Some(retaken),
            "the retaken lock was removed"
        );
    });
}
