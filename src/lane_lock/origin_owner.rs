//! A root berth writes a local origin's lock refs as the origin's owner.
//!
//! The writer child walks the ref's path again right before it execs `git`
//! ([`super::trail`]), but `git` resolves the path by name once more when it opens the
//! ref's `.lock`: a symlink swapped in during those milliseconds still leads the write
//! where the symlink points. Run as root, that write could land anywhere on the host; run
//! as the owner of the origin's `refs/` directory (the user whose git writes the origin's
//! refs), it lands only where that user could write anyway. So when berth's effective uid
//! is 0 and `refs/` belongs to another user, the child takes that user's uid and gid (and
//! no supplementary groups) before anything else, and `git` finds that user's home.

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Command;

use nix::fcntl::AtFlags;
use nix::unistd::{Uid, User};

mod handover;

/// The user a writer child runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Owner {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// The owner of `refs/` in the git dir `git_dir` (followed: the operator's layout) when
/// berth runs as root and `refs/` is another user's; `None`: the child runs as berth.
pub(super) fn of(git_dir: &OwnedFd) -> Option<Owner> {
    if !Uid::effective().is_root() {
        return None;
    }
    let refs = nix::sys::stat::fstatat(git_dir, "refs", AtFlags::empty()).ok()?;
    (refs.st_uid != 0).then(|| Owner {
        uid: refs.st_uid,
        gid: refs.st_gid,
        home: User::from_uid(Uid::from_raw(refs.st_uid))
            .ok()
            .flatten()
            .map_or_else(|| PathBuf::from("/"), |user| user.dir),
    })
}

impl Owner {
    /// Makes `command` run as the owner: std sets the gid, drops the supplementary groups
    /// and sets the uid in the child before berth's own steps there. `HOME` is the
    /// owner's (root's is unreadable to it, and git stops on a config it cannot read).
    pub(super) fn apply(&self, command: &mut Command) {
        command
            .gid(self.gid)
            .uid(self.uid)
            .env("HOME", &self.home)
            .env_remove("XDG_CONFIG_HOME");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::lane_lock::{Acquire, HeldLock, Lane, LockClient, LockSettings, Released};

    /// `nobody`, whom no test file belongs to.
    const NOBODY: u32 = 65_534;

    /// A temp dir every user may enter (0755) holding a fresh bare origin `theirs.git`, and
    /// a lock client whose scratch is in it; none unless this runs as root (the tests give
    /// files away, which no other uid can).
    fn their_origin() -> Option<(tempfile::TempDir, PathBuf, LockClient)> {
        if !Uid::effective().is_root() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bare = dir.path().join("theirs.git");
        git2::Repository::init_bare(&bare).unwrap();
        let client = LockClient::new(&dir.path().join("scratch"), LockSettings::default()).unwrap();
        Some((dir, bare, client))
    }

    fn lane(identity: &str, base: &str) -> Lane {
        Lane {
            repo_identity: identity.to_owned(),
            base_branch: base.into(),
        }
    }

    /// The lock `client` takes on origin `url`'s `main` lane (the url its identity).
    fn take_main(client: &LockClient, url: &str) -> HeldLock {
        match client
            .acquire(url, &lane(url, "main"), "me", Path::new("/a"))
            .unwrap()
        {
            Acquire::Acquired(held) => held,
            other => panic!("{other:?}"),
        }
    }

    /// `bare`'s `refs/` and all in it (a symlink itself, not its target) given to `nobody`.
    fn give_refs_to_nobody(bare: &Path) {
        let chowned = std::process::Command::new("chown")
            .args(["-R", "-h", &format!("{NOBODY}:{NOBODY}")])
            .arg(bare.join("refs"))
            .status()
            .unwrap();
        assert!(chowned.success());
    }

    /// As root (the test runs only there), an origin
    /// whose `refs/` is another user's gets its lock ref written by that user: a write led
    /// astray in the last milliseconds lands only where that user could write. (The git
    /// dir stays root's: libgit2 opens no other user's repository unless `safe.directory`
    /// lets it, a setting of the host.)
    #[test]
    fn a_root_berth_writes_the_lock_ref_of_another_users_origin_as_that_user() {
        let Some((dir, bare, client)) = their_origin() else {
            return;
        };
        let mine = git2::Repository::init_bare(dir.path().join("mine.git")).unwrap();
        give_refs_to_nobody(&bare);
        for (repo, owner) in [(bare.as_path(), NOBODY), (mine.path(), 0)] {
            let held = take_main(&client, repo.to_str().unwrap());
            let written = std::fs::metadata(repo.join(held.ref_name())).unwrap();
            assert_eq!(written.uid(), owner, "{}", held.ref_name());
        }
    }

    /// An earlier root berth made a lane's directories and its lock ref as root in another
    /// user's origin; the writer, now run as that user, is given them first, so the lane is
    /// released and taken again. (The git dir stays root's, as above, but writable by the
    /// owner: a delete takes `packed-refs.lock` there.)
    #[test]
    fn a_lane_an_earlier_root_berth_wrote_as_root_is_released_and_taken_again() {
        let Some((_dir, bare, client)) = their_origin() else {
            return;
        };
        std::fs::set_permissions(&bare, std::fs::Permissions::from_mode(0o777)).unwrap();
        let take = || take_main(&client, bare.to_str().unwrap());
        let earlier = take();
        for theirs in ["refs", "refs/heads", "refs/tags", "refs/gstack"] {
            std::os::unix::fs::chown(bare.join(theirs), Some(NOBODY), Some(NOBODY)).unwrap();
        }
        let lock_ref = bare.join(earlier.ref_name());
        let identity = lock_ref.parent().unwrap();
        for roots in [lock_ref.as_path(), identity, identity.parent().unwrap()] {
            assert_eq!(
                std::fs::metadata(roots).unwrap().uid(),
                0,
                "{}",
                roots.display()
            );
        }
        assert_eq!(client.release(&earlier).unwrap(), Released::Deleted);
        let again = take();
        assert_eq!(std::fs::metadata(&lock_ref).unwrap().uid(), NOBODY);
        assert_eq!(std::fs::metadata(identity).unwrap().uid(), NOBODY);
        assert_eq!(client.release(&again).unwrap(), Released::Deleted);
    }

    /// The origin's owner owns its `refs/`, so it may make `refs/gstack` a symlink (the
    /// walk follows it, the operator's layout) into another origin whose lock refs a root
    /// berth wrote as root. Taking a lane of the owner's origin must not give that other
    /// origin's root-owned `release-locks` to the owner: owning it, the owner could rename
    /// the other origin's lock refs away and let a second landing onto its lanes.
    #[test]
    fn a_root_berth_gives_no_node_of_another_origin_reached_through_a_symlink() {
        let Some((dir, theirs, client)) = their_origin() else {
            return;
        };
        let roots = git2::Repository::init_bare(dir.path().join("roots.git")).unwrap();
        // Two bases: the `+repo/<base>` ref every spelling shares is another one.
        let url = roots.path().to_str().unwrap();
        let other = lane("github.com/acme/other", "main");
        let held = client.acquire(url, &other, "me", Path::new("/a")).unwrap();
        assert!(matches!(held, Acquire::Acquired(_)), "{held:?}");
        let locks = roots.path().join("refs/gstack/release-locks");
        assert_eq!(std::fs::metadata(&locks).unwrap().uid(), 0);
        // The other origin's lock commits, which a listing through the symlink reads.
        let alternates = format!("{}\n", roots.path().join("objects").display());
        std::fs::write(theirs.join("objects/info/alternates"), alternates).unwrap();
        let _ = std::fs::remove_dir_all(theirs.join("refs/gstack"));
        std::os::unix::fs::symlink(roots.path().join("refs/gstack"), theirs.join("refs/gstack"))
            .unwrap();
        give_refs_to_nobody(&theirs);
        let url = theirs.to_str().unwrap();
        let widget = lane("github.com/acme/widget", "dev");
        let outcome = client.acquire(url, &widget, "me", Path::new("/a"));
        assert_eq!(
            std::fs::metadata(&locks).unwrap().uid(),
            0,
            "another origin's release-locks given to the owner ({outcome:?})"
        );
    }
}
