//! A lock commit (and the empty tree it points at) copied into a local origin's object
//! database, as a push would have sent them.
//!
//! Objects land in `objects/<xx>/` fan-out directories that belong to the origin's users,
//! not to berth's namespace, so they are written the way those users' own git writes them:
//!
//! - A root berth and an origin whose `objects/` is another user's
//!   ([`origin_owner::of_objects`]): `git unpack-objects` run as that user. Written by
//!   root, the fan-out directories it made would be root's (the owner's git could add no
//!   object there), and root would follow a fan-out directory the owner made a symlink,
//!   writing where only root may. As the owner, git writes only where the owner could
//!   anyway, and fails (the lock write with it) where the owner cannot.
//! - A group-shared origin (`core.sharedRepository` set): `git unpack-objects` as berth,
//!   which makes the directories group-writable as git does (libgit2 ignores the setting:
//!   its 0755 directories fail the group's next push with an object there).
//! - Otherwise berth's own process writes them through libgit2: no child to wait for.
//!
//! Only the objects the origin lacks are written, and nothing when it has them all. An
//! object already there may sit in a fan-out directory the writer cannot write (an earlier
//! root berth's loose empty tree in another user's `objects/4b/`): git would try to
//! freshen or rewrite it there and fail, and with it every lock write of that origin.

use std::io::{self, Seek as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use git2::{ErrorCode, ObjectType, Oid, Repository};
use nix::sys::memfd::{MFdFlags, memfd_create};

use crate::lane_lock::origin_owner::{self, Owner};
use crate::lane_lock::{lock_dir, ref_writer};

/// Who writes the objects.
#[derive(Debug, PartialEq, Eq)]
enum Writer {
    /// libgit2, in berth's process.
    Berth,
    /// `git unpack-objects`, as the given user (`None`: as berth).
    Git(Option<Owner>),
}

/// Copies the lock commit `sha` and its tree from `scratch` into `origin`; `Err` names who
/// could not write them, and nothing is written to the ref then.
pub(super) fn copy_lock_commit(
    scratch: &Repository,
    origin: &Repository,
    sha: Oid,
) -> Result<(), git2::Error> {
    let missing = Missing::of(scratch, origin, sha)?;
    if missing.is_none() {
        return Ok(());
    }
    match writer(origin)? {
        Writer::Berth => copy_in_process(scratch, origin, sha, &missing),
        Writer::Git(owner) => unpack(scratch, origin.path(), &missing, owner.as_ref()),
    }
}

/// Which of the lock commit and its tree the origin lacks, read through its open handle.
struct Missing {
    commit: Option<Oid>,
    tree: Option<Oid>,
}

impl Missing {
    fn of(scratch: &Repository, origin: &Repository, sha: Oid) -> Result<Self, git2::Error> {
        let odb = origin.odb()?;
        let lacks = |oid: Oid| (!odb.exists(oid)).then_some(oid);
        Ok(Self {
            commit: lacks(sha),
            tree: lacks(scratch.find_commit(sha)?.tree_id()),
        })
    }

    fn is_none(&self) -> bool {
        self.commit.is_none() && self.tree.is_none()
    }
}

fn writer(origin: &Repository) -> Result<Writer, git2::Error> {
    let git_dir = lock_dir::open_git_dir(origin.path())
        .map_err(|e| failed(origin.path(), None, &format!("cannot open it: {e}")))?;
    if let Some(owner) = origin_owner::of_objects(&git_dir) {
        return Ok(Writer::Git(Some(owner)));
    }
    Ok(if shared(origin)? {
        Writer::Git(None)
    } else {
        Writer::Berth
    })
}

/// Whether git makes `origin`'s new directories and files group- or world-accessible
/// (`core.sharedRepository` other than unset, false or `umask`, as git reads it). A value berth cannot
/// read is taken as shared: git then applies whatever it means.
fn shared(origin: &Repository) -> Result<bool, git2::Error> {
    match origin.config()?.get_string("core.sharedRepository") {
        Ok(value) => Ok(!matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "false" | "no" | "off" | "0" | "umask"
        )),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(false),
        Err(_) => Ok(true),
    }
}

fn copy_in_process(
    scratch: &Repository,
    origin: &Repository,
    sha: Oid,
    missing: &Missing,
) -> Result<(), git2::Error> {
    let source = scratch.odb()?;
    let target = origin.odb()?;
    if let Some(tree) = missing.tree {
        target.write(ObjectType::Tree, source.read(tree)?.data())?;
    }
    let Some(commit) = missing.commit else {
        return Ok(());
    };
    if target.write(ObjectType::Commit, source.read(commit)?.data())? == sha {
        Ok(())
    } else {
        Err(git2::Error::from_str(
            "the lock commit changed identity when copied to origin",
        ))
    }
}

/// Runs `git unpack-objects` in `git_dir` as `owner` (or berth), fed a pack of the
/// `missing` objects from a memory file (no pipe berth could block on), and waits for it at
/// most [`ref_writer::WRITE_LIMIT`] and its grace.
fn unpack(
    scratch: &Repository,
    git_dir: &Path,
    missing: &Missing,
    owner: Option<&Owner>,
) -> Result<(), git2::Error> {
    let fail = |why: &str| failed(git_dir, owner, why);
    let pack = pack_of(scratch, missing).map_err(|e| fail(&format!("cannot pack it: {e}")))?;
    let mut command = ref_writer::git_in(git_dir);
    command
        .args(["unpack-objects", "-q"])
        .stdin(Stdio::from(pack));
    if let Some(owner) = owner {
        owner.apply(&mut command);
    }
    let (applied, said) = run(&mut command).map_err(|e| fail(&format!("cannot run git: {e}")))?;
    if applied {
        Ok(())
    } else {
        Err(fail(said.trim()))
    }
}

fn run(command: &mut Command) -> io::Result<(bool, String)> {
    let mut child = command.spawn()?;
    ref_writer::finish(&mut child, "git unpack-objects")
}

/// A pack of the `missing` objects, in a memory file read from its start.
fn pack_of(scratch: &Repository, missing: &Missing) -> io::Result<std::fs::File> {
    let mut builder = scratch.packbuilder().map_err(io::Error::other)?;
    if let Some(tree) = missing.tree {
        builder.insert_tree(tree).map_err(io::Error::other)?;
    }
    if let Some(commit) = missing.commit {
        builder
            .insert_object(commit, None)
            .map_err(io::Error::other)?;
    }
    let mut pack = git2::Buf::new();
    builder.write_buf(&mut pack).map_err(io::Error::other)?;
    let mut file = std::fs::File::from(memfd_create(c"berth-lock-pack", MFdFlags::MFD_CLOEXEC)?);
    file.write_all(&pack)?;
    file.rewind()?;
    Ok(file)
}

/// The error that fails the lock write: where, as whom, and why.
fn failed(git_dir: &Path, owner: Option<&Owner>, why: &str) -> git2::Error {
    let whom = owner.map_or_else(
        || "berth's own user".to_owned(),
        |owner| format!("uid {} (the owner of its objects/)", owner.uid()),
    );
    git2::Error::from_str(&format!(
        "cannot write the lock commit into {} as {whom}: {why}",
        git_dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// git reads `core.sharedRepository` as a permission word, a boolean or an octal mode;
    /// only unset and its false spellings leave the umask's modes, which libgit2 also makes.
    #[test]
    fn only_an_unset_or_false_shared_repository_is_written_in_process() {
        let dir = tempfile::tempdir().unwrap();
        let origin = Repository::init_bare(dir.path()).unwrap();
        assert!(!shared(&origin).unwrap());
        for (value, is_shared) in [
            ("false", false),
            ("0", false),
            ("umask", false),
            ("group", true),
            ("true", true),
            ("all", true),
            ("0660", true),
        ] {
            let mut config = origin.config().unwrap();
            config.set_str("core.sharedRepository", value).unwrap();
            let reopened = Repository::open_bare(dir.path()).unwrap();
            assert_eq!(shared(&reopened).unwrap(), is_shared, "{value}");
        }
    }
}
