//! A root berth writes a local origin's lock refs as the origin's owner.
//!
//! The writer child walks the ref's path again right before it execs `git`
//! ([`super::trail`]), but `git` resolves the path by name once more when it opens the
//! ref's `.lock`: a symlink swapped in during those milliseconds still leads the write
//! where the symlink points. Run as root, that write could land anywhere on the host; run
//! as the owner of the origin's `refs/` directory (the user whose git writes the origin's
//! refs), it lands only where that user could write anyway. So when berth's effective uid
//! is 0 and `refs/` belongs to another user, the child takes that user's uid and primary
//! group (and no supplementary groups) before anything else, and `git` finds that user's
//! home. The lock commit's objects are written as the owner of `objects/` the same way
//! (`cas/lock_objects.rs`).

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
///
/// The child takes the owner's primary group from the user database, not the group of
/// `refs/`: after a plain `chown -R git /srv/app.git` that is still root's, which the
/// owner does not hold. A uid the user database does not know gets the overflow group
/// ([`NO_GROUP`]) and `/` as its home.
pub(super) fn of(git_dir: &OwnedFd) -> Option<Owner> {
    of_dir(git_dir, "refs")
}

/// The owner of `objects/` in `git_dir`, as [`of`] judges `refs/`: who writes the lock
/// commit's objects (`cas/lock_objects.rs`).
pub(super) fn of_objects(git_dir: &OwnedFd) -> Option<Owner> {
    of_dir(git_dir, "objects")
}

fn of_dir(git_dir: &OwnedFd, name: &str) -> Option<Owner> {
    if !Uid::effective().is_root() {
        return None;
    }
    let dir = nix::sys::stat::fstatat(git_dir, name, AtFlags::empty()).ok()?;
    if dir.st_uid == 0 {
        return None;
    }
    let user = User::from_uid(Uid::from_raw(dir.st_uid)).ok().flatten();
    Some(Owner {
        uid: dir.st_uid,
        gid: user.as_ref().map_or(NO_GROUP, |user| user.gid.as_raw()),
        home: user.map_or_else(|| PathBuf::from("/"), |user| user.dir),
    })
}

/// The kernel's overflow group (`nogroup`), which by convention owns nothing: the group
/// of an owner the user database does not know.
const NO_GROUP: u32 = 65_534;

impl Owner {
    /// The user's id, to name it in a message.
    pub(super) fn uid(&self) -> u32 {
        self.uid
    }

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
    use std::os::unix::process::CommandExt as _;
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
        chown(&["-R", "-h"], (NOBODY, NOBODY), &[bare.join("refs")]);
    }

    /// `bare` holds no ref under `refs/gstack/`: no lock was written there.
    fn assert_no_lock_ref(bare: &Path) {
        let refs = git2::Repository::open_bare(bare).unwrap();
        let first = refs.references_glob("refs/gstack/*").unwrap().next();
        assert!(
            first.is_none(),
            "a lock ref was written in {}",
            bare.display()
        );
    }

    /// `chown flags uid:gid paths…`, which must succeed.
    fn chown(flags: &[&str], (uid, gid): (u32, u32), paths: &[PathBuf]) {
        let chowned = std::process::Command::new("chown")
            .args(flags)
            .arg(format!("{uid}:{gid}"))
            .args(paths)
            .status()
            .unwrap();
        assert!(chowned.success(), "chown {flags:?} {uid}:{gid} {paths:?}");
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

    /// An origin chowned to its user with `chown -R git /srv/app.git` keeps root's group on
    /// `refs/`. The writer child must then hold only what that user holds: a write led
    /// astray in the last milliseconds must not land where group root may write and the
    /// owner may not. Its egid shows in the group of the ref file git makes.
    #[test]
    fn a_root_berth_writes_another_users_origin_without_root_s_group() {
        let Some((_dir, bare, client)) = their_origin() else {
            return;
        };
        chown(&["-R"], (NOBODY, 0), &[bare.join("refs")]);
        let held = take_main(&client, bare.to_str().unwrap());
        let written = std::fs::metadata(bare.join(held.ref_name())).unwrap();
        assert_eq!(written.uid(), NOBODY);
        assert_ne!(
            written.gid(),
            0,
            "the writer child ran with root's group, which the origin's owner does not hold"
        );
    }

    /// A root berth copies each lock commit (and its tree) into a local origin's object
    /// database itself, as root: the fan-out directories it makes under the owner's
    /// `objects/` are root's, 0755, so the owner's own git (a push, `git gc`) can no longer
    /// add an object there or prune one. That is writing outside berth's namespace
    /// (`refs/gstack/release-locks/`). (The git dir stays root's, as above.)
    #[test]
    fn a_root_berth_leaves_no_root_owned_node_in_another_users_objects() {
        let Some((_dir, bare, client)) = their_origin() else {
            return;
        };
        chown(
            &["-R"],
            (NOBODY, NOBODY),
            &[bare.join("refs"), bare.join("objects")],
        );
        let held = take_main(&client, bare.to_str().unwrap());
        let mut roots = Vec::new();
        let mut look = vec![bare.join("objects")];
        while let Some(at) = look.pop() {
            for entry in std::fs::read_dir(&at).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.uid() == 0 {
                    roots.push(path.clone());
                }
                if meta.is_dir() {
                    look.push(path);
                }
            }
        }
        // What that costs the owner: no object of theirs can be added to such a directory.
        let blocked = roots.iter().find(|path| path.is_dir()).map(|fan_out| {
            std::process::Command::new("touch")
                .arg(fan_out.join("tmp_obj_owner"))
                .uid(NOBODY)
                .gid(NOBODY)
                .status()
                .unwrap()
                .success()
        });
        assert!(
            roots.is_empty(),
            "root-owned nodes in the owner's objects/ after taking {}: {roots:?} (the owner can add an object there: {blocked:?})",
            held.ref_name()
        );
    }

    /// The owner of an origin's `objects/` may make its fan-out directories symlinks (git
    /// follows them). A root berth's copy of its lock commit into that origin follows them
    /// too: the owner picks a directory only root may write (`/etc/sudoers.d`, where sudo
    /// reads every file whose name has no dot, as a lock object's 38 hex digits) and root
    /// writes an object file there. Nothing of berth's may be written outside the origin.
    #[test]
    fn a_root_berth_writes_no_object_through_the_owners_fan_out_symlinks() {
        let Some((dir, bare, client)) = their_origin() else {
            return;
        };
        let elsewhere = dir.path().join("roots-only");
        std::fs::create_dir(&elsewhere).unwrap();
        for fan_out in 0..=0xffu8 {
            let link = bare.join("objects").join(format!("{fan_out:02x}"));
            std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        }
        chown(
            &["-R", "-h"],
            (NOBODY, NOBODY),
            &[bare.join("refs"), bare.join("objects")],
        );
        let url = bare.to_str().unwrap();
        let outcome = client.acquire(url, &lane(url, "main"), "me", Path::new("/a"));
        let written: Vec<_> = std::fs::read_dir(&elsewhere)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert!(
            written.is_empty(),
            "root wrote {written:?} into {} through the owner's symlinks ({outcome:?})",
            elsewhere.display()
        );
        // Where the owner cannot write, the lock write fails closed, saying as whom.
        let said = format!("{outcome:?}");
        assert!(
            said.contains("cannot write the lock commit") && said.contains("uid 65534"),
            "{said}"
        );
        assert_no_lock_ref(&bare);
    }

    /// An origin where an earlier root berth (or an operator's `git` run as root) wrote
    /// the empty tree loosely, as root, a month ago: the object is root's, and `objects/4b/`
    /// too (`fan_out_is_roots`) or the owner's. Every lock commit points at that tree, and
    /// an old loose copy is what a concurrent `git gc` prunes (git reads the empty tree
    /// hard-coded, but `git fsck` of the origin then fails on a "missing tree"); the
    /// owner's git can neither freshen a root-owned file nor replace it (`link` meets the
    /// old one), so the lock write fails, naming the file and the `chown` that mends it,
    /// rather than write a lock whose tree may vanish.
    fn a_root_owned_old_empty_tree_fails_the_lock_write_named(fan_out_is_roots: bool) {
        let Some((_dir, bare, client)) = their_origin() else {
            return;
        };
        let empty_tree = git2::Repository::open_bare(&bare)
            .unwrap()
            .odb()
            .unwrap()
            .write(git2::ObjectType::Tree, b"")
            .unwrap();
        let hex = empty_tree.to_string();
        let fan_out = bare.join("objects").join(&hex[..2]);
        let loose = fan_out.join(&hex[2..]);
        let month_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86400);
        std::fs::File::open(&loose)
            .unwrap()
            .set_modified(month_ago)
            .unwrap();
        assert_eq!(std::fs::metadata(&fan_out).unwrap().uid(), 0);
        let mut owners = vec![bare.join("objects")];
        if !fan_out_is_roots {
            owners.push(fan_out.clone());
        }
        chown(&[], (NOBODY, NOBODY), &owners);
        give_refs_to_nobody(&bare);
        let url = bare.to_str().unwrap();
        let outcome = client.acquire(url, &lane(url, "main"), "me", Path::new("/a"));
        let said = format!("{outcome:?}");
        assert!(
            said.contains("cannot write the lock commit")
                && said.contains(loose.to_str().unwrap())
                && said.contains("chown -R"),
            "the lock write reused a month-old root-owned tree it could not freshen: {said}"
        );
        assert_no_lock_ref(&bare);
    }

    #[test]
    fn a_root_owned_old_empty_tree_in_a_root_owned_fan_out_fails_the_lock_write_named() {
        a_root_owned_old_empty_tree_fails_the_lock_write_named(true);
    }

    #[test]
    fn a_root_owned_old_empty_tree_in_the_owners_fan_out_fails_the_lock_write_named() {
        a_root_owned_old_empty_tree_fails_the_lock_write_named(false);
    }

    /// An earlier root berth made a lane's directories and its lock ref as root in another
    /// user's origin; the writer, now run as that user, is given them first (with the
    /// user's primary group, not the group root left on `refs/`), so the lane is released
    /// and taken again. (The git dir stays root's, as above, but writable by the
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
            // Root's group, as a plain `chown -R nobody` leaves it.
            std::os::unix::fs::chown(bare.join(theirs), Some(NOBODY), Some(0)).unwrap();
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
        let given = std::fs::metadata(identity).unwrap();
        let primary = User::from_uid(Uid::from_raw(NOBODY)).unwrap().unwrap().gid;
        assert_eq!((given.uid(), given.gid()), (NOBODY, primary.as_raw()));
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
