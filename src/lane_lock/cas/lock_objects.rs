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
//! - Otherwise berth's own process writes them through libgit2: no child to wait for,
//!   unless a cruft pack holds one of them: libgit2 freshens it by touching the cruft
//!   `.pack`, which git does not count, where git's writer writes a fresh loose copy, so
//!   `git unpack-objects` as berth writes them then.
//!
//! Both objects go through the writer even when the origin has them: writing an object
//! it has freshens its copy's time (the loose file, or the pack holding it) or, where that
//! is refused, writes it anew, as git's `write_object_file` and libgit2's `git_odb_write`
//! do. Skipped, an old copy (the empty tree a released lock left loose and unreferenced)
//! stays prunable by a concurrent `git gc` after the lock ref points at it.
//! [`freshened`] then checks that no loose copy in the origin stayed old, unless a pack
//! holding its object was freshened instead ([`packed`]), and that an object only a cruft
//! pack held now has a loose copy (or a fresh pack that is not cruft). It judges the tree
//! as the commit: git reads the empty tree hard-coded, but `git fsck` of the origin does
//! not, and fails ("missing tree") on a lock commit whose tree a concurrent gc pruned.

use std::io::{self, Seek as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use git2::{ErrorCode, ObjectType, Oid, Repository};
use nix::sys::memfd::{MFdFlags, memfd_create};

use crate::lane_lock::origin_owner::{self, Owner};
use crate::lane_lock::{lock_dir, ref_writer, transport};

mod freshened;
mod packed;

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
    let objects = LockObjects {
        commit: sha,
        tree: scratch.find_commit(sha)?.tree_id(),
    };
    // The tree is judged like the commit: git reads the empty tree hard-coded, but
    // `git fsck` (even `--connectivity-only`) does not, and reports a lock commit whose
    // tree a racing gc pruned as a "missing tree" in the origin.
    let named = [("lock commit", objects.commit), ("tree", objects.tree)];
    let before = freshened::Before::look(origin.path(), &named, objects.commit)
        .map_err(|stale| failed(origin.path(), None, &stale.to_string()))?;
    let writer = match writer(origin)? {
        Writer::Berth if before.in_cruft() => Writer::Git(None),
        writer => writer,
    };
    let owner = match &writer {
        Writer::Berth => {
            copy_in_process(scratch, origin, &objects)?;
            None
        }
        Writer::Git(owner) => {
            let owner = owner.as_ref();
            unpack(scratch, origin.path(), &objects, owner).map_err(|said| {
                let why = match before.check() {
                    Ok(()) => said.to_string(),
                    Err(stale) => format!("{said}; {stale}"),
                };
                failed(origin.path(), owner, &why)
            })?;
            owner
        }
    };
    before
        .check()
        .map_err(|stale| failed(origin.path(), owner, &stale.to_string()))
}

/// A lock commit and its tree as bytes, for the write of a local origin: it runs on a
/// thread with a handle of its own on the scratch repository, and the operation's handle
/// wrote them to its memory ([`transport::keep_written_objects_in_memory`]), which no
/// other handle sees.
pub(in crate::lane_lock) struct Carried {
    commit: Vec<u8>,
    tree: Vec<u8>,
}

impl Carried {
    /// The lock commit `sha` and its tree, read from `scratch`.
    pub(in crate::lane_lock) fn read(
        scratch: &Repository,
        sha: Oid,
    ) -> Result<Carried, git2::Error> {
        let odb = scratch.odb()?;
        Ok(Carried {
            tree: odb
                .read(scratch.find_commit(sha)?.tree_id())?
                .data()
                .to_vec(),
            commit: odb.read(sha)?.data().to_vec(),
        })
    }

    /// Writes them to `scratch`'s memory, where [`copy_lock_commit`] reads them.
    pub(in crate::lane_lock) fn put_in(&self, scratch: &Repository) -> Result<(), git2::Error> {
        transport::keep_written_objects_in_memory(scratch)?;
        let odb = scratch.odb()?;
        odb.write(ObjectType::Tree, &self.tree)?;
        odb.write(ObjectType::Commit, &self.commit)?;
        Ok(())
    }
}

/// The lock commit and its tree.
struct LockObjects {
    commit: Oid,
    tree: Oid,
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
    objects: &LockObjects,
) -> Result<(), git2::Error> {
    let source = scratch.odb()?;
    let target = origin.odb()?;
    target.write(ObjectType::Tree, source.read(objects.tree)?.data())?;
    let commit = source.read(objects.commit)?;
    if target.write(ObjectType::Commit, commit.data())? == objects.commit {
        Ok(())
    } else {
        Err(git2::Error::from_str(
            "the lock commit changed identity when copied to origin",
        ))
    }
}

/// Runs `git unpack-objects` in `git_dir` as `owner` (or berth), fed a pack of the
/// lock `objects` from a memory file (no pipe berth could block on), and waits for it at
/// most [`ref_writer::WRITER_BOUND`] (stopped with SIGTERM before it, [`ref_writer::finish`]).
fn unpack(
    scratch: &Repository,
    git_dir: &Path,
    objects: &LockObjects,
    owner: Option<&Owner>,
) -> Result<(), NotUnpacked> {
    let pack = pack_of(scratch, objects).map_err(NotUnpacked::Pack)?;
    let mut command = ref_writer::git_in(git_dir);
    command
        .args(["unpack-objects", "-q"])
        .stdin(Stdio::from(pack));
    if let Some(owner) = owner {
        owner.apply(&mut command);
    }
    let (applied, said) = run(&mut command).map_err(NotUnpacked::Run)?;
    if applied {
        Ok(())
    } else {
        Err(NotUnpacked::Refused(said.trim().to_owned()))
    }
}

/// Why `git unpack-objects` wrote no lock objects.
#[derive(Debug, thiserror::Error)]
enum NotUnpacked {
    #[error("cannot pack it: {0}")]
    Pack(io::Error),
    #[error("cannot run git: {0}")]
    Run(io::Error),
    /// What git said.
    #[error("{0}")]
    Refused(String),
}

fn run(command: &mut Command) -> io::Result<(bool, String)> {
    use std::os::unix::process::CommandExt as _;
    // A group of its own, so stopping it at its limit stops a git a `git` wrapper runs.
    command.process_group(0);
    let started = std::time::Instant::now();
    let mut child = command.spawn()?;
    ref_writer::finish(&mut child, started, "git unpack-objects")
}

/// A pack of the lock `objects`, in a memory file read from its start.
fn pack_of(scratch: &Repository, objects: &LockObjects) -> io::Result<std::fs::File> {
    let mut builder = scratch.packbuilder().map_err(io::Error::other)?;
    builder
        .insert_tree(objects.tree)
        .map_err(io::Error::other)?;
    builder
        .insert_object(objects.commit, None)
        .map_err(io::Error::other)?;
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

#[cfg(test)]
mod freshen_tests;

#[cfg(test)]
mod alternate_tests;
#[cfg(test)]
mod gc_race_tests;
#[cfg(test)]
mod old_tree;
