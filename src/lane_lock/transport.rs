//! libgit2 plumbing for the lane lock: a per-operation scratch repository, guarded pushes
//! and fetches, and credentials.
//!
//! Nothing here spawns a process or reads a queued repository's config: the remote is
//! created in berth's own scratch repository from a URL given as data, and credentials come
//! from ssh-agent or the user's own git config.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::time::Duration;

use git2::{
    AutotagOption, Config, Cred, CredentialType, Direction, FetchOptions, Oid, PushOptions, Remote,
    RemoteCallbacks, Repository, RepositoryInitOptions, Signature,
};
use tempfile::TempDir;

use super::local_deadline::{self, local_origin_deadline};
use super::payload::PayloadProblem;
use super::refs_look;

/// How often libgit2 may ask for credentials in one operation before berth gives up (it
/// asks again after every rejected attempt, forever, if the callback keeps answering).
const MAX_CREDENTIAL_ATTEMPTS: u32 = 3;

/// A bare repository for lock operations, in a 0700 temp dir under berth's scratch dir,
/// used by one operation at a time.
///
/// Never one shared by all: every fetch of a foreign lock stores a pack and every lock
/// commit an object, so a long-lived repository would grow without bound while the daemon
/// polls held lanes; and concurrent operations (heartbeat thread, another lane, a second
/// berth process on the same state dir) never see each other's refs. The client reuses one
/// for a bounded number of operations (`scratch_pool`).
///
/// The objects berth writes here (lock commits, the empty tree) stay in this handle's
/// memory ([`keep_written_objects_in_memory`]); fetched packs go to disk as before.
pub(crate) struct Scratch {
    // Field order matters: the repository is closed before its directory is removed.
    pub repo: Repository,
    _dir: TempDir,
}

/// Name prefix of the per-operation directories (leftovers of a killed process are swept).
pub(crate) const SCRATCH_PREFIX: &str = "lock-op-";

impl Scratch {
    pub fn create(scratch_dir: &Path) -> std::io::Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix(SCRATCH_PREFIX)
            .tempdir_in(scratch_dir)?;
        let mut opts = RepositoryInitOptions::new();
        // No template: nothing (hooks included) is copied from the system's git install.
        opts.bare(true).external_template(false).mkpath(false);
        let repo = Repository::init_opts(dir.path(), &opts).map_err(std::io::Error::other)?;
        keep_written_objects_in_memory(&repo).map_err(std::io::Error::other)?;
        Ok(Scratch { repo, _dir: dir })
    }

    /// Writes a parentless commit of the empty tree with `message`; returns its id.
    pub fn write_lock_commit(&self, message: &str) -> Result<Oid, git2::Error> {
        let tree_id = self.repo.treebuilder(None)?.write()?;
        let tree = self.repo.find_tree(tree_id)?;
        let signature = Signature::now("berth", "berth@localhost")?;
        self.repo
            .commit(None, &signature, &signature, message, &tree, &[])
    }

    /// The message of commit `id`, if it is a UTF-8 commit in this repository.
    pub fn commit_message(&self, id: Oid) -> Result<String, PayloadProblem> {
        commit_message(&self.repo, id)
    }
}

/// The message of commit `id`, if it is a UTF-8 commit in `repo`.
pub(crate) fn commit_message(repo: &Repository, id: Oid) -> Result<String, PayloadProblem> {
    let commit = repo.find_commit(id).map_err(PayloadProblem::NotACommit)?;
    commit
        .message()
        .map(str::to_owned)
        .map_err(|_| PayloadProblem::NotUtf8)
}

/// Makes `repo`'s object writes go to memory (a mempack backend ahead of the loose and
/// pack backends); reads still find the objects on disk.
///
/// A lock commit is read only through the handle that wrote it: pushed from it, packed
/// from it for `git unpack-objects`, or copied from it into a local origin's object
/// database. Written loose, each cost a temp file, a rename and mostly a fan-out directory
/// in the scratch repository (two lock commits a landing), which a file system charges
/// far more for than the bytes: on ext4 without a journal, a new inode's allocation
/// scans past every inode freed in the last 30 s. What stays in memory is bounded by the
/// handle's use: at most [`super::scratch_pool::MAX_USES`] operations' lock commits, a few
/// hundred bytes each.
pub(crate) fn keep_written_objects_in_memory(repo: &Repository) -> Result<(), git2::Error> {
    repo.odb()?.add_new_mempack_backend(MEMORY_FIRST)?;
    Ok(())
}

/// The mempack's priority: above libgit2's loose (1) and pack (2) backends, so every write
/// goes to it first.
const MEMORY_FIRST: i32 = 1000;

/// What a guarded push did.
#[derive(Debug)]
pub(crate) enum PushOutcome {
    /// The remote applied the update and reported no error for the ref.
    Applied,
    /// The guard refused the value the remote advertised for the ref (the zero id when the
    /// ref is absent): nothing was sent.
    Refused { advertised: Oid },
    /// The remote refused the update (it moved since it was advertised, a hook said no,
    /// or it reported nothing for the ref).
    Rejected { status: String },
    /// A local origin's write found the ref's path changed since berth walked it (a
    /// symlink swapped in for one of its directories), or did not find what it wrote
    /// where it wrote it: nothing of it is believed ([`super::trail`]).
    Redirected { reason: String },
}

/// Pushes `refspec` (which updates `ref_name`) only if `guard` accepts the value the remote
/// advertises for `ref_name` at negotiation time.
///
/// That is `--force-with-lease` done right: the guard compares the advertised old value
/// and the remote then checks that same old value again under its ref lock, so an update
/// never lands on a ref that changed since it was read. `Err` is a transport or local
/// failure and says nothing about the ref.
pub(crate) fn push_guarded(
    repo: &Repository,
    url: &str,
    refspec: &str,
    ref_name: &str,
    guard: &dyn Fn(Oid) -> bool,
) -> Result<PushOutcome, git2::Error> {
    let advertised: Cell<Option<Oid>> = Cell::new(None);
    let refused = Cell::new(false);
    let report: RefCell<Option<Option<String>>> = RefCell::new(None);
    let credential_attempts = Cell::new(0);

    let mut callbacks = RemoteCallbacks::new();
    callbacks
        .credentials(|url, user, allowed| credentials(&credential_attempts, url, user, allowed));
    callbacks.push_negotiation(|updates| {
        for update in updates {
            if update.dst_refname_bytes() == ref_name.as_bytes() {
                advertised.set(Some(update.src()));
                if !guard(update.src()) {
                    refused.set(true);
                    return Err(git2::Error::from_str("lane lock guard refused the push"));
                }
            }
        }
        Ok(())
    });
    callbacks.push_update_reference(|name, status| {
        if name == ref_name {
            *report.borrow_mut() = Some(status.map(str::to_owned));
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);

    let mut remote = remote(repo, url)?;
    let pushed = remote.push(&[refspec], Some(&mut options));
    if refused.get() {
        return Ok(PushOutcome::Refused {
            advertised: advertised.get().unwrap_or(Oid::ZERO_SHA1),
        });
    }
    pushed?;
    if advertised.get().is_none() {
        // libgit2 negotiates every refspec; a push that skipped ours proved nothing.
        return Err(git2::Error::from_str(
            "the push never negotiated the lock ref",
        ));
    }
    Ok(match report.take() {
        Some(None) => PushOutcome::Applied,
        Some(Some(status)) => PushOutcome::Rejected { status },
        None => PushOutcome::Rejected {
            status: "the remote reported no status for the ref".to_owned(),
        },
    })
}

/// Fetches `refspec` from `url` into the scratch repository (no tags, no FETCH_HEAD).
///
/// A fetch lists every ref of the remote, whatever `refspec` asks for: over a local path
/// libgit2 reads each listed ref, and a lock ref another lane deletes in between fails
/// the whole fetch ([`ref_vanished`]); it is tried again, like a listing. A local origin
/// is read under `deadline` ([`on_origin`]).
pub(crate) fn fetch(
    repo: &Repository,
    url: &str,
    refspec: &str,
    deadline: Duration,
) -> Result<(), git2::Error> {
    let refspec = refspec.to_owned();
    on_origin(repo, url, deadline, move |repo, url| {
        retried(|| fetch_once(repo, url, &refspec))
    })
}

/// `op` again while a ref vanished under its listing, [`LIST_ATTEMPTS`] times at most.
fn retried<T>(mut op: impl FnMut() -> Result<T, git2::Error>) -> Result<T, git2::Error> {
    let mut attempt = 1;
    loop {
        match op() {
            Err(e) if attempt < LIST_ATTEMPTS && ref_vanished(&e) => attempt += 1,
            done => return done,
        }
    }
}

/// Runs `op` on `repo` against `url`: for a local origin on a thread of its own, with its
/// own handle on `repo` (opened by path), under `deadline` ([`local_deadline`]); for a
/// network origin here, where libgit2's socket timeouts bound it.
fn on_origin<T: Send + 'static>(
    repo: &Repository,
    url: &str,
    deadline: Duration,
    op: impl FnOnce(&Repository, &str) -> Result<T, git2::Error> + Send + 'static,
) -> Result<T, git2::Error> {
    let Some(origin) = super::local_origin(url) else {
        return op(repo, url);
    };
    let repo_path = repo.path().to_owned();
    let handed = repo_path.clone();
    let url = url.to_owned();
    local_deadline::run(&origin?, deadline, Some(&handed), move || {
        op(&Repository::open(&repo_path)?, &url)
    })?
}

fn fetch_once(repo: &Repository, url: &str, refspec: &str) -> Result<(), git2::Error> {
    let credential_attempts = Cell::new(0);
    let mut callbacks = RemoteCallbacks::new();
    callbacks
        .credentials(|url, user, allowed| credentials(&credential_attempts, url, user, allowed));
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks)
        .download_tags(AutotagOption::None)
        .update_fetchhead(false);
    let mut remote = remote(repo, url)?;
    remote.fetch(&[refspec], Some(&mut options), None)
}

/// How often a listing of a remote's refs is tried when a ref vanished while it was read.
pub(crate) const LIST_ATTEMPTS: u32 = 10;

/// Whether `e` is libgit2 failing to list a local remote's refs because one was deleted
/// while it read them (another lane releasing its lock): the next listing succeeds.
pub(crate) fn ref_vanished(e: &git2::Error) -> bool {
    e.class() == git2::ErrorClass::Reference
        && (e.code() == git2::ErrorCode::NotFound
            // A fetch's listing reports it with no code, only in words.
            || (e.message().starts_with("reference '") && e.message().ends_with("' not found")))
}

/// The id `url` advertises for `ref_name` (`git ls-remote`), `None` when it has no such
/// ref. For callers outside a lock client: a local origin is read under
/// [`local_origin_deadline`].
pub(crate) fn advertised(
    repo: &Repository,
    url: &str,
    ref_name: &str,
) -> Result<Option<Oid>, git2::Error> {
    let deadline = local_origin_deadline();
    let found = advertised_where(repo, url, &|name| name == ref_name, deadline)?;
    Ok(found.into_iter().next().map(|(_, oid)| oid))
}

/// Every ref `url` advertises whose name `wanted` accepts, with its id, in the order the
/// remote lists them. A local origin is read under `deadline` ([`on_origin`]).
pub(crate) fn advertised_where(
    repo: &Repository,
    url: &str,
    wanted: &dyn Fn(&str) -> bool,
    deadline: Duration,
) -> Result<Vec<(String, Oid)>, git2::Error> {
    let listed = on_origin(repo, url, deadline, |repo, url| {
        retried(|| advertised_once(repo, url))
    })?;
    Ok(listed
        .into_iter()
        .filter(|(name, _)| wanted(name))
        .collect())
}

fn advertised_once(repo: &Repository, url: &str) -> Result<Vec<(String, Oid)>, git2::Error> {
    let credential_attempts = Cell::new(0);
    let mut callbacks = RemoteCallbacks::new();
    callbacks
        .credentials(|url, user, allowed| credentials(&credential_attempts, url, user, allowed));
    let mut remote = remote(repo, url)?;
    let connection = remote.connect_auth(Direction::Fetch, Some(callbacks), None)?;
    let found = connection
        .list()?
        .iter()
        .map(|head| (head.name().to_owned(), head.oid()))
        .collect();
    Ok(found)
}

/// The remote every network operation here uses, after libgit2's socket timeouts are in
/// force. Not every caller holds a lock operation's scratch repo (the landing's feature
/// fetch and the claim check's `ls-remote` use the gated repo), and the first remote call
/// of a process may be any of them. The daemon's `LockClient` chose `remote_timeout`
/// already; the default is for a process that made no client.
///
/// A local origin's refs are looked at first without blocking ([`refs_look`]): libgit2's
/// local transport opens every ref it lists with a blocking `open()`.
fn remote<'r>(repo: &'r Repository, url: &str) -> Result<Remote<'r>, git2::Error> {
    if let Some(Ok(path)) = super::local_origin(url) {
        refs_look::refuse_blocking(&path)?;
        // A path libgit2 opens no repository at fails in the transport below, as before.
        let flags = git2::RepositoryOpenFlags::NO_SEARCH;
        if let Ok(origin) = Repository::open_ext(&path, flags, [] as [&str; 0]) {
            refs_look::refuse_linked(&origin)?;
        }
    }
    crate::git_timeouts::before_network_io(crate::git_timeouts::Timeouts {
        connect: super::DEFAULT_REMOTE_TIMEOUT,
        io: super::DEFAULT_REMOTE_TIMEOUT,
    });
    repo.remote_anonymous(url)
}

/// Fetches the first of `remote_refs` (full ref names, e.g. `refs/heads/<branch>`) that
/// `url` advertises into `tracking`; that ref and its advertised id, or `None` when `url`
/// has none of them. One connection lists origin's refs and downloads over the same
/// listing (a listing of a local origin reads every ref's file). libgit2 fetches a missing
/// ref as nothing at all, so without this look a tracking ref left by an earlier fetch
/// would pass for the branch. The landing's feature fetch: a local origin is read under
/// [`local_origin_deadline`].
pub(crate) fn fetch_advertised<'r>(
    repo: &Repository,
    url: &str,
    remote_refs: &[&'r str],
    tracking: &str,
) -> Result<Option<(&'r str, Oid)>, git2::Error> {
    let wanted: Vec<String> = remote_refs.iter().map(|r| (*r).to_owned()).collect();
    let tracking = tracking.to_owned();
    let found = on_origin(repo, url, local_origin_deadline(), move |repo, url| {
        let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
        if let Some(here) = already_here(repo, url, &wanted, &tracking)? {
            return Ok(here);
        }
        retried(|| fetch_advertised_once(repo, url, &wanted, &tracking))
    })?;
    Ok(found.map(|(at, oid)| (remote_refs[at], oid)))
}

/// [`fetch_advertised`] from a local origin whose head `repo` already has: read where
/// libgit2's listing would have read it, with no listing. libgit2's local transport lists
/// every ref of the origin (reading each ref's file and the object it names) before a
/// fetch, whatever the fetch asks for: on an origin of a thousand branches, a thousand
/// files and objects read for every landing. A fetch whose head the repo has transfers
/// nothing (libgit2 asks only for what its object database lacks), so when the first of
/// `remote_refs` the origin has names an object `repo` has, only `tracking` is set to it,
/// as the fetch would. `None` (fetch as before) for a network origin, or when the repo
/// lacks the head. The origin is looked at first, as for a listing ([`remote`]).
fn already_here(
    repo: &Repository,
    url: &str,
    remote_refs: &[&str],
    tracking: &str,
) -> Result<Option<Option<(usize, Oid)>>, git2::Error> {
    let Some(Ok(path)) = super::local_origin(url) else {
        return Ok(None);
    };
    let origin = refs_look::open_own(&path)?;
    for (at, name) in remote_refs.iter().enumerate() {
        let reference = match origin.find_reference(name) {
            Ok(reference) => reference,
            Err(e) if e.code() == git2::ErrorCode::NotFound => continue,
            Err(e) => return Err(e),
        };
        // A ref that names no object (a symbolic ref to none) is not an absent one: the
        // listing fails on it, and so does this fetch (review 50).
        let Some(head) = reference.resolve().ok().and_then(|r| r.target()) else {
            return Ok(None);
        };
        if !repo.odb()?.exists(head) {
            return Ok(None);
        }
        repo.reference(tracking, head, true, "berth: fetch")?;
        return Ok(Some(Some((at, head))));
    }
    Ok(Some(None))
}

/// [`fetch_advertised`]'s one try: the index in `remote_refs` of the ref fetched.
fn fetch_advertised_once(
    repo: &Repository,
    url: &str,
    remote_refs: &[&str],
    tracking: &str,
) -> Result<Option<(usize, Oid)>, git2::Error> {
    let credential_attempts = Cell::new(0);
    let callbacks = || {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(|url, user, allowed| {
            credentials(&credential_attempts, url, user, allowed)
        });
        callbacks
    };
    let mut remote = remote(repo, url)?;
    let mut connection = remote.connect_auth(Direction::Fetch, Some(callbacks()), None)?;
    let heads = connection.list()?;
    let found = remote_refs.iter().enumerate().find_map(|(at, wanted)| {
        heads
            .iter()
            .find(|head| head.name() == *wanted)
            .map(|head| (at, head.oid()))
    });
    let Some((at, head)) = found else {
        return Ok(None);
    };
    let remote_ref = remote_refs[at];
    let refspec = format!("+{remote_ref}:{tracking}");
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks())
        .download_tags(AutotagOption::None)
        .update_fetchhead(false);
    connection
        .remote()
        .download(&[refspec.as_str()], Some(&mut options))?;
    drop(connection);
    remote.update_tips(
        None,
        git2::RemoteUpdateFlags::empty(),
        AutotagOption::None,
        Some("berth: fetch"),
    )?;
    Ok(Some((at, head)))
}

/// Credentials from ssh-agent, or from the user's own git config (`Config::open_default`:
/// global, XDG and system files). A queued repository's config is never consulted: its
/// `credential.helper` is a program its author chose.
fn credentials(
    attempts: &Cell<u32>,
    url: &str,
    username: Option<&str>,
    allowed: CredentialType,
) -> Result<Cred, git2::Error> {
    attempts.set(attempts.get() + 1);
    if attempts.get() > MAX_CREDENTIAL_ATTEMPTS {
        return Err(git2::Error::from_str(
            "the remote rejected every credential offered (ssh-agent / git credential helper)",
        ));
    }
    let user = username.unwrap_or("git");
    if allowed.contains(CredentialType::USERNAME) {
        Cred::username(user)
    } else if allowed.contains(CredentialType::SSH_KEY) {
        Cred::ssh_key_from_agent(user)
    } else if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
        Cred::credential_helper(&Config::open_default()?, url, username)
    } else {
        Err(git2::Error::from_str(
            "the remote asks for a credential type berth does not provide",
        ))
    }
}

/// `url` with any password or token in its userinfo replaced by `***`, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let secret = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{secret}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
